// VolumeServer's lifecycle (mount: directory, buffers, session, workers; stop) and its control
// plane (add, remove, flush, status). The FUSE operations are in fuse_meta_ops.cpp and
// fuse_io_ops.cpp; fs/internal/server_impl.h lists every part.
#include "fs/volume_server.h"

#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include "base/check.h"
#include "base/io_thread.h"
#include "fs/internal/libfuse_compat.h"
#include "fs/internal/server_impl.h"

extern char** environ;

namespace cryptmap::fs {
namespace {

using internal::Entry;

// The session's device I/O. Reads keep each request inside the worker's preallocated buffer
// (receive_read) and, with ordered_receive, in arrival order (ordered_receive.h); writes add
// FOPEN_PARALLEL_DIRECT_WRITES to open replies (libfuse_compat.h). With io_uring prepared, the
// INIT request and reply pass through its negotiation, and a reply to a request that came
// through a ring entry goes to that entry instead of /dev/fuse (fuse_uring.h).
ssize_t io_read(int fd, void* buf, size_t len, void* userdata) {
  auto* s = static_cast<VolumeServer::Impl*>(userdata);
  internal::ReceiveOrder* order =
      s != nullptr && s->opts.ordered_receive ? &s->receive_order : nullptr;
  const ssize_t n = internal::ReceiveOrder::read(order, fd, buf, len);
  if (n > 0 && s != nullptr && s->uring != nullptr)
    s->uring->on_request(buf, static_cast<std::size_t>(n));
  return n;
}

ssize_t io_writev(int fd, struct iovec* iov, int count, void* userdata) {
  auto* s = static_cast<VolumeServer::Impl*>(userdata);
  internal::patch_open_reply(iov, count);
  internal::UringTransport* uring = s != nullptr ? s->uring.get() : nullptr;
  if (uring != nullptr) {
    if (const ssize_t taken = uring->take_reply(iov, count); taken >= 0) return taken;
    uring->patch_reply(iov, count);
  }
  const ssize_t n = ::writev(fd, iov, count);
  if (uring != nullptr) uring->after_reply(iov, count, n);
  return n;
}

const fuse_custom_io kCustomIo = {
    .writev = io_writev, .read = io_read, .splice_receive = nullptr, .splice_send = nullptr};

constexpr std::chrono::milliseconds kReleaseGrace{5000};
constexpr std::size_t kArenaWarmBytes = 64 * 1024;  // below malloc's mmap threshold
// /dev/fuse workers next to FUSE over io_uring's ring threads (mount() says why so few): two,
// so that an INTERRUPT or FORGET is read while another worker still handles one.
constexpr std::uint32_t kDevWorkersBesideRings = 2;

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

// The caller holds the admin lock (suspend and resume replace volumes under it).
Result<void> flush_entries(const std::vector<Entry*>& entries) {
  Result<void> first;
  for (Entry* e : entries) {
    if (e->volume == nullptr) continue;  // suspended: flushed when it was suspended
    Result<void> r = e->volume->flush();
    if (!r && first) first = r;
  }
  return first;
}

// Prepares FUSE over io_uring unless the options, the mount or the kernel rule it out; says why
// in one log line when it is not used. Only --fuse-transport=uring makes that an error.
Result<void> prepare_uring(VolumeServer::Impl& s, const internal::SessionWorkers::Options& wopts) {
  if (s.opts.fuse_transport == FuseTransport::kDev) return ok();
  std::string why;
  if (internal::kernel_allows_fuse_uring(why)) {
    internal::UringTransport::Options uo;
    uo.entries = s.opts.fuse_workers;
    uo.stack_prefault_bytes = wopts.stack_prefault_bytes;
    uo.on_start = wopts.on_start;
    uo.on_outcome = [log = s.log, dir = s.opts.mount_dir, flag = &s.uring_serving](
                        bool serving, const std::string& what) {
      flag->store(serving);
      if (serving)
        log->info("{}: FUSE over io_uring: {}", dir, what);
      else
        log->warn("{}: FUSE over io_uring not used: {}; serving through /dev/fuse", dir, what);
    };
    uo.on_warning = [log = s.log, dir = s.opts.mount_dir](const std::string& what) {
      log->warn("{}: FUSE over io_uring: {}", dir, what);
    };
    auto u = internal::UringTransport::prepare(s.session->get(), std::move(uo));
    if (u) {
      s.uring = std::move(*u);
      return ok();
    }
    why = "setting up io_uring failed: " + u.error().message();
  }
  if (s.opts.fuse_transport == FuseTransport::kUring)
    return make_error_fmt(Errc::kUnsupported, "FUSE over io_uring", kNoObject,
                          "%s; use --fuse-transport=dev (or auto)", why.c_str());
  s.log->info("{}: FUSE over io_uring not used: {}; serving through /dev/fuse", s.opts.mount_dir,
              why);
  return ok();
}

}  // namespace

// ---- what every operation shares ------------------------------------------------------------

void VolumeServer::Impl::enter_worker() noexcept {
  internal::release_receive_order_unless_kept();
  (void)mark_io_thread();
}

Result<Entry*> VolumeServer::Impl::active_entry(const std::string& name, const char* op) {
  Entry* e = nullptr;
  (void)registry.with_name(name, [&](Entry& found) { e = &found; });  // stays: we hold admin
  if (e == nullptr)
    return make_error_fmt(Errc::kNotFound, op, kNoObject, "%s is not active", name.c_str());
  if (e->suspended.load())
    return make_error_fmt(Errc::kInvalid, op, kNoObject,
                          "Volume %s is suspended: resume it first (luksResume %s).", name.c_str(),
                          name.c_str());
  return e;
}

void VolumeServer::Impl::invalidate_file(const Entry& e) {
  if (loop_done.load()) return;
  const int rc = fuse_lowlevel_notify_inval_inode(session->get(), e.ino, 0, 0);
  if (rc != 0 && rc != -ENOENT)  // ENOENT: the kernel has not looked the file up
    log->warn("{}: cannot tell the kernel its new size: {}", e.name, std::strerror(-rc));
}

void VolumeServer::Impl::log_io_error(const char* op, const Entry& e, std::uint64_t off,
                                      const Error& err) {
  const std::uint32_t n = errors_logged.fetch_add(1);
  if (n < 32 || n % 1024 == 0) log->error("{} {} at byte {}: {}", e.name, op, off, err.message());
}

// ---- VolumeServer ---------------------------------------------------------------------------

Result<void> check_volume_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 255 ||
      name.find('/') != std::string::npos || name.find('\0') != std::string::npos)
    return make_error_fmt(Errc::kInvalid, "volume name", kNoObject, "'%s' cannot be a file name",
                          name.c_str());
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

  std::vector<std::string> argv = {"cryptmap", "-o",
                                   "fsname=cryptmap,subtype=cryptmap,default_permissions"};
  if (options.allow_other) argv.back() += ",allow_other";
  if (options.fuse_debug) argv.emplace_back("-d");
  internal::FuseArgs args(argv);
  static const fuse_lowlevel_ops kOps = internal::make_fuse_ops();
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
  // FUSE over io_uring is prepared before the workers read INIT: its reply may ask for it only
  // when the rings and their buffers exist (the kernel then holds every request until each
  // queue has an entry registered).
  CRYPTMAP_TRY_VOID(prepare_uring(*impl, wopts));
  // With the rings prepared, /dev/fuse carries only INIT, FORGET and INTERRUPT (the kernel holds
  // every other request until each queue has an entry): a few workers suffice, and their 1 MiB
  // receive buffers are not paid 16 times over next to the ring entries' (issue #13's RSS
  // goal). Should the rings not be used after all, the ring threads serve /dev/fuse too.
  if (impl->uring != nullptr) wopts.workers = std::min(wopts.workers, kDevWorkersBesideRings);
  CRYPTMAP_TRY(workers, internal::SessionWorkers::start(*impl->session, std::move(wopts)));
  impl->workers = std::move(workers);
  const internal::SessionWorkers::Stats ws = impl->workers->stats();
  if (!ws.buffers_locked)
    impl->log->warn(
        "cannot mlock the FUSE receive buffers ({} x {} bytes); they are faulted in "
        "but may be swapped. Raise RLIMIT_MEMLOCK (ulimit -l).",
        ws.workers, ws.buffer_bytes);
  Impl* s = impl.get();
  s->loop_thread = std::thread([s] {
    const int rc = s->workers->wait();
    if (s->uring != nullptr) s->uring->wait();  // ends the ring threads too
    if (rc != 0)
      s->log->error(
          "FUSE session for {} ended on a device error: {}; its volumes are no longer "
          "served (close and reopen them)",
          s->opts.mount_dir, std::strerror(-rc));
    s->loop_done.store(true);
  });
  impl->log->info("serving {}", options.mount_dir);
  return std::unique_ptr<VolumeServer>(new VolumeServer(std::move(impl)));
}

