// The BackingStore contract (backing_store_contract.h) instantiated for MemBackingStore and
// PosixBackingStore (buffered and O_DIRECT), plus each one's own tests. The zoned stores
// instantiate the contract beside their tests in tests/unit/volume/zone/.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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
#include "volume/store/posix_backing_store.h"
#include "volume/store/rbd_backing_store.h"

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

// CRYPTMAP_IO_URING_FAIL_SETUP=1 for one scope: the store's io_uring setup fails as it does
// where the sysctl or seccomp forbids io_uring.
class FailUringSetup {
 public:
  FailUringSetup() { ::setenv("CRYPTMAP_IO_URING_FAIL_SETUP", "1", 1); }
  ~FailUringSetup() { ::unsetenv("CRYPTMAP_IO_URING_FAIL_SETUP"); }
};

// Whether this kernel lets this process use io_uring (the sysctl; seccomp would show as a
// setup failure, which the tests below would then report).
bool io_uring_allowed() {
  FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r");
  if (f == nullptr) return true;  // kernels before 6.6 have no such switch
  int v = 0;
  const bool got = std::fscanf(f, "%d", &v) == 1;
  std::fclose(f);
  return !got || v == 0;
}

enum class Batches { kUring, kFallback };

// PosixBackingStore over a sparse temporary file; `Direct` opens it with O_DIRECT (on /var/tmp, a
// disk file system: tmpfs may lack O_DIRECT, and then the store falls back to buffered I/O).
// `B`: batches through io_uring, or through the loop after a failed io_uring setup.
template <bool Direct, Batches B = Batches::kUring>
struct PosixTraits {
  static constexpr bool kGrowsPastEnd = true;  // a regular file grows
  static constexpr std::uint64_t kIoUnit = 1;
  std::unique_ptr<TempFile> file;
  std::unique_ptr<BackingStore> make(std::uint64_t size, bool read_only) {
    file = std::make_unique<TempFile>(size, Direct ? "/var/tmp" : "/tmp");
    std::unique_ptr<FailUringSetup> fail;
    if (B == Batches::kFallback) fail = std::make_unique<FailUringSetup>();
    auto s = PosixBackingStore::open(file->path(), {.read_only = read_only, .direct_io = Direct});
    EXPECT_TRUE(s) << s.error().message();
    if (!s) return nullptr;
    if (B == Batches::kFallback || io_uring_allowed()) {
      EXPECT_EQ((*s)->uses_io_uring(), B == Batches::kUring);
    }
    return std::unique_ptr<BackingStore>(std::move(*s));
  }
};
struct MemTraits {
  static constexpr bool kGrowsPastEnd = false;
  static constexpr std::uint64_t kIoUnit = 1;
  std::unique_ptr<BackingStore> make(std::uint64_t size, bool read_only) {
    return std::make_unique<MemBackingStore>(size, "mem:contract", read_only);
  }
};

using PosixStores =
    ::testing::Types<PosixTraits<false>, PosixTraits<true>, PosixTraits<false, Batches::kFallback>,
                     PosixTraits<true, Batches::kFallback>>;
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

