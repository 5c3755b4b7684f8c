// LoopDevice: a loop device over a file (`losetup -f --show`), detached on destruction. Needs
// root, losetup and a free loop device; without them path() is empty and missing() says why:
//   test::LoopDevice loop(dir.sized_file("img", 8 << 20));
//   if (!loop) GTEST_SKIP() << loop.missing();
#pragma once

#include <string>

namespace cryptmap::test {

class LoopDevice {
 public:
  explicit LoopDevice(const std::string& backing_file);
  ~LoopDevice();
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  explicit operator bool() const { return !path_.empty(); }
  const std::string& path() const { return path_; }  // "/dev/loopN", or empty
  const std::string& missing() const { return missing_; }

 private:
  std::string path_;
  std::string missing_;
};

}  // namespace cryptmap::test