Result<void> VolumeServer::add_volume(const std::string& name, std::unique_ptr<volume::Volume> vol,
                                      VolumeSource source, std::uint32_t file_mode) {
  CRYPTMAP_TRY_VOID(check_volume_name(name));
  if (file_mode != 0600 && file_mode != 0660)
    return make_error_fmt(Errc::kInvalid, "add volume", kNoObject, "file mode %o (0600 or 0660)",
                          file_mode);
  CRYPTMAP_CHECK(vol != nullptr);
  Impl& s = *impl_;
  if (vol->orders_writes() && !s.opts.ordered_receive)
    return make_error_fmt(Errc::kUnsupported, "add volume", kNoObject,
                          "%s is zoned: it needs a mount directory whose daemon keeps arrival "
                          "order; use another --mount-dir",
                          name.c_str());
  MutexLock admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "add volume: the server is stopping");
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->size_bytes = vol->size_bytes();
  e->read_only = vol->read_only();
  e->layout = vol->layout();
  e->zoned = vol->zones() != nullptr;
  e->volume = std::move(vol);
  e->source = std::move(source);
  e->file_mode = file_mode;
  clock_gettime(CLOCK_REALTIME, &e->added);
  CRYPTMAP_TRY_VOID(s.registry.insert(std::move(e)));
  s.log->info("added {} ({})", name, s.opts.mount_dir);
  return ok();
}

