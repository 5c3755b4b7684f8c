// JsonDoc — an editable LUKS2 JSON document (nlohmann ordered_json, so member order and unknown
// tokens/fields survive a rewrite, as json-c keeps them for cryptsetup).
// INTERNAL to volume/format: includes nlohmann's forward header; no other module includes it.
// Move-only; thread-compatible.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "base/result.h"
#include "volume/format/internal/luks2_metadata.h"

namespace cryptmap::volume::luks2 {

class JsonDoc {
 public:
  // Parses JSON text (no padding). Never throws: kCorrupt names the problem.
  static Result<JsonDoc> parse(std::string_view text);
  JsonDoc();
  ~JsonDoc();
  JsonDoc(JsonDoc&&) noexcept;
  JsonDoc& operator=(JsonDoc&&) noexcept;

  nlohmann::ordered_json& root() { return *root_; }
  const nlohmann::ordered_json& root() const { return *root_; }
  // Compact text as json-c PLAIN writes it.
  Result<std::string> dump() const;
  // Full cryptsetup validation as a header with a JSON area of `json_area_size` bytes.
  Result<Metadata> validate(std::uint64_t json_area_size) const;

 private:
  std::unique_ptr<nlohmann::ordered_json> root_;
};

}  // namespace cryptmap::volume::luks2
