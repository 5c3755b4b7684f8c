// The FUSE front end through a real mount: the kernel, libfuse and VolumeServer, with a hostile
// in-memory FakeVolume behind it (CryFS test/fspp/fuse style). Skips when /dev/fuse is unusable.
#include "fs/volume_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "base/unique_fd.h"
#include "tests/unit/fs/fake_volume.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace cryptmap::fs {
namespace {

using testing::FakeVolume;
using Op = FakeVolume::Op;

std::string fuse_unusable_reason() {
  const int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("/dev/fuse: ") + std::strerror(errno);
  ::close(fd);
  if (geteuid() != 0 && access("/usr/bin/fusermount3", X_OK) != 0)
    return "not root and no fusermount3";
  return {};
}

std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// CTest runs this suite twice: over /dev/fuse (every mount asks for it: enable_uring is global
// and the other run sets it) and with CRYPTMAP_TEST_FUSE_TRANSPORT=uring (prefix "uring."),
// where every mount asks for FUSE over io_uring and the fixture sets the kernel's enable_uring
// to Y for the test (root only; it skips otherwise) and restores it after. What `auto` picks is
// tested end to end (tests/integration/e2e_fuse_uring.sh).
constexpr const char* kEnableUring = "/sys/module/fuse/parameters/enable_uring";
// The machine-wide lock on it (tests/integration/lib.sh, enable_uring_hold: URING_LOCK), held
// from before the value is saved until after it is restored. CTest's RESOURCE_LOCK
// fuse_enable_uring orders one ctest run's tests; this flock orders every run's on the machine
// (other worktrees, benches), so none restores a value another has just set.
constexpr const char* kEnableUringLock = "/run/cryptmap-enable_uring.lock";
UniqueFd lock_enable_uring() {
  UniqueFd fd(::open(kEnableUringLock, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) return fd;
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return UniqueFd();
  }
  return fd;
}
bool uring_run() {
  const char* t = std::getenv("CRYPTMAP_TEST_FUSE_TRANSPORT");
  return t != nullptr && std::string(t) == "uring";
}
std::string read_param() {
  std::ifstream in(kEnableUring);
  std::string v;
  in >> v;
  return v;
}
bool write_param(const std::string& v) {
  std::ofstream out(kEnableUring);
  out << v << "\n";
  out.flush();
  return static_cast<bool>(out);
}

class VolumeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = fuse_unusable_reason();
    if (!why.empty()) GTEST_SKIP() << "FUSE unavailable: " << why;
    if (uring_run()) {
      if (access(kEnableUring, W_OK) != 0)
        GTEST_SKIP() << "FUSE over io_uring: " << kEnableUring << " missing or not writable";
      uring_lock_ = lock_enable_uring();
      ASSERT_TRUE(uring_lock_.valid()) << kEnableUringLock << ": " << std::strerror(errno);
      saved_param_ = read_param();
      ASSERT_FALSE(saved_param_.empty()) << kEnableUring << " unreadable";
      ASSERT_TRUE(write_param("Y"));
    }
    char tmpl[] = "/tmp/cryptmap-fs-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    mnt_ = dir_ + "/mnt";
  }
  void TearDown() override {
    server_.reset();
    if (!saved_param_.empty()) (void)write_param(saved_param_);
    uring_lock_ = UniqueFd();  // only now may another run change enable_uring
    if (!mnt_.empty()) rmdir(mnt_.c_str());
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  void mount(ServerOptions o = {}) {
    o.mount_dir = mnt_;
    // Ordered (zoned) mounts too: ring threads keep zoned order at the write pointer
    // (fs/README.md "Zoned volumes: receive order").
    if (o.fuse_transport == FuseTransport::kAuto)
      o.fuse_transport = uring_run() ? FuseTransport::kUring : FuseTransport::kDev;
    auto s = VolumeServer::mount(o);
    ASSERT_TRUE(s.has_value()) << s.error().message();
    server_ = std::move(*s);
  }
  FakeVolume* add(const std::string& name, FakeVolume::Options o = {}) {
    auto v = std::make_unique<FakeVolume>(o);
    FakeVolume* raw = v.get();
    auto r = server_->add_volume(name, std::move(v), {"/images/" + name + ".img", "", {}});
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r ? raw : nullptr;
  }
  std::string path(const std::string& name) const { return mnt_ + "/" + name; }
  UniqueFd open_file(const std::string& name, int flags) {
    UniqueFd fd(::open(path(name).c_str(), flags | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << path(name) << ": " << std::strerror(errno);
    return fd;
  }

  std::string dir_, mnt_;
  UniqueFd uring_lock_;      // lock_enable_uring(), held by a uring run from SetUp to TearDown
  std::string saved_param_;  // enable_uring before a uring run changed it
  std::unique_ptr<VolumeServer> server_;
};

// The transport each run asks for is the one that serves: in the uring run every request after
// INIT comes through a ring entry (and the /dev/fuse workers see only INIT, forgets and
// notifications); --fuse-transport=dev never uses io_uring.
TEST_F(VolumeServerTest, RequestsTravelThroughTheTransportAskedFor) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 4u << 20});
  ASSERT_NE(v, nullptr);
  v->fill(5);
  {
    UniqueFd fd = open_file("vol", O_RDWR);
    const auto a = pattern(1u << 20, 9);
    ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), 4096), static_cast<ssize_t>(a.size()));
    std::vector<std::byte> b(a.size());
    ASSERT_EQ(pread(fd.get(), b.data(), b.size(), 4096), static_cast<ssize_t>(b.size()));
    EXPECT_EQ(a, b);
  }
  const ServingStats st = server_->serving_stats();
  if (uring_run()) {
    EXPECT_STREQ(server_->fuse_transport(), "uring");
    EXPECT_TRUE(st.uring);
    EXPECT_GE(st.uring_entries, st.uring_queues);
    EXPECT_GE(st.uring_requests, 4u);  // lookup, open, write, read at least
    EXPECT_EQ(server_->status().at(0).fuse_transport, "uring");
  } else {
    EXPECT_STREQ(server_->fuse_transport(), "dev");
    EXPECT_FALSE(st.uring);
    EXPECT_EQ(st.uring_requests, 0u);
    EXPECT_EQ(server_->status().at(0).fuse_transport, "dev");
  }
}