Result<void> VolumeServer::remove_volume(const std::string& name, bool force) {
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "remove volume: the server is stopping");
  // The kernel sends RELEASE asynchronously after the last close(2) returns, so a `losetup -d`
  // or `exec 3>&-` just before `cryptmap close` may not have reached us yet: give the releases
  // a grace period before calling the file busy (dm's remove retries for the same reason).
  if (!force) {
    const auto until = std::chrono::steady_clock::now() + kReleaseGrace;
    for (;;) {
      std::uint32_t opens = 0;
      if (!s.registry.with_name(name, [&](const Entry& e) { opens = e.open_count.load(); })) break;
      if (opens == 0 || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  CRYPTMAP_TRY(owned, s.registry.take(name, force));
  // Drop the kernel's cached name so the file disappears now, not after the entry timeout.
  if (!s.loop_done.load())
    fuse_lowlevel_notify_inval_entry(s.session->get(), FUSE_ROOT_ID, name.c_str(), name.size());
  s.registry.wait_drained(*owned);
  // A suspended volume was flushed when it was suspended and holds nothing now.
  Result<void> flushed = owned->volume != nullptr ? owned->volume->flush() : ok();
  if (!flushed) s.log->error("{}: flush on close failed: {}", name, flushed.error().message());
  owned.reset();  // the engine drains and wipes its keys
  s.log->info("removed {}", name);
  return flushed;
}

Result<void> VolumeServer::suspend_volume(const std::string& name) {
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "suspend volume: the server is stopping");
  Entry* e = nullptr;
  (void)s.registry.with_name(name, [&](Entry& found) { e = &found; });  // stays: we hold admin
  if (e == nullptr)
    return make_error_fmt(Errc::kNotFound, "suspend volume", kNoObject, "%s is not active",
                          name.c_str());
  if (e->suspended.load())
    return make_error_fmt(Errc::kInvalid, "suspend volume", kNoObject,
                          "Volume %s is already suspended.", name.c_str());
  // 1. Hold new I/O at the gate; 2. let what runs finish; 3. make it durable.
  e->suspended.store(true);
  s.registry.set_held(*e, true);
  s.registry.wait_drained(*e);
  Result<void> flushed = e->volume->flush();
  if (!flushed) {
    e->suspended.store(false);
    s.registry.set_held(*e, false);  // keep serving: dirty data stays in the cache
    s.log->error("{}: suspend: flush failed, still serving: {}", name, flushed.error().message());
    return flushed;
  }
  // 4. The engine drains, wipes its cache and its cipher's keys (docs/architecture.md §4.7).
  e->volume.reset();
  s.log->info("suspended {}: I/O held, key wiped", name);
  return ok();
}

Result<void> VolumeServer::resume_volume(const std::string& name,
                                         std::unique_ptr<volume::Volume> vol) {
  CRYPTMAP_CHECK(vol != nullptr);
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "resume volume: the server is stopping");
  Entry* e = nullptr;
  (void)s.registry.with_name(name, [&](Entry& found) { e = &found; });
  if (e == nullptr)
    return make_error_fmt(Errc::kNotFound, "resume volume", kNoObject, "%s is not active",
                          name.c_str());
  if (!e->suspended.load())
    return make_error_fmt(Errc::kInvalid, "resume volume", kNoObject, "Volume %s is not suspended.",
                          name.c_str());
  if (vol->size_bytes() != e->size_bytes || vol->read_only() != e->read_only ||
      (vol->orders_writes() && !s.opts.ordered_receive))
    return make_error_fmt(Errc::kInvalid, "resume volume", vol->size_bytes(),
                          "%s: the volume to resume differs from the suspended one (size %llu "
                          "bytes)",
                          name.c_str(), static_cast<unsigned long long>(e->size_bytes));
  e->volume = std::move(vol);  // no Ref from acquire_active() exists while suspended
  e->suspended.store(false);
  s.registry.set_held(*e, false);
  s.log->info("resumed {}", name);
  return ok();
}

