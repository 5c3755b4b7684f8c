// Fuzz entry points for the header parsers. Each takes arbitrary bytes and must return without
// crashing, hanging or allocating hugely, whatever the input. Used by the libFuzzer binaries
// (-DCRYPTMAP_FUZZ=ON with clang) and by fuzz_replay_test (always built).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cryptmap::fuzz {

// LUKS1 phdr parse + load as an image (header copied from the input, keyslot areas included).
int luks1_header(const std::uint8_t* data, std::size_t size);
// A whole LUKS2 header image: both binary headers, checksums, JSON, load + luksDump text/JSON.
int luks2_image(const std::uint8_t* data, std::size_t size);
// A LUKS2 JSON area alone (text + NUL padding) through the cryptsetup validation.
int luks2_json(const std::uint8_t* data, std::size_t size);
// dm-crypt cipher specifications and plain-mode hash specs.
int cipher_spec(const std::uint8_t* data, std::size_t size);

}  // namespace cryptmap::fuzz
