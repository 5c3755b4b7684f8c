// BackingStore contract suite (CryFS-style typed tests) over PosixBackingStore and
// MemBackingStore, plus implementation-specific tests.
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

#include "volume/store/backing_store.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

std::vector<std::byte> bytes(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

class TempFile {
 public:
  explicit TempFile(std::uint64_t size) {
    char tmpl[] = "/tmp/cryptmap-store-XXXXXX";
    const int fd = ::mkstemp(tmpl);
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

struct PosixFactory {
  std::unique_ptr<TempFile> file;
  std::unique_ptr<BackingStore> make(std::uint64_t size, bool read_only) {
    file = std::make_unique<TempFile>(size);
    auto s = open_posix_store(file->path(), PosixStoreOptions{read_only, false});
    EXPECT_TRUE(s) << s.error().message();
    return s ? std::move(*s) : nullptr;
  }
};
struct MemFactory {
  std::unique_ptr<BackingStore> make(std::uint64_t size, bool read_only) {
    return std::make_unique<MemBackingStore>(size, "mem:contract", read_only);
  }
};

template <class F>
class BackingStoreContract : public ::testing::Test {
 protected:
  F factory;
};
using Factories = ::testing::Types<PosixFactory, MemFactory>;
TYPED_TEST_SUITE(BackingStoreContract, Factories);

TYPED_TEST(BackingStoreContract, WritesReadBackAtTheirOffsets) {
  auto s = this->factory.make(1 << 20, false);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->size_bytes(), 1u << 20);
  EXPECT_FALSE(s->read_only());
  const auto a = bytes(5000, 1);
  const auto b = bytes(300, 2);
  ASSERT_TRUE(s->write_at(ByteOffset{123}, a));
  ASSERT_TRUE(s->write_at(ByteOffset{(1 << 20) - 300}, b));
  std::vector<std::byte> back(5000);
  ASSERT_TRUE(s->read_at(ByteOffset{123}, back));
  EXPECT_EQ(back, a);
  std::vector<std::byte> back2(300);
  ASSERT_TRUE(s->read_at(ByteOffset{(1 << 20) - 300}, back2));
  EXPECT_EQ(back2, b);
  std::vector<std::byte> zeros(100), z(100);
  ASSERT_TRUE(s->read_at(ByteOffset{10000}, zeros));
  EXPECT_EQ(zeros, z);
  EXPECT_TRUE(s->sync());
}

TYPED_TEST(BackingStoreContract, ReadPastTheEndIsAnIoErrorNamingTheOffset) {
  auto s = this->factory.make(4096, false);
  ASSERT_TRUE(s);
  std::vector<std::byte> buf(100);
  auto r = s->read_at(ByteOffset{4000}, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_NE(r.error().message().find(s->name().substr(0, 20)), std::string::npos)
      << r.error().message();
}

TYPED_TEST(BackingStoreContract, ReadOnlyStoresRefuseWritesAndDiscards) {
  auto s = this->factory.make(4096, true);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->read_only());
  const auto a = bytes(10, 3);
  auto w = s->write_at(ByteOffset{0}, a);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kReadOnly);
  EXPECT_FALSE(s->discard(ByteOffset{0}, 4096));
  std::vector<std::byte> buf(10);
  EXPECT_TRUE(s->read_at(ByteOffset{0}, buf));
}

TYPED_TEST(BackingStoreContract, DiscardedRangesReadAsZeros) {
  auto s = this->factory.make(1 << 20, false);
  ASSERT_TRUE(s);
  const auto a = bytes(64 * 1024, 4);
  ASSERT_TRUE(s->write_at(ByteOffset{0}, a));
  auto d = s->discard(ByteOffset{16384}, 16384);
  if (!d && d.error().code == Errc::kUnsupported) GTEST_SKIP() << d.error().message();
  ASSERT_TRUE(d) << d.error().message();
  std::vector<std::byte> back(64 * 1024);
  ASSERT_TRUE(s->read_at(ByteOffset{0}, back));
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 16384, back.begin()));
  EXPECT_TRUE(std::all_of(back.begin() + 16384, back.begin() + 32768,
                          [](std::byte x) { return x == std::byte{0}; }));
  EXPECT_TRUE(std::equal(a.begin() + 32768, a.end(), back.begin() + 32768));
}

TYPED_TEST(BackingStoreContract, ConcurrentDisjointWritersAndReaders) {
  auto s = this->factory.make(4 << 20, false);
  ASSERT_TRUE(s);
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (unsigned t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (unsigned i = 0; i < 200; ++i) {
        const std::uint64_t off = (std::uint64_t{t} << 20) + (i % 16) * 65536;
        const auto a = bytes(65536, t * 1000 + i);
        if (!s->write_at(ByteOffset{off}, a)) ++bad;
        std::vector<std::byte> back(65536);
        if (!s->read_at(ByteOffset{off}, back) || back != a) ++bad;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

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
