// The FUSE operations that move data: read, write, flush, fsync, fallocate (VolumeServer's
// I/O path; fs/volume_server.h states the block-device semantics). They never throw and never
// block on the control plane; each pins its volume with a registry Ref for the duration. While
// a volume is suspended (luksSuspend) they wait in acquire_active() until it is resumed.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <span>

#include "fs/internal/server_impl.h"

namespace cryptmap::fs::internal {
namespace {

using Impl = VolumeServer::Impl;

// How long a sequential-zone write received through a ring entry ahead of its zone's write
// pointer waits for the writes before it (fs/README.md "Zoned volumes: receive order"). Those
// are on another CPU's queue or thread; seconds cover a loaded machine's scheduling, and a
// write the writer really sent out of order fails after it, as the drive would fail it.
constexpr std::chrono::milliseconds kRingZoneOrderWait{5000};

// The shared prologue of read, write and fallocate: marks the worker, pins the volume and
// checks the offset. Returns an empty ref after replying with the error (EISDIR, EIO for a
// closed volume, EINVAL for a negative offset).
VolumeRegistry::Ref acquire_for_io(Impl& s, fuse_req_t req, fuse_ino_t ino, off_t off) {
  s.enter_worker();
  VolumeRegistry::Ref ref = s.registry.acquire_active(ino);
  if (!ref) {
    fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : EIO);
    return ref;
  }
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return VolumeRegistry::Ref{};
  }
  return ref;
}

}  // namespace

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  VolumeRegistry::Ref ref = acquire_for_io(s, req, ino, off);
  if (!ref) return;  // already answered
  const auto pos = static_cast<std::uint64_t>(off);
  if (pos >= ref->size_bytes || size == 0) {
    fuse_reply_buf(req, nullptr, 0);  // EOF: a block device returns 0 at its end
    return;
  }
  // Plaintext goes into the serving thread's own locked buffer (serving_reply_buffer: wiped at
  // unmount, never the heap), so a read takes no buffer from anywhere and never waits for one.
  const std::span<std::byte> reply = serving_reply_buffer();
  if (reply.empty()) {  // every thread that runs our operations is a serving thread
    fuse_reply_err(req, EIO);
    return;
  }
  const std::size_t len = static_cast<std::size_t>(
      std::min<std::uint64_t>({size, ref->size_bytes - pos, reply.size()}));
  const std::span<std::byte> out = reply.first(len);
  volume::Volume& vol = *ref->volume;
  // The reply is sent from wherever the volume has the plaintext: a loaded read-ahead window is
  // sent from its own memory while the volume keeps it pinned and its range held
  // (Volume::read_deliver), so on /dev/fuse the kernel copies it straight from the window; on
  // a ring entry it is copied into the payload (UringTransport::take_reply), as before.
  Result<std::size_t> r =
      vol.read_deliver(ByteOffset{pos}, out, [req, len](std::span<const std::byte> data) {
        fuse_reply_buf(req, reinterpret_cast<const char*>(data.data()), std::min(data.size(), len));
      });
  if (!r) {
    s.log_io_error("read", ref.entry(), pos, r.error());
    fuse_reply_err(req, to_errno(r.error()));
  }
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
              fuse_file_info* fi) {
  Impl& s = Impl::of(req);
  ReleaseOrderAtExit release_order;  // held since receipt (ordered_receive) until admitted
  VolumeRegistry::Ref ref;
  {
    KeepReceiveOrder keep;
    ref = acquire_for_io(s, req, ino, off);
  }
  if (!ref) return;  // already answered
  if (ref->read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  const auto pos = static_cast<std::uint64_t>(off);
  if (size == 0) {
    fuse_reply_write(req, 0);
    return;
  }
  if (pos >= ref->size_bytes) {
    fuse_reply_err(req, ENOSPC);  // block device: nothing fits at or past the end
    return;
  }
  // A write crossing the end is short, as on a block device; the next one gets ENOSPC.
  const std::size_t len =
      static_cast<std::size_t>(std::min<std::uint64_t>(size, ref->size_bytes - pos));
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), len);
  // `data` is the worker's receive buffer, reused for its next request once this handler
  // returns; the volume is done with it when write_ordered() returns (zero-copy). Parallelism
  // comes from the workers.
  volume::Volume& vol = *ref->volume;
  // The kernel sends a direct-I/O write's open flags with it, O_DSYNC added for RWF_DSYNC and
  // IOCB_DSYNC (fuse_write_flags in fs/fuse/file.c; libfuse copies them into fi->flags), and
  // sends no fsync after it: such a write must be durable when it is answered (O_SYNC
  // includes O_DSYNC's bit).
  const bool durable = fi != nullptr && (fi->flags & O_DSYNC) != 0;
  // Zoned order: a /dev/fuse worker holds the receive order until admission (call order is
  // arrival order); a ring thread has no receive order, so a sequential-zone write that
  // overtook the writes before it waits for them at the zone's write pointer, bounded
  // (fs/README.md "Zoned volumes: receive order").
  volume::WriteOrder order;
  if (serving_ring_request()) order.wait_for_pointer = kRingZoneOrderWait;
  Result<std::size_t> r = durable
                              ? vol.write_fua(
                                    ByteOffset{pos}, in, [] { release_receive_order(); }, order)
                              : vol.write_ordered(
                                    ByteOffset{pos}, in, [] { release_receive_order(); }, order);
  if (r) {
    fuse_reply_write(req, *r);
  } else {
    s.log_io_error("write", ref.entry(), pos, r.error());
    fuse_reply_err(req, to_errno(r.error()));
  }
}

// close(2) on a block device does not make data durable either; fsync does.
void op_flush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  Impl::of(req).enter_worker();
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  VolumeRegistry::Ref ref = s.registry.acquire_active(ino);
  if (!ref) {
    fuse_reply_err(req, ino == FUSE_ROOT_ID ? 0 : EIO);
    return;
  }
  Result<void> r = ref->volume->flush();
  if (!r) s.log_io_error("fsync", ref.entry(), 0, r.error());
  fuse_reply_err(req, r ? 0 : to_errno(r.error()));
}

// fallocate(PUNCH_HOLE | KEEP_SIZE) = discard (a block device's BLKDISCARD through
// fallocate(2)): whole sequential zones are reset, conventional storage is punched only with
// --allow-discards (else EOPNOTSUPP), a partial sequential zone is EINVAL. Allocation modes
// make no sense for a fixed-size device: EOPNOTSUPP.
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                  fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  VolumeRegistry::Ref ref = acquire_for_io(s, req, ino, off);
  if (!ref) return;  // already answered
  if (mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  if (len <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (ref->read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  const auto pos = static_cast<std::uint64_t>(off);
  volume::Volume& vol = *ref->volume;
  Result<std::size_t> r = vol.discard(ByteOffset{pos}, static_cast<std::uint64_t>(len));
  if (!r) s.log_io_error("discard", ref.entry(), pos, r.error());
  fuse_reply_err(req, r ? 0 : to_errno(r.error()));
}

}  // namespace cryptmap::fs::internal
