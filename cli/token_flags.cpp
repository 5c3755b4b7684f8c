#include "cli/token_flags.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "base/exit_code.h"
#include "volume/format/luks_token.h"

namespace cryptmap::cli {

void add_token_flags(CLI::App& verb, TokenFlags& f) {
  verb.add_option("--token-id", f.token_id,
                  "Token number (cryptmap has no token handlers: tokens never unlock here)")
      ->check(CLI::Range(0, 31));
  verb.add_flag("--token-only", f.token_only,
                "Unlock only with a token (always refused: cryptmap has no token handlers)");
  verb.add_option("--token-type", f.token_type,
                  "Only tokens of this type (cryptmap has no token handlers)");
}

std::optional<int> refuse_tokens(const TokenFlags& f, const volume::BackingStore& header,
                                 const std::string& device) {
  if (!f.any()) return std::nullopt;
  std::string found;
  if (auto tokens = volume::luks_tokens(header)) {
    for (const volume::TokenInfo& t : *tokens) {
      if (f.token_id >= 0 && t.id != f.token_id) continue;
      if (!f.token_type.empty() && t.type != f.token_type) continue;
      found += (found.empty() ? "" : ", ") + std::to_string(t.id) + " (" + t.type + ")";
    }
  }
  const std::string why =
      found.empty() ? "The header of " + device + " has no token matching the --token-* options."
                    : "Token " + found + " needs a token handler (cryptsetup's built-in " +
                          "luks2-keyring or a plugin); cryptmap has none.";
  if (f.token_only) {
    std::cerr << "No usable token is available.\n"
              << why << " Unlock with a passphrase or key file (without --token-only), "
              << "or use cryptsetup for token unlocking.\n";
    return kExitUsage;
  }
  std::cerr << why << " Asking for a passphrase instead.\n";
  return std::nullopt;
}

}  // namespace cryptmap::cli