// A uring run changes enable_uring only under the machine-wide lock: while the test runs,
// nobody else (another ctest run, lib.sh's enable_uring_hold, a bench) can take it.
TEST_F(VolumeServerTest, AUringRunHoldsTheMachineWideEnableUringLock) {
  if (!uring_run()) GTEST_SKIP() << "runs in the uring.* run, which owns enable_uring";
  UniqueFd other(::open(kEnableUringLock, O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(other.valid()) << kEnableUringLock << ": " << std::strerror(errno);
  EXPECT_NE(::flock(other.get(), LOCK_EX | LOCK_NB), 0) << "the lock was free during the test";
  EXPECT_EQ(errno, EWOULDBLOCK);
}

// --fuse-transport=uring is refused at mount, with what to do, when the kernel setting is off.
TEST_F(VolumeServerTest, ForcedUringIsRefusedWhenTheKernelDisallowsIt) {
  if (!uring_run()) GTEST_SKIP() << "runs in the uring.* run, which owns enable_uring";
  const std::string before = read_param();
  if (before.empty() || access(kEnableUring, W_OK) != 0)
    GTEST_SKIP() << kEnableUring << " missing or not writable";
  ASSERT_TRUE(write_param("N"));
  ServerOptions o;
  o.mount_dir = mnt_;
  o.fuse_transport = FuseTransport::kUring;
  auto s = VolumeServer::mount(o);
  ASSERT_TRUE(write_param(before));
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("enable_uring is N"), std::string::npos)
      << s.error().message();
  EXPECT_NE(s.error().message().find("--fuse-transport=dev"), std::string::npos);
}

TEST_F(VolumeServerTest, FileHasVolumeSizeMode0600AndOwner) {
  mount();
  add("vol", {.size_bytes = 3u << 20});
  struct stat st {};
  ASSERT_EQ(stat(path("vol").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 3 << 20);
  EXPECT_EQ(st.st_uid, getuid());
  EXPECT_EQ(st.st_gid, getgid());
  ASSERT_EQ(stat(mnt_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(VolumeServerTest, AllowOtherMountsWithTheOptionAndSharedFilesAre0660) {
  ServerOptions o;
  o.allow_other = true;
  mount(o);
  ASSERT_TRUE(
      server_->add_volume("shared", std::make_unique<FakeVolume>(FakeVolume::Options{}), {}, 0660));
  add("private");
  auto bad =
      server_->add_volume("odd", std::make_unique<FakeVolume>(FakeVolume::Options{}), {}, 0644);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::kInvalid);
  struct stat st {};
  ASSERT_EQ(stat(path("shared").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(stat(path("private").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_NE(::access(path("odd").c_str(), F_OK), 0);
  std::uint32_t shared_mode = 0;
  for (const VolumeStatus& v : server_->status())
    if (v.name == "shared") shared_mode = v.file_mode;
  EXPECT_EQ(shared_mode, 0660u);
  std::ifstream mi("/proc/self/mountinfo");
  bool has = false;
  for (std::string line; std::getline(mi, line);)
    if (line.find(" " + mnt_ + " ") != std::string::npos)
      has = line.find("allow_other") != std::string::npos;
  EXPECT_TRUE(has) << "mount of " << mnt_ << " lacks allow_other";
}

TEST_F(VolumeServerTest, DirectoryListsEveryVolumeAndLookupOfOthersFails) {
  mount();
  for (const char* n : {"alpha", "beta", "gamma"}) add(n, {.size_bytes = 1u << 20});
  std::set<std::string> names;
  DIR* d = opendir(mnt_.c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* de = readdir(d)) names.insert(de->d_name);
  closedir(d);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "alpha", "beta", "gamma"}));
  struct stat st {};
  EXPECT_EQ(stat(path("delta").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(VolumeServerTest, ReadsReturnVolumeBytesAtAnyOffsetAndLength) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 8u << 20});
  v->fill(7);
  const auto data = v->data();
  UniqueFd fd = open_file("vol", O_RDONLY);
  const std::pair<std::uint64_t, std::size_t> cases[] = {{0, 1},
                                                         {0, 512},
                                                         {1, 511},
                                                         {511, 2},
                                                         {4095, 4097},
                                                         {12345, 100000},
                                                         {1u << 20, 1u << 20},
                                                         {3, 3u << 20},
                                                         {(8u << 20) - 4096, 4096}};
  for (auto [off, len] : cases) {
    std::vector<std::byte> buf(len);
    ASSERT_EQ(pread(fd.get(), buf.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len))
        << "off " << off << " len " << len << ": " << std::strerror(errno);
    EXPECT_EQ(0, std::memcmp(buf.data(), data.data() + off, len)) << "off " << off;
  }
  EXPECT_EQ(v->violations(), 0);
}

struct EdgeCase {
  std::int64_t from_end;  // offset relative to the end of the volume
  std::size_t len;
  ssize_t expect;
};
class ReadEdgeTest : public VolumeServerTest, public ::testing::WithParamInterface<EdgeCase> {};

TEST_P(ReadEdgeTest, ShortReadAtTheEndZeroAtAndPastIt) {
  mount();
  const std::uint64_t size = 1u << 20;
  FakeVolume* v = add("vol", {.size_bytes = size});
  v->fill(3);
  const auto data = v->data();
  UniqueFd fd = open_file("vol", O_RDONLY);
  const EdgeCase c = GetParam();
  const auto off = static_cast<off_t>(static_cast<std::int64_t>(size) + c.from_end);
  std::vector<std::byte> buf(c.len);
  ASSERT_EQ(pread(fd.get(), buf.data(), c.len, off), c.expect) << std::strerror(errno);
  if (c.expect > 0) {
    EXPECT_EQ(0, std::memcmp(buf.data(), data.data() + off, static_cast<std::size_t>(c.expect)));
  }
  EXPECT_EQ(v->violations(), 0);
}
INSTANTIATE_TEST_SUITE_P(Edges, ReadEdgeTest,
                         ::testing::Values(EdgeCase{-4096, 4096, 4096},
                                           EdgeCase{-4096, 16384, 4096}, EdgeCase{-1, 512, 1},
                                           EdgeCase{-513, 4096, 513}, EdgeCase{0, 4096, 0},
                                           EdgeCase{1, 1, 0}, EdgeCase{1 << 20, 4096, 0}));

TEST_F(VolumeServerTest, WritesLandInTheVolumeAndReadBack) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 8u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  const auto a = pattern(3u << 20, 1);
  const off_t off = 777;
  ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), off), static_cast<ssize_t>(a.size()));
  const auto now = v->data();
  EXPECT_EQ(0, std::memcmp(now.data() + off, a.data(), a.size()));
  std::vector<std::byte> back(a.size());
  ASSERT_EQ(pread(fd.get(), back.data(), back.size(), off), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, a);
  EXPECT_EQ(v->violations(), 0);
}

TEST_F(VolumeServerTest, WriteAtOrPastTheEndIsEnospcAndCrossingTheEndIsShort) {
  mount();
  const std::uint64_t size = 1u << 20;
  FakeVolume* v = add("vol", {.size_bytes = size});
  UniqueFd fd = open_file("vol", O_WRONLY);
  const auto buf = pattern(8192, 2);
  errno = 0;
  EXPECT_EQ(pwrite(fd.get(), buf.data(), 4096, static_cast<off_t>(size)), -1);
  EXPECT_EQ(errno, ENOSPC);
  errno = 0;
  EXPECT_EQ(pwrite(fd.get(), buf.data(), 1, static_cast<off_t>(size + 4096)), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(pwrite(fd.get(), buf.data(), 8192, static_cast<off_t>(size - 100)), 100);
  const auto now = v->data();
  EXPECT_EQ(0, std::memcmp(now.data() + size - 100, buf.data(), 100));
  EXPECT_EQ(v->violations(), 0);
}

struct ErrnoCase {
  Op op;
  Errc code;
};
class ErrnoTest : public VolumeServerTest, public ::testing::WithParamInterface<ErrnoCase> {};

TEST_P(ErrnoTest, VolumeErrorReachesTheCallerAsToErrno) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  const ErrnoCase c = GetParam();
  const int want = to_errno(make_error(c.code, "x"));
  v->fail_next(c.op, c.code);
  std::vector<std::byte> buf(4096);
  errno = 0;
  switch (c.op) {
    case Op::kRead:
      EXPECT_EQ(pread(fd.get(), buf.data(), buf.size(), 8192), -1);
      break;
    case Op::kWrite:
      EXPECT_EQ(pwrite(fd.get(), buf.data(), buf.size(), 8192), -1);
      break;
    case Op::kFlush:
      EXPECT_EQ(fsync(fd.get()), -1);
      break;
  }
  EXPECT_EQ(errno, want) << "got " << std::strerror(errno) << ", want " << std::strerror(want);
  // The next operation of the same kind succeeds again: errors are per request.
  switch (c.op) {
    case Op::kRead:
      EXPECT_EQ(pread(fd.get(), buf.data(), buf.size(), 8192), 4096);
      break;
    case Op::kWrite:
      EXPECT_EQ(pwrite(fd.get(), buf.data(), buf.size(), 8192), 4096);
      break;
    case Op::kFlush:
      EXPECT_EQ(fsync(fd.get()), 0);
      break;
  }
}
std::vector<ErrnoCase> errno_cases() {
  std::vector<ErrnoCase> out;
  for (Op op : {Op::kRead, Op::kWrite, Op::kFlush})
    for (Errc c : {Errc::kIo, Errc::kNoSpace, Errc::kReadOnly, Errc::kAuth, Errc::kCorrupt,
                   Errc::kUnsupported, Errc::kInvalid, Errc::kBusy, Errc::kZoneOrder})
      out.push_back({op, c});
  return out;
}
std::string errno_case_name(const ::testing::TestParamInfo<ErrnoCase>& p) {
  static const char* const kOps[] = {"Read", "Write", "Fsync"};
  std::string n = kOps[static_cast<int>(p.param.op)];
  for (char ch : std::string(errc_name(p.param.code)))
    if (std::isalnum(static_cast<unsigned char>(ch))) n += ch;
  return n;
}
INSTANTIATE_TEST_SUITE_P(AllOps, ErrnoTest, ::testing::ValuesIn(errno_cases()), errno_case_name);

TEST_F(VolumeServerTest, FsyncAndFdatasyncFlushTheVolume) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  const auto a = pattern(65536, 9);
  ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), 4096), 65536);
  EXPECT_NE(0, std::memcmp(v->durable().data() + 4096, a.data(), a.size()));
  const int before = v->flushes();
  ASSERT_EQ(fsync(fd.get()), 0);
  EXPECT_EQ(v->flushes(), before + 1);
  EXPECT_EQ(0, std::memcmp(v->durable().data() + 4096, a.data(), a.size()));
  ASSERT_EQ(pwrite(fd.get(), a.data(), 512, 0), 512);
  ASSERT_EQ(fdatasync(fd.get()), 0);
  EXPECT_EQ(v->flushes(), before + 2);
  EXPECT_EQ(0, std::memcmp(v->durable().data(), a.data(), 512));
}

