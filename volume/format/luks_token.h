// LUKS2 tokens: the JSON objects in the header's "tokens" section that tell a token handler
// (systemd-tpm2, systemd-fido2, luks2-keyring, ...) how to unlock a keyslot without a passphrase.
// cryptmap has no token handlers: it lists, imports, exports and removes tokens as cryptsetup
// 2.6.1's `token` verb does (docs/formats.md §2.7), and keeps them byte-intact otherwise.
//
// Every function works on the header store (the image or the --header file), borrowed for the
// call. Thread-safety: reentrant; one writer per image at a time (the CLI takes cryptsetup's
// metadata lock).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cryptmap::volume {

class BackingStore;

struct TokenInfo {
  int id = -1;
  std::string type;
  std::vector<int> keyslots;
};

// The tokens of a LUKS2 header in id order; empty for LUKS1 (which has none).
Result<std::vector<TokenInfo>> luks_tokens(const BackingStore& header);

struct TokenImport {
  std::optional<int> token_id;  // --token-id; none: the first free id
  bool replace = false;         // --token-replace: overwrite a token in use
  std::optional<int> keyslot;   // --key-slot: also assign the token to this keyslot
  // token add without --key-slot (crypt_token_assign_keyslot with CRYPT_ANY_SLOT): also assign
  // the token to every active keyslot, in the header's order. Ignored when `keyslot` is set.
  bool all_keyslots = false;
};
// token import: `json` (one JSON object; surrounding whitespace ignored) validated with
// cryptsetup's rules (an object; "type" a non-empty string, "luks2-*" types only as the built-in
// luks2-keyring with a string "key_description"; "keyslots" an array of ids of existing
// keyslots; the whole header still valid and within its JSON area), stored under its id, the
// header rewritten once. Returns the token id. Errors are kInvalid with cryptsetup's sentence
// ("Token 3 in use.", "Keyslot 4 is not active.", "Failed to import token from file." with the
// reason); nothing is written on error.
Result<int> luks_token_import(BackingStore& header, std::string_view json, const TokenImport& opts);
// token add (crypt_token_luks2_keyring_set): imports the built-in luks2-keyring token
// {"type":"luks2-keyring","keyslots":[],"key_description":D} with `opts`, as cryptsetup writes it.
// A description with a quote, a backslash or a control character is refused as cryptsetup refuses
// it ("Failed to add luks2-keyring token N.").
Result<int> luks_token_add_keyring(BackingStore& header, std::string_view key_description,
                                   const TokenImport& opts);
// token export: the token's JSON as cryptsetup prints it (json-c compact, no newline).
Result<std::string> luks_token_export(const BackingStore& header, int token_id);
// token remove.
Result<void> luks_token_remove(BackingStore& header, int token_id);

}  // namespace cryptmap::volume
