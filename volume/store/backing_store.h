// BackingStore — positional I/O on the image that holds a volume's ciphertext (a regular file,
// a block device, an emulated zoned image). Follows LevelDB's RandomAccessFile contract:
// safe for concurrent use by multiple threads; buffers are borrowed only for the call.
// Offsets are absolute image byte offsets; the volume owns the sector -> offset mapping.
// Batches (read_batch/write_batch) put several pieces in flight together and wait for all of
// them; each piece gets its own result, so exactly the failed pieces fail. The default runs
// read_at/write_at one piece after another, in the batch's order (what zoned stores rely on);
// PosixBackingStore submits a batch to io_uring where it can (docs/async-store-io.md).
// Implementations: MemBackingStore, PosixBackingStore (posix_backing_store.h), and the zoned
// stores (volume/zone/zoned_store.h), which are decorators adding zone rules over a
// PosixBackingStore. Every one passes tests/unit/volume/store/backing_store_contract.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/inline_function.h"
#include "base/result.h"
#include "base/units.h"

namespace cryptmap::volume {

class ZoneMap;  // zoned media (later); nullptr means every zone is conventional

// One piece of a batch: its range, its buffer (borrowed for the call) and, after the call, its
// own result (the error read_at/write_at would have returned for it).
struct ReadPiece {
  ByteOffset off;
  std::span<std::byte> out;
  Result<void> result = {};
};
struct WritePiece {
  ByteOffset off;
  std::span<const std::byte> in;
  Result<void> result = {};
};

// What a completed write means for durability, as the store can tell (the issue's "the store
// reports its durability semantics"; docs/network-stores.md §8, `status --json` "store"):
//  * volatile_writes: a write that returned may still be lost (a page cache, a device's or an NBD
//    server's cache, librbd's cache) until sync() returns; false when the store only completes
//    writes once stable (an NBD server without flush, taken at its word; RBD with rbd_cache off).
//  * flush: sync() sends a flush that the medium acknowledges (fdatasync, NBD_CMD_FLUSH,
//    rbd_aio_flush); false where there is none to send (memory, an NBD server without flush).
//  * fua: write_fua is one durable write of the store's own (RWF_DSYNC, NBD FUA, an RBD write
//    flagged FUA where the image's cache honours it), not a write and then sync().
struct StoreDurability {
  bool volatile_writes = true;
  bool flush = true;
  bool fua = false;
  bool operator==(const StoreDurability&) const = default;
};

class BackingStore {
 public:
  virtual ~BackingStore() = default;
  // Reads exactly out.size() bytes; a read past the end of the image is kIo with object = offset.
  virtual Result<void> read_at(ByteOffset off, std::span<std::byte> out) const = 0;
  // Writes exactly in.size() bytes (retrying short writes); kReadOnly on a read-only store.
  virtual Result<void> write_at(ByteOffset off, std::span<const std::byte> in) = 0;
  // write_at whose bytes are durable when it returns (a block device's FUA write): the volume's
  // writes that must be stable by themselves (a FUSE write on a file opened O_SYNC/O_DSYNC).
  // Earlier writes are not covered (sync() is). The default is write_at, then sync(); stores
  // with a durable write of their own use it (PosixBackingStore: RWF_DSYNC; NBD: FUA).
  virtual Result<void> write_fua(ByteOffset off, std::span<const std::byte> in);
  // Every piece in flight together; returns when all completed, with the first failed piece's
  // error (in batch order) or success. Pieces must not overlap each other (writes: no order
  // among them is promised, except by the default, which keeps the batch's order).
  virtual Result<void> read_batch(std::span<ReadPiece> pieces) const;
  virtual Result<void> write_batch(std::span<WritePiece> pieces);
  // Batches whose caller works on each piece while the others are in flight (the engine's
  // streaming pipeline: decrypt piece k while k+1 is read, encrypt k+1 while k is written).
  // The work runs on the calling thread, before the call returns; what it returns becomes the
  // piece's result (the first failed piece in batch order is the call's result, as above).
  //  * read_batch_each: `on_read(i)` runs once for every piece whose read succeeded, as soon
  //    as it completed (in completion order), while later pieces may still be in flight.
  //  * write_batch_each: `prepare(i)` fills piece i's buffer and runs, in batch order, before
  //    piece i is submitted, while earlier pieces may already be in flight. When it fails,
  //    neither piece i nor any later piece is written; they all get its error.
  // The defaults run read_batch, then on_read for each piece in order; and prepare for every
  // piece, then write_batch (so the pieces still reach the store in batch order). The POSIX
  // store overlaps them on io_uring (docs/async-store-io.md §1).
  using PieceWork = InlineFunction<Result<void>(std::size_t), 64>;
  virtual Result<void> read_batch_each(std::span<ReadPiece> pieces, PieceWork on_read) const;
  virtual Result<void> write_batch_each(std::span<WritePiece> pieces, PieceWork prepare);
  // Makes every completed write durable (fdatasync).
  virtual Result<void> sync() = 0;
  // Deallocates the range (punch hole / BLKDISCARD); kUnsupported where impossible.
  virtual Result<void> discard(ByteOffset off, std::uint64_t len_bytes) = 0;
  virtual std::uint64_t size_bytes() const noexcept = 0;
  // Asks the image for its size again (a file grown with truncate, a block device grown or
  // shrunk since open: `cryptmap resize`), makes size_bytes() return it and returns it. Stores
  // whose size cannot change return size_bytes().
  virtual Result<std::uint64_t> refresh_size() { return size_bytes(); }
  virtual bool read_only() const noexcept = 0;
  // The store's preferred I/O granularity in bytes (a block device's optimal I/O size, an RBD
  // image's object size, an NBD export's preferred block size); 0 = nothing to say. luksFormat
  // aligns the payload to it as cryptsetup aligns to a device's topology.
  virtual std::uint64_t optimal_io_bytes() const noexcept { return 0; }
  // Whether the store cuts one large request into parts itself (and schedules them), so that
  // buffer-sized pieces of a batch only multiply its requests downstream. RBD: librbd stripes
  // one request over the image's objects and issues the object requests in parallel; four
  // 256 KiB pieces of one object are four OSD ops where one read does (docs/network-stores.md
  // §6.3). NBD: the store cuts a request at the server's maximum and spreads requests over its
  // connections; one request per 1 MiB window cost the daemon less CPU than four (§2). The
  // engine then reads a read-ahead window, and the whole sectors of a streaming read, with one
  // read_at each and decrypts them across the crypto workers once they are in
  // (volume/engine/README.md, "Store reads"). false (the default) keeps buffer-sized pieces in a
  // read_batch_each, each decrypted as it completes while the others are in flight: files, block
  // devices and io_uring, where one large read is one request the engine would wait for whole
  // before decrypting any of it. Decorators forward their image's answer.
  virtual bool splits_large_requests() const noexcept { return false; }
  // The store's durability semantics (StoreDurability above). The default matches the default
  // write_fua (a write and then sync) over a store whose sync() flushes a cache. Decorators
  // forward their image's answer, fua included only where they forward write_fua.
  virtual StoreDurability durability() const noexcept { return {}; }
  virtual const ZoneMap* zones() const noexcept { return nullptr; }
  // Human name for messages (the image path).
  virtual const std::string& name() const noexcept = 0;
};

struct PosixStoreOptions {
  bool read_only = false;
  // Use O_DIRECT for every request aligned to the file's direct-I/O alignment (a second,
  // buffered fd serves unaligned ones); no page cache means no memory-cgroup reclaim waiting on
  // our own writeback. Falls back to buffered I/O where the file system has no O_DIRECT.
  bool direct_io = false;
  // With direct_io: every request goes through O_DIRECT, never the buffered fd (an unaligned one
  // fails with the kernel's EINVAL), and a file without O_DIRECT fails to open. Zoned block
  // devices need this: page-cache writeback does not keep the issue order sequential zones need.
  bool direct_only = false;
  // Submit batches (read_batch/write_batch) through io_uring rings set up at open. Where that is
  // impossible (kernel.io_uring_disabled, seccomp, an old kernel; CRYPTMAP_IO_URING_FAIL_SETUP=1
  // in tests) one warning is logged (once per process) and batches run one piece after another.
  bool io_uring = true;
};
// The options of a store opened only to read or rewrite metadata (a header, key material, a
// probe) and closed again: buffered, no io_uring rings, whose set-up would cost more than the
// few transfers such an open makes (docs/async-store-io.md §5). The CLI's one-shot opens use
// it; a served volume's store (volume/open.h open_unlocked) keeps the rings.
constexpr PosixStoreOptions metadata_store_options(bool read_only) noexcept {
  return PosixStoreOptions{
      .read_only = read_only, .direct_io = false, .direct_only = false, .io_uring = false};
}
// Opens a regular file or block device. Errors name the path and say what to do.
Result<std::unique_ptr<BackingStore>> open_posix_store(const std::string& path,
                                                       const PosixStoreOptions& opts);

}  // namespace cryptmap::volume
