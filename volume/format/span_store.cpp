#include "volume/format/internal/span_store.h"

#include <cstring>

namespace cryptmap::volume::format {

Result<void> SpanStore::read_at(ByteOffset off, std::span<std::byte> out) const {
  if (off.value > bytes_.size() || out.size() > bytes_.size() - off.value)
    return fail(make_error_fmt(Errc::kIo, "read past the end of the image", off.value, "%s",
                               name_.c_str()));
  if (!out.empty()) std::memcpy(out.data(), bytes_.data() + off.value, out.size());
  return ok();
}

Result<void> SpanStore::write_at(ByteOffset off, std::span<const std::byte>) {
  return fail(make_error_fmt(Errc::kReadOnly, "write to a read-only header copy", off.value, "%s",
                             name_.c_str()));
}

Result<void> SpanStore::discard(ByteOffset off, std::uint64_t) {
  return fail(make_error_fmt(Errc::kReadOnly, "discard on a read-only header copy", off.value, "%s",
                             name_.c_str()));
}

}  // namespace cryptmap::volume::format
