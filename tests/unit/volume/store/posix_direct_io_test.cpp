// PosixBackingStore with direct_io: aligned requests leave no page cache behind (the property
// that keeps a daemon under a loop device out of memory-cgroup reclaim deadlocks), unaligned
// requests still work through the buffered fd, and both views stay coherent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

class PosixDirectIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // /var/tmp: a disk file system (tmpfs may lack O_DIRECT and is always "cached").
    char tmpl[] = "/var/tmp/cryptmap-dio-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    path_ = tmpl;
    ASSERT_EQ(ftruncate(fd, kSize), 0);
    close(fd);
  }
  void TearDown() override { unlink(path_.c_str()); }

  // Pages of [0, kSize) resident in the page cache.
  std::size_t resident_pages() {
    int fd = open(path_.c_str(), O_RDONLY);
    void* p = mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd, 0);
    std::vector<unsigned char> vec(kSize / 4096);
    mincore(p, kSize, vec.data());
    munmap(p, kSize);
    close(fd);
    std::size_t n = 0;
    for (unsigned char c : vec) n += c & 1;
    return n;
  }

  // Page-aligned buffer (O_DIRECT's memory alignment).
  static std::byte* aligned(std::size_t n) {
    return static_cast<std::byte*>(std::aligned_alloc(4096, n));
  }

  static constexpr std::size_t kSize = 8 << 20;
  std::string path_;
};

TEST_F(PosixDirectIoTest, givenDirectIo_whenAlignedWritesAndReads_thenNoPageCacheIsUsed) {
  auto store = open_posix_store(path_, {.read_only = false, .direct_io = true});
  ASSERT_TRUE(store) << store.error().message();
  std::byte* buf = aligned(1 << 20);
  std::memset(buf, 0x5a, 1 << 20);
  for (std::uint64_t off = 0; off < kSize; off += 1 << 20)
    ASSERT_TRUE((*store)->write_at(ByteOffset{off}, {buf, 1 << 20}));
  ASSERT_TRUE((*store)->sync());
  for (std::uint64_t off = 0; off < kSize; off += 1 << 20)
    ASSERT_TRUE((*store)->read_at(ByteOffset{off}, {buf, 1 << 20}));
  std::free(buf);
  EXPECT_EQ(resident_pages(), 0u) << "direct I/O went through the page cache";
}

TEST_F(PosixDirectIoTest, givenBufferedStore_whenWriting_thenPageCacheFills) {
  // The control: proves resident_pages() can see cached pages, so the test above can fail.
  auto store = open_posix_store(path_, {.read_only = false, .direct_io = false});
  ASSERT_TRUE(store);
  std::vector<std::byte> buf(1 << 20, std::byte{1});
  ASSERT_TRUE((*store)->write_at(ByteOffset{0}, buf));
  EXPECT_GT(resident_pages(), 0u);
}

TEST_F(PosixDirectIoTest, givenDirectIo_whenUnalignedRequests_thenBytesAreExactAndCoherent) {
  auto store = open_posix_store(path_, {.read_only = false, .direct_io = true});
  ASSERT_TRUE(store);
  std::byte* big = aligned(65536);
  for (std::size_t i = 0; i < 65536; ++i) big[i] = std::byte(i * 7);
  ASSERT_TRUE((*store)->write_at(ByteOffset{65536}, {big, 65536}));  // direct
  // Unaligned offset, length and buffer: served by the buffered fd.
  const char msg[] = "unaligned-bytes";
  ASSERT_TRUE((*store)->write_at(ByteOffset{65536 + 1001},
                                 {reinterpret_cast<const std::byte*>(msg), sizeof msg}));
  // An aligned direct read must see the buffered write (the kernel flushes before O_DIRECT).
  std::byte* back = aligned(65536);
  ASSERT_TRUE((*store)->read_at(ByteOffset{65536}, {back, 65536}));
  std::memcpy(big + 1001, msg, sizeof msg);
  EXPECT_EQ(std::memcmp(back, big, 65536), 0);
  // And an unaligned read sees the direct write.
  std::byte odd[7];
  ASSERT_TRUE((*store)->read_at(ByteOffset{65536 + 3}, odd));
  EXPECT_EQ(std::memcmp(odd, big + 3, 7), 0);
  std::free(big);
  std::free(back);
}

}  // namespace
}  // namespace cryptmap::volume
