// Receive order for zoned volumes (docs/architecture.md §4.6; ServerOptions::ordered_receive).
// fs-internal.
//
// Every FUSE worker reads /dev/fuse; the kernel hands requests out in queue order, but a worker
// can be descheduled between its read() and the handler, so handlers do not run in arrival
// order. With ordered receive a worker takes the receive order (a binary semaphore) before it
// reads and keeps it until its request has taken its place: a write when the volume has
// admitted it (Volume::write_ordered), anything else as soon as the handler starts. A request
// libfuse answers itself (FORGET, INTERRUPT) leaves the order held until the same worker reads
// again, which it does next. (A cleanup handler gives the order back should a worker ever be
// cancelled in read(); our SessionWorkers stop by signal + EINTR.)
//
// Ring threads (FUSE over io_uring) do not take it: their requests come from per-CPU queues,
// so their zoned writes wait at the zone's write pointer instead (volume::WriteOrder,
// fs/README.md "Zoned volumes: receive order").
//
// Thread-safety: the order is shared by the server's workers; which order a worker holds and
// whether it keeps it are per-thread state.
#pragma once

#include <semaphore.h>
#include <sys/types.h>

#include <cstddef>

namespace cryptmap::fs::internal {

class ReceiveOrder {
 public:
  ReceiveOrder() { sem_init(&sem_, 0, 1); }
  ~ReceiveOrder() { sem_destroy(&sem_); }
  ReceiveOrder(const ReceiveOrder&) = delete;
  ReceiveOrder& operator=(const ReceiveOrder&) = delete;

  // The custom io `read` of a session: takes `order` (unless this worker still holds it) and
  // reads one request through receive_read(). `order` null: a plain receive_read(). A wait
  // interrupted by the workers' wake-up signal returns -1/EINTR like the read itself, so a
  // stopping worker sees the exit flag (SessionWorkers::serve).
  static ssize_t read(ReceiveOrder* order, int fd, void* buf, std::size_t len) noexcept;

 private:
  friend void release_receive_order() noexcept;
  sem_t sem_;
};

// Gives back the order this worker holds, if any (op_write: once the volume admitted the write).
void release_receive_order() noexcept;

// At the top of every operation: gives the order back, unless inside a KeepReceiveOrder scope.
void release_receive_order_unless_kept() noexcept;

// op_write's prologue runs inside one: the order stays held through it (until admission).
class KeepReceiveOrder {
 public:
  KeepReceiveOrder() noexcept;
  ~KeepReceiveOrder();
  KeepReceiveOrder(const KeepReceiveOrder&) = delete;
  KeepReceiveOrder& operator=(const KeepReceiveOrder&) = delete;
};

// Releases the receive order at scope exit unless already released (op_write's early replies).
class ReleaseOrderAtExit {
 public:
  ReleaseOrderAtExit() = default;
  ~ReleaseOrderAtExit() { release_receive_order(); }
  ReleaseOrderAtExit(const ReleaseOrderAtExit&) = delete;
  ReleaseOrderAtExit& operator=(const ReleaseOrderAtExit&) = delete;
};

}  // namespace cryptmap::fs::internal
