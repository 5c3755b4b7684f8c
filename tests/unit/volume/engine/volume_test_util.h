// Helpers for Volume tests: a volume over a MemBackingStore with a FakeSectorCipher, a plaintext
// model, and an independent check of the image (decrypting sectors at the offsets the layout
// says, without going through the engine).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "tests/unit/volume/engine/fake_crypto.h"
#include "volume/engine/volume_engine.h"
#include "volume/store/mem_backing_store.h"
#include "volume/volume.h"

namespace cryptmap::testing {

struct TestVolume {
  volume::MemBackingStore* store = nullptr;  // owned by the volume
  FakeSectorCipher* cipher = nullptr;        // owned by the volume
  std::unique_ptr<volume::Volume> vol;
  std::uint64_t key = 0;
  std::uint32_t ss = 512;
  std::uint64_t data_off = 0;
};

// Forwards to a store the test owns, so it outlives the volume (close-time write-back), and
// lets a test watch store I/O or inject an interleaving:
//  * `on_io(offset, is_write)` runs before every read and write, on the thread issuing it
//    (set it before the volume is opened: the volume's threads call it);
//  * `after_read_once` runs right after the next read returned, then is cleared (set it only
//    while no other thread of the volume reads);
//  * `splits` is what it answers to splits_large_requests() (set it before the volume is
//    opened); `largest_read` is the longest read_at it was asked for, a batch's pieces included.
class BorrowedStore final : public volume::BackingStore {
 public:
  explicit BorrowedStore(volume::MemBackingStore& s) : s_(s) {}
  std::function<void(std::uint64_t offset, bool is_write)> on_io;
  mutable std::function<void()> after_read_once;

  bool splits = false;
  mutable std::atomic<std::size_t> largest_read{0};

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    if (on_io) on_io(off.value, false);
    note_batch(largest_read, out.size());
    Result<void> r = s_.read_at(off, out);
    if (after_read_once) std::exchange(after_read_once, nullptr)();
    return r;
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (on_io) on_io(off.value, true);
    return s_.write_at(off, in);
  }
  // Durable writes are counted (and written as plain ones: the memory store has no cache).
  Result<void> write_fua(ByteOffset off, std::span<const std::byte> in) override {
    fua_writes.fetch_add(1);
    return write_at(off, in);
  }
  std::atomic<int> fua_writes{0};
  std::atomic<int> syncs{0};
  // Batches run the default loop (through read_at/write_at above) and record their size.
  Result<void> read_batch(std::span<volume::ReadPiece> pieces) const override {
    note_batch(largest_read_batch, pieces.size());
    return BackingStore::read_batch(pieces);
  }
  Result<void> write_batch(std::span<volume::WritePiece> pieces) override {
    note_batch(largest_write_batch, pieces.size());
    return BackingStore::write_batch(pieces);
  }
  mutable std::atomic<std::size_t> largest_read_batch{0};
  std::atomic<std::size_t> largest_write_batch{0};
  Result<void> sync() override {
    syncs.fetch_add(1);
    return s_.sync();
  }
  Result<void> discard(ByteOffset off, std::uint64_t len) override { return s_.discard(off, len); }
  std::uint64_t size_bytes() const noexcept override { return s_.size_bytes(); }
  bool read_only() const noexcept override { return s_.read_only(); }
  bool splits_large_requests() const noexcept override { return splits; }
  const std::string& name() const noexcept override { return s_.name(); }

 private:
  static void note_batch(std::atomic<std::size_t>& largest, std::size_t n) {
    std::size_t cur = largest.load();
    while (n > cur && !largest.compare_exchange_weak(cur, n)) {
    }
  }
  volume::MemBackingStore& s_;
};

inline volume::VolumeLayout test_layout(std::uint32_t ss, std::uint64_t data_off,
                                        std::uint64_t size = 0) {
  volume::VolumeLayout l;
  l.type = volume::VolumeType::kPlain;
  l.sector_size = ss;
  l.data_offset_bytes = data_off;
  l.size_bytes = size;
  return l;
}

