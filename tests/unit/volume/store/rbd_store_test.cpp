// The RBD store (volume/store/rbd_backing_store.h) against a real Ceph cluster: the BackingStore
// contract over fresh RBD images, the image argument's parsing, a snapshot opened read-only, the
// exclusive lock of a read-write open, and a missing image. Needs a running cluster: CEPH_CONF
// names it and CRYPTMAP_TEST_RBD_POOL the pool to create images in;
// tests/integration/rbd_cluster.sh starts a one-node cluster and runs this binary. Without them
// every test that needs the cluster skips.
#include <gtest/gtest.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/data.h"
#include "tests/unit/volume/store/backing_store_contract.h"
#include "volume/store/nbd_backing_store.h"
#include "volume/store/rbd_backing_store.h"

namespace cryptmap::volume {
namespace {

using namespace contract;  // the suite and its gtest registration state

const char* test_pool() { return std::getenv("CRYPTMAP_TEST_RBD_POOL"); }

// A librados connection for making and snapshotting test images.
class Admin {
 public:
  Admin() {
    if (test_pool() == nullptr || std::getenv("CEPH_CONF") == nullptr) return;
    if (rados_create(&cluster_, nullptr) < 0) return;
    if (rados_conf_read_file(cluster_, nullptr) < 0 || rados_connect(cluster_) < 0) return;
    if (rados_ioctx_create(cluster_, test_pool(), &io_) < 0) return;
    ok_ = true;
  }
  ~Admin() {
    if (io_) rados_ioctx_destroy(io_);
    if (cluster_) rados_shutdown(cluster_);
  }
  explicit operator bool() const { return ok_; }
  // A new image of `size` bytes; returns its rbd: argument ("" on failure).
  std::string create(std::uint64_t size) {
    static std::atomic<int> n{0};
    const std::string name = "contract-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
    int order = 22;  // 4 MiB objects
    if (rbd_create(io_, name.c_str(), size, &order) < 0) return "";
    return std::string("rbd:") + test_pool() + "/" + name;
  }
  // Sets an image-level librbd option (what `rbd config image set IMAGE KEY VALUE` stores).
  bool configure(const std::string& image, const std::string& key, const std::string& value) {
    rbd_image_t img = nullptr;
    if (rbd_open(io_, image.c_str(), &img, nullptr) < 0) return false;
    const bool done = rbd_metadata_set(img, ("conf_" + key).c_str(), value.c_str()) == 0;
    rbd_close(img);
    return done;
  }
  // osd.0's count of write ops it served (`ceph tell osd.0 perf dump`, "osd": "op_w"); -1 when
  // the cluster does not answer.
  long long osd_writes() {
    const char* cmd[] = {R"({"prefix": "perf dump"})"};
    char* out = nullptr;
    char* outs = nullptr;
    std::size_t out_len = 0, outs_len = 0;
    if (rados_osd_command(cluster_, 0, cmd, 1, nullptr, 0, &out, &out_len, &outs, &outs_len) < 0)
      return -1;
    const std::string dump(out != nullptr ? out : "", out_len);
    rados_buffer_free(out);
    rados_buffer_free(outs);
    const std::size_t osd = dump.find("\"osd\":");
    const std::size_t at = osd == std::string::npos ? osd : dump.find("\"op_w\":", osd);
    if (at == std::string::npos) return -1;
    return std::atoll(dump.c_str() + at + 7);
  }
  bool snapshot(const std::string& image, const std::string& snap) {
    rbd_image_t img = nullptr;
    if (rbd_open(io_, image.c_str(), &img, nullptr) < 0) return false;
    const bool done = rbd_snap_create(img, snap.c_str()) == 0;
    rbd_close(img);
    return done;
  }

