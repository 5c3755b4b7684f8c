// CryptoDriver — converts (encrypts or decrypts) a buffer of whole sectors through a
// crypto::CryptoEngine, with dm-crypt's conversion loop (crypt_convert(); docs/formats.md §4.1):
//
//  * The buffer is cut into batches of at most `batch_bytes`. Each batch is one CryptoRequest
//    taken from a pool of `max_inflight` requests, allocated once: at most that many crypto
//    requests are in flight per volume, and a submitter waits for a free one (backpressure:
//    admission waits, never fails).
//  * A conversion counts its outstanding batches like dm-crypt's cc_pending: it starts at 1 (the
//    submitter's guard), +1 per submitted batch, -1 per completion; the first error wins and is
//    what convert() returns; convert() returns only when the count reached 0, so every batch
//    completes exactly once and the caller's buffer is never borrowed after return.
//  * submit() results: kDone -> completed inline; kInProgress -> the engine calls on_done;
//    kBackloggedBusy -> accepted; the submitter calls wait_for_drain() once, then keeps
//    issuing (one wait per busy episode, never one per request); kBusyRejected -> the batch
//    is not accepted: the conversion fails with kBusy and stops issuing (no spinning).
//  * Parallelism: conversions of at least `parallel_threshold_bytes` are split into one slice
//    per core (per-core batches), run by the volume's crypto workers (a SlicePool of
//    `threads` - 1 threads, slice_pool.h) and the calling thread; smaller ones run inline on
//    the calling thread (gocryptfs's 32-block rule). `force_inline` keeps everything on the
//    calling thread (dm-crypt no_read_workqueue/no_write_workqueue).
//  * Out of place (encrypt_from): the plaintext is read from the caller's memory and the
//    ciphertext written to the output, batch by batch, with no copy of the whole request first.
//  * Idle workers sleep (they block; they never spin), and each marks itself with
//    mark_io_thread().
//
// Thread-safety: convert() may be called from any number of threads at once.
// Ownership: borrows the engine, which must outlive the driver.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/inline_function.h"
#include "base/result.h"
#include "base/units.h"
#include "crypto/crypto_engine.h"

namespace cryptmap::volume {

struct CryptoDriverOptions {
  std::uint32_t sector_size = 512;
  std::size_t batch_bytes = 32 * 1024;
  std::size_t parallel_threshold_bytes = 128 * 1024;
  std::uint32_t max_inflight = 64;
  unsigned threads = 0;  // crypto threads with the caller; 0 = hardware concurrency
  bool force_inline = false;
  bool inline_decrypt = false;  // decryption only on the calling thread (no_read_workqueue)
  bool inline_encrypt = false;  // encryption only on the calling thread (no_write_workqueue)
};

class CryptoDriver {
 public:
  static Result<std::unique_ptr<CryptoDriver>> create(crypto::CryptoEngine& engine,
                                                      const CryptoDriverOptions& options);
  ~CryptoDriver();
  CryptoDriver(const CryptoDriver&) = delete;
  CryptoDriver& operator=(const CryptoDriver&) = delete;

  // REQUIRES: data.size() is a multiple of sector_size; `first` is data[0]'s SectorIndex.
  Result<void> convert(crypto::CryptoDir dir, std::span<std::byte> data, SectorIndex first);
  // convert() with every batch on the calling thread, whatever the size: for a caller that
  // already runs beside others doing the same (read-ahead loaders of several windows), where a
  // fan-out would only add a worker's wake-up and the join's.
  Result<void> convert_on_caller(crypto::CryptoDir dir, std::span<std::byte> data,
                                 SectorIndex first);
  // Encrypts `plain` into `out` (convert(kEncrypt) of a copy of `plain` in `out`, `plain` left as
  // it is), spread over the workers as convert() is: each batch is read from `plain` by an
  // engine that reads_source(), or copied into `out` just before it is encrypted there.
  // REQUIRES: plain.size() == out.size(), a multiple of sector_size; they do not overlap.
  Result<void> encrypt_from(std::span<const std::byte> plain, std::span<std::byte> out,
                            SectorIndex first);
  // Several of them as one conversion: their sectors are spread over the workers together (one
  // fan-out, one wake-up of the workers, where a call per part costs a hand-off each).
  struct FromTo {
    std::span<const std::byte> plain;
    std::span<std::byte> out;
    SectorIndex first;  // out[0]'s
  };
  Result<void> encrypt_from(std::span<const FromTo> parts);

  // convert() for authenticated runs (volume/integrity): each sector's tag tuple (`meta`,
  // meta.size() / sectors bytes per sector) travels in the same CryptoRequest as its data, so a
  // tag is never separated from, or reordered against, its sector, whatever order the engine
  // completes requests in; same batches, backlog protocol and slices as convert(). A decrypt
  // with `failed` (one entry per sector) is one sector per request (dm-crypt's one AEAD request
  // per sector): failed[i] is set when sector first + i fails its tag (Errc::kAuth), every
  // sector is still converted, and the error of the lowest failing sector is returned unless
  // another error (the engine's) came first, which stops the conversion as in convert().
  Result<void> convert_auth(crypto::CryptoDir dir, std::span<std::byte> data,
                            std::span<std::byte> meta, SectorIndex first,
                            std::span<bool> failed = {});

  unsigned threads() const noexcept;

 private:
  struct Impl;
  explicit CryptoDriver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cryptmap::volume