inline TestVolume make_test_volume(std::uint32_t ss, std::uint64_t data_off,
                                   std::uint64_t image_bytes, volume::VolumeOptions opts = {},
                                   volume::EngineOptions eo = {},
                                   volume::EngineFactory factory = {}, std::uint64_t size = 0,
                                   volume::MemBackingStore* borrowed = nullptr) {
  TestVolume t;
  t.ss = ss;
  t.data_off = data_off;
  t.key = 0xC0FFEE ^ ss;
  std::unique_ptr<volume::BackingStore> store;
  if (borrowed != nullptr) {
    store = std::make_unique<BorrowedStore>(*borrowed);
    t.store = borrowed;
  } else {
    auto mem = std::make_unique<volume::MemBackingStore>(image_bytes, "mem:test");
    t.store = mem.get();
    store = std::move(mem);
  }
  auto cipher = std::make_unique<FakeSectorCipher>(ss, t.key);
  t.cipher = cipher.get();
  auto v = volume::open_volume_with_engine(test_layout(ss, data_off, size), std::move(cipher),
                                           factory, std::move(store), opts, eo, nullptr);
  if (!v) {
    ADD_FAILURE() << "open_volume: " << v.error().message();
    return t;
  }
  t.vol = std::move(*v);
  return t;
}

// A volume (data at offset 0) over `store`, a wrapper of `image` (a counting, gated or
// borrowing store the test keeps a pointer to); `t`'s cipher and image checks go to `image`.
inline TestVolume open_test_volume_over(volume::MemBackingStore& image,
                                        std::unique_ptr<volume::BackingStore> store,
                                        std::uint32_t ss, const volume::VolumeOptions& opts,
                                        const volume::EngineOptions& eo,
                                        std::shared_ptr<spdlog::logger> logger = nullptr) {
  TestVolume t;
  t.ss = ss;
  t.key = 0xC0FFEE ^ ss;
  t.store = &image;
  auto cipher = std::make_unique<FakeSectorCipher>(ss, t.key);
  t.cipher = cipher.get();
  auto v = volume::open_volume_with_engine(test_layout(ss, 0), std::move(cipher), {},
                                           std::move(store), opts, eo, std::move(logger));
  if (!v) {
    ADD_FAILURE() << v.error().message();
    return t;
  }
  t.vol = std::move(*v);
  return t;
}

// Plaintext of [off, off+len) as the image holds it, decrypted independently.
inline std::vector<std::byte> image_plaintext(const TestVolume& t, std::uint64_t off,
                                              std::size_t len) {
  std::vector<std::byte> out(len);
  const std::uint64_t s0 = off / t.ss;
  const std::uint64_t s1 = (off + len + t.ss - 1) / t.ss;
  std::vector<std::byte> sec(t.ss);
  for (std::uint64_t s = s0; s < s1; ++s) {
    t.store->peek(t.data_off + s * t.ss, sec);
    FakeSectorCipher::decrypt_sector(t.key, s, sec);
    const std::uint64_t lo = std::max(off, s * t.ss);
    const std::uint64_t hi = std::min<std::uint64_t>(off + len, (s + 1) * t.ss);
    std::memcpy(out.data() + (lo - off), sec.data() + (lo - s * t.ss), hi - lo);
  }
  return out;
}

// Writes plaintext straight into the image (encrypting independently).
inline void image_write_plaintext(const TestVolume& t, std::uint64_t sector,
                                  std::span<const std::byte> whole_sectors) {
  std::vector<std::byte> buf(whole_sectors.begin(), whole_sectors.end());
  for (std::size_t k = 0; k < buf.size() / t.ss; ++k) {
    FakeSectorCipher::encrypt_sector(t.key, sector + k,
                                     std::span<std::byte>(buf).subspan(k * t.ss, t.ss));
  }
  t.store->poke(t.data_off + sector * t.ss, buf);
}

inline std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> v(n);
  fill_pattern(v, seed);
  return v;
}

}  // namespace cryptmap::testing
