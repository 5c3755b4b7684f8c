// NbdkitServer — a real nbdkit process serving one export on a private Unix socket, started and
// stopped by the test (nbdkit -f --exit-with-parent, so it never outlives the test binary).
//
//   test::NbdkitServer srv({"memory", "64M"});                 // plugin and its arguments
//   test::NbdkitServer slow({"--filter=delay", "memory", "64M", "delay-read=5"});
//   if (!srv) GTEST_SKIP() << srv.missing();
//   open_nbd_store(srv.uri(), ...);                           // nbd+unix:///?socket=...
//   srv.kill();                                                // SIGKILL: the server vanishes
//   srv.start();                                               // again, same socket and args
//
// Thread-compatible. The destructor stops the server (SIGTERM, then SIGKILL) and reaps it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace cryptmap::test {

class NbdkitServer {
 public:
  // `args` follow nbdkit's own options: filters, plugin, plugin arguments.
  explicit NbdkitServer(const std::vector<std::string>& args);
  ~NbdkitServer();
  NbdkitServer(const NbdkitServer&) = delete;
  NbdkitServer& operator=(const NbdkitServer&) = delete;

  explicit operator bool() const { return pid_ > 0; }
  const std::string& missing() const { return missing_; }  // why it did not start
  const std::string& socket() const { return socket_; }
  std::string uri() const { return "nbd+unix:///?socket=" + socket_; }
  pid_t pid() const { return pid_; }
  // SIGKILL and reap: every connection breaks at once.
  void kill();
  // After kill(): the same server again on the same socket (a server restart). False (with
  // missing() saying why) if it did not come up.
  bool start();

 private:
  TempDir dir_{"cryptmap-nbdkit"};
  std::vector<std::string> args_;
  std::string socket_;
  std::string missing_;
  pid_t pid_ = -1;
};

}  // namespace cryptmap::test
