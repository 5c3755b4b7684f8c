// VolumeServer — the FUSE front end: one mount directory holding one regular file per opened
// volume (the /dev/mapper of cryptmap), served with the libfuse3 low-level API.
//
// Each file is named after its volume, is owned by the user running the server, has mode 0600
// and the volume's plaintext size. Reads and writes go straight to volume::Volume, on the FUSE
// worker that received the request, which replies when the volume returns. Files are opened with
// FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES: the kernel page cache does not double-cache
// what the volume already caches, and concurrent writers are not serialised on the inode lock
// (fs/README.md explains the choice and `losetup --direct-io`).
// Block-device semantics at the end: a read past the end is short (0 at EOF), a write starting
// at or past the end fails with ENOSPC, a write crossing the end is short. fsync/fdatasync run
// Volume::flush, so every acknowledged write is durable when fsync returns. Errors map through
// cryptmap::to_errno.
//
// Ownership: the server owns the FUSE session, the serving threads (each with its buffers) and
// every added Volume. Destruction = stop(): stop the loop, wait for in-flight requests, flush
// every volume, unmount, destroy the session, then the volumes (reverse of open).
// Thread-safety: every public method may be called from any thread, concurrently with serving.
// The parts of the implementation are listed in fs/internal/server_impl.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "volume/open.h"  // volume::StoreDurability
#include "volume/volume.h"

namespace spdlog {
class logger;
}

namespace cryptmap::fs {

// How requests travel between the kernel and the server (fs/README.md "FUSE over io_uring").
enum class FuseTransport {
  kAuto,   // io_uring when the kernel allows it (enable_uring=Y, offered at INIT), else /dev/fuse
  kUring,  // io_uring; the mount fails when it is off or cannot be set up here (what INIT or
           // the registration refuses later still falls back to /dev/fuse, with a warning)
  kDev,    // /dev/fuse only
};

struct ServerOptions {
  std::string mount_dir;            // created if missing; a stale mount is detached
  std::uint32_t fuse_workers = 16;  // FUSE worker threads, all started at mount
  bool fuse_debug = false;          // libfuse protocol trace (-d)
  // Arrival order for zoned volumes (docs/architecture.md §4.6): one worker at a time receives a
  // request and holds the order until its write is admitted. Required by add_volume for a
  // volume whose orders_writes() is true; costs a hand-off between workers per request.
  bool ordered_receive = false;
  FuseTransport fuse_transport = FuseTransport::kAuto;
  bool allow_other = false;                // FUSE allow_other: users other than the
                                           // server's may reach files (their mode decides)
  std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
};

// The FUSE session loop (fs/README.md "Requests, replies and threads"): for tests and status.
struct ServingStats {
  std::uint32_t workers = 0;              // fixed at mount
  std::size_t receive_buffer_bytes = 0;   // per worker, preallocated at mount
  bool receive_buffers_locked = false;    // mlocked (else faulted in but swappable)
  bool receive_buffers_resident = false;  // every page resident right now (mincore)
  std::uint64_t requests = 0;             // FUSE requests processed
  std::uint64_t foreign_receives = 0;     // requests read into a buffer not preallocated (0)
  bool uring = false;                     // requests come through io_uring ring entries
  std::uint32_t uring_entries = 0;        // ring entries (one thread each), 0 without io_uring
  std::uint32_t uring_queues = 0;         // the kernel's queues (one per possible CPU)
  std::uint64_t uring_requests = 0;       // requests processed from ring entries
};

// What `status` shows besides the layout: where the volume came from.
struct VolumeSource {
  std::string image;
  std::string header;  // detached header path, empty when the header is in the image
  // The image store's durability semantics (BackingStore::durability) when it was opened; only
  // the daemon fills it (status), an add request does not carry it.
  volume::StoreDurability store;
};

struct VolumeStatus {
  std::string name;
  VolumeSource source;
  volume::VolumeLayout layout;
  std::uint64_t size_bytes = 0;
  bool read_only = false;
  std::uint32_t open_count = 0;    // open file handles on the mapped file
  std::uint32_t file_mode = 0600;  // permission bits of the mapped file
  bool suspended = false;          // suspend_volume(): I/O held, no key in memory
  bool reencrypting = false;       // the daemon's: an online reencryption runs (layout: where)
  std::string fuse_transport;      // the mount's: "uring" or "dev"
  std::uint32_t open_flags = 0;    // the daemon's: OpenFlag bits of fs/control.h (--perf-*)
};

class VolumeServer {
 public:
  // Mounts `options.mount_dir` and starts serving (an empty directory until add_volume).
  static Result<std::unique_ptr<VolumeServer>> mount(const ServerOptions& options);
  ~VolumeServer();
  VolumeServer(const VolumeServer&) = delete;
  VolumeServer& operator=(const VolumeServer&) = delete;

