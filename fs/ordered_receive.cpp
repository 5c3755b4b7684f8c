#include "fs/internal/ordered_receive.h"

#include <pthread.h>

#include <utility>

#include "fs/internal/fuse_session.h"

namespace cryptmap::fs::internal {
namespace {

thread_local ReceiveOrder* tls_order_held = nullptr;  // the order this worker holds
thread_local bool tls_keep_order = false;             // op_write: keep it until admitted

void release_order_on_cancel(void* /*arg*/) { release_receive_order(); }

}  // namespace

void release_receive_order() noexcept {
  if (ReceiveOrder* o = std::exchange(tls_order_held, nullptr)) sem_post(&o->sem_);
}

void release_receive_order_unless_kept() noexcept {
  if (!tls_keep_order) release_receive_order();
}

KeepReceiveOrder::KeepReceiveOrder() noexcept { tls_keep_order = true; }
KeepReceiveOrder::~KeepReceiveOrder() { tls_keep_order = false; }

ssize_t ReceiveOrder::read(ReceiveOrder* order, int fd, void* buf, std::size_t len) noexcept {
  if (order == nullptr) return receive_read(fd, buf, len);
  if (tls_order_held == nullptr) {
    if (sem_wait(&order->sem_) != 0) return -1;  // errno: EINTR
    tls_order_held = order;
  }
  ssize_t n = -1;
  pthread_cleanup_push(release_order_on_cancel, nullptr);
  n = receive_read(fd, buf, len);
  pthread_cleanup_pop(0);
  return n;
}

}  // namespace cryptmap::fs::internal
