// ZoneAdmission: the drive-like admission checks, the ticket turnstile, poisoning, tombstones,
// cancellation — and the end-to-end property on a real EmulatedZonedStore: writes whose crypto
// finishes out of order are still issued in ticket order (zero rejected writes), while the same
// pipeline without the turnstile gets writes rejected by the drive.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "volume/zone/zone_admission.h"
#include "volume/zone/zone_map.h"
#include "volume/zone/zoned_store.h"
#include "zone_test_util.h"

namespace cryptmap::volume {
namespace {

using testing::describe;
using testing::pattern;
using testing::ScratchDir;

constexpr std::uint64_t kZone = 64 * 1024;
constexpr std::uint32_t kBlock = 4096;

// Zone 0 conventional, 1..4 sequential and empty, zone 5 half-capacity.
std::unique_ptr<ZoneMap> make_map() {
  std::vector<ZoneInfo> zs;
  for (std::uint64_t i = 0; i < 6; ++i) {
    ZoneInfo z;
    z.index = i;
    z.start = ByteOffset{i * kZone};
    z.len_bytes = kZone;
    z.capacity_bytes = i == 5 ? kZone / 2 : kZone;
    if (i == 0) {
      z.type = ZoneType::kConventional;
      z.cond = ZoneCond::kNotWp;
      z.wp = z.end();
    } else {
      z.type = ZoneType::kSeqWriteRequired;
      z.cond = ZoneCond::kEmpty;
      z.wp = z.start;
    }
    zs.push_back(z);
  }
  auto m = ZoneMap::create(kZone, zs);
  EXPECT_TRUE(m) << describe(m);
  return std::move(*m);
}

std::unique_ptr<ZoneAdmission> make_admission(const ZoneMap& map, std::uint32_t inflight = 64) {
  ZoneAdmissionOptions o;
  o.max_inflight_per_zone = inflight;
  o.alignment_bytes = kBlock;
  auto a = ZoneAdmission::create(map, o);
  EXPECT_TRUE(a) << describe(a);
  return std::move(*a);
}

ByteOffset at(std::uint64_t zone, std::uint64_t block) {
  return ByteOffset{zone * kZone + block * kBlock};
}

TEST(ZoneAdmissionTest, CreateRejectsBadOptions) {
  auto map = make_map();
  ZoneAdmissionOptions o;
  o.max_inflight_per_zone = 0;
  EXPECT_EQ(ZoneAdmission::create(*map, o).error().code, Errc::kInvalid);
  o.max_inflight_per_zone = 4;
  o.alignment_bytes = 3000;
  EXPECT_EQ(ZoneAdmission::create(*map, o).error().code, Errc::kInvalid);
}

TEST(ZoneAdmissionTest, AdmitChecksWhatAHostManagedDriveChecks) {
  auto map = make_map();
  auto adm = make_admission(*map);
  EXPECT_FALSE(adm->needs_admission(at(0, 3), kBlock));
  EXPECT_TRUE(adm->needs_admission(at(1, 0), kBlock));
  auto t0 = adm->admit(at(1, 0), 2 * kBlock);
  ASSERT_TRUE(t0) << describe(t0);
  EXPECT_EQ(t0->zone, 1u);
  EXPECT_EQ(t0->seq, 0u);
  auto t1 = adm->admit(at(1, 2), kBlock);
  ASSERT_TRUE(t1);
  EXPECT_EQ(t1->seq, 1u);
  EXPECT_EQ(adm->status(1).projected_wp, at(1, 3));
  auto other = adm->admit(at(2, 0), kBlock);  // tickets are per zone
  ASSERT_TRUE(other);
  EXPECT_EQ(other->seq, 0u);

  auto expect = [&](ByteOffset off, std::uint64_t len, Errc code, const char* why) {
    auto r = adm->admit(off, len);
    ASSERT_FALSE(r) << why;
    EXPECT_EQ(r.error().code, code) << why << ": " << r.error().message();
  };
  expect(at(1, 2), kBlock, Errc::kZoneOrder, "behind the projected wp");
  expect(at(1, 4), kBlock, Errc::kZoneOrder, "ahead of the projected wp");
  expect(at(3, 1), kBlock, Errc::kZoneOrder, "empty zone, not at its start");
  expect(ByteOffset{at(1, 3).value + 512}, kBlock, Errc::kZoneOrder, "unaligned offset");
  expect(at(1, 3), kBlock + 512, Errc::kZoneOrder, "unaligned length");
  expect(at(1, 15), 2 * kBlock, Errc::kZoneOrder, "crosses into zone 2");
  expect(at(0, 1), kBlock, Errc::kInvalid, "conventional zone");
  expect(at(1, 3), 0, Errc::kInvalid, "empty write");
  expect(ByteOffset{6 * kZone}, kBlock, Errc::kInvalid, "past the end");
  {
    auto r = adm->admit(at(1, 5), kBlock);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("write pointer at " + std::to_string(at(1, 3).value)),
              std::string::npos)
        << r.error().message();
  }
  // Capacity and full: zone 5 holds 8 blocks.
  ASSERT_TRUE(adm->admit(at(5, 0), 7 * kBlock));
  expect(at(5, 7), 2 * kBlock, Errc::kZoneOrder, "past capacity");
  ASSERT_TRUE(adm->admit(at(5, 7), kBlock));
  expect(at(5, 8), kBlock, Errc::kZoneOrder, "full");
  // Failed admits changed nothing.
  EXPECT_EQ(adm->status(1).next_seq, 2u);
  EXPECT_EQ(adm->status(1).projected_wp, at(1, 3));
}

TEST(ZoneAdmissionTest, StartsFromTheStoreWritePointers) {
  std::vector<ZoneInfo> zs(2);
  for (std::uint64_t i = 0; i < 2; ++i) {
    zs[i].index = i;
    zs[i].start = ByteOffset{i * kZone};
    zs[i].len_bytes = zs[i].capacity_bytes = kZone;
    zs[i].type = ZoneType::kSeqWriteRequired;
  }
  zs[0].cond = ZoneCond::kClosed;
  zs[0].wp = at(0, 5);
  zs[1].cond = ZoneCond::kFull;
  zs[1].wp = zs[1].end();
  auto map = ZoneMap::create(kZone, zs);
  ASSERT_TRUE(map);
  auto adm = make_admission(**map);
  EXPECT_EQ(adm->admit(at(0, 0), kBlock).error().code, Errc::kZoneOrder);
  EXPECT_TRUE(adm->admit(at(0, 5), kBlock));
  auto full = adm->admit(at(1, 0), kBlock);
  ASSERT_FALSE(full);
  EXPECT_NE(full.error().message().find("full"), std::string::npos);
}

TEST(ZoneAdmissionTest, WaitTurnReleasesTicketsStrictlyInOrder) {
  auto map = make_map();
  auto adm = make_admission(*map);
  std::vector<ZoneTicket> tickets;
  for (int i = 0; i < 16; ++i) {
    auto t = adm->admit(at(1, static_cast<std::uint64_t>(i)), kBlock);
    ASSERT_TRUE(t) << describe(t);
    tickets.push_back(*t);
  }
  std::mutex log_mu;
  std::vector<std::uint64_t> issued;
  std::vector<std::thread> threads;
  // Start holders in reverse order so later tickets are the first to wait.
  for (int i = 15; i >= 0; --i) {
    threads.emplace_back([&, i] {
      const ZoneTicket& t = tickets[static_cast<std::size_t>(i)];
      auto r = adm->wait_turn(t);
      ASSERT_TRUE(r) << describe(r);
      {
        std::lock_guard lock(log_mu);
        issued.push_back(t.seq);
      }
      adm->complete(t, ok());
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(issued.size(), 16u);
  for (std::uint64_t i = 0; i < 16; ++i) EXPECT_EQ(issued[i], i);
  const auto st = adm->status(1);
  EXPECT_EQ(st.committed_wp, at(1, 16));
  EXPECT_EQ(st.completed, 16u);
  EXPECT_FALSE(st.poisoned);
}

TEST(ZoneAdmissionTest, AFailedWritePoisonsTheZoneUntilResync) {
  auto map = make_map();
  auto adm = make_admission(*map);
  std::vector<ZoneTicket> t;
  for (std::uint64_t i = 0; i < 4; ++i) {
    auto r = adm->admit(at(2, i), kBlock);
    ASSERT_TRUE(r);
    t.push_back(*r);
  }
  ASSERT_TRUE(adm->wait_turn(t[0]));
  adm->complete(t[0], ok());
  ASSERT_TRUE(adm->wait_turn(t[1]));
  adm->complete(t[1], make_error(Errc::kIo, "write zoned image", at(2, 1).value));  // write failed
  for (int i : {2, 3}) {
    auto r = adm->wait_turn(t[static_cast<std::size_t>(i)]);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kZoneOrder);
    EXPECT_EQ(r.error().object, 2u);
    EXPECT_NE(r.error().message().find("ticket 1"), std::string::npos) << r.error().message();
    adm->complete(t[static_cast<std::size_t>(i)], r);
  }
  auto later = adm->admit(at(2, 4), kBlock);
  ASSERT_FALSE(later);
  EXPECT_EQ(later.error().code, Errc::kZoneOrder);
  EXPECT_TRUE(adm->status(2).poisoned);
  EXPECT_EQ(adm->status(2).poison_seq, 1u);
  EXPECT_EQ(adm->status(2).committed_wp, at(2, 1));
  // Other zones are unaffected.
  EXPECT_TRUE(adm->admit(at(3, 0), kBlock));
  // After the store resets the zone, the engine resyncs and the zone works again.
  ZoneInfo reset = map->zone(2);  // the map still says empty at start
  ASSERT_TRUE(adm->resync_zone(reset));
  EXPECT_FALSE(adm->status(2).poisoned);
  auto again = adm->admit(at(2, 0), kBlock);
  ASSERT_TRUE(again) << describe(again);
  ASSERT_TRUE(adm->wait_turn(*again));
  adm->complete(*again, ok());
}

TEST(ZoneAdmissionTest, ATombstoneUnblocksTheLaneAndPoisonsOnlyLaterTickets) {
  auto map = make_map();
  auto adm = make_admission(*map);
  std::vector<ZoneTicket> t;
  for (std::uint64_t i = 0; i < 4; ++i) t.push_back(*adm->admit(at(3, i), kBlock));
  // Ticket 3 is already waiting when ticket 2's crypto fails (before its turn).
  std::atomic<int> t3_code{-1};
  std::thread waiter([&] {
    auto r = adm->wait_turn(t[3]);
    t3_code = r ? 100 : static_cast<int>(r.error().code);
    adm->complete(t[3], r);
  });
  adm->complete(t[2], make_error(Errc::kIo, "encrypt sectors", 0));  // tombstone, out of turn
  waiter.join();
  EXPECT_EQ(t3_code.load(), static_cast<int>(Errc::kZoneOrder));
  // Tickets before the hole still write normally, in order.
  ASSERT_TRUE(adm->wait_turn(t[0]));
  adm->complete(t[0], ok());
  ASSERT_TRUE(adm->wait_turn(t[1]));
  adm->complete(t[1], ok());
  const auto st = adm->status(3);
  EXPECT_EQ(st.completed, 4u);
  EXPECT_EQ(st.committed_wp, at(3, 2));
  EXPECT_EQ(st.poison_seq, 2u);
  adm->wait_drained();  // everything handed back: returns
}

TEST(ZoneAdmissionTest, ResyncRefusesWhileTicketsAreInFlight) {
  auto map = make_map();
  auto adm = make_admission(*map);
  auto t = adm->admit(at(1, 0), kBlock);
  ASSERT_TRUE(t);
  auto r = adm->resync_zone(map->zone(1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBusy);
  EXPECT_EQ(adm->resync_zone(map->zone(0)).error().code, Errc::kInvalid);
  ASSERT_TRUE(adm->wait_turn(*t));
  adm->complete(*t, ok());
  EXPECT_TRUE(adm->resync_zone(map->zone(1)));
}

// wait_ahead (FUSE over io_uring): a write ahead of the projected wp waits for the writes
// before it and is admitted right after them; one whose predecessor never comes fails after
// the bound (kZoneOrder, saying it waited); a write behind the wp fails at once.
TEST(ZoneAdmissionTest, AWriteAheadOfThePointerWaitsForTheWritesBeforeIt) {
  auto map = make_map();
  auto adm = make_admission(*map);
  using std::chrono::milliseconds;
  std::atomic<bool> second_admitted{false};
  Result<ZoneTicket> second = make_error(Errc::kIo, "not run");
  std::thread t([&] {
    second = adm->admit(at(1, 2), 2 * kBlock, milliseconds{60000});
    second_admitted = true;
  });
  // The second write arrived first; it must not get a ticket before the first one.
  std::this_thread::sleep_for(milliseconds{20});
  EXPECT_FALSE(second_admitted.load());
  auto first = adm->admit(at(1, 0), 2 * kBlock);  // no wait needed: at the wp
  ASSERT_TRUE(first) << describe(first);
  t.join();
  ASSERT_TRUE(second) << describe(second);
  EXPECT_EQ(first->seq, 0u);
  EXPECT_EQ(second->seq, 1u);
  EXPECT_EQ(adm->status(1).projected_wp, at(1, 4));
  // Behind the wp: no amount of waiting helps.
  auto behind = adm->admit(at(1, 1), kBlock, milliseconds{60000});
  ASSERT_FALSE(behind);
  EXPECT_EQ(behind.error().code, Errc::kZoneOrder);
  // Ahead, and the write before it never comes: fails after the bound, saying so.
  auto lost = adm->admit(at(1, 8), kBlock, milliseconds{50});
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, Errc::kZoneOrder);
  EXPECT_NE(lost.error().message().find("after waiting 50 ms"), std::string::npos)
      << lost.error().message();
  // Without wait_ahead the same write fails at once, as before.
  auto now = adm->admit(at(1, 8), kBlock);
  ASSERT_FALSE(now);
  EXPECT_EQ(now.error().message().find("after waiting"), std::string::npos);
  adm->complete(*first, ok());
  adm->complete(*second, ok());
}

// Cancel also ends a wait for the write pointer.
TEST(ZoneAdmissionTest, CancelEndsAWaitForThePointer) {
  auto map = make_map();
  auto adm = make_admission(*map);
  Result<ZoneTicket> r = make_error(Errc::kIo, "not run");
  std::thread t([&] { r = adm->admit(at(2, 4), kBlock, std::chrono::milliseconds{600000}); });
  std::this_thread::sleep_for(std::chrono::milliseconds{20});
  adm->cancel();
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCancelled);
}

TEST(ZoneAdmissionTest, CancelEndsEveryBlockingWait) {
  auto map = make_map();
  auto adm = make_admission(*map, /*inflight=*/4);
  std::vector<ZoneTicket> t;
  for (std::uint64_t i = 0; i < 4; ++i) t.push_back(*adm->admit(at(4, i), kBlock));
  ASSERT_TRUE(adm->wait_turn(t[0]));  // ticket 0 holds the turn and never completes before cancel
  std::vector<std::thread> threads;
  std::atomic<int> cancelled{0};
  for (int i = 1; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto r = adm->wait_turn(t[static_cast<std::size_t>(i)]);
      if (!r && r.error().code == Errc::kCancelled) cancelled.fetch_add(1);
      adm->complete(t[static_cast<std::size_t>(i)], r);
    });
  }
  // The admitting thread is blocked too: zone 4 already has max_inflight tickets.
  threads.emplace_back([&] {
    auto r = adm->admit(at(4, 4), kBlock);
    if (!r && r.error().code == Errc::kCancelled) cancelled.fetch_add(1);
  });
  std::this_thread::sleep_for(
      std::chrono::milliseconds(20));  // let them block (not a timing assertion)
  adm->cancel();
  for (auto& th : threads) th.join();
  EXPECT_EQ(cancelled.load(), 4);
  EXPECT_TRUE(adm->cancelled());
  EXPECT_EQ(adm->admit(at(1, 0), kBlock).error().code, Errc::kCancelled);
  adm->complete(t[0], make_error(Errc::kCancelled, "shutdown"));
  adm->wait_drained();
  EXPECT_EQ(adm->status(4).completed, 4u);
}

