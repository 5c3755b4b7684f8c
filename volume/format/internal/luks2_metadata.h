// LUKS2 JSON metadata: a typed, validated view of the JSON area (volume/FORMATS.md §2.4).
//
// parse_luks2_json() checks the JSON area the way cryptsetup 2.6.1 does before trusting it
// (validate_json_area + LUKS2_hdr_validate + LUKS2_keyslots_validate): '{' first, NUL padding
// after the text, nesting depth <= 32 (json-c's limit), every section's types, numbered ids,
// keyslot areas inside the keyslots area without overlaps, segments, digests, config sizes,
// requirements. The text itself is kept (`json_text`) so a rewrite keeps unknown tokens and
// fields verbatim (nlohmann stays inside the .cpp files).
// Value types; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cryptmap::volume::luks2 {

inline constexpr std::uint64_t kHdrBinLen = 4096;
inline constexpr std::uint64_t kMaxKeyslotsSize = 128ull << 20;
inline constexpr int kMaxKeyslots = 32;
inline constexpr int kMaxTokens = 32;
inline constexpr int kMaxSegments = 32;
inline constexpr int kMaxDigests = 32;
inline constexpr std::uint32_t kStripes = 4000;
inline constexpr std::size_t kSaltSize = 32;
inline constexpr std::uint32_t kMaxKeySize = 1024;              // absurd beyond this
inline constexpr std::uint32_t kMaxArgon2MemoryKib = 4u << 20;  // cryptsetup's 4 GiB cap
inline constexpr std::uint32_t kMaxArgon2Cpus = 64;

// Allowed metadata (binary + JSON) sizes: 16 KiB .. 4 MiB, powers of two.
bool valid_metadata_size(std::uint64_t hdr_size);

struct Kdf {
  std::string type;              // "pbkdf2", "argon2i", "argon2id" (others are kept but unusable)
  std::string hash;              // pbkdf2
  std::uint32_t iterations = 0;  // pbkdf2
  std::uint32_t time = 0, memory_kib = 0, cpus = 0;  // argon2
  std::vector<std::byte> salt;
};

struct Keyslot {
  int id = -1;
  std::string type;            // "luks2" (usable), "reencrypt", unknown...
  std::uint32_t key_size = 0;  // volume key bytes stored by this slot
  int priority = 1;            // 0 ignore, 1 normal, 2 prefer; other values never tried by default
  bool has_priority = false;
  // luks2 type only (validated when type == "luks2"):
  std::string af_type;  // "luks1"
  std::string af_hash;
  std::uint32_t af_stripes = 0;
  std::string area_type;  // "raw"
  std::string area_encryption;
  std::uint32_t area_key_size = 0;
  std::uint64_t area_offset = 0, area_size = 0;
  Kdf kdf;
};

struct Segment {
  int id = -1;
  std::string type;  // "crypt", "linear", ...
  std::uint64_t offset = 0;
  std::uint64_t size = 0;  // bytes; 0 with dynamic
  bool dynamic = false;
  std::vector<std::string> flags;
  // crypt only:
  std::uint64_t iv_tweak = 0;
  std::string encryption;
  std::uint32_t sector_size = 512;
  bool has_integrity = false;
  std::string integrity_type;
  std::string integrity_journal_encryption, integrity_journal_integrity;  // "none" to activate
  std::uint32_t integrity_key_size = 0;  // optional integrity.key_size (bytes); 0 when absent
};

struct Digest {
  int id = -1;
  std::string type;  // "pbkdf2"
  std::vector<int> keyslots;
  std::vector<int> segments;
  // pbkdf2 (checked when used):
  std::string hash;
  std::int64_t iterations = 0;
  std::string salt_b64, digest_b64;
};

struct Token {
  int id = -1;
  std::string type;
  std::vector<int> keyslots;
  std::string key_description;  // luks2-keyring tokens (luksDump prints it)
};

struct Config {
  std::uint64_t json_size = 0;
  std::uint64_t keyslots_size = 0;
  std::vector<std::string> flags;
  std::vector<std::string> mandatory_requirements;
};

struct Metadata {
  std::vector<Keyslot> keyslots;  // in JSON order (json-c iteration order)
  std::vector<Segment> segments;  // sorted by id
  std::vector<Digest> digests;    // JSON order
  std::vector<Token> tokens;
  Config config;
  std::string json_text;  // compact JSON as read (or as produced by a rewrite)

  const Keyslot* keyslot(int id) const;
  const Segment* segment(int id) const;
  // The digest listing keyslot/segment `id`, or nullptr.
  const Digest* digest_for_keyslot(int id) const;
  const Digest* digest_for_segment(int id) const;
  bool has_flag(std::string_view flag) const;
  // Offset of the first byte after both metadata copies and the keyslots area.
  std::uint64_t hdr_and_areas_size() const {
    return 2 * (config.json_size + kHdrBinLen) + config.keyslots_size;
  }
};

// Parses and validates a JSON area (`area` = hdr_size - 4096 bytes: text, NUL, zero padding).
// `json_area_size` is what the binary header says (must equal config.json_size).
// Errors: kCorrupt naming the section/field.
Result<Metadata> parse_luks2_json(std::span<const std::byte> area);

// Validates JSON text (no padding) as a header of `json_area_size` bytes; used after edits.
Result<Metadata> parse_luks2_json_text(std::string_view text, std::uint64_t json_area_size);

// Requirements known to cryptsetup 2.6.1.
enum class RequirementState { kNone, kReencryption, kUnknown };
RequirementState requirement_state(const Metadata& m, std::string* first_unknown);

}  // namespace cryptmap::volume::luks2
