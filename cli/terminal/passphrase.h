// Reading passphrases and key files the way cryptsetup does (src/utils_password.c):
//  - interactive: prompt on the terminal without echo ("Enter passphrase for IMAGE: "), stop at
//    the first newline; with `verify`, ask twice and fail when they differ;
//  - stdin not a terminal (no --key-file): read up to the first newline;
//  - --key-file F: every byte of F (no newline processing), from --keyfile-offset,
//    at most --keyfile-size bytes; F = "-" reads all of stdin.
// Everything lands in SecretBytes; nothing is logged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/secret.h"

namespace cryptmap::cli {

// cryptsetup's yesDialog: "WARNING!" + question + "Are you sure? (Type 'yes' in capital
// letters): " on stderr; true without asking in batch mode or when stdin is not a terminal,
// else true only for the answer "YES".
bool yes_dialog(bool batch_mode, const std::string& question);

// The question every --dump-volume-key verb asks (luksDump, bitlkDump, fvault2Dump, tcryptDump),
// cryptsetup's wording.
inline constexpr const char* kVolumeKeyDumpWarning =
    "The header dump with volume key is sensitive information\nthat allows access to encrypted "
    "partition without a passphrase.\nThis dump should be stored encrypted in a safe place.";

struct KeySource {
  std::optional<std::string> key_file;  // --key-file ("-" = stdin)
  std::uint64_t keyfile_offset = 0;     // --keyfile-offset
  std::uint64_t keyfile_size = 0;       // --keyfile-size, 0 = whole file
  std::uint32_t tries = 3;              // --tries for interactive prompts
};

// The source cryptsetup's common flags name on any verb's parsed arguments: --key-file (empty:
// none), --keyfile-offset, --keyfile-size.
template <class Args>
KeySource key_source_of(const Args& a) {
  KeySource ks;
  if (!a.key_file.empty()) ks.key_file = a.key_file;
  ks.keyfile_offset = a.keyfile_offset;
  ks.keyfile_size = a.keyfile_size;
  return ks;
}

// `prompt` is the text shown on the terminal; `verify` asks twice (luksFormat, luksAddKey).
Result<SecretBytes> read_passphrase(const KeySource& src, const std::string& prompt, bool verify);
// True when the passphrase would be typed at a terminal (so a wrong one may be retried).
bool passphrase_is_interactive(const KeySource& src);

}  // namespace cryptmap::cli