 private:
  rados_t cluster_ = nullptr;
  rados_ioctx_t io_ = nullptr;
  bool ok_ = false;
};

struct RbdTraits {
  static constexpr bool kGrowsPastEnd = false;
  static constexpr std::uint64_t kIoUnit = 1;
  std::string spec;
  std::unique_ptr<BackingStore> make(std::uint64_t region, bool read_only) {
    Admin admin;
    if (!admin) {
      ADD_FAILURE() << "no cluster: set CEPH_CONF and CRYPTMAP_TEST_RBD_POOL "
                       "(tests/integration/rbd_cluster.sh does)";
      return nullptr;
    }
    if (spec.empty()) spec = admin.create(region + (1 << 20));
    auto s = open_rbd_store(spec, {.read_only = read_only});
    if (!s) {
      ADD_FAILURE() << s.error().message();
      return nullptr;
    }
    return std::move(*s);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Rbd, BackingStoreContract, ::testing::Types<RbdTraits>);

TEST(RbdStoreSpec, MalformedArgumentsAreRefusedNamingTheForm) {
  for (const char* bad : {"rbd:", "rbd:pool", "rbd:/image", "rbd:pool/", "rbd:pool/img:bogus=1"}) {
    auto s = open_rbd_store(bad, {});
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, Errc::kInvalid) << bad << ": " << s.error().message();
  }
  EXPECT_TRUE(is_rbd_uri("rbd:pool/image@snap"));
  EXPECT_TRUE(is_store_uri("rbd:pool/image"));
  EXPECT_FALSE(is_rbd_uri("/dev/rbd0"));
}

TEST(RbdStore, ASnapshotOpensReadOnlyWithTheDataOfItsTime) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  const std::string spec = admin.create(8 << 20);
  ASSERT_FALSE(spec.empty());
  const auto before = test::deterministic_bytes(65536, 1);
  {
    auto s = open_rbd_store(spec, {});
    ASSERT_TRUE(s) << s.error().message();
    ASSERT_TRUE((*s)->write_at(ByteOffset{4096}, before));
    ASSERT_TRUE((*s)->sync());
  }
  const std::string image = spec.substr(spec.find('/') + 1);
  ASSERT_TRUE(admin.snapshot(image, "s1"));
  {
    auto s = open_rbd_store(spec, {});
    ASSERT_TRUE(s) << s.error().message();
    ASSERT_TRUE((*s)->write_at(ByteOffset{4096}, test::deterministic_bytes(65536, 2)));
    ASSERT_TRUE((*s)->sync());
  }
  auto snap = open_rbd_store(spec + "@s1", {});
  ASSERT_TRUE(snap) << snap.error().message();
  EXPECT_TRUE((*snap)->read_only());
  std::vector<std::byte> back(before.size());
  ASSERT_TRUE((*snap)->read_at(ByteOffset{4096}, back));
  EXPECT_EQ(back, before);
  auto w = (*snap)->write_at(ByteOffset{0}, back);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kReadOnly);
}

// The store says it splits large requests itself (the engine then reads a read-ahead window
// or a streaming read as one read_at, BackingStore::splits_large_requests), and one read_at
// across several objects returns every byte of each (librbd cuts it at the object boundaries).
TEST(RbdStore, SplitsOneReadAcrossObjectsItself) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  const std::string spec = admin.create(16 << 20);  // 4 MiB objects
  ASSERT_FALSE(spec.empty());
  auto s = open_rbd_store(spec, {});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_TRUE((*s)->splits_large_requests());
  EXPECT_EQ((*s)->optimal_io_bytes(), 4u << 20);
  const std::uint64_t off = (3 << 20) + 4096;  // from object 0 into object 3
  const auto data = test::deterministic_bytes(9 << 20, 5, off);
  ASSERT_TRUE((*s)->write_at(ByteOffset{off}, data));
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE((*s)->read_at(ByteOffset{off}, back));
  EXPECT_TRUE(back == data);
}

