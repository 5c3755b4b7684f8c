// --token-id, --token-only and --token-type on verbs that unlock a LUKS2 keyslot (open,
// open --test-passphrase, luksDump --dump-volume-key, luksAddKey, luksResume, refresh). cryptsetup
// hands a token to its handler (built-in luks2-keyring, or a plugin such as systemd-tpm2); cryptmap
// has no token handlers, so a token never unlocks anything here: with --token-only the verb is
// refused (cryptsetup's "No usable token is available." and why), otherwise cryptmap says so and
// asks for a passphrase, as cryptsetup falls back to one when no token unlocks.
#pragma once

#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace cryptmap::volume {
class BackingStore;
}

namespace cryptmap::cli {

struct TokenFlags {
  int token_id = -1;  // --token-id; -1 = any
  bool token_only = false;
  std::string token_type;
  bool any() const { return token_id >= 0 || token_only || !token_type.empty(); }
};

// Registers the three flags on `verb`.
void add_token_flags(CLI::App& verb, TokenFlags& flags);

// With any token flag given: names the tokens of `header` that match and why cryptmap cannot use
// them, on stderr. Returns nullopt when the verb goes on with a passphrase, else the exit code
// (--token-only: 1, as cryptsetup's -ENOENT).
std::optional<int> refuse_tokens(const TokenFlags& flags, const volume::BackingStore& header,
                                 const std::string& device);

}  // namespace cryptmap::cli
