// RAII wrappers for the libfuse3 low-level C resources, and our own session loop (fs-internal:
// libfuse types appear here and nowhere outside fs/). Each type owns exactly one resource and
// undoes it in its destructor, so a failure at any step of mount unwinds without a goto ladder:
//   FuseArgs       — struct fuse_args (fuse_opt_free_args)
//   FuseSession    — struct fuse_session: new -> mount -> custom io; ~ = unmount (if mounted) +
//                    destroy (which closes /dev/fuse and so aborts whatever the kernel queues).
//   SessionWorkers — a fixed set of threads serving one FuseSession, each receiving into a
//                    buffer that was allocated, faulted in and (where allowed) locked before the
//                    first request (fs/README.md "Requests, replies and threads").
//
// Why not fuse_session_loop_mt: libfuse starts workers on demand and each one mallocs its 1 MiB
// receive buffer lazily, so the buffer's pages are first touched by the kernel inside
// read(/dev/fuse) while it copies a write request into them. Under a memory cgroup limit that
// fault charges the cgroup, and reclaim then waits on the writeback of pages whose write
// request is the very one being copied (loop device -> mapped file -> this daemon): a
// deadlock, observed with stack traces (fuse_dev_do_read -> fuse_copy_fill -> GUP ->
// do_anonymous_page -> try_charge_memcg -> shrink_folio_list -> folio_wait_writeback).
//
// Thread-safety: FuseSession::exit() and unmount() and SessionWorkers::request_stop() may be
// called from any thread; the rest is owned by one thread (the server's). Non-copyable,
// non-movable (libfuse and the workers keep pointers).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/locked_memory.h"
#include "base/mutex.h"
#include "base/result.h"

namespace cryptmap::fs::internal {

class FuseArgs {
 public:
  // argv[0] is a program name, the rest are FUSE options ("-o", "default_permissions", "-d").
  explicit FuseArgs(const std::vector<std::string>& argv);
  ~FuseArgs();
  FuseArgs(const FuseArgs&) = delete;
  FuseArgs& operator=(const FuseArgs&) = delete;
  fuse_args* get() noexcept { return &args_; }
  bool ok() const noexcept { return ok_; }

 private:
  fuse_args args_ = FUSE_ARGS_INIT(0, nullptr);
  bool ok_ = true;
};

class FuseSession {
 public:
  static Result<std::unique_ptr<FuseSession>> create(FuseArgs& args, const fuse_lowlevel_ops& ops,
                                                     void* userdata);
  ~FuseSession();
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;

  // Mounts at `mountpoint` and then routes the device I/O through `io` (same fd). `io->read`
  // must call receive_read() (it keeps reads inside the worker's preallocated buffer).
  Result<void> mount(const std::string& mountpoint, const fuse_custom_io* io);
  void exit() noexcept;
  bool exited() noexcept;
  // Detaches the mount (lazy: MNT_DETACH / fusermount3 -u -z). Idempotent.
  void unmount() noexcept;
  fuse_session* get() noexcept { return se_; }