// The kernel sends no fsync after an O_DSYNC or RWF_DSYNC write on a direct-I/O file, only the
// flag with the write: the server must make that write durable before answering it
// (Volume::write_fua; FakeVolume's is the default, a write and a flush). Plain writes are not.
TEST_F(VolumeServerTest, DsyncWritesAreDurableWhenAnsweredAndPlainWritesAreNot) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 1u << 20});
  const auto a = pattern(8192, 10);
  UniqueFd plain = open_file("vol", O_RDWR);
  const int before = v->flushes();
  ASSERT_EQ(pwrite(plain.get(), a.data(), 4096, 0), 4096);
  EXPECT_EQ(v->flushes(), before);
  EXPECT_NE(0, std::memcmp(v->durable().data(), a.data(), 4096));
  UniqueFd dsync = open_file("vol", O_RDWR | O_DSYNC);
  ASSERT_EQ(pwrite(dsync.get(), a.data(), 4096, 16384), 4096);
  EXPECT_EQ(v->flushes(), before + 1);
  EXPECT_EQ(0, std::memcmp(v->durable().data() + 16384, a.data(), 4096));
  UniqueFd sync = open_file("vol", O_RDWR | O_SYNC);
  ASSERT_EQ(pwrite(sync.get(), a.data() + 4096, 4096, 32768), 4096);
  EXPECT_EQ(v->flushes(), before + 2);
  iovec io{const_cast<std::byte*>(a.data()), 4096};
  ASSERT_EQ(pwritev2(plain.get(), &io, 1, 65536, RWF_DSYNC), 4096);
  EXPECT_EQ(v->flushes(), before + 3);
  EXPECT_EQ(0, std::memcmp(v->durable().data() + 65536, a.data(), 4096));
}

