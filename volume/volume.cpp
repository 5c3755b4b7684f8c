// Volume's blocking conveniences (CLI, tests): run the asynchronous call and wait for `done`.
#include "volume/volume.h"

#include <condition_variable>
#include <mutex>
#include <optional>

namespace cryptmap::volume {
namespace {

// Lives on the waiting thread's stack; the completion's last access is under the mutex.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<std::size_t>> result;

  Completion completion() {
    return [this](Result<std::size_t> r) {
      std::lock_guard lock(mu);
      result.emplace(std::move(r));
      cv.notify_all();
    };
  }
  Result<std::size_t> wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return result.has_value(); });
    return std::move(*result);
  }
};

}  // namespace

Result<std::size_t> Volume::read_sync(ByteOffset off, std::span<std::byte> out) {
  Waiter w;
  read(off, out, w.completion());
  return w.wait();
}

Result<std::size_t> Volume::write_sync(ByteOffset off, std::span<const std::byte> in) {
  Waiter w;
  write(off, in, w.completion());
  return w.wait();
}

Result<void> Volume::flush_sync() {
  Waiter w;
  flush(w.completion());
  Result<std::size_t> r = w.wait();
  if (!r) return r.error();
  return ok();
}

}  // namespace cryptmap::volume
