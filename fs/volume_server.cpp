#include "fs/volume_server.h"

#include <linux/falloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/buffer_pool.h"
#include "base/check.h"
#include "fs/internal/fuse_session.h"
#include "base/io_thread.h"

extern char** environ;

namespace cryptmap::fs {
namespace {

// ---- FOPEN_PARALLEL_DIRECT_WRITES on libfuse 3.14.0 ---------------------------------------
// Without this flag the kernel takes the inode lock exclusively for every direct write, so
// concurrent writers to one mapped file are serialised before they reach us (measured on this
// machine: 18.8k vs 113k IOPS, docs/benchmarks.md §2). libfuse 3.14.0 (Debian 12) has no
// fuse_file_info bit for it (3.14.1 added fi->parallel_direct_writes), so the session writes
// replies through a custom io whose writev ORs the flag into the open reply that the current
// thread is sending. A thread-local marker, set only around fuse_reply_open(), says which reply
// that is; libfuse sends it as iov[0] = fuse_out_header, iov[1] = struct fuse_open_out (a
// mutable struct on the replying thread's stack). Same trick as the bench's nullfuse.c.
constexpr std::uint32_t kFopenParallelDirectWrites = 1u << 6;  // include/uapi/linux/fuse.h
struct FuseOpenOutWire {                                       // struct fuse_open_out
  std::uint64_t fh;
  std::uint32_t open_flags;
  std::int32_t padding;
};
thread_local bool tls_patch_open_reply = false;

struct PatchOpenReply {
  PatchOpenReply() { tls_patch_open_reply = true; }
  ~PatchOpenReply() { tls_patch_open_reply = false; }
  PatchOpenReply(const PatchOpenReply&) = delete;
  PatchOpenReply& operator=(const PatchOpenReply&) = delete;
};

// ---- receive order (zoned volumes, docs/architecture.md §4.6) ------------------------------
// libfuse's workers all read /dev/fuse; the kernel hands requests out in queue order, but a
// worker can be descheduled between its read() and the handler, so handlers do not run in
// arrival order. With ServerOptions::ordered_receive a worker takes the receive order (a
// binary semaphore) before it reads and keeps it until its request has taken its place: a
// write when the volume has admitted it (Volume::write_ordered), anything else as soon as the
// handler starts. A request libfuse answers itself (FORGET, INTERRUPT) leaves the order held
// until the same worker reads again, which it does next. (The cleanup handler gives the order
// back should a worker ever be cancelled in read(); our SessionWorkers stop by signal + EINTR.)
struct ReceiveOrder {
  ReceiveOrder() { sem_init(&sem, 0, 1); }
  ~ReceiveOrder() { sem_destroy(&sem); }
  ReceiveOrder(const ReceiveOrder&) = delete;
  ReceiveOrder& operator=(const ReceiveOrder&) = delete;
  sem_t sem;
};
thread_local ReceiveOrder* tls_order_held = nullptr;  // the order this worker holds
thread_local bool tls_keep_order = false;             // op_write: keep it until admitted

void release_receive_order() noexcept {
  if (ReceiveOrder* o = std::exchange(tls_order_held, nullptr)) sem_post(&o->sem);
}
void release_order_on_cancel(void* /*arg*/) { release_receive_order(); }

// Defined after VolumeServer::Impl: the order of the server `userdata` belongs to, or null.
ReceiveOrder* receive_order_of(void* userdata) noexcept;

// Reads go through receive_read(): it keeps each read inside the worker's preallocated buffer.
// A wait for the order interrupted by the workers' wake-up signal returns EINTR like the read
// itself, so a stopping worker sees the exit flag (SessionWorkers::serve).
ssize_t io_read(int fd, void* buf, size_t len, void* userdata) {
  ReceiveOrder* order = receive_order_of(userdata);
  if (order == nullptr) return internal::receive_read(fd, buf, len);
  if (tls_order_held == nullptr) {
    if (sem_wait(&order->sem) != 0) return -1;  // errno: EINTR
    tls_order_held = order;
  }
  ssize_t n = -1;
  pthread_cleanup_push(release_order_on_cancel, nullptr);
  n = internal::receive_read(fd, buf, len);
  pthread_cleanup_pop(0);
  return n;
}

// Releases the receive order at scope exit unless already released (op_write's early replies).
struct ReleaseOrderAtExit {
  ReleaseOrderAtExit() = default;
  ~ReleaseOrderAtExit() { release_receive_order(); }
  ReleaseOrderAtExit(const ReleaseOrderAtExit&) = delete;
  ReleaseOrderAtExit& operator=(const ReleaseOrderAtExit&) = delete;
};

ssize_t io_writev(int fd, struct iovec* iov, int count, void* /*userdata*/) {
  if (tls_patch_open_reply && count == 2 && iov[1].iov_len == sizeof(FuseOpenOutWire)) {
    static_cast<FuseOpenOutWire*>(iov[1].iov_base)->open_flags |= kFopenParallelDirectWrites;
  }
  return ::writev(fd, iov, count);
}

const fuse_custom_io kCustomIo = {
    .writev = io_writev, .read = io_read, .splice_receive = nullptr, .splice_send = nullptr};

constexpr double kTimeout = 3600.0;  // names and sizes change only through us (+ notify)
constexpr std::chrono::milliseconds kReleaseGrace{5000};
constexpr std::size_t kArenaWarmBytes = 64 * 1024;  // below malloc's mmap threshold

}  // namespace

// ---- the registry ------------------------------------------------------------------------

struct Entry {
  std::string name;
  fuse_ino_t ino = 0;
  std::unique_ptr<volume::Volume> volume;
  VolumeSource source;
  std::uint64_t size_bytes = 0;
  bool read_only = false;
  std::uint32_t file_mode = 0600;
  struct timespec added {};
  std::atomic<std::uint32_t> open_count{0};
  std::atomic<std::uint64_t> inflight{0};  // admitted requests not yet completed
};

class VolumeServer::Impl {
 public:
  ServerOptions opts;
  std::shared_ptr<spdlog::logger> log;
  uid_t uid = 0;
  gid_t gid = 0;
  struct timespec started {};
  std::unique_ptr<BufferPool> pool;
  std::unique_ptr<internal::FuseSession> session;
  std::unique_ptr<internal::SessionWorkers> workers;  // destroyed before the session
  std::thread loop_thread;  // waits for the workers to end (SessionWorkers::wait)
  std::atomic<bool> loop_done{false};
  std::atomic<std::uint32_t> errors_logged{0};
  ReceiveOrder receive_order;  // used only with opts.ordered_receive

