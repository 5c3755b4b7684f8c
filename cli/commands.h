// The cryptmap command line: cryptsetup's verbs and flags where they make sense.
//
// cli/main.cpp builds one CLI::App; each group of verbs registers itself through one of the
// add_*_commands() functions below (each in its own .cpp in this folder). A verb's callback
// stores its exit code in `ctx.exit_code`. Exit codes follow cryptsetup (man cryptsetup,
// "RETURN CODES"): 0 ok, 1 wrong parameters, 2 no permission (bad passphrase), 3 out of memory,
// 4 wrong device specified, 5 device already exists or is busy.
//
// Messages to the user say what failed, on which object, and what to do, on stderr, prefixed
// with nothing (cryptsetup style: "No key available with this passphrase.").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/exit_code.h"

namespace CLI {
class App;
}

namespace cryptmap::cli {

struct CommandContext {
  int exit_code = kExitOk;
  bool batch_mode = false;  // -q/--batch-mode: no confirmations
  int verbosity = 0;        // -v count
  std::string log_level;    // --log-level
  std::string log_target;   // --log-target: syslog|journal|stderr|file (empty: the default)
};

// The global logging flags as command-line words, for verbs that run other cryptmap verbs
// (open --all, vault) so the daemon those start logs the way the user asked.
std::vector<std::string> logging_args(const CommandContext& ctx);

// open, close, status, luksSuspend, luksResume (the daemon; cli/daemon_commands.cpp).
void add_daemon_commands(CLI::App& app, CommandContext& ctx);
// How the daemon serving `mount_dir` ("" = the default mount directory) has `image` open, or
// nullopt when no daemon runs or it does not serve that image.
struct ServedImage {
  std::string file;           // MOUNT_DIR/NAME
  std::string name;           // NAME
  bool reencrypting = false;  // an online reencryption runs on it
  std::int64_t daemon_pid = 0;
  std::string header;  // the detached header it was opened with (empty: in the image)
};
std::optional<ServedImage> daemon_volume_of_image(const std::string& image,
                                                  const std::string& mount_dir);
// `path` resolved (realpath), as the daemon records images and headers; as given when it does
// not resolve.
std::string absolute(const std::string& path);
// reencrypt: offline LUKS2 reencryption (cli/reencrypt_commands.cpp).
void add_reencrypt_commands(CLI::App& app, CommandContext& ctx);
// luksFormat, luksDump, isLuks, luksUUID, luksAddKey, luksRemoveKey, luksKillSlot,
// luksChangeKey, luksConvertKey, config, erase, convert, token, luksHeaderBackup,
// luksHeaderRestore, repair (cli/luks_commands.cpp).
void add_luks_commands(CLI::App& app, CommandContext& ctx);
// vault create|open|close: a user's encrypted folder (cli/apps/vault_commands.cpp).
void add_vault_commands(CLI::App& app, CommandContext& ctx);
// docker-plugin: Docker volume plugin serving encrypted volumes (cli/apps/docker_commands.cpp).
void add_docker_commands(CLI::App& app, CommandContext& ctx);
// bitlkDump, fvault2Dump: BitLocker / FileVault 2 metadata and volume key (cli/bitlk_commands.cpp).
void add_bitlk_commands(CLI::App& app, CommandContext& ctx);
// tcryptDump (cli/tcrypt_commands.cpp; `open --type tcrypt` is in daemon_commands.cpp).
void add_tcrypt_commands(CLI::App& app, CommandContext& ctx);
// benchmark: PBKDF and cipher speeds on cryptmap's engines (cli/benchmark_commands.cpp).
void add_benchmark_commands(CLI::App& app, CommandContext& ctx);
// zone-create: emulated zoned drives (cli/zone_commands.cpp).
void add_zone_commands(CLI::App& app, CommandContext& ctx);

}  // namespace cryptmap::cli
