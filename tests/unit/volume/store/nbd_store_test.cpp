// The NBD store (volume/store/nbd_backing_store.h) against real nbdkit servers on private Unix
// sockets: the BackingStore contract over the memory plugin, the server's block-size
// constraints, multi-conn, server errors (error filter), a stalled server (delay filter), a
// server that is killed, one restarted (reconnection, the once-only sync failure), a read-only
// export, batches in flight together (log filter), durable writes as FUA or write + flush (log
// filter; eval plugin without FUA), and the URI recognition. Skips without nbdkit.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/data.h"
#include "tests/support/nbdkit.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/volume/store/backing_store_contract.h"
#include "volume/store/nbd_backing_store.h"

namespace cryptmap::volume {
namespace {

using namespace contract;  // the suite and its gtest registration state
using Clock = std::chrono::steady_clock;

// One nbdkit memory export per test; the read-only store is a second client of the same export.
struct NbdMemoryTraits {
  static constexpr bool kGrowsPastEnd = false;
  static constexpr std::uint64_t kIoUnit = 1;
  std::unique_ptr<test::NbdkitServer> server;
  std::unique_ptr<BackingStore> make(std::uint64_t region, bool read_only) {
    if (!server)
      server = std::make_unique<test::NbdkitServer>(
          std::vector<std::string>{"memory", std::to_string(region + (1 << 20))});
    if (!*server) {
      ADD_FAILURE() << server->missing();
      return nullptr;
    }
    auto s = open_nbd_store(server->uri(), {.read_only = read_only});
    if (!s) {
      ADD_FAILURE() << s.error().message();
      return nullptr;
    }
    return std::move(*s);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(NbdMemory, BackingStoreContract, ::testing::Types<NbdMemoryTraits>);

// A server that insists on 4 KiB-aligned requests of at most 64 KiB (and fails others).
struct NbdBlockSizeTraits {
  static constexpr bool kGrowsPastEnd = false;
  static constexpr std::uint64_t kIoUnit = 1;  // the store must hide the constraint
  std::unique_ptr<test::NbdkitServer> server;
  std::unique_ptr<BackingStore> make(std::uint64_t region, bool read_only) {
    if (!server)
      server = std::make_unique<test::NbdkitServer>(std::vector<std::string>{
          "--filter=blocksize-policy", "memory", std::to_string(region + (1 << 20)),
          "blocksize-minimum=4096", "blocksize-preferred=65536", "blocksize-maximum=65536",
          "blocksize-error-policy=error"});
    if (!*server) {
      ADD_FAILURE() << server->missing();
      return nullptr;
    }
    auto s = open_nbd_store(server->uri(), {.read_only = read_only});
    if (!s) {
      ADD_FAILURE() << s.error().message();
      return nullptr;
    }
    return std::move(*s);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(NbdBlockSize, BackingStoreContract,
                               ::testing::Types<NbdBlockSizeTraits>);

bool have_nbdkit() { return static_cast<bool>(test::NbdkitServer({"memory", "1M"})); }

TEST(NbdStoreUri, RecognisesLibnbdSchemesAndNothingElse) {
  EXPECT_TRUE(is_nbd_uri("nbd://localhost/export"));
  EXPECT_TRUE(is_nbd_uri("nbd://127.0.0.1:10809"));
  EXPECT_TRUE(is_nbd_uri("nbd+unix:///export?socket=/run/nbd.sock"));
  EXPECT_TRUE(is_nbd_uri("nbds+unix:///?socket=/s"));
  EXPECT_TRUE(is_nbd_uri("nbds://host/e"));
  EXPECT_TRUE(is_nbd_uri("nbd+vsock:///"));
  EXPECT_FALSE(is_nbd_uri("/var/lib/images/nbd://x"));
  EXPECT_FALSE(is_nbd_uri("nbd.img"));
  EXPECT_FALSE(is_nbd_uri("nbd:/x"));
  EXPECT_FALSE(is_nbd_uri("http://host/nbd"));
  EXPECT_FALSE(is_nbd_uri("rbd:pool/image"));
}

TEST(NbdStore, LargeRequestsAreSplitToTheServersMaximumAndComeBackIntact) {
  test::NbdkitServer srv({"--filter=blocksize-policy", "memory", "16M", "blocksize-minimum=512",
                          "blocksize-maximum=65536", "blocksize-error-policy=error"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.connections = 4});
  ASSERT_TRUE(s) << s.error().message();
  const auto data = test::deterministic_bytes(3 << 20, 7);
  ASSERT_TRUE((*s)->write_at(ByteOffset{4096}, data)) << "3 MiB write over a 64 KiB maximum";
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE((*s)->read_at(ByteOffset{4096}, back));
  EXPECT_EQ(back, data);
  EXPECT_TRUE((*s)->sync());
}

// How many `kind` requests ("Read", "Write") nbdkit's log filter saw arrive before the first of
// them was answered: 1 when a batch's pieces go one after another, all of them when they are in
// flight together.
int requests_before_first_reply(const std::string& log, const std::string& kind) {
  std::istringstream in(log);
  int arrived = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + kind + " id=") == std::string::npos &&
        line.find("..." + kind + " id=") == std::string::npos)
      continue;
    if (line.find("return=") != std::string::npos) return arrived;
    ++arrived;
  }
  return arrived;
}

// The engine's streaming reads and write-back passes hand the store batches; the NBD store puts
// every piece of one on the wire before it waits for any (the default runs them one by one).
// Each request takes the delay filter's second in the server, so the log shows whether the
// second piece arrived before the first was answered.
TEST(NbdStore, ABatchsPiecesAreInFlightTogether) {
  test::TempDir dir("cryptmap-nbd-batch");
  const std::string log = dir.file("requests.log");
  test::NbdkitServer srv({"--filter=log", "--filter=delay", "memory", "16M", "delay-read=1",
                          "delay-write=1", "logfile=" + log});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {});
  ASSERT_TRUE(s) << s.error().message();
  constexpr std::size_t kPiece = 256 << 10;
  const auto data = test::deterministic_bytes(4 * kPiece, 11);
  std::array<WritePiece, 4> writes;
  for (std::size_t i = 0; i < writes.size(); ++i)
    writes[i] = {ByteOffset{i * kPiece}, std::span(data).subspan(i * kPiece, kPiece)};
  ASSERT_TRUE((*s)->write_batch(writes));
  std::vector<std::byte> back(data.size());
  std::array<ReadPiece, 4> reads;
  for (std::size_t i = 0; i < reads.size(); ++i)
    reads[i] = {ByteOffset{i * kPiece}, std::span(back).subspan(i * kPiece, kPiece)};
  ASSERT_TRUE((*s)->read_batch(reads));
  EXPECT_EQ(back, data);
  const auto bytes = test::read_file(log);
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_EQ(requests_before_first_reply(text, "Write"), 4) << text;
  EXPECT_EQ(requests_before_first_reply(text, "Read"), 4) << text;
}

// The connections open to nbdkit (its log filter's "Connect" lines less its "Disconnect" ones).
int open_connections(const std::string& logfile) {
  const auto bytes = test::read_file(logfile);
  std::istringstream in(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  int open = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" Connect export=") != std::string::npos) ++open;
    if (line.find(" Disconnect ") != std::string::npos) --open;
  }
  return open;
}

