// The process exit codes of every cryptmap command: cryptsetup's (man cryptsetup, "RETURN
// CODES"), so scripts written for cryptsetup read ours the same way. The one table that turns
// an Error into an exit code: the CLI uses it for what it does itself, the daemon for the
// replies it sends the CLI (fs/control.h Reply::exit_code). Documented in README.md.
#pragma once

#include "base/error.h"

namespace cryptmap {

enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 1,       // wrong parameters, malformed or unsupported input, anything else
  kExitPermission = 2,  // no permission: no keyslot matched the passphrase or key file
  kExitNoMemory = 3,    // out of memory, including locked memory (mlock refused: RLIMIT_MEMLOCK)
  kExitBadDevice = 4,   // wrong device specified: missing, unreadable, no such keyslot/name
  kExitBusy = 5,        // device already exists or is busy
};

// Errc (+ errno where it decides) -> exit code:
//   kBadKey -> 2; kBusy -> 5; kNotFound -> 4;
//   kIo with ENOENT/EACCES/ENOTDIR/ENXIO/EPERM (the device cannot be reached) -> 4, else 1;
//   kNoSpace with ENOMEM/EAGAIN (allocation or mlock refused) -> 3, else 1; the rest -> 1.
int exit_code_for(const Error& e) noexcept;

}  // namespace cryptmap
