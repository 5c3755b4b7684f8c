// /etc/cryptmaptab: crypttab(5) syntax for volumes cryptmap opens at boot or on demand.
// One volume per line: `name image [keyfile [options]]`; '#' starts a comment; keyfile `-` or
// `none` (or missing) means "ask for the passphrase". Options (comma-separated): luks, plain,
// readonly|read-only, header=PATH, keyfile-offset=N, keyfile-size=N, key-slot=N, tries=N,
// noauto (skipped by `tab-open` without names), nofail (a failure does not fail the run),
// plain mode: cipher=, size= (key bits), hash=, offset=, skip=, sector-size=; discard (noted in
// TabEntry::discard: the caller passes --allow-discards when `open` has it); the performance
// flags no-read-workqueue, no-write-workqueue, same-cpu-crypt, submit-from-crypt-cpus; bitlk;
// TrueCrypt as crypttab(5) has it: tcrypt, tcrypt-hidden, tcrypt-system, tcrypt-veracrypt,
// tcrypt-keyfile=PATH (repeatable), veracrypt-pim=N (with tcrypt-veracrypt), where the KEYFILE
// field is the passphrase file (TabEntry::passphrase_file, fed on stdin) and only TrueCrypt
// headers are tried without tcrypt-veracrypt. x-systemd.* are accepted and ignored. Anything
// else is an error naming the line.
//
// Pure parsing: no I/O besides reading the text given. Thread-safety: free functions.
#pragma once

#include <string>
#include <vector>

namespace cryptmap::cli::apps {

struct TabEntry {
  int line = 0;
  std::string name;
  std::string image;
  std::string key_file;  // empty: ask
  // tcrypt: the file whose first line is the passphrase (the caller makes it `open`'s stdin);
  // empty: ask.
  std::string passphrase_file;
  bool noauto = false;
  bool nofail = false;
  bool discard = false;  // `discard`: allow discards (TRIM) to reach the image
  // `cryptmap open` arguments after IMAGE NAME (type, key file, flags), in order.
  std::vector<std::string> open_args;
};

// Parses the text of a cryptmaptab. On error returns false and sets `error` to
// "line N: what is wrong".
bool parse_cryptmaptab(const std::string& text, std::vector<TabEntry>& out, std::string& error);

}  // namespace cryptmap::cli::apps
