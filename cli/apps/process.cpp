// Process and mount helpers for the application verbs (see process.h).
#include "cli/apps/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace cryptmap::cli::apps {
namespace {

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));  // execvp's signature
  out.push_back(nullptr);
  return out;
}

void redirect(int target, const char* path, int flags) {
  int fd = ::open(path, flags | O_CLOEXEC, 0600);
  if (fd < 0) _exit(127);
  if (::dup2(fd, target) < 0) _exit(127);
  ::close(fd);
}

// /proc/self/mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = s[i + j];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "cryptmap";
  return std::string(buf, static_cast<size_t>(n));
}

int run(const std::vector<std::string>& argv, const RunOptions& opt) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (!opt.stdin_file.empty()) redirect(0, opt.stdin_file.c_str(), O_RDONLY);
    if (opt.quiet_stdout) redirect(1, "/dev/null", O_WRONLY);
    if (opt.quiet_stderr) redirect(2, "/dev/null", O_WRONLY);
    auto args = c_argv(argv);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 127;
}

int run_capture(const std::vector<std::string>& argv, std::string& out) {
  out.clear();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return 127;
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return 127;
  }
  if (pid == 0) {
    if (::dup2(fds[1], 1) < 0) _exit(127);
    auto args = c_argv(argv);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(fds[1]);
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      if (out.size() < (1u << 20)) out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 127;
}

pid_t spawn_detached(const std::vector<std::string>& argv, const std::string& log_path) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::setsid();
  redirect(0, "/dev/null", O_RDONLY);
  const char* log = log_path.empty() ? "/dev/null" : log_path.c_str();
  redirect(1, log, O_WRONLY | O_CREAT | O_APPEND);
  if (::dup2(1, 2) < 0) _exit(127);
  auto args = c_argv(argv);
  ::execvp(args[0], args.data());
  _exit(127);
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == pid) return false;  // our child, now reaped
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto rp = line.rfind(')');
  if (rp == std::string::npos || rp + 2 >= line.size()) return true;
  char state = line[rp + 2];
  return state != 'Z' && state != 'X';
}

bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (process_alive(pid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

bool is_mountpoint(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mnt;
    if (!(fields >> id >> parent >> devno >> root >> mnt)) continue;
    if (unescape_mountinfo(mnt) == dir) return true;
  }
  return false;
}

bool mountinfo_has_option(const std::string& mountinfo, const std::string& dir,
                          const std::string& option) {
  std::istringstream in(mountinfo);
  std::string line;
  bool found = false;  // the last matching line is the topmost mount
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mnt;
    if (!(fields >> id >> parent >> devno >> root >> mnt)) continue;
    if (unescape_mountinfo(mnt) != dir) continue;
    const auto sep = line.find(" - ");
    std::istringstream tail(sep == std::string::npos ? std::string() : line.substr(sep + 3));
    std::string fstype, source, super_opts;
    tail >> fstype >> source >> super_opts;
    found = false;
    std::istringstream opts(super_opts);
    for (std::string o; std::getline(opts, o, ',');) found = found || o == option;
  }
  return found;
}

bool mount_has_option(const std::string& dir, const std::string& option) {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return mountinfo_has_option(ss.str(), dir, option);
}

std::string stable_hash(const std::string& s) {
  unsigned long long h = 14695981039346656037ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", h);
  return buf;
}

bool parse_size(const std::string& text, unsigned long long& bytes) {
  size_t i = 0;
  unsigned long long v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    unsigned d = static_cast<unsigned>(text[i] - '0');
    if (v > (ULLONG_MAX - d) / 10) return false;
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return false;
  std::string unit = text.substr(i);
  unsigned shift = 0;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KiB" || unit == "k")
    shift = 10;
  else if (unit == "M" || unit == "MiB")
    shift = 20;
  else if (unit == "G" || unit == "GiB")
    shift = 30;
  else if (unit == "T" || unit == "TiB")
    shift = 40;
  else
    return false;
  if (shift && v > (ULLONG_MAX >> shift)) return false;
  bytes = v << shift;
  return true;
}

bool parse_duration(const std::string& text, unsigned long long& seconds) {
  size_t i = 0;
  unsigned long long v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (v > 1000000000ULL) return false;
    v = v * 10 + static_cast<unsigned>(text[i] - '0');
    ++i;
  }
  if (i == 0) return false;
  std::string unit = text.substr(i);
  unsigned long long mul = 1;
  if (unit.empty() || unit == "s")
    mul = 1;
  else if (unit == "m" || unit == "min")
    mul = 60;
  else if (unit == "h")
    mul = 3600;
  else
    return false;
  seconds = v * mul;
  return seconds > 0;
}

}  // namespace cryptmap::cli::apps
