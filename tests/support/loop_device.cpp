#include "tests/support/loop_device.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/support/tools.h"

namespace cryptmap::test {

LoopDevice::LoopDevice(const std::string& backing_file) {
  if (::geteuid() != 0) {
    missing_ = "a loop device needs root";
    return;
  }
  const Tool losetup = find_tool("losetup", "mount");
  if (!losetup) {
    missing_ = losetup.missing;
    return;
  }
  RunResult r = run(losetup.path + " -f --show '" + backing_file + "'");
  while (!r.out.empty() && (r.out.back() == '\n' || r.out.back() == ' ')) r.out.pop_back();
  if (r.status != 0 || r.out.rfind("/dev/loop", 0) != 0) {
    missing_ = "losetup -f --show failed (no free loop device?): " + r.err;
    return;
  }
  path_ = r.out;
}

LoopDevice::~LoopDevice() {
  if (path_.empty()) return;
  const RunResult r = run("losetup -d " + path_);
  EXPECT_EQ(r.status, 0) << "losetup -d " << path_ << ": " << r.err;
}

}  // namespace cryptmap::test
