// VolumeImpl — the Volume facade over the I/O engine (see volume_engine.h for the flow).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "base/check.h"
#include "crypto/sector_cipher.h"
#include "volume/engine/buffer_pool.h"
#include "volume/engine/crypto_driver.h"
#include "volume/engine/range_lock.h"
#include "volume/engine/volume_engine.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using crypto::CryptoDir;

class VolumeImpl final : public Volume {
 public:
  VolumeImpl(VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
             std::unique_ptr<crypto::CryptoEngine> engine, std::unique_ptr<BackingStore> store,
             std::uint64_t size, bool read_only, std::size_t range_slots,
             std::shared_ptr<spdlog::logger> logger)
      : layout_(std::move(layout)),
        ss_(layout_.sector_size),
        data_off_(layout_.data_offset_bytes),
        size_(size),
        read_only_(read_only),
        cipher_(std::move(cipher)),
        engine_(std::move(engine)),
        store_(std::move(store)),
        ranges_(range_slots),
        logger_(std::move(logger)) {}

  ~VolumeImpl() override {
    // Members are destroyed in reverse order: the driver (arena) before the engine before the
    // cipher; nothing is in flight once the last request returned.
    driver_.reset();
    buffers_.reset();
    engine_.reset();
  }

  Result<void> init(const VolumeOptions& options, const EngineOptions& eo) {
    CryptoDriverOptions d;
    d.sector_size = ss_;
    d.batch_bytes = std::max<std::size_t>(eo.batch_bytes, ss_);
    d.parallel_threshold_bytes = eo.parallel_threshold_bytes;
    d.max_inflight = std::max<std::uint32_t>(1, options.max_inflight_requests);
    d.threads = eo.threads;
    d.force_inline = options.force_inline;
    CRYPTMAP_TRY(driver, CryptoDriver::create(*engine_, d));
    driver_ = std::move(driver);
    std::size_t buf_bytes = eo.buffer_bytes == 0 ? 256 * 1024 : eo.buffer_bytes;
    buf_bytes = std::max<std::size_t>(buf_bytes / ss_ * ss_, ss_);
    std::uint32_t count = eo.buffer_count;
    if (count == 0) count = std::clamp<std::uint32_t>(options.max_inflight_requests / 4, 4, 64);
    CRYPTMAP_TRY(pool, BufferPool::create(count, buf_bytes));
    buffers_ = std::move(pool);
    buf_sectors_ = buf_bytes / ss_;
    return ok();
  }

  void read(ByteOffset off, std::span<std::byte> out, Completion done) override {
    Result<std::size_t> r = do_read(off.value, out);
    done(std::move(r));
  }

  void write(ByteOffset off, std::span<const std::byte> in, Completion done) override {
    Result<std::size_t> r = do_write(off.value, in);
    done(std::move(r));
  }

  void flush(Completion done) override {
    Result<void> r = store_->sync();
    if (!r) {
      log_error("flush", r.error());
      done(r.error());
      return;
    }
    done(std::size_t{0});
  }

  std::uint64_t size_bytes() const noexcept override { return size_; }
  const VolumeLayout& layout() const noexcept override { return layout_; }
  bool read_only() const noexcept override { return read_only_; }

 private:
  std::uint64_t image_offset(std::uint64_t sector) const noexcept {
    return data_off_ + sector * ss_;
  }

  // Reads ciphertext of sectors [first, first + b.size()/ss) and decrypts it in place.
  Result<void> fetch(std::uint64_t first, std::span<std::byte> b) {
    CRYPTMAP_TRY_VOID(store_->read_at(ByteOffset{image_offset(first)}, b));
    return driver_->convert(CryptoDir::kDecrypt, b, SectorIndex{first});
  }

  // Copies the part of plaintext sectors [first, ...) (in `b`) that the request [off, off+len)
  // covers, in either direction.
  static void overlap(std::uint64_t off, std::size_t len, std::uint64_t b_start,
                      std::size_t b_len, std::uint64_t* lo, std::uint64_t* hi) {
    *lo = std::max(off, b_start);
    *hi = std::min<std::uint64_t>(off + len, b_start + b_len);
  }

