// CryptoEngine — an asynchronous sector-crypto engine (a hardware accelerator, a worker pool,
// or the synchronous CPU path), driven by the I/O engine with dm-crypt's backlog protocol
// (crypt_convert(); docs/formats.md §4.1):
//
//   submit(req) returns
//     kDone            the request finished synchronously; req->status holds the result and
//                      `on_done` is NOT called.
//     kInProgress      accepted; `on_done(req)` will be called exactly once, on any thread.
//     kBackloggedBusy  accepted into the engine's backlog because its queue is full;
//                      `on_done(req)` will be called exactly once. The submitter must not
//                      submit more until the engine signals that its backlog drains
//                      (wait_for_drain()), then it continues. One wait per busy episode,
//                      never one wait per request.
//     kBusyRejected    NOT accepted (no backlog); `on_done` is never called. The caller fails
//                      this request (kBusy) instead of spinning.
//
// Thread-safety: submit() and wait_for_drain() may be called from any number of threads.
// Ownership: the engine borrows `req` (and the buffers it points to) until completion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/inline_function.h"
#include "base/result.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto {

enum class CryptoDir : std::uint8_t { kEncrypt, kDecrypt };
enum class SubmitStatus : std::uint8_t { kDone, kInProgress, kBackloggedBusy, kBusyRejected };

struct CryptoRequest {
  CryptoDir dir = CryptoDir::kEncrypt;
  SectorRun run;
  // Encryption out of place (only for an engine whose reads_source() is true): when not empty,
  // the plaintext is read from here (run.data.size() bytes, not overlapping run.data, left as
  // it is) and the ciphertext written to run.data (SectorCipher::encrypt_from).
  std::span<const std::byte> src;
  Result<void> status;                               // set by the engine before on_done
  InlineFunction<void(CryptoRequest*), 48> on_done;  // called once for kInProgress/kBackloggedBusy
  void* user = nullptr;                              // the submitter's context
};

class CryptoEngine {
 public:
  virtual ~CryptoEngine() = default;
  virtual SubmitStatus submit(CryptoRequest* req) = 0;
  // Blocks until a backlogged engine has started draining (the kernel's -EINPROGRESS
  // notification on a backlogged request). Returns at once if nothing is backlogged.
  virtual void wait_for_drain() = 0;
  virtual const char* name() const noexcept = 0;
  // True when the engine honours CryptoRequest::src; for any other engine the submitter copies
  // the plaintext into run.data itself and leaves src empty.
  virtual bool reads_source() const noexcept { return false; }
};

// The synchronous engine over a SectorCipher: every submit() runs the cipher on the submitting
// thread and is kDone (on_done is never called); it reads_source() (SectorCipher::encrypt_from).
// The one synchronous engine: the I/O engine (volume/engine) uses it when the caller configures
// no other, and fans it out over its own crypto workers (CryptoDriver). Borrows `cipher`, which
// must outlive the engine.
std::unique_ptr<CryptoEngine> make_sync_engine(const SectorCipher& cipher);

}  // namespace cryptmap::crypto
