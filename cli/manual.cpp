// cryptmap(8) and the bash completion, both walked from the CLI11 definition (cli/manual.h).
#include "cli/manual.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "base/exit_code.h"

namespace cryptmap::cli {
namespace {

// Verbs and options in the empty group are hidden (CLI11's convention, also for --help).
bool visible(const CLI::App* a) { return !a->get_group().empty(); }

std::vector<const CLI::App*> visible_verbs(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* a) { return visible(a); });
}

bool is_positional(const CLI::Option* o) {
  return o->get_lnames().empty() && o->get_snames().empty();
}

// The options --help shows for `app`, without the help flag itself; positionals or flags.
std::vector<const CLI::Option*> visible_options(const CLI::App& app, bool positionals) {
  const CLI::Option* help = app.get_help_ptr();
  return app.get_options([&](const CLI::Option* o) {
    return o != help && !o->get_group().empty() && is_positional(o) == positionals;
  });
}

// Every spelling of a flag, long ones first: "--key-file", "-d".
std::vector<std::string> flag_names(const CLI::Option* o) {
  std::vector<std::string> out;
  for (const auto& l : o->get_lnames()) out.push_back("--" + l);
  for (const auto& s : o->get_snames()) out.push_back("-" + s);
  return out;
}

bool takes_value(const CLI::Option* o) { return o->get_items_expected_max() > 0; }

// A positional's name as the synopsis shows it: "new_key_file" -> "NEW_KEY_FILE".
std::string metavar(const CLI::Option* o) {
  std::string out = o->get_name();
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (o->get_items_expected_max() > 1) out += "...";
  return out;
}

// Text as roff reads it literally: backslashes escaped, a leading control character (. or ')
// neutralised on every line.
std::string roff(std::string_view s) {
  std::string out;
  bool line_start = true;
  for (char c : s) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    line_start = c == '\n';
    if (c == '\\') {
      out += "\\e";
    } else {
      out += c;
    }
  }
  return out;
}

// A command-line word in roff: also its hyphens as minus signs, so it can be copied and pasted.
std::string roff_word(std::string_view s) {
  std::string out;
  for (char c : roff(s)) {
    if (c == '-') out += '\\';
    out += c;
  }
  return out;
}

std::string verb_path(const CLI::App& verb) {
  std::string path = verb.get_name();
  for (const CLI::App* p = verb.get_parent(); p != nullptr && p->get_parent() != nullptr;
       p = p->get_parent()) {
    path.insert(0, " ").insert(0, p->get_name());
  }
  return path;
}

// ".TP" entries for options: names in bold, the value's type in italics, the description
// (with the default, if the definition captured one).
void man_options(std::string& out, const std::vector<const CLI::Option*>& opts) {
  for (const CLI::Option* o : opts) {
    out += ".TP\n";
    std::string head;
    for (const auto& n : is_positional(o) ? std::vector<std::string>{metavar(o)} : flag_names(o)) {
      if (!head.empty()) head += ", ";
      head += (is_positional(o) ? "\\fI" : "\\fB") + roff_word(n) + "\\fR";
    }
    if (!is_positional(o) && takes_value(o) && !o->get_type_name().empty()) {
      head += " \\fI" + roff(o->get_type_name()) + "\\fR";
    }
    out += head + "\n";
    std::string desc = o->get_description();
    if (o->get_required()) desc += desc.empty() ? "Required." : " (required)";
    if (!o->get_default_str().empty()) desc += " (default: " + o->get_default_str() + ")";
    out += roff(desc.empty() ? "(no description)" : desc) + "\n";
  }
}

void man_verb(std::string& out, const CLI::App& verb) {
  const std::string path = verb_path(verb);
  out += ".SS \"" + roff(path) + "\"\n";
  std::string synopsis = "\\fBcryptmap " + roff_word(path) + "\\fR";
  const auto flags = visible_options(verb, false);
  const auto positionals = visible_options(verb, true);
  const auto children = visible_verbs(verb);
  if (!children.empty()) synopsis += " \\fICOMMAND\\fR";
  if (!flags.empty()) synopsis += " [\\fIOPTIONS\\fR]";
  for (const CLI::Option* p : positionals) {
    const std::string m = "\\fI" + roff_word(metavar(p)) + "\\fR";
    synopsis += p->get_required() ? " " + m : " [" + m + "]";
  }
  out += synopsis + "\n.br\n";
  out += roff(verb.get_description()) + "\n";
  if (!verb.get_aliases().empty()) {
    std::string aliases;
    for (const auto& a : verb.get_aliases()) aliases += (aliases.empty() ? "" : ", ") + a;
    out += ".br\nAlso spelled: \\fB" + roff_word(aliases) + "\\fR.\n";
  }
  if (!verb.get_footer().empty()) out += ".PP\n" + roff(verb.get_footer()) + "\n";
  std::vector<const CLI::Option*> all = positionals;
  all.insert(all.end(), flags.begin(), flags.end());
  if (!all.empty()) {
    out += ".RS\n";
    man_options(out, all);
    out += ".RE\n";
  }
  for (const CLI::App* child : children) man_verb(out, *child);
}

