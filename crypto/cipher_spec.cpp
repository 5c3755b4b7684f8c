#include "crypto/cipher_spec.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>

#include "crypto/internal/cipher_catalog.h"
#include "crypto/internal/hash_backend.h"

namespace cryptmap::crypto {
namespace {

using internal::find_block_cipher;

constexpr std::array<std::string_view, 5> kChainModes{"xts", "cbc", "ecb", "ctr", "lrw"};
constexpr std::array<std::string_view, 12> kIvModes{"plain", "plain64", "plain64be", "essiv",
                                                    "benbi", "null",    "eboiv",     "lmk",
                                                    "tcw",   "random",  "elephant",  ""};

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// Error text is capped at 95 characters: quote at most 40 characters of user input.
Error spec_error(Errc code, const char* what, std::string_view part, const char* hint) {
  return make_error_fmt(code, what, kNoObject, "'%.40s'%s", std::string(part).c_str(), hint);
}

Result<void> validate(const CipherSpec& s) {
  if (s.cipher.empty()) return make_error(Errc::kInvalid, "cipher spec: cipher name is empty");
  if (find_block_cipher(s.cipher) == nullptr)
    return spec_error(Errc::kUnsupported, "cipher spec: cipher", s.cipher,
                      " unknown (aes, serpent, twofish, camellia, cast5, cast6, cipher_null)");
  if (s.chain_mode.empty()) return make_error(Errc::kInvalid, "cipher spec: chain mode is empty");
  if (!one_of(s.chain_mode, kChainModes))
    return spec_error(Errc::kUnsupported, "cipher spec: chain mode", s.chain_mode,
                      " unknown (xts, cbc, ecb, ctr, lrw)");
  if (!one_of(s.iv_mode, kIvModes))
    return spec_error(Errc::kUnsupported, "cipher spec: IV mode", s.iv_mode,
                      " unknown (plain64, plain, essiv:<hash>, benbi, null, eboiv, lmk, tcw)");
  if (s.chain_mode != "ecb" && s.iv_mode.empty())
    return spec_error(Errc::kInvalid, "cipher spec: IV mode missing for chain mode", s.chain_mode,
                      " (e.g. -plain64)");
  if (s.iv_mode == "essiv") {
    if (s.iv_opts.empty())
      return make_error_fmt(Errc::kInvalid, "cipher spec: ESSIV", kNoObject,
                            "needs a hash, e.g. essiv:sha256");
    if (internal::find_hash(s.iv_opts) == nullptr)
      return spec_error(Errc::kUnsupported, "cipher spec: ESSIV hash", s.iv_opts,
                        " unknown (sha256, sha1, sha512, ...)");
  } else if (!s.iv_opts.empty()) {
    return make_error_fmt(Errc::kInvalid, "cipher spec: IV options", kNoObject,
                          "'%.30s' given, but IV mode '%.20s' takes none", s.iv_opts.c_str(),
                          s.iv_mode.c_str());
  }
  if (s.keycount == 0 || (s.keycount & (s.keycount - 1)) != 0)
    return make_error_fmt(Errc::kInvalid, "cipher spec: key count", kNoObject,
                          "%u is not a power of two", s.keycount);
  return ok();
}

Result<std::uint32_t> parse_keycount(std::string_view text) {
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || p != text.data() + text.size() || v == 0 ||
      (v & (v - 1)) != 0 || v > 65536)
    return spec_error(Errc::kInvalid, "cipher spec: key count", text,
                      " is not a power of two in 1..65536");
  return v;
}

// capi:<mode>(<cipher>)-ivmode[:ivopts]  (dm-crypt crypt_ctr_cipher_new).
Result<CipherSpec> parse_capi(std::string_view whole, std::string_view rest) {
  CipherSpec s;
  s.capi = true;
  std::string_view api = rest;
  if (auto dash = rest.rfind('-'); dash != std::string_view::npos) {
    api = rest.substr(0, dash);
    std::string_view iv = rest.substr(dash + 1);
    if (auto colon = iv.rfind(':'); colon != std::string_view::npos) {
      s.iv_opts = std::string(iv.substr(colon + 1));
      iv = iv.substr(0, colon);
    }
    s.iv_mode = std::string(iv);
  }
  const auto open = api.find('(');
  if (open == std::string_view::npos || api.empty() || api.back() != ')')
    return spec_error(Errc::kInvalid, "cipher spec: crypto API name", api,
                      " is not of the form mode(cipher), e.g. capi:xts(aes)-plain64");
  s.chain_mode = std::string(api.substr(0, open));
  s.cipher = std::string(api.substr(open + 1, api.size() - open - 2));
  if (s.chain_mode == "gcm" || s.chain_mode == "authenc" || s.chain_mode == "rfc7539" ||
      s.chain_mode == "rfc4309" || s.chain_mode == "ccm" || s.chain_mode == "essiv" ||
      s.cipher.find('(') != std::string::npos)
    return spec_error(Errc::kUnsupported, "cipher spec: crypto API form", whole,
                      " (authenticated/nested ciphers are not supported yet)");
  if (s.iv_mode == "lmk") s.keycount = 64;  // as dm-crypt does for the capi form
  CRYPTMAP_TRY_VOID(validate(s));
  return s;
}

}  // namespace