// Multi-conn (NBD protocol: only a server that sets NBD_FLAG_CAN_MULTI_CONN promises that a
// flush on one connection covers writes completed on others): the memory plugin sets it, so the
// store opens the connections it was asked for and spreads a large request over them; the same
// export behind the multi-conn filter with multi-conn-mode=disable does not, so it opens one.
void expect_connections(const std::vector<std::string>& filters, int want) {
  test::TempDir dir("cryptmap-nbd-multiconn");
  const std::string log = dir.file("requests.log");
  std::vector<std::string> args{"--filter=log"};
  args.insert(args.end(), filters.begin(), filters.end());
  for (const char* a : {"memory", "16M"}) args.emplace_back(a);
  args.push_back("logfile=" + log);
  if (!filters.empty()) args.emplace_back("multi-conn-mode=disable");
  test::NbdkitServer srv(args);
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.connections = 3});
  ASSERT_TRUE(s) << s.error().message();
  // Enough requests that every connection carries some (round-robin, 4 MiB pieces at most).
  const auto data = test::deterministic_bytes(12 << 20, 41);
  ASSERT_TRUE((*s)->write_at(ByteOffset{0}, data));
  ASSERT_TRUE((*s)->sync());
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE((*s)->read_at(ByteOffset{0}, back));
  EXPECT_EQ(back, data);
  const auto bytes = test::read_file(log);
  EXPECT_EQ(open_connections(log), want)
      << std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

