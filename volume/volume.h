// Volume — the plaintext view of one opened volume: the I/O engine's facade.
//
// Data path: request -> sector cache -> TBB task graph issuing crypto requests in parallel
// (through a crypto::CryptoEngine with the backlog protocol) -> BackingStore.
//
// The contract is synchronous: a call returns when its request is complete (volume/engine/
// README.md, "Why Volume is synchronous"). Concurrency comes from callers: every method may be
// called from any number of threads at once, and the engine fans the crypto of one request out
// over the cores and overlaps its store I/O with that crypto. Buffers are borrowed for the call.
// Offsets and lengths are bytes of plaintext relative to the volume start; any offset/length
// is accepted (partial sectors are read-modify-written); a range past the end is truncated for
// reads (short read, 0 at EOF) and fails with kNoSpace for writes (a block device's ENOSPC).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/inline_function.h"
#include "base/result.h"
#include "base/units.h"
#include "volume/volume_layout.h"

namespace spdlog {
class logger;
}

namespace cryptmap::crypto {
class SectorCipher;
}

namespace cryptmap::volume {

class BackingStore;
class ZoneMap;

struct VolumeOptions {
  bool read_only = false;
  std::uint64_t cache_bytes = 64ull << 20;   // --cache-size
  std::uint32_t max_inflight_requests = 64;  // bound on crypto requests in flight
  std::uint32_t flush_age_ms = 5000;         // dirty data older than this is written back
  bool force_inline = false;                 // no parallel crypto fan-out within a request
  // --allow-discards (cryptsetup semantics, off by default): discard() on conventional storage
  // punches holes in the image. Discards reveal which blocks are unused (docs/formats.md §3.6).
  bool allow_discards = false;
  // --perf-no_write_workqueue (dm-crypt no_write_workqueue): every write is encrypted on the
  // submitting thread (no fan-out to the crypto workers) and issued to the store before `done`
  // (write-through, no write-back caching), as sequential zones are.
  bool no_write_workqueue = false;
  // --perf-no_read_workqueue (dm-crypt no_read_workqueue): reads are decrypted on the submitting
  // thread only (no fan-out to the crypto workers) and nothing is read ahead by other threads.
  bool no_read_workqueue = false;
  // DEBUG ONLY (tests prove with it that ordering matters): writes into sequential zones skip
  // admission and the turnstile and reach the zoned store in whatever order threads run.
  bool unordered_zone_writes = false;
};

// How the caller of Volume::write_ordered / write_fua orders writes into sequential zones
// (docs/architecture.md §4.6; fs/README.md "Zoned volumes: receive order").
struct WriteOrder {
  // 0: the caller serialises receipt up to `admitted`, so call order is arrival order and a
  // write not at its zone's write pointer fails at once (kZoneOrder), as the drive would.
  // > 0: callers run concurrently and may overtake each other (FUSE over io_uring: the kernel
  // queues a writer's requests per CPU, served by different threads); a write that starts
  // ahead of its zone's write pointer waits up to this long for the writes before it, then
  // fails as above. No effect on volumes that do not order writes.
  std::chrono::milliseconds wait_for_pointer{0};
};

class Volume {
 public:
  virtual ~Volume() = default;

