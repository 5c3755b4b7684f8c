// External tools (cryptsetup, losetup, python3, ...): finding them and running commands.
//
// find_tool(name) searches $PATH, then /usr/local/sbin, /usr/sbin and /sbin (where cryptsetup and
// losetup live, often outside a non-root PATH). A test that needs a tool says:
//   const auto cs = test::find_tool("cryptsetup", "cryptsetup-bin");
//   if (!cs) GTEST_SKIP() << cs.missing;
// run(cmd) runs `cmd` with /bin/sh, with the same sbin directories appended to PATH, and returns
// its exit status with stdout and stderr captured apart (stdin is /dev/null).
#pragma once

#include <string>
#include <string_view>

namespace cryptmap::test {

struct Tool {
  std::string path;     // absolute path of the executable; empty when not found
  std::string missing;  // when not found: "<name> not found in ...; install <package>"
  explicit operator bool() const { return !path.empty(); }
};

Tool find_tool(std::string_view name, std::string_view debian_package = {});

struct RunResult {
  int status = -1;  // exit status; 128 + signal when killed; -1 when it could not run
  std::string out;  // stdout
  std::string err;  // stderr
};

RunResult run(const std::string& shell_command);

}  // namespace cryptmap::test