// The tool's one-line summary for NAME: the app description after "cryptmap - ".
std::string summary(const CLI::App& app) {
  std::string d = app.get_description();
  const std::string prefix = "cryptmap - ";
  if (d.rfind(prefix, 0) == 0) d.erase(0, prefix.size());
  return d;
}

constexpr std::string_view kFixedSections = R"(.SH FILES
.TP
.I /etc/cryptmaptab
The volumes \fBopen \-\-all\fR, \fBtab\-open\fR and \fBtab\-close\fR act on, in crypttab(5)
syntax: NAME IMAGE KEYFILE OPTIONS.
An annotated example is installed in the documentation directory
(\fIexamples/cryptmaptab\fR).
.TP
.I /run/cryptmap/NAME
The mapped (plaintext) file of volume NAME when root opened it; a plain user's volumes are in
\fI$XDG_RUNTIME_DIR/cryptmap\fR.
Each mount directory is served by one daemon; \fB\-\-mount\-dir\fR chooses another.
.TP
.I cryptmap.service\fR, \fIcryptmap@.service
systemd units: the whole table at boot (\fBopen \-\-all\fR), or one entry per instance
(\fBsystemctl enable \-\-now cryptmap@NAME\fR).
.TP
.I /var/lib/cryptmap\-docker
The volumes of \fBdocker\-plugin\fR (its \fB\-\-root\fR).
.SH EXAMPLES
Make a LUKS2 image, open it, put ext4 on the mapped file through a loop device, close it:
.PP
.nf
.RS
truncate \-s 256M disk.img
cryptmap luksFormat disk.img
cryptmap open disk.img data
dev=$(losetup \-f \-\-show /run/cryptmap/data)
mkfs.ext4 \-q $dev; mount $dev /mnt
\&...
umount /mnt; losetup \-d $dev
cryptmap close data
.RE
.fi
.PP
A plain user's encrypted folder (no root, no loop device):
.PP
.nf
.RS
cryptmap vault create ~/secret.img \-\-size 2G
cryptmap vault open ~/secret.img ~/Secret \-\-idle 15m
cryptmap vault close ~/Secret
.RE
.fi
.SH SEE ALSO
.BR cryptsetup (8),
.BR crypttab (5),
.BR losetup (8),
.BR mount.fuse3 (8),
.BR systemctl (1)
)";

}  // namespace

std::string man_page(const CLI::App& app, const std::string& version) {
  std::string out;
  out += ".\\\" cryptmap(8), generated by `cryptmap --help-man` from the command line's own\n";
  out += ".\\\" definition (cli/manual.cpp): do not edit.\n";
  out += ".TH CRYPTMAP 8 \"\" \"cryptmap " + roff(version) + "\" \"System Administration\"\n";
  out += ".SH NAME\ncryptmap \\- " + roff(summary(app)) + "\n";
  out += ".SH SYNOPSIS\n\\fBcryptmap\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]\n";
  out += ".SH DESCRIPTION\n";
  out +=
      "cryptmap unlocks encrypted volume images (LUKS1, LUKS2, plain dm\\-crypt, BitLocker, "
      "FileVault 2, TrueCrypt/VeraCrypt) in userspace and serves each opened volume as one "
      "plain file in a FUSE mount directory, the way dm\\-crypt serves /dev/mapper/NAME.\n"
      "The ciphertext is dm\\-crypt's, sector for sector: the same image opens with "
      "cryptsetup(8).\n"
      "Verbs and flags follow cryptsetup where it has them; the passphrase is read from the "
      "terminal without echo, from standard input up to the first newline when it is not a "
      "terminal, or from every byte of \\fB\\-\\-key\\-file\\fR.\n"
      "The global options may also follow the command.\n";
  out += ".SH COMMANDS\n";
  for (const CLI::App* verb : visible_verbs(app)) man_verb(out, *verb);
  out += ".SH OPTIONS\n";
  man_options(out, visible_options(app, false));
  out += ".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nShow the options (also after a command).\n";
  out += ".SH EXIT STATUS\ncryptsetup's return codes, so scripts read both the same way:\n";
  const std::pair<int, std::string_view> codes[] = {
      {kExitOk, "success"},
      {kExitUsage, "wrong parameters, malformed or unsupported input, any other failure"},
      {kExitPermission, "no permission: no keyslot matched the passphrase or key file"},
      {kExitNoMemory, "out of memory, including locked memory (RLIMIT_MEMLOCK)"},
      {kExitBadDevice, "wrong device specified: missing or unreadable image, unknown name"},
      {kExitBusy, "device already exists or is busy"},
  };
  for (const auto& [code, meaning] : codes) {
    out += ".TP\n.B " + std::to_string(code) + "\n" + std::string(meaning) + "\n";
  }
  out += kFixedSections;
  return out;
}

