#include "tests/fuzz/fuzz_targets.h"

#include <span>
#include <string>
#include <string_view>

#include "crypto/cipher_spec.h"
#include "volume/format/internal/luks1_disk.h"
#include "volume/format/internal/luks2_metadata.h"
#include "volume/format/internal/span_store.h"
#include "volume/format/luks.h"
#include "volume/format/luks_admin.h"
#include "volume/format/plain.h"

namespace cryptmap::fuzz {
namespace {
std::span<const std::byte> as_span(const std::uint8_t* d, std::size_t n) {
  return {reinterpret_cast<const std::byte*>(d), n};
}
}  // namespace

int luks1_header(const std::uint8_t* data, std::size_t size) {
  auto bytes = as_span(data, size);
  auto p = volume::luks1::parse_phdr(bytes, size, "fuzz");
  if (p) (void)p->cipher_spec();
  volume::format::SpanStore store(bytes, "fuzz");
  auto h = volume::load_luks_header(store, volume::VolumeType::kLuks1);
  if (h) (void)(*h)->layout();
  auto d = volume::luks_dump(store);
  (void)d;
  return 0;
}

int luks2_image(const std::uint8_t* data, std::size_t size) {
  volume::format::SpanStore store(as_span(data, size), "fuzz");
  auto h = volume::load_luks_header(store, std::nullopt);
  if (h) (void)(*h)->layout();
  auto d = volume::luks_dump(store, false);
  auto j = volume::luks_dump(store, true);
  (void)d;
  (void)j;
  (void)volume::is_luks(store);
  return 0;
}

int luks2_json(const std::uint8_t* data, std::size_t size) {
  auto m = volume::luks2::parse_luks2_json(as_span(data, size));
  if (m) {
    std::string unknown;
    (void)volume::luks2::requirement_state(*m, &unknown);
  }
  return 0;
}

int cipher_spec(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = crypto::CipherSpec::parse(text);
  if (c) {
    auto again = crypto::CipherSpec::parse(c->to_string());
    (void)again;
  }
  volume::PlainOptions o;
  o.cipher = std::string(text);
  (void)volume::plain_layout(o, 1u << 20);
  const std::string pass = "fuzz";
  (void)volume::plain_hash(
      text, std::span(reinterpret_cast<const std::byte*>(pass.data()), pass.size()), 32);
  return 0;
}

}  // namespace cryptmap::fuzz