// Neighbouring pieces of a write batch (a write-behind job's 256 KiB buffers) reach the OSD as
// one write op (rbd_aio_writev; librbd would still cut it at object boundaries), where they were
// one op per piece; every piece reads back. A piece elsewhere stays a write of its own.
TEST(RbdStore, NeighbouringPiecesOfAWriteBatchAreOneOsdWrite) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  const std::string spec = admin.create(16 << 20);  // 4 MiB objects
  ASSERT_FALSE(spec.empty());
  auto s = open_rbd_store(spec, {});
  ASSERT_TRUE(s) << s.error().message();
  // The objects exist first (a first write into an object may update the object map too).
  const auto old = test::deterministic_bytes(16 << 20, 1, 0);
  ASSERT_TRUE((*s)->write_at(ByteOffset{0}, old));
  ASSERT_TRUE((*s)->sync());
  constexpr std::size_t kPiece = 256 << 10;
  const auto data = test::deterministic_bytes(5 * kPiece, 7, 0);
  std::vector<WritePiece> pieces;
  for (std::size_t k = 0; k < 4; ++k) {  // [4 MiB, 5 MiB): inside object 1
    pieces.push_back({ByteOffset{(4u << 20) + k * kPiece},
                      std::span<const std::byte>(data).subspan(k * kPiece, kPiece)});
  }
  pieces.push_back({ByteOffset{12u << 20},  // object 3, not next to the others
                    std::span<const std::byte>(data).subspan(4 * kPiece, kPiece)});
  const long long before = admin.osd_writes();
  ASSERT_GE(before, 0) << "osd.0 gave no perf counters";
  ASSERT_TRUE((*s)->write_batch(pieces));
  ASSERT_TRUE((*s)->sync());  // the write-around cache completes writes at dispatch
  const long long after = admin.osd_writes();
  for (const WritePiece& p : pieces) EXPECT_TRUE(p.result);
  EXPECT_EQ(after - before, 2) << "four neighbouring pieces and one apart: two OSD writes";
  std::vector<std::byte> back(4 * kPiece);
  ASSERT_TRUE((*s)->read_at(ByteOffset{4u << 20}, back));
  EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin()));
  ASSERT_TRUE((*s)->read_at(ByteOffset{12u << 20}, std::span<std::byte>(back).first(kPiece)));
  EXPECT_TRUE(std::equal(back.begin(), back.begin() + kPiece, data.begin() + 4 * kPiece));
}

// A read-write open takes the image's exclusive lock and keeps it: a second writer's open is
// refused naming the image and the holder, a reader still opens, and closing releases it.
TEST(RbdStore, AReadWriteOpenKeepsTheExclusiveLockFromASecondWriter) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  const std::string spec = admin.create(8 << 20);
  ASSERT_FALSE(spec.empty());
  auto first = open_rbd_store(spec, {});
  ASSERT_TRUE(first) << first.error().message();
  auto second = open_rbd_store(spec, {});
  ASSERT_FALSE(second) << "a second read-write open while the first holds the lock";
  EXPECT_EQ(second.error().code, Errc::kBusy);
  const std::string msg = second.error().message();
  EXPECT_NE(msg.find(spec + " held by client."), std::string::npos) << msg;
  EXPECT_NE(msg.find("exclusive lock"), std::string::npos) << msg;
  auto reader = open_rbd_store(spec, {.read_only = true});
  ASSERT_TRUE(reader) << reader.error().message();
  std::vector<std::byte> back(4096);
  EXPECT_TRUE((*reader)->read_at(ByteOffset{0}, back));
  EXPECT_TRUE((*first)->write_at(ByteOffset{0}, back)) << "the holder still writes";
  first->reset();  // closing releases the lock
  auto again = open_rbd_store(spec, {});
  EXPECT_TRUE(again) << again.error().message();
}

// A durable write (write_fua) returns only once the OSD has the data, under librbd's caches that
// complete plain writes from memory: write-around (the default; the store sends one FUA write)
// and write-back (whose cache ignores FUA; the store writes and flushes). The OSD is stopped
// (SIGSTOP) while the writes are issued: a plain write still returns (the cache is in effect,
// so the check below can fail), the durable one must not until the OSD runs again. No clock is
// asserted on: the writer takes a ticket when its write returns, the test takes one just before it
// continues the OSD (after a pause that gives a wrong early return the time to happen), and the
// resume's ticket must come first. A slow machine can only make a broken store pass, never a
// working one fail.
class RbdDurableWrite : public ::testing::TestWithParam<const char*> {};