  // Lock order: admin_mu before mu; drain_mu is a leaf. No lock is held across volume I/O.
  std::mutex admin_mu;  // serialises add/remove/stop (the control plane)
  bool stopping = false;  // guarded by admin_mu
  mutable std::shared_mutex mu;  // guards the maps and next_ino
  std::map<std::string, Entry*> by_name;
  std::map<fuse_ino_t, std::unique_ptr<Entry>> by_ino;
  fuse_ino_t next_ino = FUSE_ROOT_ID + 1;  // never reused: a stale inode can never alias
  std::mutex drain_mu;
  std::condition_variable drain_cv;

  // An admitted request on one entry. While any EntryRef exists the entry is not destroyed
  // (remove_volume and stop wait for inflight == 0). Move-only; released on destruction.
  class EntryRef {
   public:
    EntryRef() = default;
    EntryRef(Impl* s, Entry* e) noexcept : s_(s), e_(e) {}
    EntryRef(EntryRef&& o) noexcept : s_(o.s_), e_(std::exchange(o.e_, nullptr)) {}
    EntryRef& operator=(EntryRef&& o) noexcept {
      if (this != &o) {
        release();
        s_ = o.s_;
        e_ = std::exchange(o.e_, nullptr);
      }
      return *this;
    }
    EntryRef(const EntryRef&) = delete;
    EntryRef& operator=(const EntryRef&) = delete;
    ~EntryRef() { release(); }
    Entry* operator->() const noexcept { return e_; }
    Entry& entry() const noexcept { return *e_; }
    explicit operator bool() const noexcept { return e_ != nullptr; }

