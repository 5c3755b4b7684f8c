#include "tests/support/nbdkit.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/support/tools.h"

namespace cryptmap::test {

NbdkitServer::NbdkitServer(const std::vector<std::string>& args) : args_(args) {
  socket_ = dir_.file("nbd.sock");
  start();
}

bool NbdkitServer::start() {
  if (pid_ > 0) return true;
  const Tool nbdkit = find_tool("nbdkit", "nbdkit");
  if (!nbdkit) {
    missing_ = nbdkit.missing;
    return false;
  }
  const std::string pidfile = dir_.file("nbd.pid");
  ::unlink(pidfile.c_str());
  ::unlink(socket_.c_str());
  std::vector<std::string> argv = {nbdkit.path, "-f",   "--exit-with-parent", "-U", socket_,
                                   "-P",        pidfile};
  argv.insert(argv.end(), args_.begin(), args_.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    missing_ = "fork failed";
    return false;
  }
  if (pid == 0) {
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  // Ready when the pid file exists: nbdkit writes it once it accepts connections (the socket
  // file alone appears at bind(), before listen()).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  struct stat st {};
  while (::stat(pidfile.c_str(), &st) != 0 || st.st_size == 0) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      missing_ = "nbdkit exited at start (bad arguments or missing plugin/filter)";
      return false;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      missing_ = "nbdkit was not ready within 10 s";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = pid;
  missing_.clear();
  return true;
}

void NbdkitServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

NbdkitServer::~NbdkitServer() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill();
}

}  // namespace cryptmap::test