  // Publishes `vol` as mount_dir/name. kBusy "already exists" for a duplicate name, kInvalid
  // for a name that cannot be a file name ("", ".", "..", containing '/', longer than 255).
  // `file_mode`: the file's permission bits (0600, or 0660 for a volume shared with the
  // owner's group; only other bits than 0660 are kInvalid). The owner is the server's user.
  Result<void> add_volume(const std::string& name, std::unique_ptr<volume::Volume> vol,
                          VolumeSource source, std::uint32_t file_mode = 0600);
  // Flushes and removes one volume. kNotFound when absent; kBusy while the file is open, unless
  // `force` (then handles still open get EIO from now on). The flush error, if any, is returned
  // after the volume is removed (it is gone either way).
  Result<void> remove_volume(const std::string& name, bool force);
  // luksSuspend: from now on the file's reads, writes, fsyncs and discards wait (nothing fails);
  // requests already running complete, the volume is flushed, then destroyed: its cache is
  // wiped and its cipher's keys with it. The file stays, with its size and open handles.
  // kNotFound when absent; kInvalid when already suspended; a flush error leaves the volume
  // served as before (nothing is lost).
  Result<void> suspend_volume(const std::string& name);
  // luksResume: serves the suspended `name` from `vol` (the same volume assembled again with
  // its key) and lets the held requests run. kNotFound when absent; kInvalid when not
  // suspended or when `vol` differs in size or mode from the suspended one.
  Result<void> resume_volume(const std::string& name, std::unique_ptr<volume::Volume> vol);
  // resize: holds the file's I/O (as suspend does, nothing fails), lets the requests already
  // running finish, changes the volume's size (Volume::resize: `new_size` 0 = all the image
  // holds now; a shrink drops cached data past the new end), serves again, then tells the
  // kernel: the file's attributes and pages are invalidated, so the next stat sees the new size
  // (a loop device reads it at `losetup -c`). Returns the new size. kNotFound when absent;
  // kInvalid while suspended; Volume::resize's errors (the size is unchanged then).
  Result<std::uint64_t> resize_volume(const std::string& name, std::uint64_t new_size);
  // refresh: holds the file's I/O, lets what runs finish, flushes, then serves the file from
  // `vol` (the same volume assembled again with other flags: --allow-discards, --perf-*) and
  // destroys the old one. kNotFound when absent; kInvalid while suspended or when `vol`
  // differs in size or mode; a flush error leaves the old volume serving (nothing is lost).
  Result<void> replace_volume(const std::string& name, std::unique_ptr<volume::Volume> vol);
  // The same, with `between` run while the file's I/O is held and the old volume flushed, right
  // before `vol` serves (the start of an online datashift decryption moves data and switches
  // the header there: docs/reencrypt.md §10 item 10); status shows `source` from then on. When
  // `between` fails the old volume serves on, `vol` is destroyed and its error returned.
  Result<void> replace_volume(const std::string& name, std::unique_ptr<volume::Volume> vol,
                              const std::function<Result<void>()>& between, VolumeSource source);
  // Replaces the layout status() shows for `name` (the header changed under the served volume:
  // an online reencryption moved or finished). kNotFound when absent.
  Result<void> set_status_layout(const std::string& name, volume::VolumeLayout layout);
  // Flushes every volume (SIGTERM path, before unmounting); suspended ones hold nothing.
  Result<void> flush_all();

  std::vector<VolumeStatus> status() const;
  std::size_t volume_count() const;
  const std::string& mount_dir() const noexcept;

  // Stops serving: ends the FUSE loop, waits for in-flight requests, flushes every volume,
  // unmounts. Idempotent; the destructor calls it.
  void stop();
  // True once the loop has ended (stop(), or the mount was removed from outside).
  bool stopped() const noexcept;
  // Zeroes once stopped.
  ServingStats serving_stats() const;
  // "uring" while requests come through io_uring ring entries, else "dev".
  const char* fuse_transport() const noexcept;

  class Impl;

 private:
  explicit VolumeServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Valid volume names: what cryptsetup would accept as a dm name and we can use as a file name.
Result<void> check_volume_name(const std::string& name);

}  // namespace cryptmap::fs