std::string bash_completion(const CLI::App& app) {
  // One entry per verb path ("cryptmap", "cryptmap vault", ...): its sub-verbs, its flags, and
  // the flags among them that take a value (their next word is not a verb).
  std::string verbs;
  std::string flags;
  std::string valued;
  auto walk = [&](auto& self, const CLI::App& a, const std::string& key) -> void {
    std::string v;
    for (const CLI::App* child : visible_verbs(a)) {
      v += (v.empty() ? "" : " ") + child->get_name();
      for (const auto& alias : child->get_aliases()) v += " " + alias;
    }
    std::string f;
    std::string val = " ";
    for (const CLI::Option* o : visible_options(a, false)) {
      for (const auto& n : flag_names(o)) {
        f += (f.empty() ? "" : " ") + n;
        if (takes_value(o)) val += n + " ";
      }
    }
    if (a.get_help_ptr() != nullptr) f += (f.empty() ? "" : " ") + std::string("--help");
    verbs += "    [\"" + key + "\"]=\"" + v + "\"\n";
    flags += "    [\"" + key + "\"]=\"" + f + "\"\n";
    valued += "    [\"" + key + "\"]=\"" + val + "\"\n";
    const std::string prefix = key + " ";
    for (const CLI::App* child : visible_verbs(a)) {
      self(self, *child, prefix + child->get_name());
      for (const auto& alias : child->get_aliases()) self(self, *child, prefix + alias);
    }
  };
  walk(walk, app, "cryptmap");
  return "# bash completion for cryptmap(8), generated by `cryptmap --help-bash-completion` from\n"
         "# the command line's own definition (cli/manual.cpp): do not edit.\n"
         "_cryptmap() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]}\n"
         "  local -A verbs=(\n" +
         verbs +
         "  )\n"
         "  local -A flags=(\n" +
         flags +
         "  )\n"
         "  local -A valued=(\n" +
         valued +
         "  )\n"
         "  local path=cryptmap w i value=0\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    w=${COMP_WORDS[i]}\n"
         "    if ((value)); then value=0; continue; fi\n"
         "    if [[ $w == -* ]]; then\n"
         "      if [[ $w != *=* && \"${valued[$path]}${valued[cryptmap]}\" == *\" $w \"* ]]; then\n"
         "        value=1\n"
         "      fi\n"
         "      continue\n"
         "    fi\n"
         "    if [[ \" ${verbs[$path]} \" == *\" $w \"* ]]; then path=\"$path $w\"; fi\n"
         "  done\n"
         "  local words\n"
         "  if ((value)); then\n"
         "    mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n"
         "    return\n"
         "  fi\n"
         "  if [[ $cur == -* ]]; then\n"
         "    words=${flags[$path]}\n"
         "    [[ $path != cryptmap ]] && words+=\" ${flags[cryptmap]}\"\n"
         "  elif [[ -n ${verbs[$path]} ]]; then\n"
         "    words=${verbs[$path]}\n"
         "  else\n"
         "    mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n"
         "    return\n"
         "  fi\n"
         "  mapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")\n"
         "}\n"
         "complete -o filenames -o bashdefault -F _cryptmap cryptmap\n";
}

void add_manual_flags(CLI::App& app, const std::string& version) {
  app.add_flag_callback(
         "--help-man",
         [&app, version] {
           std::cout << man_page(app, version);
           throw CLI::Success();
         },
         "Print the manual page cryptmap(8) (roff)")
      ->group("");
  app.add_flag_callback(
         "--help-bash-completion",
         [&app] {
           std::cout << bash_completion(app);
           throw CLI::Success();
         },
         "Print the bash completion script")
      ->group("");
}

}  // namespace cryptmap::cli
