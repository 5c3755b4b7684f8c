// What the LUKS verbs (luks_commands.cpp, reencrypt_commands.cpp) share: printing an error the
// cryptsetup way with its exit code, cryptsetup's metadata lock on an image, and the PBKDF flags
// of a new keyslot.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"
#include "volume/format/luks_admin.h"
#include "volume/metadata_lock.h"

namespace CLI {
class App;
}

namespace cryptmap::cli {

// The flags that choose a new keyslot's PBKDF (luksFormat, luksAddKey, luksChangeKey,
// luksConvertKey, reencrypt): --hash, --pbkdf, --iter-time, --pbkdf-force-iterations,
// --pbkdf-memory, --pbkdf-parallel. A verb's argument struct derives from it.
struct PbkdfArgs {
  std::string hash = "sha256";
  std::string pbkdf;
  std::uint32_t iter_time_ms = 0;
  std::uint32_t pbkdf_force_iterations = 0;
  std::uint32_t pbkdf_memory = 0;
  std::uint32_t pbkdf_parallel = 0;
};
// Registers the flags on `c`, with the verb's own help for --hash and --pbkdf.
void add_pbkdf_options(CLI::App* c, PbkdfArgs& a, const char* hash_help, const char* pbkdf_help);
// The options the flags ask for (unset numbers keep PbkdfOptions' defaults: benchmarked).
volume::PbkdfOptions pbkdf_of(const PbkdfArgs& a);

// A detached header file is created if missing and grown to `bytes` (cryptsetup fallocates it);
// luksFormat --header and reencrypt --encrypt --header.
Result<void> prepare_header_file(const std::string& path, std::uint64_t bytes);

// Prints `e` on stderr (cryptsetup's sentence when the error carries one) and returns the exit
// code for it (base/exit_code.h).
int report(const Error& e);

// cryptsetup's metadata lock on an image (volume/metadata_lock.h).
using volume::MetadataLock;

}  // namespace cryptmap::cli