   private:
    void release() noexcept {
      if (e_ == nullptr) return;
      // After the decrement the entry may already be destroyed (a waiter saw 0): touch only
      // the server from here on. Waking on every 1 -> 0 costs one uncontended lock.
      if (e_->inflight.fetch_sub(1) == 1) {
        std::lock_guard lock(s_->drain_mu);
        s_->drain_cv.notify_all();
      }
      e_ = nullptr;
    }
    Impl* s_ = nullptr;
    Entry* e_ = nullptr;
  };

  EntryRef acquire(fuse_ino_t ino, bool for_open = false) {
    std::shared_lock lock(mu);
    auto it = by_ino.find(ino);
    if (it == by_ino.end()) return {};
    Entry* e = it->second.get();
    e->inflight.fetch_add(1);
    if (for_open) e->open_count.fetch_add(1);
    return EntryRef(this, e);
  }

  void wait_drained(Entry& e) {
    std::unique_lock lock(drain_mu);
    drain_cv.wait(lock, [&] { return e.inflight.load() == 0; });
  }

  // Called at the top of every operation. Our workers mark themselves PR_SET_IO_FLUSHER when
  // they start (SessionWorkers on_start); this covers any other thread libfuse might run an
  // operation on. Idempotent and one thread-local test after the first call per thread.
  static void enter_worker() noexcept {
    if (!tls_keep_order) release_receive_order();
    (void)mark_io_thread();
  }

  void log_io_error(const char* op, const Entry& e, std::uint64_t off, const Error& err) {
    // Rate-limited (dm-crypt DMERR_LIMIT): a failing disk must not flood the log.
    const std::uint32_t n = errors_logged.fetch_add(1);
    if (n < 32 || n % 1024 == 0)
      log->error("{} {} at byte {}: {}", e.name, op, off, err.message());
  }

  // Fills `st` for the root or a mapped file; false when `ino` names no file (any more).
  bool attr_of(fuse_ino_t ino, struct stat& st) {
    if (ino == FUSE_ROOT_ID) {
      fill_dir_attr(st);
      return true;
    }
    std::shared_lock lock(mu);
    auto it = by_ino.find(ino);
    if (it == by_ino.end()) return false;
    fill_file_attr(*it->second, st);
    return true;
  }

  void fill_dir_attr(struct stat& st) const {
    st = {};
    st.st_ino = FUSE_ROOT_ID;
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    st.st_uid = uid;
    st.st_gid = gid;
    st.st_atim = st.st_mtim = st.st_ctim = started;
  }

  void fill_file_attr(const Entry& e, struct stat& st) const {
    st = {};
    st.st_ino = e.ino;
    st.st_mode = S_IFREG | e.file_mode;
    st.st_nlink = 1;
    st.st_uid = uid;
    st.st_gid = gid;
    st.st_size = static_cast<off_t>(e.size_bytes);
    st.st_blocks = static_cast<blkcnt_t>(e.size_bytes / 512);
    st.st_blksize = 4096;
    st.st_atim = st.st_mtim = st.st_ctim = e.added;
  }

  Result<void> flush_entry(Entry& e) {
    return e.volume->flush();
  }