  // Bytes read (short at the end of the volume, 0 at or past it), or the error.
  virtual Result<std::size_t> read(ByteOffset off, std::span<std::byte> out) = 0;
  // read() for a caller that sends the plaintext on (the FUSE reply): reads [off, off +
  // out.size()) and, on success, calls `deliver` once, before returning, with the bytes read:
  // either the first bytes of `out`, or memory the volume holds them in already (a loaded
  // read-ahead window), so the caller sends them without their first being copied into `out`.
  // Such memory stays as it is until `deliver` returns: it is neither reused for other sectors
  // nor invalidated meanwhile (writes of the range wait for the call). `deliver` must not call
  // this volume and should do nothing but send the bytes. On error `deliver` is not called.
  // The default reads into `out`.
  using Deliver = InlineFunction<void(std::span<const std::byte>), 32>;
  virtual Result<std::size_t> read_deliver(ByteOffset off, std::span<std::byte> out,
                                           Deliver deliver);
  // Bytes written (all of `in`), or the error.
  virtual Result<std::size_t> write(ByteOffset off, std::span<const std::byte> in) = 0;
  // Every write that completed before flush() was called is durable in the image on return.
  virtual Result<void> flush() = 0;
  // Deallocates plaintext [off, off + len) (fallocate PUNCH_HOLE on the mapped file, dm-crypt's
  // discard): cached blocks in the range are dropped (wiped), then the store discards the
  // matching image range. Only whole sectors are discarded (a partial head/tail sector is left
  // as it is, as dm-crypt does). On sequential zones a discard must cover whole zones and
  // resets them (their data then reads as zeros); a partial zone is kInvalid. Conventional
  // storage: kUnsupported unless VolumeOptions::allow_discards. Reads of a discarded range
  // return whatever the store returns (zeros for holes: ciphertext zeros decrypt to garbage on
  // conventional storage, as with dm-crypt). Returns the bytes discarded.
  virtual Result<std::size_t> discard(ByteOffset off, std::uint64_t len);
  // A write that tells the caller when it has taken its place in the volume's write order
  // (zoned volumes: admitted into its sequential zone; anything else: at once), before it
  // waits for anything else. A caller receiving requests on several threads serialises
  // receipt up to `admitted` to keep arrival order (docs/architecture.md §4.6). `admitted` runs
  // exactly once, on the calling thread, before the call returns.
  // `order`: how the caller orders zoned writes (WriteOrder below); the default is the
  // serialised receipt just described.
  using Admitted = InlineFunction<void(), 32>;
  virtual Result<std::size_t> write_ordered(ByteOffset off, std::span<const std::byte> in,
                                            Admitted admitted, WriteOrder order = {});
  // write_ordered whose bytes are durable in the image when it returns, as a block device's FUA
  // write: a FUSE write on a file opened O_SYNC/O_DSYNC (or written with RWF_DSYNC). Earlier
  // writes are not covered (flush() is). The default is write_ordered, then flush(); the engine
  // writes the request through with the store's durable write (BackingStore::write_fua),
  // keeping resident cache blocks current, and flushes nothing else.
  virtual Result<std::size_t> write_fua(ByteOffset off, std::span<const std::byte> in,
                                        Admitted admitted, WriteOrder order = {});
  // True when writes to this volume must be admitted in arrival order (zoned store with
  // sequential zones, unless unordered_zone_writes).
  virtual bool orders_writes() const noexcept { return false; }
  // The backing store's zones, in IMAGE byte offsets (the volume starts at
  // layout().data_offset_bytes); nullptr when the store is not zoned.
  virtual const ZoneMap* zones() const noexcept { return nullptr; }
  // Changes the size of the open volume (`cryptmap resize`, docs/resize.md). `new_size` 0: all
  // the image holds after the data offset now (the store's size is asked again), rounded down to
  // whole sectors; else exactly `new_size` bytes, a multiple of the sector size, within the
  // image. Shrinking drops every cached block past the new end, dirty ones included: nothing
  // past the end is written back later. Returns the new size.
  // REQUIRES: no other call on this volume runs meanwhile (the caller holds its requests); the
  // volume stops and restarts its own threads. Errors: kReadOnly (read-only volume),
  // kUnsupported (this volume cannot change size: zoned, authenticated, several segments),
  // kInvalid (size not a multiple of the sector size, data offset past the image end),
  // kNoSpace (the image is too small for `new_size`).
  virtual Result<std::uint64_t> resize(std::uint64_t new_size);
  // Runs `fn` while no request of this volume touches [off, off + len) (whole sectors around
  // it): overlapping reads, writes, read-ahead loads and write-backs wait until `fn` returns
  // (new ones in arrival order behind it), requests elsewhere go on. What the cache holds is
  // plaintext and stays valid; dirty blocks of the range are written back after the hold, with
  // the cipher as it is then. Online reencryption converts a hotzone's ciphertext under the
  // served volume this way (docs/reencrypt.md §10). `fn` must not call this volume. Errors:
  // kInvalid (empty range or past the end), kUnsupported (this volume cannot: zoned,
  // authenticated, a decorator), else fn's.
  virtual Result<void> hold_range(ByteOffset off, std::uint64_t len,
                                  const std::function<Result<void>()>& fn);
  // Plaintext size in bytes (a multiple of the sector size).
  virtual std::uint64_t size_bytes() const noexcept = 0;
  virtual const VolumeLayout& layout() const noexcept = 0;
  virtual bool read_only() const noexcept = 0;
};

// The zones of a zoned volume as text, offsets relative to the volume (zones before the data
// offset are left out, a zone cut by it starts at 0); empty when the volume is not zoned:
//   zone_size <bytes> zones <count>
//   <index> <start> <len> <capacity> <wp> <type> <cond>       (one line per zone)
std::string zone_table_text(const Volume& vol);

// Assembles a volume: takes ownership of the cipher and the store. `logger` may be null
// (then the default logger is used); it must outlive the volume.
Result<std::unique_ptr<Volume>> open_volume(VolumeLayout layout,
                                            std::unique_ptr<crypto::SectorCipher> cipher,
                                            std::unique_ptr<BackingStore> store,
                                            const VolumeOptions& options,
                                            std::shared_ptr<spdlog::logger> logger);

}  // namespace cryptmap::volume
