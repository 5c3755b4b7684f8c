// luksDump text in cryptsetup 2.6.1's layout (lib/luks1/keymanage.c via src/cryptsetup.c
// luksDump_with_volume_key / hdr_dump for LUKS1, lib/luks2/luks2_json_metadata.c LUKS2_hdr_dump),
// and --dump-json-metadata (json-c PRETTY style: two-space indent, no space after ':').
#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/bytes.h"
#include "volume/format/internal/base64.h"
#include "volume/format/internal/luks2_json_doc.h"
#include "volume/format/internal/luks_impl.h"
#include "volume/format/luks_admin.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using Json = nlohmann::ordered_json;

void pretty(const Json& j, int indent, std::string& out) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  const std::string pad2(static_cast<std::size_t>(indent + 2), ' ');
  if ((j.is_object() || j.is_array()) && j.empty()) {
    out += j.is_object() ? "{\n" + pad + "}" : "[\n" + pad + "]";
  } else if (j.is_object()) {
    out += "{\n";
    bool first = true;
    for (const auto& [k, v] : j.items()) {
      if (!first) out += ",\n";
      first = false;
      out += pad2 + Json(k).dump() + ":";
      pretty(v, indent + 2, out);
    }
    out += "\n" + pad + "}";
  } else if (j.is_array()) {
    out += "[\n";
    bool first = true;
    for (const auto& v : j) {
      if (!first) out += ",\n";
      first = false;
      out += pad2;
      pretty(v, indent + 2, out);
    }
    out += "\n" + pad + "]";
  } else {
    out += j.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

std::string dump_luks1(const format::Luks1Header& h, const std::string& device) {
  const luks1::Phdr& p = h.phdr();
  std::ostringstream o;
  o << "LUKS header information for " << device << "\n\n";
  o << "Version:       \t" << p.version << "\n";
  o << "Cipher name:   \t" << p.cipher_name << "\n";
  o << "Cipher mode:   \t" << p.cipher_mode << "\n";
  o << "Hash spec:     \t" << p.hash_spec << "\n";
  o << "Payload offset:\t" << p.payload_offset << "\n";
  o << "MK bits:       \t" << p.key_bytes * 8 << "\n";
  o << "MK digest:     \t" << to_hex_lines(p.mk_digest, "") << "\n";
  o << "MK salt:       \t" << to_hex_lines(p.mk_digest_salt, "               \t") << "\n";
  o << "MK iterations: \t" << p.mk_digest_iterations << "\n";
  o << "UUID:          \t" << p.uuid << "\n\n";
  for (std::uint32_t i = 0; i < luks1::kNumKeys; ++i) {
    const auto& kb = p.key_block[i];
    if (kb.active == luks1::kKeyEnabled) {
      o << "Key Slot " << i << ": ENABLED\n";
      o << "\tIterations:         \t" << kb.password_iterations << "\n";
      o << "\tSalt:               \t"
        << to_hex_lines(kb.password_salt, "\t                      \t") << "\n";
      o << "\tKey material offset:\t" << kb.key_material_offset << "\n";
      o << "\tAF stripes:            \t" << kb.stripes << "\n";
    } else {
      o << "Key Slot " << i << ": DISABLED\n";
    }
  }
  return o.str();
}

std::string b64_hex(const std::string& b64, const std::string& indent) {
  auto raw = format::base64_decode(b64);
  return raw ? to_hex_lines(*raw, indent) : b64;
}

std::string dump_luks2(const format::Luks2Header& h) {
  const auto& d = h.disk();
  // cryptsetup prints every section in id order (not JSON order).
  luks2::Metadata m = d.meta;
  auto by_id = [](const auto& a, const auto& b) { return a.id < b.id; };
  std::sort(m.keyslots.begin(), m.keyslots.end(), by_id);
  std::sort(m.tokens.begin(), m.tokens.end(), by_id);
  std::sort(m.digests.begin(), m.digests.end(), by_id);
  std::ostringstream o;
  o << "LUKS header information\n";
  o << "Version:       \t2\n";
  o << "Epoch:         \t" << d.bin.seqid << "\n";
  o << "Metadata area: \t" << m.config.json_size + luks2::kHdrBinLen << " [bytes]\n";
  o << "Keyslots area: \t" << m.config.keyslots_size << " [bytes]\n";
  o << "UUID:          \t" << d.bin.uuid << "\n";
  o << "Label:         \t" << (d.bin.label.empty() ? "(no label)" : d.bin.label) << "\n";
  o << "Subsystem:     \t" << (d.bin.subsystem.empty() ? "(no subsystem)" : d.bin.subsystem)
    << "\n";
  o << "Flags:       \t";
  if (m.config.flags.empty()) o << "(no flags)";
  for (const auto& f : m.config.flags) o << f << " ";
  o << "\n";
  if (!m.config.mandatory_requirements.empty()) {
    o << "Requirements:\t";
    for (const auto& r : m.config.mandatory_requirements) o << r << " ";
    o << "\n";
  }
  o << "\nData segments:\n";
  for (const auto& s : m.segments) {
    o << "  " << s.id << ": " << s.type << "\n";
    o << "\toffset: " << s.offset << " [bytes]\n";
    if (s.dynamic)
      o << "\tlength: (whole device)\n";
    else
      o << "\tlength: " << s.size << " [bytes]\n";
    if (s.type == "crypt") {
      o << "\tcipher: " << s.encryption << "\n";
      o << "\tsector: " << s.sector_size << " [bytes]\n";
      if (s.has_integrity) o << "\tintegrity: " << s.integrity_type << "\n";
    }
    if (!s.flags.empty()) {
      o << "\tflags : ";
      for (const auto& f : s.flags) o << f << " ";
      o << "\n";
    }
    o << "\n";
  }
  o << "Keyslots:\n";
  for (const auto& k : m.keyslots) {
    o << "  " << k.id << ": " << k.type << "\n";
    if (k.type != "luks2") continue;
    o << "\tKey:        " << k.key_size * 8 << " bits\n";
    o << "\tPriority:   "
      << (k.priority == 0   ? "ignored"
          : k.priority == 2 ? "preferred"
                            : "normal")
      << "\n";
    o << "\tCipher:     " << k.area_encryption << "\n";
    o << "\tCipher key: " << k.area_key_size * 8 << " bits\n";
    o << "\tPBKDF:      " << k.kdf.type << "\n";
    if (k.kdf.type == "pbkdf2") {
      o << "\tHash:       " << k.kdf.hash << "\n";
      o << "\tIterations: " << k.kdf.iterations << "\n";
    } else {
      o << "\tTime cost:  " << k.kdf.time << "\n";
      o << "\tMemory:     " << k.kdf.memory_kib << "\n";
      o << "\tThreads:    " << k.kdf.cpus << "\n";
    }
    o << "\tSalt:       " << to_hex_lines(k.kdf.salt, "\t            ") << "\n";
    o << "\tAF stripes: " << k.af_stripes << "\n";
    o << "\tAF hash:    " << k.af_hash << "\n";
    o << "\tArea offset:" << k.area_offset << " [bytes]\n";
    o << "\tArea length:" << k.area_size << " [bytes]\n";
    if (const auto* dg = m.digest_for_keyslot(k.id)) o << "\tDigest ID:  " << dg->id << "\n";
  }
  o << "Tokens:\n";
  for (const auto& t : m.tokens) {
    o << "  " << t.id << ": " << t.type << "\n";
    // The built-in keyring token's own line (keyring_dump in luks2_token_keyring.c).
    if (t.type == "luks2-keyring") o << "\tKey description: " << t.key_description << "\n";
    // One line per keyslot, none for an empty list (cryptsetup's hdr_dump_tokens).
    for (int ks : t.keyslots) o << "\tKeyslot:    " << ks << "\n";
  }
  o << "Digests:\n";
  for (const auto& dg : m.digests) {
    o << "  " << dg.id << ": " << dg.type << "\n";
    if (dg.type != "pbkdf2") continue;
    o << "\tHash:       " << dg.hash << "\n";
    o << "\tIterations: " << dg.iterations << "\n";
    o << "\tSalt:       " << b64_hex(dg.salt_b64, "\t            ") << "\n";
    o << "\tDigest:     " << b64_hex(dg.digest_b64, "\t            ") << "\n";
  }
  return o.str();
}

}  // namespace

Result<std::string> luks_dump(const BackingStore& header, bool json) {
  auto prefix = format::read_prefix(header, 8);
  if (prefix && luks1::has_luks_magic(*prefix) && prefix->size() >= 8 &&
      load_be16(prefix->data() + 6) == 1) {
    if (json)
      return fail(make_error(Errc::kInvalid, "--dump-json-metadata is supported only for LUKS2."));
    CRYPTMAP_TRY(h, format::Luks1Header::load(header));
    return dump_luks1(*h, header.name());
  }
  CRYPTMAP_TRY(h, format::Luks2Header::load(header, /*for_inspection=*/true));
  if (!json) return dump_luks2(*h);
  CRYPTMAP_TRY(doc, luks2::JsonDoc::parse(h->meta().json_text));
  try {
    std::string out;
    pretty(doc.root(), 0, out);
    return out;
  } catch (const std::exception& e) {
    return fail(
        make_error_fmt(Errc::kCorrupt, "LUKS2 JSON dump failed", kNoObject, "%s", e.what()));
  }
}

}  // namespace cryptmap::volume