  std::vector<Entry*> snapshot() const {
    std::shared_lock lock(mu);
    std::vector<Entry*> out;
    out.reserve(by_ino.size());
    for (const auto& [ino, e] : by_ino) out.push_back(e.get());
    return out;
  }
};

namespace {

using Impl = VolumeServer::Impl;

ReceiveOrder* receive_order_of(void* userdata) noexcept {
  auto* s = static_cast<Impl*>(userdata);
  return s != nullptr && s->opts.ordered_receive ? &s->receive_order : nullptr;
}

Impl& impl_of(fuse_req_t req) { return *static_cast<Impl*>(fuse_req_userdata(req)); }

// ---- the low-level operations (never throw, never block on the control plane) --------------

void op_init(void* userdata, struct fuse_conn_info* conn) {
  auto* s = static_cast<Impl*>(userdata);
  // The volume caches; the kernel must not cache a second copy or merge writes behind us.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  s->log->debug("FUSE connection: protocol {}.{}, max_write {}, max_read {}", conn->proto_major,
                conn->proto_minor, conn->max_write, conn->max_read);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Impl& s = impl_of(req);
  s.enter_worker();
  if (parent != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_entry_param e{};
  {
    std::shared_lock lock(s.mu);
    auto it = s.by_name.find(name);
    if (it == s.by_name.end()) {
      lock.unlock();
      fuse_reply_err(req, ENOENT);
      return;
    }
    e.ino = it->second->ino;
    e.generation = 1;
    s.fill_file_attr(*it->second, e.attr);
  }
  e.attr_timeout = kTimeout;
  e.entry_timeout = kTimeout;
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  s.enter_worker();
  struct stat st {};
  if (!s.attr_of(ino, st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, kTimeout);
}

// The size is the volume's; ownership and mode are fixed. Only no-op size changes and time
// updates (touch) are accepted, like a block device node that ignores them.
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  s.enter_worker();
  struct stat st {};
  if (!s.attr_of(ino, st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const bool size_change = (to_set & FUSE_SET_ATTR_SIZE) != 0 &&
                           (ino == FUSE_ROOT_ID || attr->st_size != st.st_size);
  if (size_change || (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    fuse_reply_err(req, EPERM);
    return;
  }
  fuse_reply_attr(req, &st, kTimeout);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  s.enter_worker();
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  // Directory offsets are stable under concurrent add/remove: "." = 1, ".." = 2, a volume's is
  // its (never reused) inode + 2; an entry is listed when its offset is above `off`.
  struct Item {
    std::string name;
    fuse_ino_t ino;
    off_t next;
  };
  std::vector<Item> items;
  if (off < 1) items.push_back({".", FUSE_ROOT_ID, 1});
  if (off < 2) items.push_back({"..", FUSE_ROOT_ID, 2});
  {
    std::shared_lock lock(s.mu);
    for (const auto& [i, e] : s.by_ino) {
      const auto next = static_cast<off_t>(i + 2);
      if (next > off) items.push_back({e->name, i, next});
    }
  }
  std::vector<char> buf(size);
  std::size_t used = 0;
  for (const Item& it : items) {
    struct stat st {};
    st.st_ino = it.ino;
    st.st_mode = it.ino == FUSE_ROOT_ID ? S_IFDIR : S_IFREG;
    const std::size_t need =
        fuse_add_direntry(req, buf.data() + used, size - used, it.name.c_str(), &st, it.next);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Impl& s = impl_of(req);
  s.enter_worker();
  if (ino == FUSE_ROOT_ID) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  const bool wants_write = (fi->flags & O_ACCMODE) != O_RDONLY;
  {
    Impl::EntryRef probe = s.acquire(ino);
    if (!probe) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    if (wants_write && probe->read_only) {
      fuse_reply_err(req, EROFS);
      return;
    }
  }
  Impl::EntryRef ref = s.acquire(ino, /*for_open=*/true);
  if (!ref) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  // O_TRUNC is ignored, as a block device ignores it.
  fi->direct_io = 1;   // FOPEN_DIRECT_IO: no page-cache copy of what the volume caches
  fi->keep_cache = 0;
  fi->fh = ino;
  int rc;
  {
    PatchOpenReply patch;  // + FOPEN_PARALLEL_DIRECT_WRITES (see io_writev)
    rc = fuse_reply_open(req, fi);
  }
  if (rc != 0) ref->open_count.fetch_sub(1);  // interrupted: the kernel will not release it
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  s.enter_worker();
  {
    std::shared_lock lock(s.mu);
    auto it = s.by_ino.find(ino);
    if (it != s.by_ino.end()) it->second->open_count.fetch_sub(1);
  }
  fuse_reply_err(req, 0);
}

// The shared prologue of read and write: marks the worker, pins the volume and checks the
// offset. Returns an empty ref after replying with the error (EISDIR, EIO for a closed volume,
// EINVAL for a negative offset).
Impl::EntryRef acquire_for_io(Impl& s, fuse_req_t req, fuse_ino_t ino, off_t off) {
  s.enter_worker();
  Impl::EntryRef ref = s.acquire(ino);
  if (!ref) {
    fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : EIO);
    return ref;
  }
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return Impl::EntryRef{};
  }
  return ref;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  Impl::EntryRef ref = acquire_for_io(s, req, ino, off);
  if (!ref) return;  // already answered
  const auto pos = static_cast<std::uint64_t>(off);
  if (pos >= ref->size_bytes || size == 0) {
    fuse_reply_buf(req, nullptr, 0);  // EOF: a block device returns 0 at its end
    return;
  }
  const std::size_t len = static_cast<std::size_t>(
      std::min<std::uint64_t>({size, ref->size_bytes - pos, s.pool->buffer_bytes()}));
  BufferPool::Buffer buf = s.pool->acquire();  // waits when all are in flight: backpressure
  const std::span<std::byte> out = buf.span().first(len);
  volume::Volume& vol = *ref->volume;
  Result<std::size_t> r = vol.read(ByteOffset{pos}, out);
  if (r) {
    fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), std::min(*r, len));
  } else {
    s.log_io_error("read", ref.entry(), pos, r.error());
    fuse_reply_err(req, to_errno(r.error()));
  }
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
              struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  ReleaseOrderAtExit release_order;  // held since receipt (ordered_receive) until admitted
  tls_keep_order = true;
  Impl::EntryRef ref = acquire_for_io(s, req, ino, off);
  tls_keep_order = false;
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
  Result<std::size_t> r = vol.write_ordered(ByteOffset{pos}, in, [] { release_receive_order(); });
  if (r) {
    fuse_reply_write(req, *r);
  } else {
    s.log_io_error("write", ref.entry(), pos, r.error());
    fuse_reply_err(req, to_errno(r.error()));
  }
}

// close(2) on a block device does not make data durable either; fsync does.
void op_flush(fuse_req_t req, fuse_ino_t /*ino*/, struct fuse_file_info* /*fi*/) {
  impl_of(req).enter_worker();
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  s.enter_worker();
  Impl::EntryRef ref = s.acquire(ino);
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
                  struct fuse_file_info* /*fi*/) {
  Impl& s = impl_of(req);
  Impl::EntryRef ref = acquire_for_io(s, req, ino, off);
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

// ---- zone layout as an extended attribute ---------------------------------------------------
// user.cryptmap.zones on the mapped file of a zoned volume: a text table, offsets relative to
// the mapped file (zones before the data offset are left out, a zone cut by it starts at 0):
//   zone_size <bytes> zones <count>
//   <index> <start> <len> <capacity> <wp> <type> <cond>
// `cryptmap status --zones` prints it. Volumes on conventional storage have no such attribute.
constexpr char kZonesXattr[] = "user.cryptmap.zones";

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Impl& s = impl_of(req);
  s.enter_worker();
  Impl::EntryRef ref = s.acquire(ino);
  if (!ref || std::strcmp(name, kZonesXattr) != 0 || ref->volume->zones() == nullptr) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  std::string text;
  try {
    text = volume::zone_table_text(*ref->volume);
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  if (text.size() > 65536) {
    fuse_reply_err(req, E2BIG);  // XATTR_SIZE_MAX
  } else if (size == 0) {
    fuse_reply_xattr(req, text.size());
  } else if (size < text.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, text.data(), text.size());
  }
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Impl& s = impl_of(req);
  s.enter_worker();
  Impl::EntryRef ref = s.acquire(ino);
  const bool zoned = ref && ref->volume->zones() != nullptr;
  const std::size_t need = zoned ? sizeof(kZonesXattr) : 0;  // names are NUL-terminated
  if (size == 0) {
    fuse_reply_xattr(req, need);
  } else if (size < need) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, kZonesXattr, need);
  }
}

