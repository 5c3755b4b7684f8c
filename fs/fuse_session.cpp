#include "fs/internal/fuse_session.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>

#include "base/io_memory.h"

namespace cryptmap::fs::internal {

FuseArgs::FuseArgs(const std::vector<std::string>& argv) {
  for (const std::string& a : argv) {
    if (fuse_opt_add_arg(&args_, a.c_str()) != 0) ok_ = false;
  }
}

FuseArgs::~FuseArgs() { fuse_opt_free_args(&args_); }

Result<std::unique_ptr<FuseSession>> FuseSession::create(FuseArgs& args,
                                                         const fuse_lowlevel_ops& ops,
                                                         void* userdata) {
  if (!args.ok()) return make_error(Errc::kNoSpace, "FUSE: build the mount options");
  fuse_session* se = fuse_session_new(args.get(), &ops, sizeof(ops), userdata);
  if (se == nullptr)
    return make_error(Errc::kInvalid, "FUSE: create the session (bad mount options?)");
  return std::unique_ptr<FuseSession>(new FuseSession(se));
}

FuseSession::~FuseSession() {
  unmount();
  fuse_session_destroy(se_);
}

Result<void> FuseSession::mount(const std::string& mountpoint, const fuse_custom_io* io) {
  if (fuse_session_mount(se_, mountpoint.c_str()) != 0)
    return make_error_fmt(Errc::kIo, "FUSE: mount", kNoObject, "%s", mountpoint.c_str());
  mounted_ = true;
  if (io != nullptr) {
    const int rc = fuse_session_custom_io(se_, io, fuse_session_fd(se_));
    if (rc != 0) return make_sys_error(-rc, "FUSE: install the custom device I/O");
  }
  return ok();
}

void FuseSession::exit() noexcept { fuse_session_exit(se_); }

bool FuseSession::exited() noexcept { return fuse_session_exited(se_) != 0; }

void FuseSession::unmount() noexcept {
  if (mounted_) {
    fuse_session_unmount(se_);
    mounted_ = false;
  }
}

// ---- receive buffers --------------------------------------------------------------------------

namespace {

std::size_t page_size() noexcept { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// libfuse 3.14 lib/fuse_i.h: FUSE_MAX_MAX_PAGES 256, FUSE_BUFFER_HEADER_SIZE 0x1000.
constexpr std::size_t kFuseMaxMaxPages = 256;
constexpr std::size_t kFuseBufferHeaderSize = 0x1000;

// The calling worker's receive buffer (null on any other thread).
thread_local std::byte* tls_receive_buf = nullptr;
thread_local std::size_t tls_receive_len = 0;
thread_local std::span<std::byte> tls_reply_buffer;
std::atomic<std::uint64_t> g_foreign_receives{0};

// The stop wake-up: fuse_session_exit() only sets a flag, and a worker blocked in
// read(/dev/fuse) notices it only when the read returns. A signal whose handler was installed
// without SA_RESTART makes that read fail with EINTR (signal(7)); libfuse then sees the flag.
constexpr int kWakeSignal = SIGUSR1;
void wake_handler(int /*sig*/) {}

}  // namespace

void install_wake_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = wake_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: read(/dev/fuse) must return EINTR
    sigaction(kWakeSignal, &sa, nullptr);
  });
}

namespace {

// Workers take no process signals (the daemon's handler runs on whichever thread gets one; a
// worker interrupted in read would only retry) except the wake-up, as libfuse's workers.
void set_worker_signal_mask() noexcept {
  sigset_t block;
  sigemptyset(&block);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&block, s);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, kWakeSignal);
  pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
}

// Faults in (and locks where allowed) the top `bytes` of the calling thread's stack: a request
// that goes deeper than it ever went before must not fault a fresh stack page under pressure.
void prefault_own_stack(std::size_t bytes) noexcept {
  if (bytes == 0) return;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
  void* lo = nullptr;
  std::size_t size = 0;
  const int rc = pthread_attr_getstack(&attr, &lo, &size);
  pthread_attr_destroy(&attr);
  if (rc != 0 || size <= 2 * page_size()) return;
  const std::size_t page = page_size();
  const std::size_t len = std::min((bytes + page - 1) / page * page, size - page);
  auto* top = static_cast<std::byte*>(lo) + size;
  (void)prefault_io_memory(top - len, len);
}

bool all_resident(std::byte* p, std::size_t len) noexcept {
  const std::size_t page = page_size();
  std::vector<unsigned char> vec((len + page - 1) / page);
  if (::mincore(p, len, vec.data()) != 0) return false;
  return std::all_of(vec.begin(), vec.end(), [](unsigned char v) { return (v & 1) != 0; });
}

}  // namespace

void enter_serving_thread(std::size_t stack_prefault_bytes) noexcept {
  set_worker_signal_mask();
  prefault_own_stack(stack_prefault_bytes);
}

void wake_serving_thread(pthread_t thread) noexcept { pthread_kill(thread, kWakeSignal); }

std::span<std::byte> serving_reply_buffer() noexcept { return tls_reply_buffer; }

void set_serving_reply_buffer(std::span<std::byte> buffer) noexcept { tls_reply_buffer = buffer; }

std::size_t receive_buffer_bytes() noexcept {
  return kFuseMaxMaxPages * page_size() + kFuseBufferHeaderSize;
}

ssize_t receive_read(int fd, void* buf, std::size_t len) noexcept {
  if (tls_receive_buf != nullptr && buf == tls_receive_buf) {
    len = std::min(len, tls_receive_len);
  } else {
    g_foreign_receives.fetch_add(1, std::memory_order_relaxed);
  }
  return ::read(fd, buf, len);
}

