// cryptmap(8) and the bash completion written from a CLI definition (cli/manual.h): on a small
// app made here, so each expectation follows from the definition the test sees. The real
// program's documents are checked by tests/integration/package_install_tree.sh.
#include "cli/manual.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <string>

#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"

namespace cryptmap::cli {
namespace {

struct SmallApp {
  CLI::App app{"cryptmap - a test tool"};
  std::string s;
  bool b = false;
  int n = 3;
  SmallApp() {
    app.add_flag("-v,--verbose", b, "More output");
    app.add_option("--log-target", s, "Where logs go");
    auto* open = app.add_subcommand("open", "Unlock IMAGE as NAME");
    open->alias("unlock");
    open->add_option("image", s, "The image")->required();
    open->add_option("name", s, "The name");
    open->add_option("--key-file,-d", s, "Read the key from\nthis file\n.dangerous line");
    open->add_option("--tries", n, "Attempts")->capture_default_str();
    open->add_flag("--readonly", b, "Read-only, back\\slash");
    open->add_flag("--secret-debug", b, "hidden")->group("");
    auto* vault = app.add_subcommand("vault", "Folders");
    auto* create = vault->add_subcommand("create", "Make one");
    create->add_option("--size", s, "Size");
    vault->add_subcommand("watch", "Internal")->group("");
    app.add_subcommand("daemon", "Internal")->group("");
  }
};

TEST(ManPage, HasEverySectionAndEveryVisibleVerbAndOption) {
  SmallApp a;
  const std::string man = man_page(a.app, "9.8.7");
  for (const char* section :
       {".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS", ".SH OPTIONS",
        ".SH EXIT STATUS", ".SH FILES", ".SH EXAMPLES", ".SH SEE ALSO"}) {
    EXPECT_NE(man.find(std::string("\n") + section + "\n"), std::string::npos) << section;
  }
  EXPECT_NE(man.find(".TH CRYPTMAP 8 \"\" \"cryptmap 9.8.7\""), std::string::npos);
  EXPECT_NE(man.find("cryptmap \\- a test tool\n"), std::string::npos);
  EXPECT_NE(man.find(".SS \"open\"\n\\fBcryptmap open\\fR [\\fIOPTIONS\\fR] \\fIIMAGE\\fR "
                     "[\\fINAME\\fR]\n"),
            std::string::npos)
      << man;
  EXPECT_NE(man.find(".SS \"vault create\"\n"), std::string::npos);
  EXPECT_NE(man.find("\\fB\\-\\-key\\-file\\fR, \\fB\\-d\\fR \\fITEXT\\fR"), std::string::npos);
  EXPECT_NE(man.find("Attempts (default: 3)"), std::string::npos);
  EXPECT_NE(man.find("Also spelled: \\fBunlock\\fR."), std::string::npos);
  EXPECT_NE(man.find("\\fB\\-\\-verbose\\fR"), std::string::npos);  // a global option
  EXPECT_NE(man.find(".TP\n.B 2\n"), std::string::npos);            // exit status 2
  // Text is literal: a line starting with a dot is not a request, a backslash is not an escape.
  EXPECT_NE(man.find("\n\\&.dangerous line"), std::string::npos);
  EXPECT_NE(man.find("back\\eslash"), std::string::npos);
  // Hidden verbs and options are not documented.
  EXPECT_EQ(man.find("secret\\-debug"), std::string::npos);
  EXPECT_EQ(man.find(".SS \"daemon\""), std::string::npos);
  EXPECT_EQ(man.find(".SS \"vault watch\""), std::string::npos);
  EXPECT_NE(man.find(".SS \"vault create\""), std::string::npos);
}

TEST(ManPage, RendersWithoutWarnings) {
  const auto groff = test::find_tool("groff", "groff-base");
  if (!groff) GTEST_SKIP() << groff.missing;
  SmallApp a;
  test::TempDir dir("manual");
  dir.write("cryptmap.8", man_page(a.app, "1"));
  const auto r = test::run(groff.path + " -ww -z -man " + dir.file("cryptmap.8"));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err, "");
}

// Runs the completion function as bash would for the words of `line` (split at spaces; the
// last one, possibly empty, is the word being completed) and returns the candidates.
std::string complete(const std::string& script_path, const std::string& line) {
  std::string words;
  std::size_t count = 0;
  for (std::size_t pos = 0;; ++count) {
    const std::size_t space = line.find(' ', pos);
    words += "\"" + line.substr(pos, space - pos) + "\" ";
    if (space == std::string::npos) break;
    pos = space + 1;
  }
  const auto r =
      test::run("cd " + script_path.substr(0, script_path.rfind('/')) + " && bash -c 'source " +
                script_path + "; COMP_WORDS=(" + words + "); COMP_CWORD=" + std::to_string(count) +
                "; _cryptmap; echo \"${COMPREPLY[*]}\"'");
  EXPECT_EQ(r.status, 0) << r.err;
  std::string out = r.out;
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(BashCompletion, CompletesVerbsFlagsAndNestedVerbsButNotHiddenOnes) {
  SmallApp a;
  test::TempDir dir("completion");
  dir.write("cryptmap", bash_completion(a.app));
  const std::string f = dir.file("cryptmap");
  EXPECT_EQ(complete(f, "cryptmap o"), "open");
  EXPECT_EQ(complete(f, "cryptmap "), "open unlock vault");  // not daemon
  EXPECT_EQ(complete(f, "cryptmap open --re"), "--readonly");
  EXPECT_EQ(complete(f, "cryptmap unlock --re"), "--readonly");  // the alias too
  EXPECT_EQ(complete(f, "cryptmap open --se"), "");              // hidden flag
  EXPECT_EQ(complete(f, "cryptmap open --verb"), "--verbose");   // global flags after a verb
  EXPECT_EQ(complete(f, "cryptmap vault "), "create");           // not watch
  EXPECT_EQ(complete(f, "cryptmap -v vault create --s"), "--size");
  // After a flag that takes a value, the next word is that value (file names in the test's
  // directory: none starts with "op"), not a verb; after a flag without one, it is a verb.
  EXPECT_EQ(complete(f, "cryptmap --log-target op"), "");
  EXPECT_EQ(complete(f, "cryptmap --verbose op"), "open");
  EXPECT_EQ(complete(f, "cryptmap open --log-target x --re"), "--readonly");
}

}  // namespace
}  // namespace cryptmap::cli