void op_statfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  Impl& s = impl_of(req);
  s.enter_worker();
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  std::uint64_t bytes = 0;
  std::uint64_t files = 0;
  {
    std::shared_lock lock(s.mu);
    for (const auto& [ino, e] : s.by_ino) bytes += e->size_bytes;
    files = s.by_ino.size();
  }
  st.f_blocks = bytes / 4096;
  st.f_files = files + 1;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.release = op_release;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.fsync = op_fsync;
  ops.fallocate = op_fallocate;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.statfs = op_statfs;
  return ops;
}

// ---- mount directory preparation ------------------------------------------------------------

Result<void> make_dirs(const std::string& path) {
  std::string cur;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      return make_error_fmt(Errc::kIo, "create the mount directory", kNoObject, "%s: %s",
                            cur.c_str(), std::strerror(errno));
  }
  return ok();
}

// A daemon killed with -9 leaves its mount behind: every access then fails with ENOTCONN.
void detach_stale_mount(const std::string& dir, spdlog::logger& log) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0 || errno != ENOTCONN) return;
  log.warn("{} is a dead FUSE mount (its daemon was killed); detaching it", dir);
  if (umount2(dir.c_str(), MNT_DETACH) == 0) return;
  pid_t pid = 0;
  const char* argv[] = {"fusermount3", "-u", "-z", "-q", dir.c_str(), nullptr};
  if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char* const*>(argv),
                   environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
  }
}

}  // namespace