  Result<std::size_t> do_read(std::uint64_t off, std::span<std::byte> out) {
    if (off >= size_ || out.empty()) return std::size_t{0};
    const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size_ - off));
    const std::uint64_t s0 = off / ss_;
    const std::uint64_t s1 = (off + len - 1) / ss_ + 1;
    RangeLock::Guard guard = ranges_.acquire(s0, s1, /*exclusive=*/false);
    std::uint64_t pos = s0;
    while (pos < s1) {
      const std::uint64_t n = std::min<std::uint64_t>(s1 - pos, buf_sectors_);
      BufferPool::Buffer buf = buffers_->acquire();
      std::span<std::byte> b = buf.span().first(n * ss_);
      if (Result<void> r = fetch(pos, b); !r) {
        log_error("read", r.error());
        return r.error();
      }
      std::uint64_t lo = 0, hi = 0;
      overlap(off, len, pos * ss_, b.size(), &lo, &hi);
      std::memcpy(out.data() + (lo - off), b.data() + (lo - pos * ss_), hi - lo);
      pos += n;
    }
    return len;
  }

  Result<std::size_t> do_write(std::uint64_t off, std::span<const std::byte> in) {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "write to volume", off, "%s is opened read-only",
                            store_->name().c_str());
    }
    const std::size_t len = in.size();
    if (off > size_ || len > size_ - off) {
      return make_error_fmt(Errc::kNoSpace, "write past the end of the volume", off,
                            "volume is %llu bytes", static_cast<unsigned long long>(size_));
    }
    if (len == 0) return std::size_t{0};
    const std::uint64_t s0 = off / ss_;
    const std::uint64_t s1 = (off + len - 1) / ss_ + 1;
    RangeLock::Guard guard = ranges_.acquire(s0, s1, /*exclusive=*/true);
    std::uint64_t pos = s0;
    while (pos < s1) {
      const std::uint64_t n = std::min<std::uint64_t>(s1 - pos, buf_sectors_);
      BufferPool::Buffer buf = buffers_->acquire();
      std::span<std::byte> b = buf.span().first(n * ss_);
      if (Result<void> r = write_through(off, in, pos, b); !r) {
        log_error("write", r.error());
        return r.error();
      }
      pos += n;
    }
    return len;
  }

  // Encrypts sectors [pos, pos + b.size()/ss) with the request's bytes merged in (partial head
  // and tail sectors read-modify-written) into the private buffer `b`, and writes them.
  // Caller must hold the exclusive range.
  Result<void> write_through(std::uint64_t off, std::span<const std::byte> in, std::uint64_t pos,
                             std::span<std::byte> b) {
    const std::size_t n = b.size() / ss_;
    const std::uint64_t start = pos * ss_;
    const bool head_partial = start < off;
    const bool tail_partial = start + b.size() > off + in.size();
    if (head_partial) CRYPTMAP_TRY_VOID(fetch(pos, b.first(ss_)));
    if (tail_partial && !(n == 1 && head_partial)) {
      CRYPTMAP_TRY_VOID(fetch(pos + n - 1, b.last(ss_)));
    }
    std::uint64_t lo = 0, hi = 0;
    overlap(off, in.size(), start, b.size(), &lo, &hi);
    std::memcpy(b.data() + (lo - start), in.data() + (lo - off), hi - lo);
    CRYPTMAP_TRY_VOID(driver_->convert(CryptoDir::kEncrypt, b, SectorIndex{pos}));
    return store_->write_at(ByteOffset{image_offset(pos)}, b);
  }

  void log_error(const char* op, const Error& e) {
    // Rate-limited (dm-crypt DMERR_LIMIT): the first 16, then one in 1024.
    const std::uint64_t n = errors_logged_.fetch_add(1, std::memory_order_relaxed);
    if (n < 16 || n % 1024 == 0) {
      logger_->error("{} on volume {} failed: {}", op, store_->name(), e.message());
    }
  }

  const VolumeLayout layout_;
  const std::uint32_t ss_;
  const std::uint64_t data_off_;
  const std::uint64_t size_;
  const bool read_only_;
  std::unique_ptr<crypto::SectorCipher> cipher_;
  std::unique_ptr<crypto::CryptoEngine> engine_;
  std::unique_ptr<BackingStore> store_;
  RangeLock ranges_;
  std::unique_ptr<CryptoDriver> driver_;
  std::unique_ptr<BufferPool> buffers_;
  std::uint64_t buf_sectors_ = 1;
  std::shared_ptr<spdlog::logger> logger_;
  std::atomic<std::uint64_t> errors_logged_{0};
};

}  // namespace

