// PLACEHOLDER so that `cryptmap` links before the LUKS verbs exist. Owned by the formats
// engineer: their fs/cli/luks_commands.cpp replaces this file entirely (luksFormat, luksDump,
// isLuks, luksUUID, luksAddKey, ... per fs/cli/commands.h).
#include "fs/cli/commands.h"

namespace cryptmap::fs {

void add_luks_commands(CLI::App& /*app*/, CommandContext& /*ctx*/) {}

}  // namespace cryptmap::fs