// ---- VolumeServer --------------------------------------------------------------------------

Result<void> check_volume_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 255 ||
      name.find('/') != std::string::npos || name.find('\0') != std::string::npos)
    return make_error_fmt(Errc::kInvalid, "volume name", kNoObject,
                          "'%s' cannot be a file name", name.c_str());
  return ok();
}

VolumeServer::VolumeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

VolumeServer::~VolumeServer() { stop(); }

Result<std::unique_ptr<VolumeServer>> VolumeServer::mount(const ServerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  impl->log = options.logger ? options.logger : spdlog::default_logger();
  impl->uid = getuid();
  impl->gid = getgid();
  clock_gettime(CLOCK_REALTIME, &impl->started);
  if (options.mount_dir.empty() || options.mount_dir[0] != '/')
    return make_error(Errc::kInvalid, "mount directory must be an absolute path");

  detach_stale_mount(options.mount_dir, *impl->log);
  CRYPTMAP_TRY_VOID(make_dirs(options.mount_dir));
  CRYPTMAP_TRY(pool, BufferPool::create(options.read_buffers, options.read_buffer_bytes,
                                        "FUSE read buffers"));
  impl->pool = std::move(pool);

  std::vector<std::string> argv = {"cryptmap", "-o",
                                   "fsname=cryptmap,subtype=cryptmap,default_permissions"};
  if (options.allow_other) argv.back() += ",allow_other";
  if (options.fuse_debug) argv.emplace_back("-d");
  internal::FuseArgs args(argv);
  static const fuse_lowlevel_ops kOps = make_ops();
  CRYPTMAP_TRY(session, internal::FuseSession::create(args, kOps, impl.get()));
  CRYPTMAP_TRY_VOID(session->mount(options.mount_dir, &kCustomIo));
  impl->session = std::move(session);

  // Our own session loop (fs/internal/fuse_session.h says why not fuse_session_loop_mt): a
  // fixed set of workers, each with a receive buffer faulted in here, before any request.
  internal::SessionWorkers::Options wopts;
  wopts.workers = options.fuse_workers;
  wopts.on_start = [] {
    (void)mark_io_thread();
    // The thread's first malloc creates or attaches its malloc arena; do it now so the first
    // request's allocations (libfuse's struct fuse_req) find pages already faulted in.
    void* warm = std::malloc(kArenaWarmBytes);
    if (warm != nullptr) {
      std::memset(warm, 0, kArenaWarmBytes);
      std::free(warm);
    }
  };
  CRYPTMAP_TRY(workers, internal::SessionWorkers::start(*impl->session, std::move(wopts)));
  impl->workers = std::move(workers);
  const internal::SessionWorkers::Stats ws = impl->workers->stats();
  if (!ws.buffers_locked)
    impl->log->warn("cannot mlock the FUSE receive buffers ({} x {} bytes); they are faulted in "
                    "but may be swapped. Raise RLIMIT_MEMLOCK (ulimit -l).",
                    ws.workers, ws.buffer_bytes);
  Impl* s = impl.get();
  s->loop_thread = std::thread([s] {
    const int rc = s->workers->wait();
    if (rc != 0)
      s->log->error("FUSE session for {} ended on a device error: {}; its volumes are no longer "
                    "served (close and reopen them)",
                    s->opts.mount_dir, std::strerror(-rc));
    s->loop_done.store(true);
  });
  impl->log->info("serving {}", options.mount_dir);
  return std::unique_ptr<VolumeServer>(new VolumeServer(std::move(impl)));
}

