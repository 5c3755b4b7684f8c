// FUSE over io_uring for libfuse 3.14 (which does not speak it): the INIT negotiation and the
// ring entries that then carry every request. fs-internal; the protocol facts and their
// sources are in docs/fuse-io-uring.md, the design in fs/README.md ("FUSE over io_uring").
//
//   UringTransport::prepare — at mount, before INIT: one io_uring (SQE128) per ring thread,
//     each thread owning one entry (a header page + a payload buffer of the largest request),
//     all in one locked, faulted-in mapping. Threads start and wait; nothing is registered.
//   on_request / patch_reply — called by the session's custom io with every request read from
//     /dev/fuse and every reply about to be written: FUSE_INIT's offer is noted, and its reply
//     gets FUSE_OVER_IO_URING when the kernel offered it and the rings are ready.
//   after_reply — once that INIT reply is written, the threads register their entries
//     (FUSE_IO_URING_CMD_REGISTER); from then on the kernel sends requests through the entries
//     and libfuse's low-level ops process them (fuse_session_process_buf).
//   take_reply — a reply for a request that came through an entry (matched by `unique`, from
//     any thread) is copied into that entry; the entry's own thread then sends it with
//     FUSE_IO_URING_CMD_COMMIT_AND_FETCH, which also asks for the next request.
// When the kernel does not offer the flag, or a registration fails, requests keep coming
// through /dev/fuse, and one log line says why: the SessionWorkers serve them, and so do the
// ring threads whose entry does not serve, each receiving into its entry's buffer.
//
// Thread-safety: on_request, patch_reply, after_reply and take_reply run on any serving thread;
// request_stop() on any thread; wait() and the destructor on the owner's.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/locked_memory.h"
#include "base/mutex.h"
#include "base/result.h"

namespace cryptmap::fs::internal {

class UringTransport {
 public:
  struct Options {
    std::uint32_t entries = 16;  // ring threads = entries, spread over the kernel's queues
    std::size_t stack_prefault_bytes = 256 * 1024;
    std::function<void()> on_start;  // runs first on every ring thread (IO_FLUSHER, arena)
    // Called once with the outcome: true = requests go through the rings; false + why.
    std::function<void(bool serving, const std::string& why)> on_outcome;
    // Called when a ring entry stops serving on an unexpected error (its queue has one entry
    // fewer from then on).
    std::function<void(const std::string& what)> on_warning;
  };
  enum class State { kPrepared, kNegotiated, kServing, kFailed, kStopped };

  // Fails (the caller serves through /dev/fuse) when io_uring cannot be set up here.
  static Result<std::unique_ptr<UringTransport>> prepare(fuse_session* se, Options opts);
  ~UringTransport();  // request_stop() + wait(); then the rings close and the buffers are wiped
  UringTransport(const UringTransport&) = delete;
  UringTransport& operator=(const UringTransport&) = delete;

  // A request read from /dev/fuse (the custom io read, after the read).
  void on_request(const void* buf, std::size_t len) noexcept;
  // A reply about to be written to /dev/fuse: adds FUSE_OVER_IO_URING to the INIT reply.
  void patch_reply(struct iovec* iov, int count) noexcept;
  // After a reply was written to /dev/fuse with result `written`: starts the registration
  // once the INIT reply that asked for io_uring is out.
  void after_reply(const struct iovec* iov, int count, ssize_t written) noexcept;
  // A reply for a request that came through an entry: copies it there and returns the bytes
  // taken (the entry's thread commits it); -1 when no entry waits for this unique.
  ssize_t take_reply(const struct iovec* iov, int count) noexcept;

  void request_stop() noexcept;
  void wait() noexcept;

  State state() const noexcept { return state_.load(); }
  std::uint32_t queues() const noexcept { return queues_; }
  std::size_t entries() const noexcept { return entries_.size(); }
  std::uint64_t requests() const noexcept { return requests_.load(std::memory_order_relaxed); }
  // Requests the ring threads read from /dev/fuse after a fallback (see serve()).
  std::uint64_t dev_requests() const noexcept {
    return dev_requests_.load(std::memory_order_relaxed);
  }

  struct Entry;  // fuse_uring.cpp

 private:
  UringTransport(fuse_session* se, Options opts);
  void serve(Entry& e);
  void registered(bool ok, int err);
  bool wait_for_go() EXCLUDES(mu_);

  fuse_session* se_;
  int fd_;
  Options opts_;
  std::uint32_t queues_ = 1;
  bool refuse_for_test_ = false;  // INIT does not ask for io_uring (fallback tests)
  std::size_t payload_bytes_ = 0;
  std::size_t stride_ = 0;
  LockedMemory buffers_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::atomic<State> state_{State::kPrepared};
  std::atomic<std::uint64_t> init_unique_{0};
  std::atomic<bool> kernel_offers_{false};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> dev_requests_{0};
  std::atomic<std::uint32_t> reported_{0};
  std::atomic<std::uint32_t> failed_{0};
  std::atomic<int> first_error_{0};
  mutable Mutex mu_;
  CondVar cv_;
  bool go_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  bool joined_ = false;
};

// True when /sys/module/fuse/parameters/enable_uring says Y; `why` says otherwise.
bool kernel_allows_fuse_uring(std::string& why);

// True on a ring thread while it processes a request that came through its ring entry. Such
// requests are not received in one order: the kernel queues each on the queue of the CPU its
// writer ran on, and each queue's entries are served by their own threads (fs/README.md
// "Zoned volumes: receive order").
bool serving_ring_request() noexcept;

}  // namespace cryptmap::fs::internal