TEST_F(VolumeServerTest, ReadOnlyVolumeRefusesWriteOpensButReads) {
  mount();
  FakeVolume* v = add("ro", {.size_bytes = 1u << 20, .read_only = true});
  v->fill(4);
  errno = 0;
  EXPECT_EQ(::open(path("ro").c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::open(path("ro").c_str(), O_WRONLY), -1);
  UniqueFd fd = open_file("ro", O_RDONLY);
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(pread(fd.get(), buf.data(), buf.size(), 0), 4096);
}

TEST_F(VolumeServerTest, TruncateToAnotherSizeIsRefusedSameSizeAccepted) {
  mount();
  add("vol", {.size_bytes = 1u << 20});
  EXPECT_EQ(truncate(path("vol").c_str(), 4096), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(truncate(path("vol").c_str(), 1 << 20), 0) << std::strerror(errno);
  UniqueFd fd(::open(path("vol").c_str(), O_RDWR | O_TRUNC));  // ignored, like a block device
  EXPECT_TRUE(fd.valid());
  struct stat st {};
  ASSERT_EQ(stat(path("vol").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
}

TEST_F(VolumeServerTest, FallocateIsNotSupported) {
  mount();
  add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  EXPECT_EQ(fallocate(fd.get(), FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
}

// A volume that asks for arrival order (as a zoned one does).
class OrderingFakeVolume final : public FakeVolume {
 public:
  using FakeVolume::FakeVolume;
  bool orders_writes() const noexcept override { return true; }
};

TEST_F(VolumeServerTest, OrderingVolumeNeedsAnOrderedServer) {
  mount();
  auto r = server_->add_volume("z", std::make_unique<OrderingFakeVolume>(FakeVolume::Options{}),
                               {"/images/z.img", "", {}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
}

// Ordered receive: one worker at a time reads /dev/fuse and holds the order until its write is
// admitted. Many concurrent writers (and readers) must all be served, every byte must land, and
// stopping must not hang on workers waiting for the order (libfuse cancels idle workers). In the
// uring run the same mount is served by ring threads (the zoned order is then the volume's
// write pointer: tests/unit/volume/engine/zoned_volume_test.cpp, zoned_fio_order_uring).
TEST_F(VolumeServerTest, OrderedReceiveServesConcurrentWritersAndStops) {
  ServerOptions o;
  o.ordered_receive = true;
  mount(o);
  auto v = std::make_unique<OrderingFakeVolume>(
      FakeVolume::Options{.size_bytes = 4u << 20, .workers = 4});
  ASSERT_TRUE(server_->add_volume("z", std::move(v), {"/images/z.img", "", {}}).has_value());
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      UniqueFd fd(::open(path("z").c_str(), O_RDWR | O_CLOEXEC));
      std::vector<std::byte> back(16384);
      for (int i = 0; i < 64; ++i) {
        const off_t off = (t * 64 + i) * 8192;
        const auto a = pattern(8192, static_cast<std::uint32_t>(off));
        ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), off), 8192);
        ASSERT_GE(pread(fd.get(), back.data(), back.size(), off / 2), 0);
      }
    });
  }
  for (auto& t : ts) t.join();
  // An ordered (zoned) mount is served through the transport asked for, io_uring included.
  EXPECT_STREQ(server_->fuse_transport(), uring_run() ? "uring" : "dev");
  UniqueFd fd = open_file("z", O_RDONLY);
  std::vector<std::byte> got(8192);
  for (off_t off = 0; off < (4 << 20); off += 8192) {
    ASSERT_EQ(pread(fd.get(), got.data(), got.size(), off), 8192);
    ASSERT_EQ(got, pattern(8192, static_cast<std::uint32_t>(off))) << "at " << off;
  }
  fd.reset();
  server_->stop();
  EXPECT_TRUE(server_->stopped());
}

TEST_F(VolumeServerTest, StatfsCountsVolumes) {
  mount();
  add("a", {.size_bytes = 4u << 20});
  add("b", {.size_bytes = 2u << 20});
  struct statvfs st {};
  ASSERT_EQ(statvfs(mnt_.c_str(), &st), 0);
  EXPECT_EQ(st.f_blocks * st.f_frsize, 6u << 20);
  EXPECT_EQ(st.f_files, 3u);
}

// Without FOPEN_PARALLEL_DIRECT_WRITES the kernel holds the inode lock exclusively per direct
// write, so two writers can never be inside the volume at once. The gate holds each write until
// a second one arrives (or 5 s pass).
TEST_F(VolumeServerTest, ConcurrentWritersReachTheVolumeInParallel) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 4u << 20, .workers = 4});
  v->set_write_gate([v] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (v->max_parallel_writes() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&, t] {
      UniqueFd fd(::open(path("vol").c_str(), O_WRONLY | O_CLOEXEC));
      const auto a = pattern(4096, 100 + t);
      EXPECT_EQ(pwrite(fd.get(), a.data(), a.size(), t * 65536), 4096);
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_GE(v->max_parallel_writes(), 2);
}

TEST_F(VolumeServerTest, ConcurrentReadersAndWritersSeeConsistentData) {
  mount();
  constexpr std::size_t kRegion = 256u << 10;
  constexpr int kWriters = 4, kReaders = 4, kRounds = 20;
  FakeVolume* v = add("vol", {.size_bytes = kRegion * kWriters});
  v->fill(11);
  const auto initial = v->data();
  std::atomic<int> read_errors{0}, write_errors{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < kWriters; ++w) {
    ts.emplace_back([&, w] {
      UniqueFd fd(::open(path("vol").c_str(), O_RDWR | O_CLOEXEC));
      std::mt19937 rng(w);
      for (int r = 0; r < kRounds; ++r) {
        const std::size_t len = 1 + rng() % 70000;
        const std::size_t off = rng() % (kRegion - len);
        const auto a = pattern(len, w * 1000 + r);
        if (pwrite(fd.get(), a.data(), len, static_cast<off_t>(w * kRegion + off)) !=
            static_cast<ssize_t>(len)) {
          ++write_errors;
          continue;
        }
        std::vector<std::byte> b(len);  // own region: must read back exactly
        if (pread(fd.get(), b.data(), len, static_cast<off_t>(w * kRegion + off)) !=
                static_cast<ssize_t>(len) ||
            b != a)
          ++read_errors;
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    ts.emplace_back([&, r] {
      UniqueFd fd(::open(path("vol").c_str(), O_RDONLY | O_CLOEXEC));
      std::mt19937 rng(100 + r);
      std::vector<std::byte> b(128u << 10);
      for (int i = 0; i < kRounds * 2; ++i) {
        const std::size_t off = rng() % (kRegion * kWriters - b.size());
        if (pread(fd.get(), b.data(), b.size(), static_cast<off_t>(off)) !=
            static_cast<ssize_t>(b.size()))
          ++read_errors;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(read_errors.load(), 0);
  EXPECT_EQ(write_errors.load(), 0);
  EXPECT_EQ(v->violations(), 0);
  EXPECT_NE(v->data(), initial);
}

// Each serving thread replies to a read from its own buffer (serving_reply_buffer): with more
// readers than threads and a slow volume, two threads must never share one, or replies mix.
TEST_F(VolumeServerTest, ConcurrentReadsReplyFromEachServingThreadsOwnBuffer) {
  ServerOptions o;
  o.fuse_workers = 2;
  mount(o);
  FakeVolume* v = add("vol", {.size_bytes = 4u << 20, .delay = std::chrono::milliseconds(5)});
  v->fill(21);
  const auto data = v->data();
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      UniqueFd fd(::open(path("vol").c_str(), O_RDONLY | O_CLOEXEC));
      std::vector<std::byte> b(65536);
      for (int i = 0; i < 10; ++i) {
        const off_t off = (t * 10 + i) * 40000;
        if (pread(fd.get(), b.data(), b.size(), off) != 65536 ||
            std::memcmp(b.data(), data.data() + off, b.size()) != 0)
          ++bad;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(VolumeServerTest, WorkerThreadsAreIoFlushers) {
  int probe = -1;
  std::thread([&] { probe = prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0); }).join();
  if (probe != 0)
    GTEST_SKIP() << "PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE, which this process lacks";
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDONLY);
  std::vector<std::byte> b(4096);
  ASSERT_EQ(pread(fd.get(), b.data(), b.size(), 0), 4096);
  EXPECT_EQ(v->caller_io_flusher(), 1);
}

std::size_t thread_count() {
  std::size_t n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      n += std::isdigit(static_cast<unsigned char>(e->d_name[0])) ? 1 : 0;
    closedir(d);
  }
  return n;
}

// The memory-pressure deadlock (fs/internal/fuse_session.h): a receive buffer first touched by
// the kernel inside read(/dev/fuse). Every worker must exist from mount on, its buffer must be
// resident before the first request, and every request must be read into such a buffer (a
// loop that lets libfuse malloc its own buffers shows up as foreign receives).
TEST_F(VolumeServerTest, ReceiveBuffersArePreallocatedAtMountAndUsedForEveryRequest) {
  const std::size_t threads_before = thread_count();
  ServerOptions o;
  o.fuse_workers = 5;
  mount(o);
  const ServingStats at_mount = server_->serving_stats();
  // Next to the ring threads only two /dev/fuse workers (INIT, FORGET, INTERRUPT).
  const std::uint32_t dev_workers = uring_run() ? 2u : 5u;
  EXPECT_EQ(at_mount.workers, dev_workers);
  EXPECT_GE(thread_count(), threads_before + 5);                // all started, none on demand
  EXPECT_GE(at_mount.receive_buffer_bytes, (1u << 20) + 4096);  // a 1 MiB write + header
  EXPECT_TRUE(at_mount.receive_buffers_resident);
  FakeVolume* v = add("vol", {.size_bytes = 8u << 20, .workers = 2});
  // Large writes from several threads, so more than one worker receives a 1 MiB request.
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      UniqueFd fd(::open(path("vol").c_str(), O_WRONLY | O_CLOEXEC));
      const auto a = pattern(1u << 20, 200 + t);
      EXPECT_EQ(pwrite(fd.get(), a.data(), a.size(), off_t{t} << 20), 1 << 20);
    });
  }
  for (auto& t : ts) t.join();
  UniqueFd fd = open_file("vol", O_RDONLY);
  std::vector<std::byte> back(1u << 20);
  ASSERT_EQ(pread(fd.get(), back.data(), back.size(), 3 << 20), 1 << 20);
  EXPECT_EQ(back, pattern(1u << 20, 203));
  const ServingStats after = server_->serving_stats();
  EXPECT_GE(v->writes(), 4);
  if (uring_run())  // the /dev/fuse workers saw INIT; the rest came through the ring entries
    EXPECT_GT(after.uring_requests, at_mount.uring_requests + 4);
  else
    EXPECT_GT(after.requests, at_mount.requests);
  EXPECT_EQ(after.foreign_receives, 0u);
  EXPECT_TRUE(after.receive_buffers_resident);
  EXPECT_EQ(after.workers, dev_workers);
}

// Issue #13, the largest requests the kernel allows (max_pages 256): a 1 MiB O_DIRECT write and
// a 1 MiB O_DIRECT read each reach the volume as one request of 1 MiB, through /dev/fuse here
// and through the ring entries in the uring.* run.
TEST_F(VolumeServerTest, AOneMibDirectWriteAndReadReachTheVolumeAsOneRequestEach) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 8u << 20});
  ASSERT_NE(v, nullptr);
  constexpr std::size_t kMiB = 1u << 20;
  void* mem = nullptr;
  ASSERT_EQ(posix_memalign(&mem, 4096, kMiB), 0);
  std::unique_ptr<void, decltype(&std::free)> buf(mem, &std::free);
  const auto a = pattern(kMiB, 77);
  std::memcpy(mem, a.data(), kMiB);
  UniqueFd fd(::open(path("vol").c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << std::strerror(errno);
  const int writes = v->writes(), reads = v->reads();
  ASSERT_EQ(pwrite(fd.get(), mem, kMiB, 2 * kMiB), static_cast<ssize_t>(kMiB));
  EXPECT_EQ(v->writes(), writes + 1) << "the 1 MiB write was split";
  EXPECT_EQ(v->largest_write(), kMiB);
  std::memset(mem, 0, kMiB);
  ASSERT_EQ(pread(fd.get(), mem, kMiB, 2 * kMiB), static_cast<ssize_t>(kMiB));
  EXPECT_EQ(v->reads(), reads + 1) << "the 1 MiB read was split";
  EXPECT_EQ(v->largest_read(), kMiB);
  EXPECT_EQ(std::memcmp(mem, a.data(), kMiB), 0);
  EXPECT_STREQ(server_->fuse_transport(), uring_run() ? "uring" : "dev");
}

// When INIT does not ask for io_uring after the rings were prepared, the ring threads serve
// /dev/fuse with their entries' buffers: the fallback keeps its depth although the mount
// started only two /dev/fuse workers (more than two writes must be in the volume at once).
TEST_F(VolumeServerTest, RingThreadsServeDevFuseWhenInitDoesNotAskForTheRings) {
  if (!uring_run()) GTEST_SKIP() << "runs in the uring.* run, which owns enable_uring";
  ServerOptions o;
  o.fuse_workers = 8;
  setenv("CRYPTMAP_TEST_FUSE_URING_REFUSE_INIT", "1", 1);
  mount(o);
  unsetenv("CRYPTMAP_TEST_FUSE_URING_REFUSE_INIT");
  FakeVolume* v =
      add("vol", {.size_bytes = 8u << 20, .workers = 8, .delay = std::chrono::milliseconds(20)});
  ASSERT_NE(v, nullptr);
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      UniqueFd fd(::open(path("vol").c_str(), O_RDWR | O_CLOEXEC));
      const auto a = pattern(64u << 10, 300 + t);
      for (int i = 0; i < 5; ++i)
        EXPECT_EQ(pwrite(fd.get(), a.data(), a.size(), off_t{t} << 20), 64 << 10);
      std::vector<std::byte> b(a.size());
      EXPECT_EQ(pread(fd.get(), b.data(), b.size(), off_t{t} << 20), 64 << 10);
      EXPECT_EQ(a, b);
    });
  }
  for (auto& t : ts) t.join();
  const ServingStats st = server_->serving_stats();
  EXPECT_STREQ(server_->fuse_transport(), "dev");
  EXPECT_FALSE(st.uring);
  EXPECT_EQ(st.workers, 2u);
  EXPECT_EQ(st.uring_requests, 0u);
  EXPECT_EQ(st.foreign_receives, 0u);
  EXPECT_GT(v->max_parallel_writes(), 2);
}

