// MemBackingStore — an in-memory BackingStore for tests, tools and examples.
//
// Storage is sparse: 1 MiB chunks are allocated on first write (unwritten bytes read as
// zeros), so a multi-terabyte store (sector indices above 2^32) costs only what is written.
// Once every chunk a workload touches exists, I/O allocates nothing.
// It can be made hostile: fail reads / writes / syncs in a byte range (kIo), and counts calls
// so tests can check write-back coalescing and flush behaviour.
//
// Thread-safety: every method may be called from any thread. Bytes are protected by striped
// reader/writer locks, so overlapping concurrent I/O is race-free (TSan-clean); a write is
// atomic per chunk, not across chunks (like a disk, which tears at sector boundaries).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

class MemBackingStore final : public BackingStore {
 public:
  static constexpr std::uint64_t kChunkBytes = 1ull << 20;

  explicit MemBackingStore(std::uint64_t size_bytes, std::string name = "mem:store",
                           bool read_only = false);
  ~MemBackingStore() override;

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override;
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override;
  Result<void> sync() override;
  Result<void> discard(ByteOffset off, std::uint64_t len_bytes) override;
  std::uint64_t size_bytes() const noexcept override { return size_; }
  bool read_only() const noexcept override { return read_only_; }
  const std::string& name() const noexcept override { return name_; }

  // Hostility: any read/write overlapping [off, off+len) fails with kIo (len 0 disables);
  // sync fails while `fail_sync` is set.
  void fail_reads(std::uint64_t off, std::uint64_t len);
  void fail_writes(std::uint64_t off, std::uint64_t len);
  void fail_sync(bool on) { fail_sync_.store(on); }

  // Test access that bypasses the hostility and the counters.
  void peek(std::uint64_t off, std::span<std::byte> out) const;
  void poke(std::uint64_t off, std::span<const std::byte> in);

  std::uint64_t write_calls() const noexcept { return write_calls_.load(); }
  std::uint64_t read_calls() const noexcept { return read_calls_.load(); }
  std::uint64_t sync_calls() const noexcept { return sync_calls_.load(); }
  std::uint64_t bytes_written() const noexcept { return bytes_written_.load(); }
  void reset_counters() noexcept;

 private:
  static constexpr std::size_t kStripes = 64;
  struct Range {
    std::atomic<std::uint64_t> off{0};
    std::atomic<std::uint64_t> len{0};
    bool overlaps(std::uint64_t o, std::uint64_t l) const noexcept;
  };
  std::byte* chunk(std::uint64_t index, bool create) const;
  void copy_out(std::uint64_t off, std::span<std::byte> out) const;
  void copy_in(std::uint64_t off, std::span<const std::byte> in);

  const std::uint64_t size_;
  const std::string name_;
  const bool read_only_;
  mutable std::vector<std::atomic<std::byte*>> chunks_;
  // Chunk ci's bytes are guarded by stripes_[ci % kStripes] (shared to copy out, exclusive to
  // copy in). A lock chosen by index guarding heap bytes is beyond GUARDED_BY: this stays a
  // comment, and the lock is taken in copy_out()/copy_in() only.
  mutable SharedMutex stripes_[kStripes];
  Range fail_read_;
  Range fail_write_;
  std::atomic<bool> fail_sync_{false};
  mutable std::atomic<std::uint64_t> read_calls_{0};
  std::atomic<std::uint64_t> write_calls_{0};
  std::atomic<std::uint64_t> sync_calls_{0};
  std::atomic<std::uint64_t> bytes_written_{0};
};

}  // namespace cryptmap::volume