Result<std::uint64_t> VolumeServer::resize_volume(const std::string& name, std::uint64_t new_size) {
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "resize volume: the server is stopping");
  CRYPTMAP_TRY(e, s.active_entry(name, "resize volume"));
  // Hold new I/O, let what runs finish (Volume::resize's contract), change the size, serve.
  s.registry.set_held(*e, true);
  s.registry.wait_drained(*e);
  Result<std::uint64_t> resized = e->volume->resize(new_size);
  if (resized) e->size_bytes.store(*resized);
  s.registry.set_held(*e, false);
  if (!resized) return resized.error();
  s.invalidate_file(*e);
  s.log->info("resized {} to {} bytes", name, *resized);
  return *resized;
}

Result<void> VolumeServer::replace_volume(const std::string& name,
                                          std::unique_ptr<volume::Volume> vol) {
  return replace_volume(name, std::move(vol), nullptr, {});
}

Result<void> VolumeServer::replace_volume(const std::string& name,
                                          std::unique_ptr<volume::Volume> vol,
                                          const std::function<Result<void>()>& between,
                                          VolumeSource source) {
  CRYPTMAP_CHECK(vol != nullptr);
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  if (s.stopping) return make_error(Errc::kCancelled, "refresh volume: the server is stopping");
  CRYPTMAP_TRY(e, s.active_entry(name, "refresh volume"));
  if (vol->size_bytes() != e->size_bytes.load() || vol->read_only() != e->read_only ||
      (vol->orders_writes() && !s.opts.ordered_receive))
    return make_error_fmt(Errc::kInvalid, "refresh volume", vol->size_bytes(),
                          "%s: the refreshed volume differs from the open one (size %llu bytes)",
                          name.c_str(), static_cast<unsigned long long>(e->size_bytes.load()));
  s.registry.set_held(*e, true);
  s.registry.wait_drained(*e);
  Result<void> flushed = e->volume->flush();
  if (!flushed) {
    s.registry.set_held(*e, false);  // the old volume keeps serving, its dirty data with it
    return flushed;
  }
  if (between) {
    if (auto done = between(); !done) {
      s.registry.set_held(*e, false);  // `between` left the image as the old volume has it
      return done;
    }
    s.registry.set_source(*e, std::move(source));
  }
  std::unique_ptr<volume::Volume> old = std::exchange(e->volume, std::move(vol));
  // Status keeps the layout the volume was added with (a dynamic LUKS2 size stays 0: resize
  // checks it); only the flags are the new volume's.
  volume::VolumeLayout shown = e->layout;  // only set_layout writes it, under admin_mu too
  shown.allow_discards = e->volume->layout().allow_discards;
  shown.no_read_workqueue = e->volume->layout().no_read_workqueue;
  shown.no_write_workqueue = e->volume->layout().no_write_workqueue;
  s.registry.set_layout(*e, std::move(shown));
  s.registry.set_held(*e, false);
  old.reset();  // flushed above; its engine drains and wipes its keys
  s.log->info("refreshed {}", name);
  return ok();
}