TEST(NbdStore, OpensSeveralConnectionsWhenTheServerAllowsMultiConn) { expect_connections({}, 3); }

TEST(NbdStore, OpensOneConnectionWhenTheServerDoesNotAllowMultiConn) {
  expect_connections({"--filter=multi-conn"}, 1);
}

// The requests nbdkit's log filter saw, in arrival order, as "Write fua=1", "Flush", "Read"
// (replies and other lines left out).
std::vector<std::string> logged_requests(const std::string& logfile) {
  const auto bytes = test::read_file(logfile);
  std::istringstream in(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    for (const char* kind : {"Read", "Write", "Flush"}) {
      if (line.find(std::string(" ") + kind + " id=") == std::string::npos) continue;
      std::string r = kind;
      if (const auto f = line.find(" fua="); f != std::string::npos) r += line.substr(f, 6);
      out.push_back(r);
    }
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// A durable write is one NBD write carrying FUA when the server advertises FUA: no flush. A sync
// after it still sends a flush (every write since the last acknowledged flush, FUA ones too),
// so an fsync never succeeds without one.
TEST(NbdStore, ADurableWriteIsOneFuaWriteWhenTheServerHasFua) {
  test::TempDir dir("cryptmap-nbd-fua");
  const std::string log = dir.file("requests.log");
  test::NbdkitServer srv({"--filter=log", "memory", "4M", "logfile=" + log});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.connections = 1});
  ASSERT_TRUE(s) << s.error().message();
  const auto d = test::deterministic_bytes(8192, 31);
  ASSERT_TRUE((*s)->write_fua(ByteOffset{4096}, d));
  EXPECT_EQ(joined(logged_requests(log)), "Write fua=1");
  ASSERT_TRUE((*s)->write_at(ByteOffset{65536}, d));
  ASSERT_TRUE((*s)->sync());
  EXPECT_EQ(joined(logged_requests(log)), "Write fua=1, Write fua=0, Flush");
  std::vector<std::byte> back(d.size());
  ASSERT_TRUE((*s)->read_at(ByteOffset{4096}, back));
  EXPECT_EQ(back, d);
}

// Without FUA from the server a durable write is a write and then a flush, answered only after
// the flush was. The server: nbdkit's eval plugin over a file, with flush but no FUA (nbdkit
// 1.32's fua filter has no fuamode=none).
TEST(NbdStore, ADurableWriteIsAWriteThenAFlushWithoutFua) {
  test::TempDir dir("cryptmap-nbd-nofua");
  const std::string log = dir.file("requests.log");
  const std::string img = dir.sized_file("disk.img", 4 << 20);
  test::NbdkitServer srv(
      {"--filter=log", "eval", "get_size=echo 4194304",
       "pread=dd if=" + img + " iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none",
       "pwrite=dd of=" + img + " oflag=seek_bytes conv=notrunc seek=$4 status=none",
       "can_write=exit 0", "can_flush=exit 0", "flush=sync " + img, "can_fua=echo none",
       "logfile=" + log});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.connections = 1});
  ASSERT_TRUE(s) << s.error().message();
  const auto d = test::deterministic_bytes(4096, 32);
  ASSERT_TRUE((*s)->write_fua(ByteOffset{0}, d));
  EXPECT_EQ(joined(logged_requests(log)), "Write fua=0, Flush");
}

