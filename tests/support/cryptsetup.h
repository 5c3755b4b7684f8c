// Reading what the real cryptsetup prints (interop tests). Find it first with
// find_tool("cryptsetup", "cryptsetup-bin") (tools.h).
#pragma once

#include <string>
#include <string_view>

namespace cryptmap::test {

// The volume key, in lower-case hex, from the "MK dump:" block of
// `cryptsetup luksDump --dump-volume-key` output; "" when the block is absent.
std::string volume_key_hex_from_dump(std::string_view luks_dump_output);

// Runs `cryptsetup luksDump --dump-volume-key --batch-mode --key-file <keyfile> <extra> <image>`
// and returns volume_key_hex_from_dump of its stdout; "" when cryptsetup fails.
std::string dumped_volume_key(const std::string& image, const std::string& keyfile,
                              const std::string& extra = "");

}  // namespace cryptmap::test