// ---- SessionWorkers ---------------------------------------------------------------------------

struct SessionWorkers::Worker {
  std::byte* buf = nullptr;
  std::thread thread;
  std::atomic<bool> done{false};
};

SessionWorkers::SessionWorkers(FuseSession& session, Options opts)
    : session_(session), opts_(std::move(opts)) {}

Result<std::unique_ptr<SessionWorkers>> SessionWorkers::start(FuseSession& session, Options opts) {
  if (opts.workers == 0) return make_error(Errc::kInvalid, "FUSE workers: need at least one");
  std::unique_ptr<SessionWorkers> w(new SessionWorkers(session, std::move(opts)));
  const std::size_t page = page_size();
  w->stride_ = (receive_buffer_bytes() + page - 1) / page * page;
  // Written plaintext passes through them. Charged now, at mount, not by the kernel's copy of
  // the first write request into them.
  CRYPTMAP_TRY(buffers, LockedMemory::allocate(w->stride_ * w->opts_.workers,
                                               MemoryLock::kBestEffort, "FUSE receive buffers"));
  w->buffers_ = std::move(buffers);

  install_wake_handler();
  w->workers_.reserve(w->opts_.workers);
  for (std::uint32_t i = 0; i < w->opts_.workers; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->buf = w->buffers_.data() + i * w->stride_;
    Worker& ref = *worker;
    try {
      worker->thread = std::thread([self = w.get(), &ref] { self->serve(ref); });
    } catch (const std::system_error& ex) {
      // The workers already started end with the session; the caller unmounts.
      w->request_stop();
      (void)w->wait();
      return make_sys_error(ex.code().value(), "FUSE workers: start a thread");
    }
    w->workers_.push_back(std::move(worker));
  }
  return w;
}

SessionWorkers::~SessionWorkers() {
  request_stop();
  (void)wait();
}  // then buffers_ is wiped and unmapped

int serve_dev_fuse(fuse_session* se, std::byte* buf, std::size_t len,
                   std::atomic<std::uint64_t>& requests) noexcept {
  tls_receive_buf = buf;
  tls_receive_len = len;
  // A request that is answered with data (READ) is its headers alone, well inside the first
  // page; the rest of the buffer holds the reply (1 MiB: the largest read the kernel sends).
  const std::size_t page = page_size();
  set_serving_reply_buffer(std::span<std::byte>(buf + page, len - page));
  fuse_buf fbuf{};
  int error = 0;
  // fuse_session_loop_mt's worker, with our buffer: libfuse reads into fbuf.mem when it is set
  // (and never frees it: we own it). EINTR (our wake-up) and EAGAIN retry after the exit check;
  // ENODEV (unmounted, or aborted through /sys/fs/fuse/connections) exits the session inside
  // libfuse and returns 0; any other error ends the session with that error.
  while (!fuse_session_exited(se)) {
    fbuf.mem = buf;
    fbuf.size = len;
    fbuf.flags = static_cast<fuse_buf_flags>(0);
    const int res = fuse_session_receive_buf(se, &fbuf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {
      if (res < 0) {
        error = res;
        fuse_session_exit(se);
      }
      break;
    }
    fuse_session_process_buf(se, &fbuf);
    requests.fetch_add(1, std::memory_order_relaxed);
  }
  tls_receive_buf = nullptr;
  tls_receive_len = 0;
  set_serving_reply_buffer({});
  return error;
}

void SessionWorkers::serve(Worker& w) {
  enter_serving_thread(opts_.stack_prefault_bytes);
  if (opts_.on_start) opts_.on_start();
  const int error = serve_dev_fuse(session_.get(), w.buf, stride_, requests_);
  {
    MutexLock lock(mu_);
    if (error != 0 && error_ == 0) error_ = error;
    ++ended_;
    w.done.store(true);
  }
  cv_.notify_all();
}

void SessionWorkers::request_stop() noexcept {
  {
    MutexLock lock(mu_);
    stop_requested_ = true;
  }
  cv_.notify_all();
}

int SessionWorkers::wait() {
  if (joined_) {
    MutexLock lock(mu_);
    return error_;
  }
  {
    MutexLock lock(mu_);
    while (!stop_requested_ && ended_ == 0) cv_.wait(lock);
  }
  // One worker ended (unmount, abort, device error) or a stop was asked: end them all. A wake-up
  // that lands between a worker's exit check and its read() is lost, so repeat it until every
  // worker has returned (a worker busy with a request returns after replying).
  session_.exit();
  for (;;) {
    {
      MutexLock lock(mu_);
      if (ended_ == workers_.size()) break;
    }
    for (auto& w : workers_) {
      if (!w->done.load()) wake_serving_thread(w->thread.native_handle());
    }
    MutexLock lock(mu_);
    // Until every worker has ended, or 10 ms have passed.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
    while (ended_ != workers_.size()) {
      if (!cv_.wait_until(lock, deadline)) break;
    }
  }
  for (auto& w : workers_) w->thread.join();
  joined_ = true;
  MutexLock lock(mu_);
  return error_;
}

SessionWorkers::Stats SessionWorkers::stats() const {
  Stats s;
  s.workers = opts_.workers;
  s.buffer_bytes = stride_;
  s.buffers_locked = buffers_.locked();
  s.buffers_resident = !buffers_.empty() && all_resident(buffers_.data(), buffers_.size());
  s.requests = requests_.load(std::memory_order_relaxed);
  s.foreign_receives = g_foreign_receives.load(std::memory_order_relaxed);
  return s;
}

}  // namespace cryptmap::fs::internal