Result<void> VolumeServer::add_volume(const std::string& name,
                                      std::unique_ptr<volume::Volume> vol, VolumeSource source,
                                      std::uint32_t file_mode) {
  CRYPTMAP_TRY_VOID(check_volume_name(name));
  if (file_mode != 0600 && file_mode != 0660)
    return make_error_fmt(Errc::kInvalid, "add volume", kNoObject, "file mode %o (0600 or 0660)",
                          file_mode);
  CRYPTMAP_CHECK(vol != nullptr);
  Impl& s = *impl_;
  if (vol->orders_writes() && !s.opts.ordered_receive)
    return make_error_fmt(Errc::kUnsupported, "add volume", kNoObject,
                          "%s is zoned: it needs a mount directory whose daemon keeps arrival "
                          "order; use another --mount-dir", name.c_str());
  std::lock_guard admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "add volume: the server is stopping");
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->size_bytes = vol->size_bytes();
  e->read_only = vol->read_only();
  e->volume = std::move(vol);
  e->source = std::move(source);
  e->file_mode = file_mode;
  clock_gettime(CLOCK_REALTIME, &e->added);
  {
    std::unique_lock lock(s.mu);
    if (s.by_name.count(name) != 0)
      return make_error_fmt(Errc::kBusy, "add volume", kNoObject, "Device %s already exists.",
                            name.c_str());
    e->ino = s.next_ino++;
    s.by_name[name] = e.get();
    s.by_ino[e->ino] = std::move(e);
  }
  s.log->info("added {} ({})", name, s.opts.mount_dir);
  return ok();
}

