#include "tests/support/tools.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <string_view>
#include <vector>

namespace cryptmap::test {
namespace {

constexpr const char* kSbinDirs[] = {"/usr/local/sbin", "/usr/sbin", "/sbin"};

std::vector<std::string> search_dirs() {
  std::vector<std::string> dirs;
  const char* path = std::getenv("PATH");
  std::istringstream in(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(in, d, ':');)
    if (!d.empty()) dirs.push_back(d);
  for (const char* d : kSbinDirs) dirs.emplace_back(d);
  return dirs;
}

std::string joined(const std::vector<std::string>& dirs) {
  std::string s;
  for (const auto& d : dirs) s += (s.empty() ? "" : ":") + d;
  return s;
}

}  // namespace

Tool find_tool(std::string_view name, std::string_view debian_package) {
  const auto dirs = search_dirs();
  for (const auto& d : dirs) {
    const std::string p = d + "/" + std::string(name);
    if (::access(p.c_str(), X_OK) == 0) return Tool{p, ""};
  }
  std::string why = std::string(name) + " not found in " + joined(dirs);
  if (!debian_package.empty()) why += "; install " + std::string(debian_package);
  return Tool{"", why};
}

RunResult run(const std::string& shell_command) {
  RunResult r;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return r;
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return r;
  }
  // The child's environment, built before fork(): ours with PATH replaced.
  std::string path = "PATH=" + joined(search_dirs());
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).substr(0, 5) != "PATH=") env.push_back(*e);
  env.push_back(path.data());
  env.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    if (in >= 0) ::dup2(in, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execle("/bin/sh", "sh", "-c", shell_command.c_str(), static_cast<char*>(nullptr), env.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return r;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
  return r;
}

}  // namespace cryptmap::test
