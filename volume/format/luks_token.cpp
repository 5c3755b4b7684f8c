// LUKS2 token management, restating cryptsetup 2.6.1 src/cryptsetup.c (_token_import,
// _token_export, _token_remove) and lib/luks2/luks2_token.c (LUKS2_token_create,
// LUKS2_token_assign), lib/luks2/luks2_json_metadata.c (LUKS2_token_validate).
#include "volume/format/luks_token.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "volume/format/internal/luks_admin_impl.h"

namespace cryptmap::volume {

using Json = nlohmann::ordered_json;

namespace {

// LUKS2 headers only; LUKS1 has no tokens.
Result<admin::Luks2State> load_luks2(const BackingStore& header) {
  CRYPTMAP_TRY(hs, admin::load_any(header));
  if (hs.first)
    return fail(make_error(Errc::kInvalid, "token: the header is LUKS1",
                           kNoObject));  // the CLI says "not a valid LUKS2 device"
  return admin::luks2_state(*hs.second);
}

Error token_invalid(int id) {
  return make_error_fmt(Errc::kInvalid, "token id", static_cast<std::uint64_t>(id),
                        "Token %d is invalid.", id);
}

Error import_failed(const char* reason) {
  return make_error_fmt(Errc::kInvalid, "token import", kNoObject,
                        "Failed to import token from file: %s.", reason);
}

bool in_use(const Json& tokens, int id) { return tokens.contains(std::to_string(id)); }

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

// The token-specific rules of LUKS2_token_create on top of the header validation: a "luks2-"
// type is reserved for built-in handlers, of which 2.6.1 has luks2-keyring only.
const char* type_rule_violation(const Json& token) {
  const auto t = token.find("type");
  if (t == token.end() || !t->is_string() || t->get_ref<const std::string&>().empty())
    return "\"type\" must be a non-empty string";
  const std::string& type = t->get_ref<const std::string&>();
  if (type.rfind("luks2-", 0) != 0) return nullptr;
  if (type != "luks2-keyring") return "types \"luks2-*\" are reserved for built-in tokens";
  const auto d = token.find("key_description");
  if (d == token.end() || !d->is_string())
    return "a luks2-keyring token needs a string \"key_description\"";
  return nullptr;
}

// The edited header through cryptsetup's whole validation, and its text once more through the
// parser that reads headers (json-c's nesting limit included).
Result<void> validate_edit(const admin::Luks2State& st) {
  auto valid = st.doc.validate(st.json_area);
  if (!valid) {
    const Error& e = valid.error();
    if (std::string_view(e.what).find("token keyslots") != std::string_view::npos)
      return fail(import_failed("\"keyslots\" must list ids of existing keyslots as strings"));
    if (e.detail_view().find("does not fit") != std::string_view::npos)
      return fail(import_failed("no room left in the header's JSON area"));
    return fail(make_error_fmt(Errc::kInvalid, "token import", kNoObject,
                               "Failed to import token from file: %s", e.message().c_str()));
  }
  if (!luks2::parse_luks2_json_text(valid->json_text, st.json_area))
    return fail(import_failed("the header would not read back (nested too deeply?)"));
  return ok();
}

}  // namespace

Result<std::vector<TokenInfo>> luks_tokens(const BackingStore& header) {
  CRYPTMAP_TRY(hs, admin::load_any(header, true));
  std::vector<TokenInfo> out;
  if (hs.first) return out;
  for (const luks2::Token& t : hs.second->meta().tokens) out.push_back({t.id, t.type, t.keyslots});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<int> luks_token_import(BackingStore& header, std::string_view json,
                              const TokenImport& opts) {
  CRYPTMAP_TRY(st, load_luks2(header));
  if (opts.token_id && (*opts.token_id < 0 || *opts.token_id >= luks2::kMaxTokens))
    return fail(token_invalid(*opts.token_id));
  CRYPTMAP_TRY(m, st.doc.validate(st.json_area));
  if (opts.keyslot && m.keyslot(*opts.keyslot) == nullptr)
    return fail(make_error_fmt(Errc::kInvalid, "token keyslot",
                               static_cast<std::uint64_t>(*opts.keyslot),
                               "Keyslot %d is not active.", *opts.keyslot));
  Json& tokens = st.doc.root()["tokens"];
  int id = -1;
  if (opts.token_id) {
    id = *opts.token_id;
    if (in_use(tokens, id) && !opts.replace)
      return fail(make_error_fmt(Errc::kInvalid, "token id", static_cast<std::uint64_t>(id),
                                 "Token %d in use.", id));
  } else {
    for (int i = 0; i < luks2::kMaxTokens && id < 0; ++i)
      if (!in_use(tokens, i)) id = i;
    if (id < 0) return fail(import_failed("all 32 token ids are in use"));
  }
  json = trim(json);
  auto parsed = luks2::JsonDoc::parse(json);
  if (!parsed) return fail(import_failed("not one JSON object"));
  Json token = std::move(parsed->root());
  if (const char* why = type_rule_violation(token)) return fail(import_failed(why));
  tokens[std::to_string(id)] = std::move(token);
  CRYPTMAP_TRY_VOID(validate_edit(st));
  CRYPTMAP_TRY_VOID(admin::luks2_commit(header, st));
  if (opts.keyslot || opts.all_keyslots) {
    // crypt_token_assign_keyslot: a second header write, each keyslot appended once.
    std::vector<int> slots;
    if (opts.keyslot)
      slots.push_back(*opts.keyslot);
    else
      for (const luks2::Keyslot& k : m.keyslots) slots.push_back(k.id);
    Json& ks = st.doc.root()["tokens"][std::to_string(id)]["keyslots"];
    for (int k : slots) {
      const Json slot = std::to_string(k);
      if (std::find(ks.begin(), ks.end(), slot) == ks.end()) ks.push_back(slot);
    }
    CRYPTMAP_TRY_VOID(validate_edit(st));
    CRYPTMAP_TRY_VOID(admin::luks2_commit(header, st));
  }
  return id;
}

Result<int> luks_token_add_keyring(BackingStore& header, std::string_view key_description,
                                   const TokenImport& opts) {
  // cryptsetup pastes the description into a JSON text and parses it back, so a quote, a
  // backslash or a control character makes it fail with this sentence (token id -1: any).
  for (const char c : key_description)
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      const int id = opts.token_id.value_or(-1);
      return make_error_fmt(Errc::kInvalid, "token add", static_cast<std::uint64_t>(id),
                            "Failed to add luks2-keyring token %d.", id);
    }
  Json t;
  t["type"] = "luks2-keyring";
  t["keyslots"] = Json::array();
  t["key_description"] = std::string(key_description);
  return luks_token_import(header, t.dump(), opts);
}

Result<std::string> luks_token_export(const BackingStore& header, int token_id) {
  auto failed = [token_id] {
    return make_error_fmt(Errc::kInvalid, "token export", static_cast<std::uint64_t>(token_id),
                          "Failed to get token %d for export.", token_id);
  };
  CRYPTMAP_TRY(st, load_luks2(header));
  const Json& tokens = st.doc.root()["tokens"];
  const auto it = tokens.find(std::to_string(token_id));
  if (it == tokens.end()) return fail(failed());
  try {
    return it->dump(-1, ' ', false, Json::error_handler_t::strict);
  } catch (const std::exception&) {
    return fail(failed());
  }
}

Result<void> luks_token_remove(BackingStore& header, int token_id) {
  if (token_id < 0 || token_id >= luks2::kMaxTokens) return fail(token_invalid(token_id));
  CRYPTMAP_TRY(st, load_luks2(header));
  Json& tokens = st.doc.root()["tokens"];
  if (!in_use(tokens, token_id))
    return fail(make_error_fmt(Errc::kInvalid, "token id", static_cast<std::uint64_t>(token_id),
                               "Token %d is not in use.", token_id));
  tokens.erase(std::to_string(token_id));
  CRYPTMAP_TRY_VOID(st.doc.validate(st.json_area));
  return admin::luks2_commit(header, st);
}

}  // namespace cryptmap::volume
