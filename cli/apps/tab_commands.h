// `cryptmap tab-open [NAME...] [--tab FILE] [--mount-dir DIR]` and `cryptmap tab-close [NAME...]`:
// open/close the volumes listed in a cryptmaptab (crypttab syntax, see cryptmaptab.h; default
// /etc/cryptmaptab) by running `cryptmap open`/`close` for each. Registered by
// add_vault_commands() (cli/apps/vault_commands.cpp), the CLI's entry point for the application
// verbs. `cryptmap open --all` (cli/daemon_commands.cpp) runs the same code as `tab-open`.
#pragma once

#include <string>
#include <vector>

#include "cli/commands.h"

namespace cryptmap::cli::apps {

struct TabRun {
  std::string tab = "/etc/cryptmaptab";
  std::string mount_dir;               // empty: default_mount_dir()
  std::vector<std::string> names;      // empty: every entry (opening: without noauto)
  std::vector<std::string> open_args;  // appended to every `cryptmap open` (logging, ...)
};

// Opens the selected entries, skipping open ones; continues past failures, names every entry
// that failed (except nofail ones) and returns the first failure's exit code.
int open_from_tab(const TabRun& run);
// Closes the selected entries that are open; same error handling.
int close_from_tab(const TabRun& run);

void add_tab_commands(CLI::App& app, CommandContext& ctx);

}  // namespace cryptmap::cli::apps
