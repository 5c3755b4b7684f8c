// tab-open / tab-close (see tab_commands.h).
#include "cli/apps/tab_commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/apps/cryptmaptab.h"
#include "cli/apps/process.h"
#include "fs/control.h"

namespace cryptmap::cli::apps {
using fs::default_mount_dir;
namespace {

using TabArgs = TabRun;

// Loads the tab and selects the entries to act on; returns an exit code (0 = ok).
int select(const TabArgs& a, bool opening, std::vector<TabEntry>& chosen) {
  std::ifstream in(a.tab);
  if (!in) {
    std::fprintf(stderr, "Cannot read %s: create it (crypttab syntax) or pass --tab FILE.\n",
                 a.tab.c_str());
    return kExitBadDevice;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<TabEntry> all;
  std::string err;
  if (!parse_cryptmaptab(ss.str(), all, err)) {
    std::fprintf(stderr, "%s: %s. Nothing was %s.\n", a.tab.c_str(), err.c_str(),
                 opening ? "opened" : "closed");
    return kExitUsage;
  }
  std::set<std::string> want(a.names.begin(), a.names.end());
  for (const auto& n : a.names) {
    bool found = false;
    for (const auto& e : all) found = found || e.name == n;
    if (!found) {
      std::fprintf(stderr, "%s has no volume named '%s'.\n", a.tab.c_str(), n.c_str());
      return kExitBadDevice;
    }
  }
  for (auto& e : all) {
    if (want.empty() ? (!opening || !e.noauto) : want.count(e.name) != 0)
      chosen.push_back(std::move(e));
  }
  return kExitOk;
}

std::string mount_dir_of(const TabArgs& a) {
  return a.mount_dir.empty() ? default_mount_dir() : a.mount_dir;
}

bool is_open(const std::string& name, const std::string& mount_dir) {
  return run({self_exe(), "status", name, "--mount-dir", mount_dir}, RunOptions{true, true, {}}) ==
         0;
}

void report_failed(const std::vector<std::string>& failed, const char* what) {
  if (failed.empty()) return;
  std::string names;
  for (const auto& n : failed) names += (names.empty() ? "" : ", ") + n;
  std::fprintf(stderr, "Could not %s: %s.\n", what, names.c_str());
}

}  // namespace

int open_from_tab(const TabRun& a) {
  std::vector<TabEntry> chosen;
  if (int rc = select(a, true, chosen); rc != 0) return rc;
  std::string md = mount_dir_of(a);
  int result = kExitOk;
  std::vector<std::string> failed;
  for (const auto& e : chosen) {
    if (is_open(e.name, md)) {
      std::printf("%s: already open\n", e.name.c_str());
      continue;
    }
    std::vector<std::string> argv{self_exe(), "open", e.image, e.name, "--mount-dir", md};
    argv.insert(argv.end(), e.open_args.begin(), e.open_args.end());
    argv.insert(argv.end(), a.open_args.begin(), a.open_args.end());
    if (e.discard) argv.emplace_back("--allow-discards");
    std::fflush(stdout);  // our lines and the child's stay in order when both go to one file
    RunOptions run_options;
    run_options.stdin_file = e.passphrase_file;
    int rc = run(argv, run_options);
    if (rc == 0) {
      std::printf("%s: opened %s\n", e.name.c_str(), e.image.c_str());
    } else if (e.nofail) {
      std::fprintf(stderr, "%s: opening %s failed (exit %d); nofail, continuing.\n", e.name.c_str(),
                   e.image.c_str(), rc);
    } else {
      std::fprintf(stderr, "%s: opening %s failed (exit %d).\n", e.name.c_str(), e.image.c_str(),
                   rc);
      failed.push_back(e.name);
      if (result == kExitOk) result = rc;
    }
  }
  report_failed(failed, "open");
  return result;
}

int close_from_tab(const TabRun& a) {
  std::vector<TabEntry> chosen;
  if (int rc = select(a, false, chosen); rc != 0) return rc;
  std::string md = mount_dir_of(a);
  int result = kExitOk;
  std::vector<std::string> failed;
  for (const auto& e : chosen) {
    if (!is_open(e.name, md)) continue;
    int rc = run({self_exe(), "close", e.name, "--mount-dir", md});
    if (rc != 0) {
      failed.push_back(e.name);
      if (result == kExitOk) result = rc;
    }
  }
  report_failed(failed, "close");
  return result;
}

void add_tab_commands(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<TabArgs>();
  CLI::App* o =
      app.add_subcommand("tab-open", "Open the volumes of a cryptmaptab (crypttab syntax)");
  o->add_option("names", a->names, "Only these volumes (default: all without noauto)");
  o->add_option("--tab", a->tab, "The table")->capture_default_str();
  o->add_option("--mount-dir", a->mount_dir, "Mount directory");
  o->callback([&ctx, a] {
    a->open_args = logging_args(ctx);
    ctx.exit_code = open_from_tab(*a);
  });
  CLI::App* c = app.add_subcommand("tab-close", "Close the open volumes of a cryptmaptab");
  c->add_option("names", a->names, "Only these volumes (default: all open ones listed)");
  c->add_option("--tab", a->tab, "The table")->capture_default_str();
  c->add_option("--mount-dir", a->mount_dir, "Mount directory");
  c->callback([&ctx, a] { ctx.exit_code = close_from_tab(*a); });
}

}  // namespace cryptmap::cli::apps