// Files and block devices: writes sit in the page cache or the device's cache until sync()'s
// fdatasync; a durable write is pwritev2(RWF_DSYNC), the store's own. The same with io_uring
// rings, O_DIRECT and for a metadata open. The base class's default (a store with no durable
// write of its own) is a write and then sync().
TEST(PosixBackingStore, ReportsItsDurability) {
  TempFile f(1 << 20);
  const StoreDurability want{.volatile_writes = true, .flush = true, .fua = true};
  for (const PosixStoreOptions& o :
       {PosixStoreOptions{}, PosixStoreOptions{.direct_io = true}, metadata_store_options(false)}) {
    auto s = open_posix_store(f.path(), o);
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ((*s)->durability(), want);
  }
  MemBackingStore mem(4096);
  EXPECT_EQ(mem.durability(),
            (StoreDurability{.volatile_writes = true, .flush = true, .fua = false}));
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

// Hostile: a write batch onto a 256 KiB tmpfs that fills up in the middle. Every piece either
// completed (its bytes read back) or failed with kNoSpace on its own; some of each; io_uring
// and the fallback alike.
void fill_a_tiny_file_system(bool fallback) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
  char dir[] = "/tmp/cryptmap-tiny-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string mnt = dir;
  if (std::system(("mount -t tmpfs -o size=256k cryptmap-tiny " + mnt).c_str()) != 0) {
    ::rmdir(dir);
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  {
    TempFile f(0, mnt);
    ASSERT_FALSE(f.path().empty());
    std::unique_ptr<FailUringSetup> fail;
    if (fallback) fail = std::make_unique<FailUringSetup>();
    auto s = PosixBackingStore::open(f.path(), {});
    ASSERT_TRUE(s) << s.error().message();
    fail.reset();
    if (!fallback && io_uring_allowed()) {
      EXPECT_TRUE((*s)->uses_io_uring());
    }
    constexpr std::size_t kPieces = 12;  // 12 x 64 KiB into 256 KiB
    std::vector<std::vector<std::byte>> data;
    std::vector<WritePiece> writes;
    for (std::size_t i = 0; i < kPieces; ++i) data.push_back(bytes(65536, 300 + i));
    for (std::size_t i = 0; i < kPieces; ++i) {
      writes.push_back({ByteOffset{i * 65536}, data[i]});
    }
    auto w = (*s)->write_batch(writes);
    EXPECT_FALSE(w);
    std::size_t good = 0, full = 0;
    for (std::size_t i = 0; i < kPieces; ++i) {
      if (writes[i].result) {
        ++good;
        std::vector<std::byte> back(65536);
        ASSERT_TRUE((*s)->read_at(ByteOffset{i * 65536}, back));
        EXPECT_EQ(back, data[i]) << "piece " << i;
      } else {
        EXPECT_EQ(writes[i].result.error().code, Errc::kNoSpace)
            << writes[i].result.error().message();
        EXPECT_NE(writes[i].result.error().message().find(f.path()), std::string::npos);
        ++full;
      }
    }
    EXPECT_GE(good, 1u);
    EXPECT_LE(good, 4u);  // 256 KiB hold at most 4 pieces
    EXPECT_GE(full, kPieces - 4);
  }
  EXPECT_EQ(std::system(("umount " + mnt).c_str()), 0);
  ::rmdir(dir);
}

TEST(PosixBackingStore, AFullFileSystemFailsExactlyThePiecesThatDidNotFit) {
  fill_a_tiny_file_system(/*fallback=*/false);
}
TEST(PosixBackingStore, AFullFileSystemFailsExactlyThePiecesThatDidNotFitWithoutIoUring) {
  fill_a_tiny_file_system(/*fallback=*/true);
}

// A write batch with work (write_batch_each) on io_uring is staged: each piece is submitted as
// soon as it is prepared, so piece k is in flight (here: in the file) while piece k+1 is
// prepared. prepare(k+1) waits (bounded) until piece k's bytes can be read back through another
// fd; a store that prepares every piece before it submits any never gets there.
TEST(PosixBackingStore, AWriteBatchWithWorkSubmitsEachPieceBeforePreparingTheNext) {
  if (!io_uring_allowed()) GTEST_SKIP() << "io_uring is disabled on this kernel";
  TempFile file(1 << 20);
  auto s = PosixBackingStore::open(file.path(), {});
  ASSERT_TRUE(s) << s.error().message();
  ASSERT_TRUE((*s)->uses_io_uring());
  const int fd = ::open(file.path().c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  constexpr std::size_t kPieces = 4, kLen = 65536;
  std::vector<std::vector<std::byte>> bufs(kPieces, std::vector<std::byte>(kLen));
  std::vector<WritePiece> writes;
  for (std::size_t i = 0; i < kPieces; ++i) writes.push_back({ByteOffset{i * kLen}, bufs[i]});
  std::vector<bool> previous_in_file(kPieces, false);
  auto w = (*s)->write_batch_each(writes, [&](std::size_t i) -> Result<void> {
    if (i > 0) {
      std::vector<std::byte> back(kLen);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!previous_in_file[i] && std::chrono::steady_clock::now() < deadline) {
        const ssize_t n = ::pread(fd, back.data(), kLen, static_cast<off_t>((i - 1) * kLen));
        previous_in_file[i] = n == static_cast<ssize_t>(kLen) && back == bufs[i - 1];
        if (!previous_in_file[i]) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    const auto fill = bytes(kLen, 500 + static_cast<unsigned>(i));
    std::copy(fill.begin(), fill.end(), bufs[i].begin());  // the piece's buffer stays in place
    return ok();
  });
  ::close(fd);
  ASSERT_TRUE(w) << w.error().message();
  for (std::size_t i = 1; i < kPieces; ++i) {
    EXPECT_TRUE(previous_in_file[i])
        << "piece " << i - 1 << " not submitted before piece " << i << " was prepared";
  }
  for (std::size_t i = 0; i < kPieces; ++i) {
    std::vector<std::byte> back(kLen);
    ASSERT_TRUE((*s)->read_at(ByteOffset{i * kLen}, back));
    EXPECT_EQ(back, bufs[i]) << "piece " << i;
  }
}

// metadata_store_options (the CLI's one-shot opens): no rings, so nothing to log either; the same
// file opened with the default options gets them (where the kernel allows io_uring), so the
// check can fail. Batches still complete, one piece after another.
TEST(PosixBackingStore, MetadataOptionsSetUpNoRings) {
  TempFile file(1 << 20);
  ::testing::internal::CaptureStderr();
  auto meta = PosixBackingStore::open(file.path(), metadata_store_options(false));
  const std::string said = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(meta) << meta.error().message();
  EXPECT_FALSE((*meta)->uses_io_uring());
  EXPECT_FALSE((*meta)->read_only());
  EXPECT_EQ(said.find("io_uring"), std::string::npos) << said;
  EXPECT_TRUE((*PosixBackingStore::open(file.path(), metadata_store_options(true)))->read_only());
  const auto a = bytes(4096, 41), b = bytes(4096, 42);
  std::vector<WritePiece> writes{{ByteOffset{0}, a}, {ByteOffset{8192}, b}};
  ASSERT_TRUE((*meta)->write_batch(writes));
  std::vector<std::byte> back_a(4096), back_b(4096);
  std::vector<ReadPiece> reads{{ByteOffset{0}, back_a}, {ByteOffset{8192}, back_b}};
  ASSERT_TRUE((*meta)->read_batch(reads));
  EXPECT_EQ(back_a, a);
  EXPECT_EQ(back_b, b);
  if (io_uring_allowed()) {
    auto data = PosixBackingStore::open(file.path(), {});
    ASSERT_TRUE(data) << data.error().message();
    EXPECT_TRUE((*data)->uses_io_uring());
  }
}

// The fallback says so once per process, not once per opened image (the CLI and the daemon open
// an image more than once).
TEST(PosixBackingStore, AFailedIoUringSetupIsLoggedAtMostOncePerProcess) {
  TempFile file(1 << 20);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  {
    FailUringSetup fail;
    for (int i = 0; i < 3; ++i) {
      auto s = PosixBackingStore::open(file.path(), {});
      ASSERT_TRUE(s) << s.error().message();
      EXPECT_FALSE((*s)->uses_io_uring());
    }
  }
  const std::string out =
      ::testing::internal::GetCapturedStdout() + ::testing::internal::GetCapturedStderr();
  std::size_t lines = 0;
  for (std::size_t at = out.find("io_uring unavailable"); at != std::string::npos;
       at = out.find("io_uring unavailable", at + 1)) {
    ++lines;
  }
  EXPECT_LE(lines, 1u) << out;
}

// The real switch: kernel.io_uring_disabled=2 makes the setup fail (EPERM) and the store falls
// back. The sysctl is machine-wide, so this runs only when asked
// (CRYPTMAP_TEST_FLIP_IO_URING_SYSCTL=1, as root); the value is restored at once.
TEST(PosixBackingStore, TheIoUringSysctlMakesTheStoreFallBack) {
  const char* ask = std::getenv("CRYPTMAP_TEST_FLIP_IO_URING_SYSCTL");
  if (ask == nullptr || ask[0] != '1') GTEST_SKIP() << "set CRYPTMAP_TEST_FLIP_IO_URING_SYSCTL=1";
  const char* knob = "/proc/sys/kernel/io_uring_disabled";
  FILE* f = std::fopen(knob, "r");
  if (f == nullptr) GTEST_SKIP() << "no " << knob;
  int was = 0;
  ASSERT_EQ(std::fscanf(f, "%d", &was), 1);
  std::fclose(f);
  auto put = [&](int v) {
    FILE* w = std::fopen(knob, "w");
    if (w == nullptr) return false;
    const bool ok = std::fprintf(w, "%d\n", v) > 0;
    return std::fclose(w) == 0 && ok;
  };
  if (!put(2)) GTEST_SKIP() << knob << " is not writable here";
  TempFile file(1 << 20);
  auto s = PosixBackingStore::open(file.path(), {});
  EXPECT_TRUE(put(was));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_FALSE((*s)->uses_io_uring());
  const auto a = bytes(4096, 41);
  std::vector<WritePiece> writes = {{ByteOffset{0}, a}, {ByteOffset{8192}, a}};
  EXPECT_TRUE((*s)->write_batch(writes));
  auto again = PosixBackingStore::open(file.path(), {});
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->uses_io_uring(), was == 0);
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

// The CLI sends the daemon an rbd: argument carrying its own client settings (--ceph-conf,
// --ceph-id, $CEPH_CONF): what the argument says wins, a relative configuration path is made
// absolute, everything else passes unchanged.
TEST(RbdSpec, PinRbdClientWritesThisProcessSettingsIntoTheArgument) {
  struct Env {
    ~Env() {
      ::unsetenv("CEPH_CONF");
      ::unsetenv("CRYPTMAP_CEPH_ID");
    }
  } restore;
  ::unsetenv("CEPH_CONF");
  ::unsetenv("CRYPTMAP_CEPH_ID");
  EXPECT_EQ(pin_rbd_client("rbd:p/i"), "rbd:p/i");
  ::setenv("CEPH_CONF", "/etc/c.conf", 1);
  ::setenv("CRYPTMAP_CEPH_ID", "vault", 1);
  EXPECT_EQ(pin_rbd_client("rbd:p/i@s"), "rbd:p/i@s:conf=/etc/c.conf:id=vault");
  EXPECT_EQ(pin_rbd_client("rbd:p/i:id=x"), "rbd:p/i:id=x:conf=/etc/c.conf");
  EXPECT_EQ(pin_rbd_client("rbd:p/i:conf=/o.conf:id=x"), "rbd:p/i:conf=/o.conf:id=x");
  ::setenv("CEPH_CONF", "rel.conf", 1);
  ::unsetenv("CRYPTMAP_CEPH_ID");
  EXPECT_EQ(pin_rbd_client("rbd:p/i"),
            "rbd:p/i:conf=" + (std::filesystem::current_path() / "rel.conf").string());
  ::setenv("CEPH_CONF", "/a:b.conf", 1);  // not spellable in the argument: left to the env
  EXPECT_EQ(pin_rbd_client("rbd:p/i"), "rbd:p/i");
  EXPECT_EQ(pin_rbd_client("/srv/disk.img"), "/srv/disk.img");
  EXPECT_EQ(pin_rbd_client("nbd://h/e"), "nbd://h/e");
  EXPECT_EQ(pin_rbd_client("rbd:nopool"), "rbd:nopool");  // its open says what is wrong
  auto pinned = parse_rbd_spec(pin_rbd_client("rbd:p/i@s:id=x"));
  ASSERT_TRUE(pinned.has_value());
  EXPECT_EQ(pinned->snap, "s");
  EXPECT_EQ(pinned->conf, "");
  EXPECT_EQ(pinned->id, "x");
}

}  // namespace
}  // namespace cryptmap::volume