// The store reports its durability semantics from the server's flags: flush and FUA as the
// server advertises them; a server without flush is taken to acknowledge only stable writes.
TEST(NbdStore, ReportsItsDurabilityFromTheServersFlags) {
  test::TempDir dir("cryptmap-nbd-durability");
  const std::string img = dir.sized_file("disk.img", 1 << 20);
  // nbdkit's eval plugin over a file: flush and FUA as each case says.
  auto eval_server = [&](const std::string& can_flush, const std::string& can_fua) {
    return std::make_unique<test::NbdkitServer>(std::vector<std::string>{
        "eval", "get_size=echo 1048576",
        "pread=dd if=" + img + " iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none",
        "pwrite=dd of=" + img + " oflag=seek_bytes conv=notrunc seek=$4 status=none",
        "can_write=exit 0", "can_flush=" + can_flush, "flush=sync " + img, "can_fua=" + can_fua});
  };
  struct Case {
    const char* what;
    std::unique_ptr<test::NbdkitServer> server;
    StoreDurability want;
  };
  Case cases[] = {
      {"memory plugin (flush, native FUA)",
       std::make_unique<test::NbdkitServer>(std::vector<std::string>{"memory", "1M"}),
       {true, true, true}},
      {"flush, no FUA", eval_server("exit 0", "echo none"), {true, true, false}},
      {"no flush, no FUA", eval_server("exit 3", "echo none"), {false, false, false}},
  };
  for (Case& c : cases) {
    if (!*c.server) GTEST_SKIP() << c.server->missing();
    auto s = open_nbd_store(c.server->uri(), {.connections = 1});
    ASSERT_TRUE(s) << c.what << ": " << s.error().message();
    const StoreDurability d = (*s)->durability();
    EXPECT_EQ(d, c.want) << c.what << ": volatile_writes " << d.volatile_writes << ", flush "
                         << d.flush << ", fua " << d.fua;
  }
}

TEST(NbdStore, ConcurrentWritersToNeighbouringSectorsOfOneServerBlockLoseNothing) {
  // 512-byte writes into 4 KiB server blocks are read-modify-writes; they must not undo each other.
  test::NbdkitServer srv({"--filter=blocksize-policy", "memory", "1M", "blocksize-minimum=4096",
                          "blocksize-error-policy=error"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {});
  ASSERT_TRUE(s) << s.error().message();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 16; ++round) {
        const auto d = test::deterministic_bytes(512, static_cast<unsigned>(t), 0);
        EXPECT_TRUE(
            (*s)->write_at(ByteOffset{static_cast<std::uint64_t>(round) * 4096 + t * 512}, d));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int round = 0; round < 16; ++round) {
    for (int t = 0; t < 8; ++t) {
      std::vector<std::byte> back(512);
      ASSERT_TRUE(
          (*s)->read_at(ByteOffset{static_cast<std::uint64_t>(round) * 4096 + t * 512}, back));
      EXPECT_EQ(back, test::deterministic_bytes(512, static_cast<unsigned>(t), 0))
          << "block " << round << " sector " << t;
    }
  }
}

TEST(NbdStore, AServerErrorIsAnIoErrorNamingTheExportForThatRequestOnly) {
  test::NbdkitServer srv({"--filter=error", "memory", "4M", "error=EIO", "error-pwrite-rate=1"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {});
  ASSERT_TRUE(s) << s.error().message();
  const auto d = test::deterministic_bytes(4096, 1);
  auto w = (*s)->write_at(ByteOffset{0}, d);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kIo);
  EXPECT_EQ(w.error().sys_errno, EIO);
  EXPECT_NE(w.error().message().find("socket="), std::string::npos) << w.error().message();
  std::vector<std::byte> back(4096);
  EXPECT_TRUE((*s)->read_at(ByteOffset{0}, back)) << "reads still work on the same connection";
}

