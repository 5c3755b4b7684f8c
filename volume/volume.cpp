// Volume's default discard and resize (unsupported), read_deliver (a read into `out`),
// write_ordered (no ordering point to wait for) and write_fua (a write, then a flush).
#include "volume/volume.h"

namespace cryptmap::volume {

Result<std::size_t> Volume::discard(ByteOffset off, std::uint64_t /*len*/) {
  return make_error(Errc::kUnsupported, "discard: not supported by this volume", off.value);
}

Result<std::uint64_t> Volume::resize(std::uint64_t new_size) {
  return make_error(Errc::kUnsupported, "resize: this kind of volume cannot change its size",
                    new_size);
}

Result<void> Volume::hold_range(ByteOffset off, std::uint64_t /*len*/,
                                const std::function<Result<void>()>& /*fn*/) {
  return make_error(Errc::kUnsupported, "hold range: not supported by this volume", off.value);
}

Result<std::size_t> Volume::read_deliver(ByteOffset off, std::span<std::byte> out,
                                         Deliver deliver) {
  CRYPTMAP_TRY(n, read(off, out));
  deliver(std::span<const std::byte>(out.data(), n));
  return n;
}

Result<std::size_t> Volume::write_ordered(ByteOffset off, std::span<const std::byte> in,
                                          Admitted admitted, WriteOrder /*order*/) {
  admitted();
  return write(off, in);
}

Result<std::size_t> Volume::write_fua(ByteOffset off, std::span<const std::byte> in,
                                      Admitted admitted, WriteOrder order) {
  CRYPTMAP_TRY(n, write_ordered(off, in, std::move(admitted), order));
  CRYPTMAP_TRY_VOID(flush());
  return n;
}

}  // namespace cryptmap::volume