Result<void> VolumeServer::set_status_layout(const std::string& name, volume::VolumeLayout layout) {
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  CRYPTMAP_TRY(e, s.active_entry(name, "volume status"));
  s.registry.set_layout(*e, std::move(layout));
  return ok();
}

Result<void> VolumeServer::flush_all() {
  MutexLock admin(impl_->admin_mu);
  return flush_entries(impl_->registry.snapshot());
}

std::vector<VolumeStatus> VolumeServer::status() const {
  std::vector<VolumeStatus> out;
  impl_->registry.for_each([&](const Entry& e) {
    VolumeStatus st;
    st.name = e.name;
    st.source = e.source;
    st.layout = e.layout;
    st.suspended = e.suspended.load();
    st.size_bytes = e.size_bytes;
    st.read_only = e.read_only;
    st.open_count = e.open_count.load();
    st.file_mode = e.file_mode;
    st.fuse_transport = fuse_transport();
    out.push_back(std::move(st));
  });
  return out;
}

std::size_t VolumeServer::volume_count() const { return impl_->registry.size(); }

const std::string& VolumeServer::mount_dir() const noexcept { return impl_->opts.mount_dir; }

bool VolumeServer::stopped() const noexcept { return impl_->loop_done.load(); }

ServingStats VolumeServer::serving_stats() const {
  ServingStats out;
  MutexLock admin(impl_->admin_mu);  // stop() resets the workers under it
  if (impl_->workers == nullptr) return out;
  const internal::SessionWorkers::Stats s = impl_->workers->stats();
  out.workers = s.workers;
  out.receive_buffer_bytes = s.buffer_bytes;
  out.receive_buffers_locked = s.buffers_locked;
  out.receive_buffers_resident = s.buffers_resident;
  out.requests = s.requests;
  out.foreign_receives = s.foreign_receives;
  if (const internal::UringTransport* u = impl_->uring.get()) {
    out.requests += u->dev_requests();
    out.uring = u->state() == internal::UringTransport::State::kServing;
    out.uring_entries = static_cast<std::uint32_t>(u->entries());
    out.uring_queues = u->queues();
    out.uring_requests = u->requests();
  }
  return out;
}

const char* VolumeServer::fuse_transport() const noexcept {
  return impl_->uring_serving.load() ? "uring" : "dev";
}

void VolumeServer::stop() {
  Impl& s = *impl_;
  MutexLock admin(s.admin_mu);
  if (s.stopping) return;
  s.stopping = true;
  // 1. Flush while still serving, so writers blocked on us are not cut off mid-way.
  (void)flush_entries(s.registry.snapshot());
  // 2. End the loop: the workers finish the request they are serving and return. Requests
  // held by a suspended volume fail (EIO): without its key nothing can be written.
  s.registry.fail_held();
  s.workers->request_stop();
  s.loop_thread.join();
  // 3. Requests already handed to volumes complete (their replies go nowhere harmful).
  for (Entry* e : s.registry.snapshot()) s.registry.wait_drained(*e);
  // 4. What was written after the first flush becomes durable too.
  Result<void> flushed = flush_entries(s.registry.snapshot());
  if (!flushed) s.log->error("flush on shutdown failed: {}", flushed.error().message());
  // 5. Unmount, then close /dev/fuse (the kernel fails whatever is still queued: ENOTCONN).
  s.workers.reset();
  s.uring.reset();  // the rings close: the kernel cancels the entries' pending fetches
  s.session.reset();
  // 6. Volumes last (reverse of open): engines drain and wipe keys.
  s.registry.take_all().clear();
  s.log->info("unmounted {}", s.opts.mount_dir);
}

}  // namespace cryptmap::fs