// An unmount from outside (or an aborted connection) makes one worker's read fail with ENODEV;
// the session must then end every worker, not leave the others blocked in read(/dev/fuse).
TEST_F(VolumeServerTest, UnmountFromOutsideEndsEveryWorker) {
  mount();
  add("vol");
  ASSERT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0) << std::strerror(errno);
  // Bounded wait, not a speed assertion: the session ends in milliseconds or never.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!server_->stopped() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(server_->stopped());
  server_.reset();  // joins the workers: would hang if one were still blocked
}

TEST_F(VolumeServerTest, AddRejectsDuplicateAndInvalidNames) {
  mount();
  add("vol");
  auto dup = server_->add_volume("vol", std::make_unique<FakeVolume>(FakeVolume::Options{}), {});
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().code, Errc::kBusy);
  EXPECT_NE(dup.error().message().find("Device vol already exists."), std::string::npos)
      << dup.error().message();
  for (const char* bad : {"", ".", "..", "a/b"}) {
    auto r = server_->add_volume(bad, std::make_unique<FakeVolume>(FakeVolume::Options{}), {});
    EXPECT_FALSE(r.has_value()) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kInvalid);
    }
  }
  EXPECT_EQ(server_->volume_count(), 1u);
}

TEST_F(VolumeServerTest, RemoveRefusesWhileOpenThenFlushesAndTheFileDisappears) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 1u << 20});
  add("other", {.size_bytes = 1u << 20});
  {
    UniqueFd fd = open_file("vol", O_RDWR);
    const auto a = pattern(4096, 5);
    ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), 0), 4096);
    auto busy = server_->remove_volume("vol", false);
    ASSERT_FALSE(busy.has_value());
    EXPECT_EQ(busy.error().code, Errc::kBusy);
    EXPECT_NE(busy.error().message().find("still in use"), std::string::npos);
    EXPECT_EQ(v->flushes(), 0);
  }
  // close(2) returns before the kernel's RELEASE reaches us; remove_volume gives it a grace
  // period, but a loaded machine may need longer: wait for it here, bounded.
  for (int i = 0; i < 3000; ++i) {
    auto st = server_->status();
    if (!st.empty() && st[0].open_count == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto r = server_->remove_volume("vol", false);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  struct stat st {};
  EXPECT_EQ(stat(path("vol").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(path("other").c_str(), &st), 0);
  auto again = server_->remove_volume("vol", false);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::kNotFound);
}

TEST_F(VolumeServerTest, ForcedRemoveWhileOpenFailsLaterIoWithEio) {
  mount();
  add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  ASSERT_TRUE(server_->remove_volume("vol", true).has_value());
  std::vector<std::byte> b(4096);
  errno = 0;
  EXPECT_EQ(pread(fd.get(), b.data(), b.size(), 0), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(pwrite(fd.get(), b.data(), b.size(), 0), -1);
  EXPECT_EQ(errno, EIO);
}

TEST_F(VolumeServerTest, StatusReportsEachVolume) {
  mount();
  add("a", {.size_bytes = 2u << 20});
  add("b", {.size_bytes = 1u << 20, .read_only = true});
  UniqueFd fd = open_file("a", O_RDONLY);
  auto st = server_->status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].name, "a");
  EXPECT_EQ(st[0].size_bytes, 2u << 20);
  EXPECT_EQ(st[0].open_count, 1u);
  EXPECT_EQ(st[0].source.image, "/images/a.img");
  EXPECT_FALSE(st[0].read_only);
  EXPECT_EQ(st[1].name, "b");
  EXPECT_TRUE(st[1].read_only);
  EXPECT_EQ(st[1].open_count, 0u);
  EXPECT_EQ(st[1].layout.cipher.chain_mode, "xts");
}