 private:
  explicit FuseSession(fuse_session* se) : se_(se) {}
  fuse_session* se_;
  bool mounted_ = false;
};

// The size libfuse 3.14 reads from /dev/fuse in one go (se->bufsize before INIT:
// FUSE_MAX_MAX_PAGES pages + FUSE_BUFFER_HEADER_SIZE; INIT only lowers it). A receive buffer of
// this size holds any request the kernel can send.
std::size_t receive_buffer_bytes() noexcept;

// The body of a custom io `read`: reads one request from `fd`. On a SessionWorkers thread whose
// buffer is `buf`, the length is clamped to that buffer (never past it, whatever libfuse asks);
// a read into any other buffer is counted (SessionWorkers::Stats::foreign_receives).
ssize_t receive_read(int fd, void* buf, std::size_t len) noexcept;

// What every serving thread (the /dev/fuse workers, the io_uring ring threads) shares:
// install_wake_handler() once per process before such threads start; enter_serving_thread()
// first on each (it takes no process signals but the wake-up, and faults in the top
// `stack_prefault_bytes` of its stack); wake_serving_thread() makes its blocking read(2) or
// io_uring_enter(2) return EINTR so that it notices a stop.
void install_wake_handler();
void enter_serving_thread(std::size_t stack_prefault_bytes) noexcept;
void wake_serving_thread(pthread_t thread) noexcept;

// Where a read handler on the calling serving thread puts the data it replies with: the part of
// the thread's own preallocated, locked buffer that the request it holds does not use (a
// /dev/fuse worker's receive buffer past its first page, a ring entry's payload). Empty on any
// other thread. Each thread serves one request at a time, so no pool of read buffers is needed
// (fs/README.md "Requests, replies and threads").
std::span<std::byte> serving_reply_buffer() noexcept;
// Set by each serving thread before its first request, cleared (empty span) when it ends.
void set_serving_reply_buffer(std::span<std::byte> buffer) noexcept;

// The /dev/fuse receive loop of one serving thread, receiving every request into `buf` (`len`
// bytes, at least receive_buffer_bytes(), preallocated) and counting them in `requests`; the
// rest of `buf` past its first page is the thread's serving_reply_buffer(). Returns when the
// session has exited (0), or with the device error that made it exit (a negative errno).
int serve_dev_fuse(fuse_session* se, std::byte* buf, std::size_t len,
                   std::atomic<std::uint64_t>& requests) noexcept;

class SessionWorkers {
 public:
  struct Options {
    std::uint32_t workers = 16;
    // Bytes at the top of each worker's stack that are faulted in (and locked where allowed)
    // at start, so that serving a request does not grow the stack into fresh pages.
    std::size_t stack_prefault_bytes = 256 * 1024;
    // Runs first on every worker (marks it PR_SET_IO_FLUSHER, warms its malloc arena).
    std::function<void()> on_start;
  };
  struct Stats {
    std::uint32_t workers = 0;           // started at start(), fixed
    std::size_t buffer_bytes = 0;        // per worker
    bool buffers_locked = false;         // mlocked (else populated but swappable)
    bool buffers_resident = false;       // every page of every buffer is resident now (mincore)
    std::uint64_t requests = 0;          // requests processed
    std::uint64_t foreign_receives = 0;  // reads from /dev/fuse into a buffer not ours (want 0)
  };

  // Allocates and faults in one receive buffer per worker, then starts the workers, which
  // serve `session` until request_stop(), an unmount from outside (ENODEV) or a device error.
  static Result<std::unique_ptr<SessionWorkers>> start(FuseSession& session, Options opts);
  ~SessionWorkers();  // request_stop() + wait()
  SessionWorkers(const SessionWorkers&) = delete;
  SessionWorkers& operator=(const SessionWorkers&) = delete;

  // Blocks until the session ends (see start), then ends every worker (exit flag + a wake-up
  // signal until each has returned) and joins them. Returns 0 or a negative errno (the first
  // device error). Call from one thread; later calls return the same value at once.
  int wait() EXCLUDES(mu_);
  // Makes wait() end the session. Any thread, idempotent.
  void request_stop() noexcept EXCLUDES(mu_);
  Stats stats() const;

  struct Worker;  // fuse_session.cpp

 private:
  SessionWorkers(FuseSession& session, Options opts);
  void serve(Worker& w) EXCLUDES(mu_);

  FuseSession& session_;
  Options opts_;
  LockedMemory buffers_;  // one receive buffer per worker, stride_ apart
  std::size_t stride_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::uint64_t> requests_{0};
  mutable Mutex mu_;
  CondVar cv_;
  bool stop_requested_ GUARDED_BY(mu_) = false;
  std::uint32_t ended_ GUARDED_BY(mu_) = 0;  // workers whose loop has returned
  int error_ GUARDED_BY(mu_) = 0;            // first device error (negative errno)
  bool joined_ = false;                      // owned by the wait()ing thread
};

}  // namespace cryptmap::fs::internal
