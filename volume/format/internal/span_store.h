// SpanStore — a read-only BackingStore over borrowed bytes. Used to parse headers that are not
// on an image (header backup files read into memory, fuzz inputs, tests).
// Ownership: borrows `bytes`; they must outlive the store. Thread-safe (immutable).
#pragma once

#include <span>
#include <string>

#include "volume/store/backing_store.h"

namespace cryptmap::volume::format {

class SpanStore final : public BackingStore {
 public:
  SpanStore(std::span<const std::byte> bytes, std::string name)
      : bytes_(bytes), name_(std::move(name)) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override;
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override;
  Result<void> sync() override { return ok(); }
  Result<void> discard(ByteOffset off, std::uint64_t len_bytes) override;
  std::uint64_t size_bytes() const noexcept override { return bytes_.size(); }
  bool read_only() const noexcept override { return true; }
  const std::string& name() const noexcept override { return name_; }

 private:
  std::span<const std::byte> bytes_;
  std::string name_;
};

}  // namespace cryptmap::volume::format