TEST_F(VolumeServerTest, StopWhileBusyFlushesUnmountsAndFailsLateIo) {
  mount();
  std::atomic<int> flushes{0};
  add("vol",
      {.size_bytes = 4u << 20, .delay = std::chrono::microseconds(200), .flush_counter = &flushes});
  std::atomic<bool> quit{false};
  std::atomic<int> ok_ops{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      UniqueFd fd(::open(path("vol").c_str(), O_RDWR | O_CLOEXEC));
      if (!fd.valid()) return;
      std::vector<std::byte> b(65536);
      while (!quit.load()) {
        const ssize_t n = (t % 2 == 0) ? pread(fd.get(), b.data(), b.size(), t * 65536)
                                       : pwrite(fd.get(), b.data(), b.size(), t * 65536);
        if (n < 0) break;  // ENOTCONN once the connection is gone
        ++ok_ops;
      }
    });
  }
  while (ok_ops.load() < 50) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  server_->stop();
  EXPECT_TRUE(server_->stopped());
  quit.store(true);
  for (auto& t : ts) t.join();
  EXPECT_GE(flushes.load(), 1);  // stop() flushed (and destroyed) the volume
  struct stat st {};
  EXPECT_NE(stat(path("vol").c_str(), &st), 0);
}

// luksSuspend/luksResume at the server: held I/O waits (no error), the volume is flushed and
// destroyed while suspended, and a held write lands in the resumed volume.
TEST_F(VolumeServerTest, SuspendHoldsIoDestroysTheVolumeAndResumeServesAgain) {
  mount();
  std::atomic<int> flushes{0};
  add("vol", {.size_bytes = 1u << 20, .flush_counter = &flushes});
  UniqueFd fd = open_file("vol", O_RDWR);
  ASSERT_TRUE(server_->suspend_volume("vol").has_value());
  EXPECT_GE(flushes.load(), 1);  // flushed before it was destroyed
  auto st = server_->status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(st[0].suspended);
  EXPECT_EQ(st[0].layout.cipher.chain_mode, "xts");  // status still describes it
  auto again = server_->suspend_volume("vol");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::kInvalid);
  EXPECT_NE(again.error().message().find("already suspended"), std::string::npos);

  const auto a = pattern(4096, 11);
  std::atomic<bool> done{false};
  ssize_t written = 0;
  std::thread writer([&] {
    written = pwrite(fd.get(), a.data(), a.size(), 8192);
    done.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(done.load()) << "a write completed on a suspended volume";
  struct stat sb {};
  EXPECT_EQ(stat(path("vol").c_str(), &sb), 0);  // metadata is still answered (ls -l)
  EXPECT_EQ(sb.st_size, 1 << 20);
  char xattr[64];
  EXPECT_EQ(getxattr(path("vol").c_str(), "system.posix_acl_access", xattr, sizeof(xattr)), -1);
  EXPECT_EQ(errno, ENODATA);
  EXPECT_EQ(listxattr(path("vol").c_str(), xattr, sizeof(xattr)), 0);

  auto wrong = server_->resume_volume(
      "vol", std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 2u << 20}));
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code, Errc::kInvalid);
  EXPECT_FALSE(done.load());
  auto r = server_->resume_volume(
      "vol", std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20}));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  writer.join();
  EXPECT_EQ(written, 4096);
  std::vector<std::byte> back(4096);
  ASSERT_EQ(pread(fd.get(), back.data(), back.size(), 8192), 4096);
  EXPECT_EQ(back, a);
  EXPECT_FALSE(server_->status()[0].suspended);
  auto not_suspended = server_->resume_volume(
      "vol", std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20}));
  ASSERT_FALSE(not_suspended.has_value());
  EXPECT_NE(not_suspended.error().message().find("is not suspended"), std::string::npos);
  auto missing = server_->suspend_volume("nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
}

