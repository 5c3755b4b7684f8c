#include "volume/write_guard.h"

#include <spdlog/spdlog.h>

#include <atomic>

namespace cryptmap::volume {
namespace {

class GuardedVolume final : public Volume {
 public:
  GuardedVolume(std::unique_ptr<Volume> inner, std::uint64_t offset, std::uint64_t size,
                std::shared_ptr<spdlog::logger> logger)
      : inner_(std::move(inner)), lo_(offset), hi_(offset + size), log_(std::move(logger)) {
    if (!log_) log_ = spdlog::default_logger();
  }

  Result<std::size_t> read(ByteOffset off, std::span<std::byte> out) override {
    return inner_->read(off, out);
  }
  Result<std::size_t> read_deliver(ByteOffset off, std::span<std::byte> out,
                                   Deliver deliver) override {
    return inner_->read_deliver(off, out, std::move(deliver));
  }
  Result<std::size_t> write(ByteOffset off, std::span<const std::byte> in) override {
    CRYPTMAP_TRY_VOID(admit(off.value, in.size()));
    return inner_->write(off, in);
  }
  Result<std::size_t> write_ordered(ByteOffset off, std::span<const std::byte> in,
                                    Admitted admitted, WriteOrder order) override {
    if (auto a = admit(off.value, in.size()); !a) {
      admitted();
      return fail(a.error());
    }
    return inner_->write_ordered(off, in, std::move(admitted), order);
  }
  Result<std::size_t> write_fua(ByteOffset off, std::span<const std::byte> in, Admitted admitted,
                                WriteOrder order) override {
    if (auto a = admit(off.value, in.size()); !a) {
      admitted();
      return fail(a.error());
    }
    return inner_->write_fua(off, in, std::move(admitted), order);
  }
  Result<std::size_t> discard(ByteOffset off, std::uint64_t len) override {
    CRYPTMAP_TRY_VOID(admit(off.value, len));
    return inner_->discard(off, len);
  }
  Result<void> flush() override { return inner_->flush(); }
  bool orders_writes() const noexcept override { return inner_->orders_writes(); }
  const ZoneMap* zones() const noexcept override { return inner_->zones(); }
  std::uint64_t size_bytes() const noexcept override { return inner_->size_bytes(); }
  const VolumeLayout& layout() const noexcept override { return inner_->layout(); }
  bool read_only() const noexcept override { return inner_->read_only(); }

 private:
  Result<void> admit(std::uint64_t off, std::uint64_t len) {
    if (tripped_.load(std::memory_order_acquire))
      return fail(make_error(Errc::kReadOnly,
                             "hidden volume protection: writes refused since an earlier one", off));
    if (len == 0 || off >= hi_ || off + len <= lo_) return ok();
    if (!tripped_.exchange(true, std::memory_order_acq_rel))
      log_->error(
          "hidden volume protection: a write at byte {} ({} bytes) of the outer volume would "
          "overwrite the hidden volume (bytes {}..{}); it and every later write are refused "
          "until the volume is closed. Copy what you need off the outer volume and close it.",
          off, len, lo_, hi_);
    return fail(make_error(Errc::kReadOnly,
                           "hidden volume protection: write into the hidden volume refused", off));
  }

  std::unique_ptr<Volume> inner_;
  const std::uint64_t lo_, hi_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<bool> tripped_{false};
};

}  // namespace

std::unique_ptr<Volume> guard_writes(std::unique_ptr<Volume> inner, std::uint64_t offset,
                                     std::uint64_t size, std::shared_ptr<spdlog::logger> logger) {
  return std::make_unique<GuardedVolume>(std::move(inner), offset, size, std::move(logger));
}

}  // namespace cryptmap::volume
