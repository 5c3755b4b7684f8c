// TCRYPT (TrueCrypt/VeraCrypt) from the command line: the passphrase and keyfiles read the way
// cryptsetup's tcrypt_load does, and the trial (volume/format/tcrypt.h). Used by `open --type
// tcrypt` (cli/daemon_commands.cpp) and `tcryptDump` (cli/tcrypt_commands.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "volume/format/tcrypt.h"

namespace cryptmap::cli {

struct TcryptArgs {
  volume::TcryptOptions options;
  std::vector<std::string> key_files;  // --key-file, repeated: the keyfile pool
  std::uint32_t tries = 3;             // --tries at a terminal
  std::string prompt;                  // empty: "Enter passphrase for IMAGE: "
  bool query_pim = false;  // --veracrypt-query-pim: ask for the PIM after the passphrase
};

// The TCRYPT flags shared by open and tcryptDump (--veracrypt, --disable-veracrypt,
// --veracrypt-pim, --veracrypt-query-pim, --tcrypt-hidden, --tcrypt-backup, --tcrypt-system).
void add_tcrypt_options(CLI::App& c, TcryptArgs& t, bool& disable_veracrypt, std::uint32_t& pim);

// Checks the flag combinations cryptsetup refuses (--veracrypt-pim with --veracrypt-query-pim;
// either with --disable-veracrypt), sets t.options.veracrypt and .pim. False (message said,
// ctx.exit_code = 1) when refused.
bool finish_tcrypt_options(TcryptArgs& t, bool disable_veracrypt, std::uint32_t pim,
                           CommandContext& ctx);

// Asks for the passphrase ("Enter passphrase for IMAGE: ", or one line of stdin), with
// --veracrypt-query-pim then the PIM ("Enter VeraCrypt PIM: ", or the next line), reads the
// keyfiles and runs the trial. On failure says why (what, on which image, what to do), sets
// ctx.exit_code (2 for a wrong passphrase, as cryptsetup) and returns nullopt.
std::optional<volume::TcryptMatch> unlock_tcrypt(const std::string& image, const TcryptArgs& a,
                                                 CommandContext& ctx);

}  // namespace cryptmap::cli
