// Documents written from the command line's own definition, so they list exactly the verbs and
// flags the parser accepts and cannot drift from it: the manual page cryptmap(8) (roff) and a
// bash completion script. The build runs the hidden global flags `cryptmap --help-man` and
// `cryptmap --help-bash-completion` (cli/CMakeLists.txt) and installs what they print.
//
// Both walk every visible verb (nested ones such as `vault create` too) and its options; verbs
// and options in the empty group (CLI11's way of hiding them: `daemon`, `vault watch`, debug
// flags) are left out of both.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace cryptmap::cli {

// cryptmap(8) in man(7) roff: NAME, SYNOPSIS, DESCRIPTION, COMMANDS (every verb with its
// arguments and options), OPTIONS (the global flags), EXIT STATUS, FILES, EXAMPLES, SEE ALSO.
// `version` goes into the title line.
std::string man_page(const CLI::App& app, const std::string& version);

// A bash completion script (`complete -F _cryptmap cryptmap`): verbs, then each verb's flags and
// the global flags; file names for positionals and for flags that take a value.
std::string bash_completion(const CLI::App& app);

// Registers --help-man and --help-bash-completion on `app` (hidden from --help): each prints its
// document on stdout and ends parsing with success, before any verb is required.
void add_manual_flags(CLI::App& app, const std::string& version);

}  // namespace cryptmap::cli