Result<void> VolumeServer::remove_volume(const std::string& name, bool force) {
  Impl& s = *impl_;
  std::lock_guard admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "remove volume: the server is stopping");
  // The kernel sends RELEASE asynchronously after the last close(2) returns, so a `losetup -d`
  // or `exec 3>&-` just before `cryptmap close` may not have reached us yet: give the releases
  // a grace period before calling the file busy (dm's remove retries for the same reason).
  if (!force) {
    const auto until = std::chrono::steady_clock::now() + kReleaseGrace;
    for (;;) {
      std::uint32_t opens = 0;
      {
        std::shared_lock lock(s.mu);
        auto it = s.by_name.find(name);
        if (it == s.by_name.end()) break;
        opens = it->second->open_count.load();
      }
      if (opens == 0 || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::unique_ptr<Entry> owned;
  {
    std::unique_lock lock(s.mu);
    auto it = s.by_name.find(name);
    if (it == s.by_name.end())
      return make_error_fmt(Errc::kNotFound, "remove volume", kNoObject, "%s is not active",
                            name.c_str());
    Entry* e = it->second;
    const std::uint32_t opens = e->open_count.load();
    if (opens > 0 && !force)
      return make_error_fmt(Errc::kBusy, "remove volume", opens,
                            "Device %s is still in use.", name.c_str());
    s.by_name.erase(it);
    auto node = s.by_ino.extract(e->ino);
    owned = std::move(node.mapped());
  }
  // Drop the kernel's cached name so the file disappears now, not after the entry timeout.
  if (!s.loop_done.load())
    fuse_lowlevel_notify_inval_entry(s.session->get(), FUSE_ROOT_ID, name.c_str(), name.size());
  s.wait_drained(*owned);
  Result<void> flushed = s.flush_entry(*owned);
  if (!flushed) s.log->error("{}: flush on close failed: {}", name, flushed.error().message());
  owned.reset();  // the engine drains and wipes its keys
  s.log->info("removed {}", name);
  return flushed;
}

Result<void> VolumeServer::flush_all() {
  Result<void> first;
  for (Entry* e : impl_->snapshot()) {
    Result<void> r = impl_->flush_entry(*e);
    if (!r && first) first = r;
  }
  return first;
}

std::vector<VolumeStatus> VolumeServer::status() const {
  std::shared_lock lock(impl_->mu);
  std::vector<VolumeStatus> out;
  for (const auto& [ino, e] : impl_->by_ino) {
    VolumeStatus st;
    st.name = e->name;
    st.source = e->source;
    st.layout = e->volume->layout();
    st.size_bytes = e->size_bytes;
    st.read_only = e->read_only;
    st.open_count = e->open_count.load();
    st.file_mode = e->file_mode;
    out.push_back(std::move(st));
  }
  return out;
}

std::size_t VolumeServer::volume_count() const {
  std::shared_lock lock(impl_->mu);
  return impl_->by_ino.size();
}

const std::string& VolumeServer::mount_dir() const noexcept { return impl_->opts.mount_dir; }

bool VolumeServer::stopped() const noexcept { return impl_->loop_done.load(); }

ServingStats VolumeServer::serving_stats() const {
  ServingStats out;
  std::lock_guard admin(impl_->admin_mu);  // stop() resets the workers under it
  if (impl_->workers == nullptr) return out;
  const internal::SessionWorkers::Stats s = impl_->workers->stats();
  out.workers = s.workers;
  out.receive_buffer_bytes = s.buffer_bytes;
  out.receive_buffers_locked = s.buffers_locked;
  out.receive_buffers_resident = s.buffers_resident;
  out.requests = s.requests;
  out.foreign_receives = s.foreign_receives;
  return out;
}

void VolumeServer::stop() {
  Impl& s = *impl_;
  std::lock_guard admin(s.admin_mu);
  if (s.stopping) return;
  s.stopping = true;
  // 1. Flush while still serving, so writers blocked on us are not cut off mid-way.
  (void)flush_all();
  // 2. End the loop: the workers finish the request they are serving and return.
  s.workers->request_stop();
  s.loop_thread.join();
  // 3. Requests already handed to volumes complete (their replies go nowhere harmful).
  for (Entry* e : s.snapshot()) s.wait_drained(*e);
  // 4. What was written after the first flush becomes durable too.
  Result<void> flushed = flush_all();
  if (!flushed) s.log->error("flush on shutdown failed: {}", flushed.error().message());
  // 5. Unmount, then close /dev/fuse (the kernel fails whatever is still queued: ENOTCONN).
  s.workers.reset();
  s.session.reset();
  // 6. Volumes last (reverse of open): engines drain and wipe keys.
  std::map<fuse_ino_t, std::unique_ptr<Entry>> entries;
  {
    std::unique_lock lock(s.mu);
    s.by_name.clear();
    entries.swap(s.by_ino);
  }
  entries.clear();
  s.log->info("unmounted {}", s.opts.mount_dir);
}

}  // namespace cryptmap::fs