Result<CipherSpec> CipherSpec::parse(std::string_view spec) {
  if (spec.empty()) return make_error(Errc::kInvalid, "cipher spec: empty string");
  if (spec.size() > 128)
    return make_error_fmt(Errc::kInvalid, "cipher spec", kNoObject, "%zu characters is too long",
                          spec.size());
  for (char c : spec)
    if (c <= ' ' || c > '~')
      return spec_error(Errc::kInvalid, "cipher spec: contains a space or control character", spec,
                        "");
  constexpr std::string_view kCapi = "capi:";
  if (spec.substr(0, kCapi.size()) == kCapi) return parse_capi(spec, spec.substr(kCapi.size()));

  // Legacy: cipher[:keycount]-chainmode-ivmode[:ivopts] (dm-crypt crypt_ctr_cipher_old).
  CipherSpec s;
  std::string_view rest = spec;
  auto take = [&rest](char sep) {
    const auto pos = rest.find(sep);
    std::string_view head = rest.substr(0, pos);
    rest = pos == std::string_view::npos ? std::string_view{} : rest.substr(pos + 1);
    return std::pair{head, pos != std::string_view::npos};
  };
  auto [cipher_part, has_chain] = take('-');
  if (auto colon = cipher_part.find(':'); colon != std::string_view::npos) {
    CRYPTMAP_TRY(kc, parse_keycount(cipher_part.substr(colon + 1)));
    s.keycount = kc;
    cipher_part = cipher_part.substr(0, colon);
  }
  s.cipher = std::string(cipher_part);
  std::string_view chain;
  std::string_view iv;
  bool has_iv = false;
  if (has_chain) {
    auto [c, more] = take('-');
    chain = c;
    has_iv = more;
    if (more) {
      iv = rest;  // everything after the second '-': ivmode[:ivopts] (the hash may contain '-')
      if (auto colon = iv.find(':'); colon != std::string_view::npos) {
        s.iv_opts = std::string(iv.substr(colon + 1));
        iv = iv.substr(0, colon);
      }
    }
  }
  if (!has_chain || (chain == "plain" && !has_iv)) {  // "aes" and "aes-plain" mean cbc-plain
    s.chain_mode = "cbc";
    s.iv_mode = "plain";
  } else {
    s.chain_mode = std::string(chain);
    s.iv_mode = std::string(iv);
    if (has_iv && iv.empty())
      return spec_error(Errc::kInvalid, "cipher spec: IV mode is empty", spec, "");
  }
  CRYPTMAP_TRY_VOID(validate(s));
  return s;
}

std::string CipherSpec::to_string() const {
  // Appended piece by piece: `":" + std::to_string(n)` makes GCC 12 -O3 report a false
  // -Wrestrict inside std::string (a temporary prepended to itself).
  std::string out = cipher;
  if (keycount != 1) {
    out += ':';
    out += std::to_string(keycount);
  }
  out += '-';
  out += luks_cipher_mode();
  return out;
}

std::string CipherSpec::luks_cipher_mode() const {
  std::string out = chain_mode;
  if (!iv_mode.empty()) {
    out += "-";
    out += iv_mode;
    if (!iv_opts.empty()) {
      out += ":";
      out += iv_opts;
    }
  }
  return out;
}

}  // namespace cryptmap::crypto