TEST(NbdStore, AStalledServerFailsTheRequestAfterTheTimeoutInsteadOfHanging) {
  test::NbdkitServer srv({"--filter=delay", "memory", "4M", "delay-read=30"});
  if (!srv) GTEST_SKIP() << srv.missing();
  // One connection: the dropped one is the only one (with several, the others keep serving).
  auto s =
      open_nbd_store(srv.uri(), {.connections = 1, .timeout = std::chrono::milliseconds(1000)});
  ASSERT_TRUE(s) << s.error().message();
  std::vector<std::byte> back(4096);
  const auto t0 = Clock::now();
  auto r = (*s)->read_at(ByteOffset{0}, back);
  const auto waited = Clock::now() - t0;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_EQ(r.error().sys_errno, ETIMEDOUT);
  EXPECT_LT(waited, std::chrono::seconds(10));
  // The connection was dropped; the server itself is alive (it stalls reads only), so the next
  // request reconnects: a write is served at once, and a read is bounded by the timeout again.
  const auto t1 = Clock::now();
  EXPECT_TRUE((*s)->write_at(ByteOffset{0}, back));
  EXPECT_LT(Clock::now() - t1, std::chrono::seconds(5));
  const auto t2 = Clock::now();
  EXPECT_FALSE((*s)->read_at(ByteOffset{0}, back));
  EXPECT_LT(Clock::now() - t2, std::chrono::seconds(10));
}

// A slow server that keeps answering is not a stalled one: behind nbdkit's rate filter (2 MB/s
// after a 4 MiB burst) 16 readers of 512 KiB each share one connection, so the last replies come
// about 2 s after their requests, twice the store's 1 s timeout, while a reply arrives every
// quarter second. None may fail (the timeout runs from the connection's last reply, not from the
// request); the stalled-server test above checks that a silent server still fails in time.
TEST(NbdStore, ASlowServerThatKeepsAnsweringIsNotTakenForAStalledOne) {
  test::NbdkitServer srv({"--filter=rate", "memory", "16M", "rate=16M"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s =
      open_nbd_store(srv.uri(), {.connections = 1, .timeout = std::chrono::milliseconds(1000)});
  ASSERT_TRUE(s) << s.error().message();
  constexpr std::size_t kRead = 512 << 10;
  std::vector<std::thread> readers;
  std::vector<int> failed(16, 0);
  for (std::size_t t = 0; t < failed.size(); ++t)
    readers.emplace_back([&, t] {
      std::vector<std::byte> back(kRead, std::byte{1});
      const auto r = (*s)->read_at(ByteOffset{t * kRead}, back);
      failed[t] = !r || back != std::vector<std::byte>(kRead) ? 1 : 0;
      if (!r) ADD_FAILURE() << "reader " << t << ": " << r.error().message();
    });
  const auto t0 = Clock::now();
  for (auto& th : readers) th.join();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  EXPECT_EQ(std::count(failed.begin(), failed.end(), 1), 0);
  // The scenario itself: without the server's slowness the test would prove nothing.
  EXPECT_GT(took.count(), 1000) << "the rate filter did not slow the reads past the timeout";
}

TEST(NbdStore, AKilledServerFailsInFlightAndLaterRequestsPromptly) {
  test::NbdkitServer srv({"--filter=delay", "memory", "4M", "delay-write=2"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.timeout = std::chrono::seconds(60)});
  ASSERT_TRUE(s) << s.error().message();
  const auto d = test::deterministic_bytes(65536, 3);
  Result<void> w = ok();
  std::thread writer([&] { w = (*s)->write_at(ByteOffset{0}, d); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = Clock::now();
  srv.kill();
  writer.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5)) << "no wait for the 60 s timeout";
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kIo);
  std::vector<std::byte> back(4096);
  auto r = (*s)->read_at(ByteOffset{0}, back);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_FALSE((*s)->sync()) << "a flush nobody acknowledged is not a success";
}

// A server restarted on the same socket (nbdkit's file plugin: the export outlives the process):
// requests fail with EIO while it is down, the store reconnects once it is back and serves the
// data written before; the writes not yet flushed when the connection broke make the next sync
// fail once (a restarted server may have lost them), the one after succeeds.
TEST(NbdStore, ARestartedServerIsReconnectedAndUnflushedWritesFailTheNextSyncOnce) {
  test::TempDir dir("cryptmap-nbd-restart");
  const std::string file = dir.sized_file("export.img", 4 << 20);
  test::NbdkitServer srv({"file", file});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.timeout = std::chrono::seconds(20)});
  ASSERT_TRUE(s) << s.error().message();
  const auto flushed = test::deterministic_bytes(65536, 5);
  const auto unflushed = test::deterministic_bytes(65536, 6);
  ASSERT_TRUE((*s)->write_at(ByteOffset{0}, flushed));
  ASSERT_TRUE((*s)->sync());
  ASSERT_TRUE((*s)->write_at(ByteOffset{1 << 20}, unflushed));

  srv.kill();
  std::vector<std::byte> back(65536);
  const auto t0 = Clock::now();
  auto down = (*s)->read_at(ByteOffset{0}, back);
  ASSERT_FALSE(down) << "a read from a dead server succeeded";
  EXPECT_EQ(down.error().code, Errc::kIo);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5)) << "no wait for the 20 s timeout";

  ASSERT_TRUE(srv.start()) << srv.missing();
  Result<void> r = make_error(Errc::kIo, "not tried");
  for (int i = 0; i < 50 && !r; ++i) {  // reconnect attempts are at most one a second
    r = (*s)->read_at(ByteOffset{0}, back);
    if (!r) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(r) << "no reconnect to the restarted server: " << r.error().message();
  EXPECT_EQ(back, flushed);

  auto once = (*s)->sync();
  ASSERT_FALSE(once) << "sync succeeded although unflushed writes were in a lost connection";
  EXPECT_EQ(once.error().code, Errc::kIo);
  EXPECT_NE(once.error().message().find("lost"), std::string::npos) << once.error().message();
  EXPECT_TRUE((*s)->sync()) << "the loss is reported once";

  const auto after = test::deterministic_bytes(65536, 7);
  ASSERT_TRUE((*s)->write_at(ByteOffset{2 << 20}, after));
  ASSERT_TRUE((*s)->sync());
  ASSERT_TRUE((*s)->read_at(ByteOffset{2 << 20}, back));
  EXPECT_EQ(back, after);
}

