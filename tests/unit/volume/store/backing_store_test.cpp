// The BackingStore contract (backing_store_contract.h) instantiated for MemBackingStore and
// PosixBackingStore (buffered and O_DIRECT), plus each one's own tests. The zoned stores
// instantiate the contract beside their tests in tests/unit/volume/zone/.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/volume/store/backing_store_contract.h"
#include "volume/store/backing_store.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

using namespace contract;  // the suite and its gtest registration state

std::vector<std::byte> bytes(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

class TempFile {
 public:
  explicit TempFile(std::uint64_t size, const std::string& dir = "/tmp") {
    std::string tmpl = dir + "/cryptmap-store-XXXXXX";
    const int fd = ::mkstemp(tmpl.data());
    path_ = tmpl;
    if (fd >= 0) {
      if (::ftruncate(fd, static_cast<off_t>(size)) != 0) path_.clear();
      ::close(fd);
    }
  }
  ~TempFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// PosixBackingStore over a sparse temporary file; `Direct` opens it with O_DIRECT (on /var/tmp, a
// disk file system: tmpfs may lack O_DIRECT, and then the store falls back to buffered I/O).
template <bool Direct>
struct PosixTraits {
  static constexpr bool kGrowsPastEnd = true;  // a regular file grows
  static constexpr std::uint64_t kIoUnit = 1;
  std::unique_ptr<TempFile> file;
  std::unique_ptr<BackingStore> make(std::uint64_t size, bool read_only) {
    file = std::make_unique<TempFile>(size, Direct ? "/var/tmp" : "/tmp");
    auto s = open_posix_store(file->path(), {.read_only = read_only, .direct_io = Direct});
    EXPECT_TRUE(s) << s.error().message();
    return s ? std::move(*s) : nullptr;
  }
};
struct MemTraits {
  static constexpr bool kGrowsPastEnd = false;
  static constexpr std::uint64_t kIoUnit = 1;
  std::unique_ptr<BackingStore> make(std::uint64_t size, bool read_only) {
    return std::make_unique<MemBackingStore>(size, "mem:contract", read_only);
  }
};

using PosixStores = ::testing::Types<PosixTraits<false>, PosixTraits<true>>;
INSTANTIATE_TYPED_TEST_SUITE_P(Mem, BackingStoreContract, ::testing::Types<MemTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(Posix, BackingStoreContract, PosixStores);

TEST(PosixBackingStore, OpenErrorsNameThePath) {
  auto s = open_posix_store("/nonexistent/cryptmap/image.img", {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kNotFound);
  EXPECT_NE(s.error().message().find("/nonexistent/cryptmap/image.img"), std::string::npos);
  auto d = open_posix_store("/tmp", PosixStoreOptions{true, false});
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find("/tmp"), std::string::npos) << d.error().message();
}

TEST(PosixBackingStore, GrowingAFileUpdatesItsSize) {
  TempFile f(4096);
  auto s = open_posix_store(f.path(), {});
  ASSERT_TRUE(s);
  const auto a = bytes(100, 9);
  ASSERT_TRUE((*s)->write_at(ByteOffset{8192}, a));
  EXPECT_EQ((*s)->size_bytes(), 8292u);
}

TEST(PosixBackingStore, DirectIoWithAlignedBuffers) {
  TempFile f(1 << 20);
  auto s = open_posix_store(f.path(), PosixStoreOptions{false, true});
  if (!s && s.error().code == Errc::kUnsupported) GTEST_SKIP() << s.error().message();
  ASSERT_TRUE(s) << s.error().message();
  void* p = nullptr;
  ASSERT_EQ(::posix_memalign(&p, 4096, 8192), 0);
  std::span<std::byte> buf(static_cast<std::byte*>(p), 8192);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::byte>(i * 7);
  std::vector<std::byte> want(buf.begin(), buf.end());
  EXPECT_TRUE((*s)->write_at(ByteOffset{4096}, buf));
  std::fill(buf.begin(), buf.end(), std::byte{0});
  EXPECT_TRUE((*s)->read_at(ByteOffset{4096}, buf));
  EXPECT_TRUE(std::equal(want.begin(), want.end(), buf.begin()));
  std::free(p);
}

TEST(PosixBackingStore, BlockDeviceSizeComesFromBlkGetSize64) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for losetup";
  TempFile f(3 << 20);
  std::string cmd = "losetup -f --show " + f.path() + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) GTEST_SKIP() << "no popen";
  char dev[128] = {};
  const bool got = std::fgets(dev, sizeof dev, p) != nullptr;
  ::pclose(p);
  if (!got) GTEST_SKIP() << "no free loop device";
  std::string loop(dev);
  while (!loop.empty() && (loop.back() == '\n' || loop.back() == ' ')) loop.pop_back();
  {
    auto s = open_posix_store(loop, {});
    EXPECT_TRUE(s) << s.error().message();
    if (s) {
      EXPECT_EQ((*s)->size_bytes(), 3u << 20);
      const auto a = bytes(4096, 11);
      EXPECT_TRUE((*s)->write_at(ByteOffset{4096}, a));
      EXPECT_TRUE((*s)->sync());
      std::vector<std::byte> back(4096);
      EXPECT_TRUE((*s)->read_at(ByteOffset{4096}, back));
      EXPECT_EQ(back, a);
    }
  }
  EXPECT_EQ(std::system(("losetup -d " + loop).c_str()), 0);
}

TEST(MemBackingStore, InjectedFailuresHitOnlyTheirRange) {
  MemBackingStore s(1 << 20);
  s.fail_writes(4096, 512);
  const auto a = bytes(512, 1);
  EXPECT_FALSE(s.write_at(ByteOffset{4096 + 511}, a));
  EXPECT_TRUE(s.write_at(ByteOffset{4096 + 512}, a));
  EXPECT_TRUE(s.write_at(ByteOffset{4096 - 512}, a));
  s.fail_reads(0, 1);
  std::vector<std::byte> buf(1);
  EXPECT_FALSE(s.read_at(ByteOffset{0}, buf));
  EXPECT_TRUE(s.read_at(ByteOffset{1}, buf));
  s.fail_sync(true);
  EXPECT_FALSE(s.sync());
}

TEST(MemBackingStore, HugeSparseStoresCostOnlyWhatIsWritten) {
  MemBackingStore s(4ull << 40);  // 4 TiB
  const auto a = bytes(1000, 5);
  const std::uint64_t off = (3ull << 40) + 12345;
  ASSERT_TRUE(s.write_at(ByteOffset{off}, a));
  std::vector<std::byte> back(1000);
  ASSERT_TRUE(s.read_at(ByteOffset{off}, back));
  EXPECT_EQ(back, a);
  EXPECT_EQ(s.write_calls(), 1u);
  EXPECT_EQ(s.bytes_written(), 1000u);
}

}  // namespace
}  // namespace cryptmap::volume
