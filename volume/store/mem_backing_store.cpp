#include "volume/store/mem_backing_store.h"

#include <algorithm>
#include <cstring>

namespace cryptmap::volume {

MemBackingStore::MemBackingStore(std::uint64_t size_bytes, std::string name, bool read_only)
    : size_(size_bytes),
      name_(std::move(name)),
      read_only_(read_only),
      chunks_((size_bytes + kChunkBytes - 1) / kChunkBytes) {}

MemBackingStore::~MemBackingStore() {
  for (auto& c : chunks_) delete[] c.load();
}

bool MemBackingStore::Range::overlaps(std::uint64_t o, std::uint64_t l) const noexcept {
  const std::uint64_t fo = off.load();
  const std::uint64_t fl = len.load();
  return fl != 0 && l != 0 && o < fo + fl && fo < o + l;
}

void MemBackingStore::fail_reads(std::uint64_t off, std::uint64_t len) {
  fail_read_.off.store(off);
  fail_read_.len.store(len);
}
void MemBackingStore::fail_writes(std::uint64_t off, std::uint64_t len) {
  fail_write_.off.store(off);
  fail_write_.len.store(len);
}

void MemBackingStore::reset_counters() noexcept {
  read_calls_ = 0;
  write_calls_ = 0;
  sync_calls_ = 0;
  bytes_written_ = 0;
}

std::byte* MemBackingStore::chunk(std::uint64_t index, bool create) const {
  std::byte* p = chunks_[index].load(std::memory_order_acquire);
  if (p != nullptr || !create) return p;
  auto* fresh = new std::byte[kChunkBytes]();
  if (chunks_[index].compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return fresh;
  delete[] fresh;
  return p;
}

void MemBackingStore::copy_out(std::uint64_t off, std::span<std::byte> out) const {
  std::size_t done = 0;
  while (done < out.size()) {
    const std::uint64_t pos = off + done;
    const std::uint64_t ci = pos / kChunkBytes;
    const std::uint64_t within = pos % kChunkBytes;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(out.size() - done, kChunkBytes - within));
    ReaderLock lock(stripes_[ci % kStripes]);
    const std::byte* c = chunk(ci, false);
    if (c == nullptr) {
      std::memset(out.data() + done, 0, n);
    } else {
      std::memcpy(out.data() + done, c + within, n);
    }
    done += n;
  }
}

void MemBackingStore::copy_in(std::uint64_t off, std::span<const std::byte> in) {
  std::size_t done = 0;
  while (done < in.size()) {
    const std::uint64_t pos = off + done;
    const std::uint64_t ci = pos / kChunkBytes;
    const std::uint64_t within = pos % kChunkBytes;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(in.size() - done, kChunkBytes - within));
    std::byte* c = chunk(ci, true);
    WriterLock lock(stripes_[ci % kStripes]);
    std::memcpy(c + within, in.data() + done, n);
    done += n;
  }
}

Result<void> MemBackingStore::read_at(ByteOffset off, std::span<std::byte> out) const {
  read_calls_.fetch_add(1, std::memory_order_relaxed);
  if (off.value > size_ || out.size() > size_ - off.value) {
    return make_error_fmt(Errc::kIo, "read image past its end", off.value, "%s is %llu bytes",
                          name_.c_str(), static_cast<unsigned long long>(size_));
  }
  if (fail_read_.overlaps(off.value, out.size())) {
    return make_error_fmt(Errc::kIo, "read image", off.value, "%s: injected read failure",
                          name_.c_str());
  }
  copy_out(off.value, out);
  return ok();
}

Result<void> MemBackingStore::write_at(ByteOffset off, std::span<const std::byte> in) {
  if (read_only_) {
    return make_error_fmt(Errc::kReadOnly, "write image", off.value, "%s is read-only",
                          name_.c_str());
  }
  write_calls_.fetch_add(1, std::memory_order_relaxed);
  if (off.value > size_ || in.size() > size_ - off.value) {
    return make_error_fmt(Errc::kNoSpace, "write image past its end", off.value, "%s is %llu bytes",
                          name_.c_str(), static_cast<unsigned long long>(size_));
  }
  if (fail_write_.overlaps(off.value, in.size())) {
    return make_error_fmt(Errc::kIo, "write image", off.value, "%s: injected write failure",
                          name_.c_str());
  }
  copy_in(off.value, in);
  bytes_written_.fetch_add(in.size(), std::memory_order_relaxed);
  return ok();
}

Result<void> MemBackingStore::sync() {
  sync_calls_.fetch_add(1, std::memory_order_relaxed);
  if (fail_sync_.load()) {
    return make_error_fmt(Errc::kIo, "sync image", kNoObject, "%s: injected sync failure",
                          name_.c_str());
  }
  return ok();
}

Result<void> MemBackingStore::discard(ByteOffset off, std::uint64_t len_bytes) {
  if (read_only_) {
    return make_error_fmt(Errc::kReadOnly, "discard image range", off.value, "%s is read-only",
                          name_.c_str());
  }
  if (off.value > size_ || len_bytes > size_ - off.value) {
    return make_error_fmt(Errc::kInvalid, "discard image range", off.value,
                          "%s: range past the end", name_.c_str());
  }
  // Discarded bytes read back as zeros (like a punched hole).
  std::uint64_t done = 0;
  static constexpr std::byte kZeros[4096] = {};
  while (done < len_bytes) {
    const std::uint64_t pos = off.value + done;
    const std::uint64_t n = std::min<std::uint64_t>(len_bytes - done, sizeof kZeros);
    if (chunk(pos / kChunkBytes, false) != nullptr ||
        chunk((pos + n - 1) / kChunkBytes, false) != nullptr) {
      copy_in(pos, std::span<const std::byte>(kZeros, n));
    }
    done += n;
  }
  return ok();
}

void MemBackingStore::peek(std::uint64_t off, std::span<std::byte> out) const {
  copy_out(off, out);
}
void MemBackingStore::poke(std::uint64_t off, std::span<const std::byte> in) { copy_in(off, in); }

}  // namespace cryptmap::volume