// ---- the end-to-end property on a real emulated drive -------------------------------------------

struct PipelineStats {
  int rejected = 0;     // writes the drive refused
  int written = 0;      // writes the drive accepted
  int turn_errors = 0;  // wait_turn failures (must be 0 here)
  int inversions = 0;   // adjacent tickets whose crypto finished out of order
};

// A miniature of the engine's inline path: jobs are admitted in order on this thread; workers do
// the "crypto" (derive the ciphertext, with jitter), and within each group of kGroup consecutive
// tickets the crypto is forced to finish in REVERSE order (job p waits until job p+1 reached its
// issue point). With the turnstile, workers then wait_turn -> write_at -> complete; without it,
// they write as soon as their crypto is done — which is what parallel crypto does to a zone.
PipelineStats run_pipeline(ZonedStore& store, bool use_turnstile) {
  constexpr int kWorkers = 8;
  constexpr int kGroup = 4;
  const ZoneMap& map = store.zone_map();
  std::vector<std::uint64_t> seq_zones;
  for (std::uint64_t i = 0; i < map.zone_count(); ++i) {
    if (map.type(i) != ZoneType::kConventional) seq_zones.push_back(i);
  }
  const std::uint64_t blocks_per_zone = map.zone_size_bytes() / kBlock;
  const std::uint64_t groups_per_zone = blocks_per_zone / kGroup;
  struct Job {
    ByteOffset off;
    ZoneTicket ticket;
    std::atomic<bool> admitted{false};
    std::atomic<bool> at_issue{false};
    int crypto_rank = 0;
  };
  const std::size_t n = seq_zones.size() * blocks_per_zone;
  std::vector<Job> jobs(n);
  // Group g goes to zone g % zones; consecutive groups interleave the zones.
  std::vector<std::uint64_t> next_block(map.zone_count(), 0);
  for (std::size_t g = 0; g < seq_zones.size() * groups_per_zone; ++g) {
    const std::uint64_t z = seq_zones[g % seq_zones.size()];
    for (int p = 0; p < kGroup; ++p) {
      jobs[g * kGroup + static_cast<std::size_t>(p)].off =
          ByteOffset{z * map.zone_size_bytes() + next_block[z]++ * kBlock};
    }
  }
  std::unique_ptr<ZoneAdmission> adm;
  if (use_turnstile) {
    ZoneAdmissionOptions o;
    o.max_inflight_per_zone = 8;
    o.alignment_bytes = kBlock;
    adm = std::move(*ZoneAdmission::create(map, o));
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> abandoned{false};
  std::atomic<int> rank{0};
  std::atomic<int> rejected{0}, written{0}, turn_errors{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w) + (use_turnstile ? 100u : 200u));
      for (std::size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        Job& job = jobs[i];
        while (!job.admitted.load(std::memory_order_acquire)) {
          if (abandoned.load()) return;  // admission failed: the test already reported it
          std::this_thread::yield();
        }
        // "Encrypt": the ciphertext is a function of the offset; jitter shuffles finishing order.
        const auto data = pattern(job.off.value, kBlock, 7);
        for (unsigned k = rng() % 64; k > 0; --k) std::this_thread::yield();
        if (i % kGroup != kGroup - 1) {
          while (!jobs[i + 1].at_issue.load(std::memory_order_acquire) && !abandoned.load()) {
            std::this_thread::yield();
          }
        }
        job.crypto_rank = rank.fetch_add(1);
        if (use_turnstile) {
          job.at_issue.store(true, std::memory_order_release);
          auto turn = adm->wait_turn(job.ticket);
          if (!turn) {
            turn_errors.fetch_add(1);
            adm->complete(job.ticket, turn);
            continue;
          }
          auto r = store.write_at(job.off, data);
          (r ? written : rejected).fetch_add(1);
          adm->complete(job.ticket, r);
        } else {
          auto r = store.write_at(job.off, data);
          (r ? written : rejected).fetch_add(1);
          job.at_issue.store(true, std::memory_order_release);
        }
      }
    });
  }
  // The single admitting thread: admission order is index order.
  for (std::size_t i = 0; i < n; ++i) {
    if (use_turnstile) {
      auto t = adm->admit(jobs[i].off, kBlock);
      if (!t) {
        ADD_FAILURE() << "admit " << i << ": " << t.error().message();
        abandoned.store(true);
        adm->cancel();
        break;
      }
      jobs[i].ticket = *t;
    }
    jobs[i].admitted.store(true, std::memory_order_release);
  }
  for (auto& th : workers) th.join();
  PipelineStats st;
  st.rejected = rejected.load();
  st.written = written.load();
  st.turn_errors = turn_errors.load();
  for (std::size_t i = 0; i + 1 < n; ++i) {
    if (i % kGroup != kGroup - 1 && jobs[i].crypto_rank > jobs[i + 1].crypto_rank) ++st.inversions;
  }
  return st;
}

class ZonePipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ZonedStoreOptions o;
    o.create = true;
    o.zone_size_bytes = 256 * 1024;  // 64 blocks per zone
    o.zone_count = 6;
    o.conventional_zones = 1;
    o.logical_block_bytes = kBlock;
    auto s = open_zoned_store(dir_.file("pipe.img"), o);
    ASSERT_TRUE(s) << describe(s);
    store_ = std::move(*s);
  }
  ScratchDir dir_;
  std::unique_ptr<ZonedStore> store_;
};

TEST_F(ZonePipelineTest, OutOfOrderCryptoIsIssuedInTicketOrderWithZeroRejectedWrites) {
  const PipelineStats st = run_pipeline(*store_, /*use_turnstile=*/true);
  EXPECT_GT(st.inversions, 0)
      << "the crypto must really finish out of order for this to mean anything";
  EXPECT_EQ(st.rejected, 0);
  EXPECT_EQ(st.turn_errors, 0);
  EXPECT_EQ(st.written, 5 * 64);
  const ZoneMap& map = store_->zone_map();
  for (std::uint64_t z = 1; z < 6; ++z) {
    EXPECT_EQ(map.zone(z).cond, ZoneCond::kFull) << z;
    std::vector<std::byte> got(map.zone_size_bytes());
    ASSERT_TRUE(store_->read_at(map.zone(z).start, got));
    EXPECT_EQ(got, pattern(map.zone(z).start.value, got.size(), 7)) << "zone " << z;
  }
}

// The same pipeline with the turnstile skipped: the drive rejects writes. This is the test that
// shows the one above can fail.
TEST_F(ZonePipelineTest, WithoutTheTurnstileTheDriveRejectsWrites) {
  const PipelineStats st = run_pipeline(*store_, /*use_turnstile=*/false);
  EXPECT_GT(st.inversions, 0);
  EXPECT_GT(st.rejected, 0);
  EXPECT_LT(st.written, 5 * 64);
}

}  // namespace
}  // namespace cryptmap::volume