TEST_F(VolumeServerTest, ClosingASuspendedVolumeFailsItsHeldIoWithEio) {
  mount();
  add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  ASSERT_TRUE(server_->suspend_volume("vol").has_value());
  std::atomic<int> err{0};
  std::thread reader([&] {
    std::vector<std::byte> b(4096);
    if (pread(fd.get(), b.data(), b.size(), 0) < 0) err.store(errno);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(err.load(), 0);
  ASSERT_TRUE(server_->remove_volume("vol", true).has_value());
  reader.join();
  EXPECT_EQ(err.load(), EIO);
}

TEST_F(VolumeServerTest, StopWhileSuspendedFailsHeldIoAndUnmounts) {
  mount();
  add("vol", {.size_bytes = 1u << 20});
  UniqueFd fd = open_file("vol", O_RDWR);
  ASSERT_TRUE(server_->suspend_volume("vol").has_value());
  std::atomic<ssize_t> n{1};
  std::thread writer([&] {
    std::vector<std::byte> b(4096);
    n.store(pwrite(fd.get(), b.data(), b.size(), 0));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  server_->stop();  // must not wait for the held request forever
  writer.join();
  EXPECT_EQ(n.load(), -1);
  EXPECT_TRUE(server_->stopped());
}

// resize at the server (cryptmap resize): the kernel's size of the file changes at once (stat and
// fstat right after it), reads and writes follow the new end, and a failed resize changes
// nothing.
TEST_F(VolumeServerTest, ResizeChangesTheFileSizeAtOnceAndIoFollowsTheNewEnd) {
  mount();
  FakeVolume* v = add("vol", {.size_bytes = 1u << 20, .image_bytes = 2u << 20});
  ASSERT_NE(v, nullptr);
  UniqueFd fd = open_file("vol", O_RDWR);
  struct stat sb {};
  ASSERT_EQ(fstat(fd.get(), &sb), 0);
  ASSERT_EQ(sb.st_size, 1 << 20);
  std::vector<std::byte> b(4096);
  EXPECT_EQ(pread(fd.get(), b.data(), b.size(), 1 << 20), 0);

  auto grown = server_->resize_volume("vol", 0);
  ASSERT_TRUE(grown.has_value()) << grown.error().message();
  EXPECT_EQ(*grown, 2u << 20);
  ASSERT_EQ(fstat(fd.get(), &sb), 0);
  EXPECT_EQ(sb.st_size, 2 << 20) << "the kernel still has the old size";
  ASSERT_EQ(stat(path("vol").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_size, 2 << 20);
  const auto a = pattern(4096, 21);
  ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), (2 << 20) - 4096), 4096);
  ASSERT_EQ(pread(fd.get(), b.data(), b.size(), (2 << 20) - 4096), 4096);
  EXPECT_EQ(b, a);
  EXPECT_EQ(pread(fd.get(), b.data(), b.size(), 2 << 20), 0);
  EXPECT_EQ(server_->status()[0].size_bytes, 2u << 20);

  auto shrunk = server_->resize_volume("vol", 512u << 10);
  ASSERT_TRUE(shrunk.has_value()) << shrunk.error().message();
  ASSERT_EQ(fstat(fd.get(), &sb), 0);
  EXPECT_EQ(sb.st_size, 512 << 10);
  EXPECT_EQ(pread(fd.get(), b.data(), b.size(), 512 << 10), 0) << "EOF at the new end";
  EXPECT_EQ(pread(fd.get(), b.data(), b.size(), (512 << 10) - 1024), 1024) << "short read";
  errno = 0;
  EXPECT_EQ(pwrite(fd.get(), a.data(), a.size(), 512 << 10), -1);
  EXPECT_EQ(errno, ENOSPC);

  auto too_big = server_->resize_volume("vol", 4u << 20);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error().code, Errc::kNoSpace);
  ASSERT_EQ(fstat(fd.get(), &sb), 0);
  EXPECT_EQ(sb.st_size, 512 << 10) << "a failed resize changed the size";
  EXPECT_EQ(v->resizes(), 2);
  EXPECT_EQ(v->violations(), 0);
  auto missing = server_->resize_volume("nope", 0);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
}

// The server holds the file's I/O while the volume changes size: no request reaches the volume
// during resize (the fake counts a violation if one does), and none fails for it.
TEST_F(VolumeServerTest, ResizeUnderConcurrentIoNeverOverlapsARequest) {
  mount();
  FakeVolume* v = add(
      "vol",
      {.size_bytes = 1u << 20, .delay = std::chrono::microseconds(200), .image_bytes = 2u << 20});
  ASSERT_NE(v, nullptr);
  UniqueFd fd = open_file("vol", O_RDWR);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> io;
  for (int t = 0; t < 4; ++t) {
    io.emplace_back([&, t] {
      std::vector<std::byte> b(4096);
      for (std::uint64_t i = 0; !stop.load(); ++i) {
        const off_t at = static_cast<off_t>(((i * 7 + t) % 128) * 4096);  // within 512 KiB
        const ssize_t n = (i % 2 == 0) ? pread(fd.get(), b.data(), b.size(), at)
                                       : pwrite(fd.get(), b.data(), b.size(), at);
        if (n != 4096) errors.fetch_add(1);
      }
    });
  }
  int failed = 0;  // no ASSERT while the threads run: they must be joined first
  for (int i = 0; i < 20; ++i) {
    const std::uint64_t size = (i % 2 == 0) ? (2u << 20) : (1u << 20);
    auto r = server_->resize_volume("vol", size);
    if (!r) {
      ADD_FAILURE() << r.error().message();
      ++failed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop.store(true);
  for (auto& t : io) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(v->violations(), 0);
  EXPECT_EQ(v->resizes(), 20 - failed);
  EXPECT_EQ(errors.load(), 0);
}

TEST_F(VolumeServerTest, ResizeAndRefreshOfASuspendedVolumeAreRefused) {
  mount();
  add("vol", {.size_bytes = 1u << 20, .image_bytes = 2u << 20});
  ASSERT_TRUE(server_->suspend_volume("vol").has_value());
  auto r = server_->resize_volume("vol", 0);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kInvalid);
  EXPECT_NE(r.error().message().find("suspended"), std::string::npos);
  auto f = server_->replace_volume(
      "vol", std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20}));
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().code, Errc::kInvalid);
  EXPECT_TRUE(server_->status()[0].suspended);
}

