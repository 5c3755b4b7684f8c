// `cryptmap tab-open [NAME...] [--tab FILE] [--mount-dir DIR]` and `cryptmap tab-close [NAME...]`:
// open/close the volumes listed in a cryptmaptab (crypttab syntax, see cryptmaptab.h; default
// /etc/cryptmaptab) by running `cryptmap open`/`close` for each. Registered by
// add_vault_commands() (fs/cli/vault_commands.cpp), the CLI's entry point for the application verbs.
#pragma once

#include "fs/cli/commands.h"

namespace cryptmap::fs::apps {

void add_tab_commands(CLI::App& app, CommandContext& ctx);

}  // namespace cryptmap::fs::apps