Result<std::unique_ptr<Volume>> open_volume_with_engine(
    VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
    const EngineFactory& make_engine, std::unique_ptr<BackingStore> store,
    const VolumeOptions& options, const EngineOptions& engine_options,
    std::shared_ptr<spdlog::logger> logger) {
  if (!cipher || !store) return make_error(Errc::kInvalid, "open volume: cipher and store required");
  const std::uint32_t ss = layout.sector_size;
  if (ss < 512 || ss > 4096 || (ss & (ss - 1)) != 0) {
    return make_error_fmt(Errc::kInvalid, "open volume: sector size", ss,
                          "must be a power of two from 512 to 4096");
  }
  if (cipher->sector_size() != ss) {
    return make_error_fmt(Errc::kInvalid, "open volume: cipher sector size", cipher->sector_size(),
                          "does not match the layout's sector size %u", ss);
  }
  if (cipher->meta_bytes_per_sector() != 0) {
    return make_error(Errc::kUnsupported,
                      "open volume: authenticated (per-sector metadata) ciphers are not supported "
                      "by the I/O engine yet");
  }
  const std::uint64_t image = store->size_bytes();
  if (layout.data_offset_bytes > image) {
    return make_error_fmt(Errc::kInvalid, "open volume: data offset past the end of the image",
                          layout.data_offset_bytes, "%s is %llu bytes", store->name().c_str(),
                          static_cast<unsigned long long>(image));
  }
  std::uint64_t size = layout.size_bytes;
  if (size == 0) {
    size = (image - layout.data_offset_bytes) / ss * ss;
  } else if (size % ss != 0) {
    return make_error_fmt(Errc::kInvalid, "open volume: size", size,
                          "is not a multiple of the %u-byte sector size", ss);
  } else if (size > image - layout.data_offset_bytes) {
    return make_error_fmt(Errc::kInvalid, "open volume: volume extends past the end of the image",
                          size, "%s has only %llu data bytes", store->name().c_str(),
                          static_cast<unsigned long long>(image - layout.data_offset_bytes));
  }
  const bool read_only = options.read_only || store->read_only();
  if (!logger) logger = spdlog::default_logger();
  std::unique_ptr<crypto::CryptoEngine> engine =
      make_engine ? make_engine(*cipher) : make_inline_engine(*cipher);
  if (!engine) return make_error(Errc::kInvalid, "open volume: no crypto engine");
  const std::size_t slots = std::max<std::uint32_t>(4, options.max_inflight_requests);
  auto vol = std::make_unique<VolumeImpl>(std::move(layout), std::move(cipher), std::move(engine),
                                          std::move(store), size, read_only, slots,
                                          std::move(logger));
  CRYPTMAP_TRY_VOID(vol->init(options, engine_options));
  return std::unique_ptr<Volume>(std::move(vol));
}

Result<std::unique_ptr<Volume>> open_volume(VolumeLayout layout,
                                            std::unique_ptr<crypto::SectorCipher> cipher,
                                            std::unique_ptr<BackingStore> store,
                                            const VolumeOptions& options,
                                            std::shared_ptr<spdlog::logger> logger) {
  return open_volume_with_engine(std::move(layout), std::move(cipher), EngineFactory{},
                                 std::move(store), options, EngineOptions{}, std::move(logger));
}

}  // namespace cryptmap::volume
