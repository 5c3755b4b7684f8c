// UringRings (volume/store/internal/uring_batch.h) when the ring breaks in the middle of a batch:
// no piece is finished, and no buffer handed back, while the kernel may still write into it.
//
// The read that stays in flight is one on a Unix socket with nothing to read (the kernel parks
// it until data comes). After run() returns, the test sends data: a read still armed in the ring
// would take it into the piece's buffer (its completion runs as task work of this thread when
// send() returns); a read that the batch cancelled or reaped leaves the data in the socket.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "volume/store/internal/uring_batch.h"

namespace cryptmap::volume {
namespace {

bool io_uring_allowed() {
  FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r");
  if (f == nullptr) return true;  // kernels before 6.6 have no such switch
  int v = 0;
  const bool got = std::fscanf(f, "%d", &v) == 1;
  std::fclose(f);
  return !got || v == 0;
}

// Read pieces on given fds into the view's own buffers; counts finish() per piece.
class ReadView final : public BatchView {
 public:
  struct Piece {
    int fd;
    std::vector<std::byte> buf;
    int finishes = 0;
    int err = 0;
  };
  std::vector<Piece> pieces;

  void add(int fd, std::size_t len) {
    pieces.push_back({fd, std::vector<std::byte>(len, std::byte{0xee})});
  }
  std::size_t size() const noexcept override { return pieces.size(); }
  std::byte* buf(std::size_t i) const noexcept override {
    return const_cast<std::byte*>(pieces[i].buf.data());
  }
  std::size_t len(std::size_t i) const noexcept override { return pieces[i].buf.size(); }
  std::uint64_t off(std::size_t) const noexcept override { return 0; }
  int fd_for(std::uint64_t, const void* b, std::size_t) const noexcept override {
    for (const Piece& p : pieces) {
      if (p.buf.data() == b) return p.fd;
    }
    return -1;
  }
  void finish(std::size_t i, int err, std::uint64_t) noexcept override {
    ++pieces[i].finishes;
    pieces[i].err = err;
  }
};

bool untouched(const std::vector<std::byte>& b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0xee}; });
}

class UringBrokenEnterTest : public ::testing::TestWithParam<UringRings::EnterFault> {
 protected:
  void SetUp() override {
    if (!io_uring_allowed()) GTEST_SKIP() << "io_uring is disabled on this kernel";
    auto r = UringRings::create(1, 8);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    rings_ = std::move(*r);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    idle_ = UniqueFd(sv[0]);  // read by the ring: nothing arrives until the test sends
    peer_ = UniqueFd(sv[1]);
    char tmpl[] = "/tmp/cryptmap-uring-XXXXXX";
    file_ = UniqueFd(::mkstemp(tmpl));
    ASSERT_TRUE(file_.valid());
    ::unlink(tmpl);
    const std::vector<char> data(kLen, 'f');
    ASSERT_EQ(::pwrite(file_.get(), data.data(), data.size(), 0), static_cast<ssize_t>(kLen));
  }

  static constexpr std::size_t kLen = 4096;
  std::unique_ptr<UringRings> rings_;
  UniqueFd idle_, peer_, file_;
};

// A broken ring fails the idle read, and only after the kernel let go of its buffer: data sent
// afterwards stays in the socket and the buffer keeps its bytes. Each piece finishes exactly once;
// the ring is retired (the next batch finds none free).
TEST_P(UringBrokenEnterTest, NoPieceFinishesWhileItsReadCanStillLandInItsBuffer) {
  ReadView v;
  v.add(file_.get(), kLen);  // completes at once (page cache)
  v.add(idle_.get(), kLen);  // stays in flight
  v.add(file_.get(), kLen);
  rings_->fail_next_enter_for_testing(GetParam(), EBADFD);
  ASSERT_TRUE(rings_->run(v, /*write=*/false));

  for (std::size_t i = 0; i < v.pieces.size(); ++i) EXPECT_EQ(v.pieces[i].finishes, 1) << i;
  EXPECT_EQ(v.pieces[1].err, EBADFD);
  for (std::size_t i : {0u, 2u}) {
    // A transfer that had completed in full keeps its success; anything else fails.
    const ReadView::Piece& p = v.pieces[i];
    if (p.err == 0) {
      EXPECT_TRUE(std::all_of(p.buf.begin(), p.buf.end(), [](std::byte x) {
        return x == std::byte{'f'};
      })) << i;
    } else {
      EXPECT_EQ(p.err, EBADFD) << i;
    }
  }
  if (GetParam() == UringRings::EnterFault::kBeforeSubmit) {
    // Nothing reached the kernel: every piece fails, no buffer was written.
    for (const ReadView::Piece& p : v.pieces) {
      EXPECT_EQ(p.err, EBADFD);
      EXPECT_TRUE(untouched(p.buf));
    }
  }

  const std::string sent(kLen, 's');
  ASSERT_EQ(::send(peer_.get(), sent.data(), sent.size(), 0), static_cast<ssize_t>(kLen));
  std::string got(kLen, '\0');
  EXPECT_EQ(::recv(idle_.get(), got.data(), got.size(), MSG_DONTWAIT), static_cast<ssize_t>(kLen))
      << "the batch's read took the data after run() had returned: " << std::strerror(errno);
  EXPECT_TRUE(got == sent) << "the socket lost its data to the batch's read";
  EXPECT_TRUE(untouched(v.pieces[1].buf)) << "written after its piece had failed";
  EXPECT_EQ(v.pieces[1].finishes, 1);

  ReadView again;
  again.add(file_.get(), kLen);
  again.add(file_.get(), kLen);
  EXPECT_FALSE(rings_->run(again, false)) << "a broken ring was given back";
}

INSTANTIATE_TEST_SUITE_P(Uring, UringBrokenEnterTest,
                         ::testing::Values(UringRings::EnterFault::kAfterSubmit,
                                           UringRings::EnterFault::kBeforeSubmit),
                         [](const auto& p) {
                           return p.param == UringRings::EnterFault::kAfterSubmit
                                      ? std::string("AfterSubmit")
                                      : std::string("BeforeSubmit");
                         });

}  // namespace
}  // namespace cryptmap::volume