TEST_P(RbdDurableWrite, ReturnsOnlyOnceTheOsdHasIt) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  const char* osd = std::getenv("CRYPTMAP_TEST_RBD_OSD_PID");
  if (osd == nullptr) GTEST_SKIP() << "CRYPTMAP_TEST_RBD_OSD_PID names no OSD to stop";
  const pid_t osd_pid = static_cast<pid_t>(std::atol(osd));
  ASSERT_GT(osd_pid, 0);
  const std::string spec = admin.create(16 << 20);
  ASSERT_FALSE(spec.empty());
  const std::string policy = GetParam();
  ASSERT_TRUE(admin.configure(spec.substr(spec.find('/') + 1), "rbd_cache_policy", policy));
  auto s = open_rbd_store(spec, {});
  ASSERT_TRUE(s) << s.error().message();
  BackingStore& store = **s;
  // librbd caches nothing until the first flush (rbd_cache_writethrough_until_flush).
  ASSERT_TRUE(store.write_at(ByteOffset{0}, test::deterministic_bytes(4096, 1)));
  ASSERT_TRUE(store.sync());

  const auto plain = test::deterministic_bytes(65536, 2);
  const auto durable = test::deterministic_bytes(65536, 3);
  // Declared before the guard, so a failed assertion resumes the OSD before it waits for them.
  std::future<Result<void>> plain_write, durable_write;
  ASSERT_EQ(::kill(osd_pid, SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{osd_pid};
  plain_write =
      std::async(std::launch::async, [&] { return store.write_at(ByteOffset{4 << 20}, plain); });
  ASSERT_EQ(plain_write.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "a plain write did not return while the OSD was stopped: librbd's " << policy
      << " cache is not in effect, so this test would show nothing";
  ASSERT_TRUE(plain_write.get());
  std::atomic<int> ticket{0};
  int returned_at = -1;
  durable_write = std::async(std::launch::async, [&] {
    auto r = store.write_fua(ByteOffset{8 << 20}, durable);
    returned_at = ticket.fetch_add(1);
    return r;
  });
  // Returns early when the write does (a failure below); no outcome depends on the 2 s.
  durable_write.wait_for(std::chrono::seconds(2));
  const int resumed_at = ticket.fetch_add(1);
  ASSERT_EQ(::kill(osd_pid, SIGCONT), 0);
  auto done = durable_write.get();
  ASSERT_TRUE(done) << done.error().message();
  EXPECT_LT(resumed_at, returned_at)
      << "the durable write returned before the OSD was continued (rbd_cache_policy " << policy
      << ")";
  std::vector<std::byte> back(durable.size());
  ASSERT_TRUE(store.read_at(ByteOffset{8 << 20}, back));
  EXPECT_EQ(back, durable);
  ASSERT_TRUE(store.read_at(ByteOffset{4 << 20}, back));
  EXPECT_EQ(back, plain);
}
INSTANTIATE_TEST_SUITE_P(CachePolicies, RbdDurableWrite,
                         ::testing::Values("writearound", "writeback"));

// The store reports its durability semantics from the image's librbd cache settings: writes
// complete in the cache (volatile until a flush) unless rbd_cache is off; a durable write is one
// FUA write under write-around, a write and a flush under write-back (whose cache ignores FUA).
TEST(RbdStore, ReportsItsDurabilityFromTheImagesCacheSettings) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  struct Case {
    const char* key;
    const char* value;
    StoreDurability want;
  };
  for (const Case& c : {Case{"rbd_cache_policy", "writearound", {true, true, true}},
                        Case{"rbd_cache_policy", "writeback", {true, true, false}},
                        Case{"rbd_cache", "false", {false, true, true}}}) {
    const std::string spec = admin.create(8 << 20);
    ASSERT_FALSE(spec.empty());
    ASSERT_TRUE(admin.configure(spec.substr(spec.find('/') + 1), c.key, c.value));
    auto s = open_rbd_store(spec, {});
    ASSERT_TRUE(s) << s.error().message();
    const StoreDurability d = (*s)->durability();
    EXPECT_EQ(d, c.want) << c.key << "=" << c.value << ": volatile_writes " << d.volatile_writes
                         << ", flush " << d.flush << ", fua " << d.fua;
  }
}

TEST(RbdStore, AMissingImageIsNotFoundNamingIt) {
  Admin admin;
  if (!admin) GTEST_SKIP() << "no cluster (CEPH_CONF, CRYPTMAP_TEST_RBD_POOL)";
  const std::string spec = std::string("rbd:") + test_pool() + "/no-such-image";
  auto s = open_rbd_store(spec, {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kNotFound);
  EXPECT_NE(s.error().message().find("no-such-image"), std::string::npos) << s.error().message();
}

}  // namespace
}  // namespace cryptmap::volume