// A server that comes back with a different export (another size) is not used.
TEST(NbdStore, AServerBackWithAnotherExportIsNotUsed) {
  test::TempDir dir("cryptmap-nbd-changed");
  const std::string file = dir.sized_file("export.img", 1 << 20);
  test::NbdkitServer srv({"file", file});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_nbd_store(srv.uri(), {.timeout = std::chrono::seconds(20)});
  ASSERT_TRUE(s) << s.error().message();
  srv.kill();
  dir.sized_file("export.img", 2 << 20);
  ASSERT_TRUE(srv.start()) << srv.missing();
  std::vector<std::byte> back(4096);
  for (int i = 0; i < 15; ++i) {
    auto r = (*s)->read_at(ByteOffset{0}, back);
    ASSERT_FALSE(r) << "served a changed export after a reconnect";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

TEST(NbdStore, NoServerAtTheSocketIsAClearErrorAtOpen) {
  if (!have_nbdkit()) GTEST_SKIP() << "nbdkit not installed";
  auto s = open_nbd_store("nbd+unix:///?socket=/nonexistent/cryptmap.sock", {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kIo);
  EXPECT_NE(s.error().message().find("/nonexistent/cryptmap.sock"), std::string::npos)
      << s.error().message();
}

TEST(NbdStore, AReadOnlyExportRefusesARead_writeOpenAndServesARead_onlyOne) {
  test::NbdkitServer srv({"-r", "memory", "1M"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto rw = open_nbd_store(srv.uri(), {});
  ASSERT_FALSE(rw);
  EXPECT_EQ(rw.error().code, Errc::kReadOnly);
  EXPECT_NE(rw.error().message().find("--readonly"), std::string::npos) << rw.error().message();
  auto ro = open_nbd_store(srv.uri(), {.read_only = true});
  ASSERT_TRUE(ro) << ro.error().message();
  EXPECT_TRUE((*ro)->read_only());
}

TEST(NbdStore, ImageStoreOpensUrisAsNbdAndPathsAsFiles) {
  test::NbdkitServer srv({"memory", "2M"});
  if (!srv) GTEST_SKIP() << srv.missing();
  auto s = open_image_store(srv.uri(), {.read_only = true});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)->size_bytes(), 2u << 20);
  EXPECT_EQ((*s)->name(), srv.uri());
  auto f = open_image_store("/nonexistent/cryptmap-image", {});
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message().find("/nonexistent/cryptmap-image"), std::string::npos);
}

}  // namespace
}  // namespace cryptmap::volume