// refresh at the server: the old volume is flushed, then the new one serves the same file.
TEST_F(VolumeServerTest, ReplaceFlushesTheOldVolumeAndServesTheNewOne) {
  mount();
  std::atomic<int> old_flushes{0};
  FakeVolume* old = add("vol", {.size_bytes = 1u << 20, .flush_counter = &old_flushes});
  ASSERT_NE(old, nullptr);
  UniqueFd fd = open_file("vol", O_RDWR);
  auto other = server_->replace_volume(
      "vol", std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 2u << 20}));
  ASSERT_FALSE(other.has_value()) << "a volume of another size replaced the open one";
  EXPECT_EQ(other.error().code, Errc::kInvalid);
  auto fresh = std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20});
  fresh->fill(7);
  const auto expect = fresh->data();
  ASSERT_TRUE(server_->replace_volume("vol", std::move(fresh)).has_value());
  EXPECT_GE(old_flushes.load(), 1) << "the old volume was not flushed before it went";
  std::vector<std::byte> b(4096);
  ASSERT_EQ(pread(fd.get(), b.data(), b.size(), 4096), 4096);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), expect.begin() + 4096));
  auto missing = server_->replace_volume(
      "nope", std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20}));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
}

// The switch of an online datashift decryption's start (docs/reencrypt.md §10 item 10): `between`
// runs once the old volume is flushed, before the new one serves; when it fails the old volume
// serves on with its source, else the new one serves and status shows the new source.
TEST_F(VolumeServerTest, ReplaceRunsItsSwitchAfterTheFlushAndKeepsTheOldVolumeWhenItFails) {
  mount();
  std::atomic<int> old_flushes{0};
  FakeVolume* old = add("vol", {.size_bytes = 1u << 20, .flush_counter = &old_flushes});
  ASSERT_NE(old, nullptr);
  old->fill(3);
  const auto old_data = old->data();
  UniqueFd fd = open_file("vol", O_RDWR);
  auto fresh = std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20});
  fresh->fill(7);
  const auto new_data = fresh->data();
  int calls = 0, flushed_before = -1;
  auto failed = server_->replace_volume(
      "vol", std::move(fresh),
      [&]() -> Result<void> {
        ++calls;
        flushed_before = old_flushes.load();
        return fail(make_error(Errc::kIo, "switch failed"));
      },
      VolumeSource{"/img", "/new.hdr", {}});
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, Errc::kIo);
  EXPECT_EQ(calls, 1);
  EXPECT_GE(flushed_before, 1) << "the switch ran before the old volume was flushed";
  std::vector<std::byte> b(4096);
  ASSERT_EQ(pread(fd.get(), b.data(), b.size(), 8192), 4096);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), old_data.begin() + 8192))
      << "the old volume does not serve after a failed switch";
  EXPECT_TRUE(server_->status()[0].source.header.empty());

  fresh = std::make_unique<FakeVolume>(FakeVolume::Options{.size_bytes = 1u << 20});
  fresh->fill(7);
  auto switched = server_->replace_volume(
      "vol", std::move(fresh), [&]() -> Result<void> { return ok(); },
      VolumeSource{"/img", "/new.hdr", {}});
  ASSERT_TRUE(switched.has_value()) << switched.error().message();
  ASSERT_EQ(pread(fd.get(), b.data(), b.size(), 8192), 4096);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), new_data.begin() + 8192));
  EXPECT_EQ(server_->status()[0].source.header, "/new.hdr");
  EXPECT_EQ(server_->status()[0].source.image, "/img");
}

}  // namespace
}  // namespace cryptmap::fs
