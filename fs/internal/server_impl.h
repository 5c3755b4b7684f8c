// VolumeServer::Impl — the state one VolumeServer shares between its parts. fs-internal.
//   volume_server.cpp   — lifecycle: mount (session, workers, buffers), add/remove, stop
//   volume_registry.cpp — the volumes by name and inode, and the refs that pin them
//   fuse_io_ops.cpp     — read, write, flush, fsync, fallocate
//   fuse_meta_ops.cpp   — init, lookup, getattr, setattr, readdir, open, release, xattrs, statfs
//   ordered_receive.cpp — arrival order for zoned volumes
//   libfuse_compat.cpp  — FOPEN_PARALLEL_DIRECT_WRITES on libfuse 3.14.0
//   fuse_uring.cpp      — FUSE over io_uring (negotiation, ring entries)
//
// Thread-safety: the FUSE operations run on the session's workers, the control plane (add,
// remove, stop, status) on any thread. Lock order: admin_mu, then the registry's lock; no lock
// is held across volume I/O.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/mutex.h"
#include "fs/internal/fuse_session.h"
#include "fs/internal/fuse_uring.h"
#include "fs/internal/ordered_receive.h"
#include "fs/internal/volume_registry.h"
#include "fs/volume_server.h"

namespace spdlog {
class logger;
}

namespace cryptmap::fs {

namespace internal {
// Attribute and entry timeout: names and sizes change only through us (+ notify).
inline constexpr double kFuseTimeout = 3600.0;
// The kernel's max_background a zoned mount asks for in its INIT reply (op_init), with a
// congestion_threshold of 3/4 of it: far more than the ring entries (16 by default) that
// waiting writes can hold (fs/README.md "Zoned volumes: receive order").
inline constexpr unsigned kZonedMaxBackground = 256;
// The server's operation table (fuse_meta_ops.cpp; the I/O ones come from fuse_io_ops.cpp).
fuse_lowlevel_ops make_fuse_ops();
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
              fuse_file_info* fi);
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                  fuse_file_info* fi);
}  // namespace internal

class VolumeServer::Impl {
 public:
  ServerOptions opts;
  std::shared_ptr<spdlog::logger> log;
  uid_t uid = 0;
  gid_t gid = 0;
  struct timespec started {};
  std::unique_ptr<internal::FuseSession> session;
  std::unique_ptr<internal::UringTransport> uring;    // null: /dev/fuse only; outlives workers
  std::atomic<bool> uring_serving{false};             // requests come through the rings (status)
  std::unique_ptr<internal::SessionWorkers> workers;  // destroyed before the session
  std::thread loop_thread;  // waits for the workers to end (SessionWorkers::wait)
  std::atomic<bool> loop_done{false};
  std::atomic<std::uint32_t> errors_logged{0};
  internal::ReceiveOrder receive_order;  // used only with opts.ordered_receive

  // Serialises add/remove/stop (the control plane); taken before the registry's lock. `workers`
  // is reset under it by stop() but read without it by the loop thread (which stop() joins
  // first), so it is not GUARDED_BY.
  Mutex admin_mu;
  bool stopping GUARDED_BY(admin_mu) = false;
  internal::VolumeRegistry registry;

  static Impl& of(fuse_req_t req) { return *static_cast<Impl*>(fuse_req_userdata(req)); }

  // Called at the top of every operation: gives back the receive order (ordered_receive.h)
  // and marks the thread PR_SET_IO_FLUSHER. Our workers mark themselves when they start
  // (SessionWorkers on_start); this covers any other thread libfuse might run an operation on.
  // Idempotent and one thread-local test after the first call per thread.
  static void enter_worker() noexcept;

  // Rate-limited (dm-crypt DMERR_LIMIT): a failing disk must not flood the log.
  void log_io_error(const char* op, const internal::Entry& e, std::uint64_t off, const Error& err);

  // The served (not suspended) entry `name`, for the control plane: kNotFound when absent,
  // kInvalid while suspended. The pointer stays valid while admin_mu is held.
  Result<internal::Entry*> active_entry(const std::string& name, const char* op) REQUIRES(admin_mu);
  // Tells the kernel that `e`'s size changed: its attributes and cached pages are dropped, so
  // the next stat (and `losetup -c` after it) sees the new size. Not while a request of `e` is
  // held (the kernel may wait for it).
  void invalidate_file(const internal::Entry& e);

  // Fills `st` for the root or a mapped file; false when `ino` names no file (any more).
  bool attr_of(fuse_ino_t ino, struct stat& st) const;
  void fill_dir_attr(struct stat& st) const;
  void fill_file_attr(const internal::Entry& e, struct stat& st) const;
};

}  // namespace cryptmap::fs
