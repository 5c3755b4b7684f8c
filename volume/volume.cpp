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

void Volume::discard(ByteOffset off, std::uint64_t /*len*/, Completion done) {
  done(make_error(Errc::kUnsupported, "discard: not supported by this volume", off.value));
}

void Volume::write_ordered(ByteOffset off, std::span<const std::byte> in, Admitted admitted,
                           Completion done) {
  admitted();
  write(off, in, std::move(done));
}

Result<std::size_t> Volume::discard_sync(ByteOffset off, std::uint64_t len) {
  Waiter w;
  discard(off, len, w.completion());
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
