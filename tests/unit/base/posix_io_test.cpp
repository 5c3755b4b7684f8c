// base/posix_io.h: full-length transfers over real fds — EINTR from a real signal on a pipe,
// short transfers, end of file reported apart from errno failures, bad fds named in the error.
#include "base/posix_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace cryptmap {
namespace {

std::vector<std::byte> data(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i * 31 + 7);
  return v;
}

class TempFile {
 public:
  TempFile() {
    char tmpl[] = "/tmp/cryptmap-posix-io-XXXXXX";
    fd_ = ::mkstemp(tmpl);
    path_ = tmpl;
  }
  ~TempFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

std::atomic<int> g_signals{0};
void count_signal(int) { g_signals.fetch_add(1); }

TEST(PosixIo, WritesThenReadsBackAFileAtAnOffset) {
  TempFile f;
  const auto a = data(100000);
  ASSERT_TRUE(pwrite_full(f.fd(), 4096, a, {.op = "write test file", .name = f.path()}));
  std::vector<std::byte> back(a.size());
  ASSERT_TRUE(pread_full(f.fd(), 4096, back, {.op = "read test file", .name = f.path()}));
  EXPECT_EQ(back, a);
}

TEST(PosixIo, AReadMeetingEndOfFileFailsDistinctlyAtTheOffsetWhereTheFileEnded) {
  TempFile f;
  ASSERT_TRUE(pwrite_full(f.fd(), 0, data(1000), {.op = "write test file", .name = f.path()}));
  std::vector<std::byte> out(600);
  const IoNames names{
      .op = "read test file", .past_end = "read test file past its end", .name = f.path()};
  auto r = pread_full(f.fd(), 500, out, names);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_EQ(r.error().sys_errno, 0);
  EXPECT_STREQ(r.error().what, "read test file past its end");
  EXPECT_EQ(r.error().object, 1000u);
  EXPECT_NE(r.error().message().find(f.path()), std::string::npos) << r.error().message();
  // pread_upto stops there quietly and says how much it got.
  auto n = pread_upto(f.fd(), 500, out, names);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 500u);
}

TEST(PosixIo, ABadFdFailsWithItsErrnoTheOperationAndTheName) {
  std::vector<std::byte> buf(10);
  auto r = pread_full(-1, 77, buf, {.op = "read the image", .name = "/images/x.img"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, EBADF);
  EXPECT_STREQ(r.error().what, "read the image");
  EXPECT_EQ(r.error().object, 77u);
  EXPECT_NE(r.error().message().find("/images/x.img"), std::string::npos);
  auto w = pwrite_full(-1, 5, buf, {.op = "write the image", .name = "/images/x.img"});
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().sys_errno, EBADF);
  EXPECT_STREQ(w.error().what, "write the image");
  auto s = sync_fd(-1, true, {.op = "sync the image", .name = "/images/x.img"});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().sys_errno, EBADF);
}

TEST(PosixIo, ShortTransfersAreContinuedWhereTheyStopped) {
  const auto a = data(10000);
  std::vector<std::byte> sink(20000);
  int calls = 0;
  // A device that moves at most 7 bytes per call, and says EINTR every third call.
  auto step = [&](const void* buf, std::size_t len, std::uint64_t off) -> ssize_t {
    if (++calls % 3 == 0) return -EINTR;
    const std::size_t n = std::min<std::size_t>(len, 7);
    std::memcpy(sink.data() + off, buf, n);
    return static_cast<ssize_t>(n);
  };
  ASSERT_TRUE(write_loop(step, 5000, a, {.op = "write"}));
  EXPECT_GT(calls, 10000 / 7);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), sink.begin() + 5000));
  // A write that makes no progress is a full device, not an endless loop.
  auto stuck = write_loop([](const void*, std::size_t, std::uint64_t) -> ssize_t { return 0; }, 123,
                          a, {.op = "write stuck", .name = "dev"});
  ASSERT_FALSE(stuck);
  EXPECT_EQ(stuck.error().code, Errc::kNoSpace);
  EXPECT_EQ(stuck.error().object, 123u);
}

// A real signal interrupting a blocked read(2) on a pipe (handler without SA_RESTART, so the
// kernel returns EINTR); the writer then trickles the data in small pieces (short reads).
TEST(PosixIo, ASignalInterruptingABlockedReadIsRetriedAndShortReadsAreContinued) {
  struct sigaction sa {};
  struct sigaction old {};
  sa.sa_handler = count_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const auto a = data(5000);
  std::vector<std::byte> back(a.size());
  std::atomic<int> eintr{0};
  std::atomic<bool> reading{false};
  std::atomic<bool> done{false};
  Result<std::size_t> r = std::size_t{0};
  std::thread reader([&] {
    reading = true;
    r = read_loop(
        [&](void* buf, std::size_t len, std::uint64_t) -> ssize_t {
          const ssize_t n = ::read(p[0], buf, len);
          if (n < 0 && errno == EINTR) eintr.fetch_add(1);
          return n < 0 ? -errno : n;
        },
        0, back, {.op = "read pipe", .name = "pipe"}, AtEof::kFail);
    done = true;
  });
  while (!reading) std::this_thread::yield();
  g_signals = 0;
  // Signal until one lands while the reader is blocked in read(2) (nothing written yet).
  for (int i = 0; i < 200 && eintr.load() == 0; ++i) {
    ::pthread_kill(reader.native_handle(), SIGUSR1);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (std::size_t off = 0; off < a.size(); off += 999) {
    const std::size_t n = std::min<std::size_t>(999, a.size() - off);
    ASSERT_EQ(::write(p[1], a.data() + off, n), static_cast<ssize_t>(n));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  reader.join();
  ::close(p[0]);
  ::close(p[1]);
  ::sigaction(SIGUSR1, &old, nullptr);
  EXPECT_GT(g_signals.load(), 0);
  EXPECT_GT(eintr.load(), 0) << "no read(2) was interrupted; the test proved nothing";
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, a.size());
  EXPECT_EQ(back, a);
  EXPECT_TRUE(done);
}

TEST(PosixIo, APipeClosedEarlyIsEndOfFileNotAnErrno) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const auto a = data(100);
  ASSERT_EQ(::write(p[1], a.data(), a.size()), 100);
  ::close(p[1]);
  std::vector<std::byte> back(300);
  auto r = read_loop(
      [&](void* buf, std::size_t len, std::uint64_t) -> ssize_t {
        const ssize_t n = ::read(p[0], buf, len);
        return n < 0 ? -errno : n;
      },
      0, back, {.op = "read pipe", .past_end = "read pipe past its end", .name = "pipe"},
      AtEof::kFail);
  ::close(p[0]);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, 0);
  EXPECT_STREQ(r.error().what, "read pipe past its end");
  EXPECT_EQ(r.error().object, 100u);
}

TEST(PosixIo, OpenRetryingNamesThePathItCouldNotOpen) {
  auto r = open_retrying("/nonexistent/cryptmap/x", O_RDONLY | O_CLOEXEC, 0, "open image");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_NE(r.error().message().find("/nonexistent/cryptmap/x"), std::string::npos);
}

}  // namespace
}  // namespace cryptmap
