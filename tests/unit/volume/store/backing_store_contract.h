// The BackingStore contract (volume/store/backing_store.h) as a typed test suite that every store
// instantiates: positional reads and writes, unwritten bytes reading as zeros, reads past the end
// (kIo naming the store), writes past the end (the store grows, or kNoSpace), sync, durable
// (FUA) writes, discard,
// size and name, read-only refusal, concurrent use from several threads, and batches (every
// piece at its offset, more pieces than an io_uring has entries, a failing piece failing alone;
// the caller's work on each piece of read_batch_each / write_batch_each).
//
// A store's test file instantiates it with a traits type:
//
//   struct MyTraits {
//     // true when a write past size_bytes() extends the store (a regular file); otherwise such a
//     // write fails with kNoSpace and the size stays.
//     static constexpr bool kGrowsPastEnd = false;
//     // Offsets and lengths the store accepts are multiples of this: 1 for files and memory, the
//     // logical block for a device that takes only direct I/O. The suite rounds its odd offsets
//     // and lengths up to it.
//     static constexpr std::uint64_t kIoUnit = 1;
//     // A fresh store of at least `region` bytes whose first `region` bytes are random-access
//     // writable and read as zeros until written (a zoned store puts conventional zones there;
//     // the suite never writes elsewhere, so zone rules need no special casing). `read_only`: the
//     // same store opened read-only. Called once per test; ADD_FAILURE and nullptr on error.
//     std::unique_ptr<BackingStore> make(std::uint64_t region, bool read_only);
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, BackingStoreContract, ::testing::Types<MyTraits>);
//
// Store-specific behaviour (O_DIRECT, zone rules, hostility hooks) stays in each store's own tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "volume/store/backing_store.h"

namespace cryptmap::volume::contract {

inline std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

inline bool all_zero(std::span<const std::byte> v) {
  return std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0}; });
}

template <class Traits>
class BackingStoreContract : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kRegion = 2 << 20;  // random-access bytes the suite may write

  std::unique_ptr<BackingStore> make(bool read_only = false) {
    return traits_.make(kRegion, read_only);
  }
  // `x` rounded up to the store's I/O unit.
  static std::uint64_t up(std::uint64_t x) {
    return (x + Traits::kIoUnit - 1) / Traits::kIoUnit * Traits::kIoUnit;
  }

  Traits traits_;
};

TYPED_TEST_SUITE_P(BackingStoreContract);

TYPED_TEST_P(BackingStoreContract, WritesReadBackAtTheirOffsetsAndUnwrittenBytesReadAsZeros) {
  const std::uint64_t region = TestFixture::kRegion;
  auto s = this->make();
  ASSERT_TRUE(s);
  EXPECT_GE(s->size_bytes(), region);
  EXPECT_FALSE(s->read_only());
  const std::uint64_t a_off = this->up(123);
  const auto a = random_bytes(this->up(5000), 1);  // odd offset and length (where allowed)
  const auto b = random_bytes(this->up(300), 2);   // ends exactly at the region's end
  const auto c = random_bytes(65536, 3);           // aligned (O_DIRECT-able offset and length)
  ASSERT_TRUE(s->write_at(ByteOffset{a_off}, a));
  ASSERT_TRUE(s->write_at(ByteOffset{region - b.size()}, b));
  ASSERT_TRUE(s->write_at(ByteOffset{65536}, c));
  std::vector<std::byte> back(a.size());
  ASSERT_TRUE(s->read_at(ByteOffset{a_off}, back));
  EXPECT_EQ(back, a);
  back.resize(b.size());
  ASSERT_TRUE(s->read_at(ByteOffset{region - b.size()}, back));
  EXPECT_EQ(back, b);
  back.resize(c.size());
  ASSERT_TRUE(s->read_at(ByteOffset{65536}, back));
  EXPECT_EQ(back, c);
  std::vector<std::byte> gap(4096, std::byte{0xEE});
  ASSERT_TRUE(s->read_at(ByteOffset{this->up(20000)}, gap));
  EXPECT_TRUE(all_zero(gap));
}

TYPED_TEST_P(BackingStoreContract, AReadSpanningWrittenAndUnwrittenBytesReturnsBoth) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const std::size_t n = this->up(1000);
  const std::uint64_t off = this->up(10000);
  const auto a = random_bytes(n, 4);
  ASSERT_TRUE(s->write_at(ByteOffset{off}, a));
  std::vector<std::byte> back(3 * n, std::byte{0xEE});
  ASSERT_TRUE(s->read_at(ByteOffset{off - n}, back));
  EXPECT_TRUE(all_zero({back.data(), n}));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), back.begin() + static_cast<long>(n)));
  EXPECT_TRUE(all_zero({back.data() + 2 * n, n}));
}

TYPED_TEST_P(BackingStoreContract, ReadPastTheEndIsAnIoErrorNamingTheStore) {
  auto s = this->make();
  ASSERT_TRUE(s);
  std::vector<std::byte> buf(2 * this->up(64));  // its second half lies past the end
  auto r = s->read_at(ByteOffset{s->size_bytes() - buf.size() / 2}, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_NE(r.error().message().find(s->name().substr(0, 20)), std::string::npos)
      << r.error().message();
  auto beyond = s->read_at(ByteOffset{s->size_bytes() + 4096}, buf);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().code, Errc::kIo);
}

TYPED_TEST_P(BackingStoreContract, AWritePastTheEndGrowsTheStoreOrIsNoSpace) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const std::uint64_t size = s->size_bytes();
  const auto a = random_bytes(8192, 5);
  auto w = s->write_at(ByteOffset{size - 4096}, a);
  if (TypeParam::kGrowsPastEnd) {
    ASSERT_TRUE(w) << w.error().message();
    EXPECT_EQ(s->size_bytes(), size + 4096);
    std::vector<std::byte> back(a.size());
    ASSERT_TRUE(s->read_at(ByteOffset{size - 4096}, back));
    EXPECT_EQ(back, a);
  } else {
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, Errc::kNoSpace) << w.error().message();
    EXPECT_EQ(s->size_bytes(), size);
  }
}

TYPED_TEST_P(BackingStoreContract, SyncSucceedsAndKeepsWhatWasWritten) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const auto a = random_bytes(this->up(12345), 6);
  ASSERT_TRUE(s->write_at(ByteOffset{this->up(777)}, a));
  auto r = s->sync();
  ASSERT_TRUE(r) << r.error().message();
  std::vector<std::byte> back(a.size());
  ASSERT_TRUE(s->read_at(ByteOffset{this->up(777)}, back));
  EXPECT_EQ(back, a);
  EXPECT_TRUE(s->sync());  // nothing new: still fine
}

TYPED_TEST_P(BackingStoreContract, ADurableWriteReadsBackLikeAWriteAndLeavesItsNeighboursAlone) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const auto a = random_bytes(this->up(70000), 24);
  ASSERT_TRUE(s->write_at(ByteOffset{0}, a));
  const auto b = random_bytes(this->up(9000), 25);
  auto w = s->write_fua(ByteOffset{this->up(1111)}, b);
  ASSERT_TRUE(w) << w.error().message();
  std::vector<std::byte> want = a;
  std::copy(b.begin(), b.end(), want.begin() + static_cast<std::ptrdiff_t>(this->up(1111)));
  std::vector<std::byte> back(a.size());
  ASSERT_TRUE(s->read_at(ByteOffset{0}, back));
  EXPECT_EQ(back, want);
  EXPECT_TRUE(s->sync());
}

TYPED_TEST_P(BackingStoreContract, SizeAndNameStayTheSameAcrossIo) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const std::string name = s->name();
  const std::uint64_t size = s->size_bytes();
  EXPECT_FALSE(name.empty());
  ASSERT_TRUE(s->write_at(ByteOffset{0}, random_bytes(4096, 7)));
  ASSERT_TRUE(s->sync());
  EXPECT_EQ(s->name(), name);
  EXPECT_EQ(s->size_bytes(), size);
}

TYPED_TEST_P(BackingStoreContract, ReadOnlyStoresRefuseWritesAndDiscardsButRead) {
  auto s = this->make(/*read_only=*/true);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->read_only());
  auto w = s->write_at(ByteOffset{0}, random_bytes(this->up(10), 8));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kReadOnly);
  auto f = s->write_fua(ByteOffset{0}, random_bytes(this->up(10), 8));
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, Errc::kReadOnly);
  auto d = s->discard(ByteOffset{0}, 4096);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, Errc::kReadOnly);
  std::vector<std::byte> buf(this->up(10));
  EXPECT_TRUE(s->read_at(ByteOffset{0}, buf));
}

TYPED_TEST_P(BackingStoreContract, DiscardedRangesReadAsZerosAndTheirNeighboursKeepTheirBytes) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const auto a = random_bytes(64 * 1024, 9);
  ASSERT_TRUE(s->write_at(ByteOffset{0}, a));
  auto d = s->discard(ByteOffset{16384}, 16384);
  if (!d && d.error().code == Errc::kUnsupported) GTEST_SKIP() << d.error().message();
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_TRUE(s->discard(ByteOffset{0}, 0));  // empty: nothing to do
  std::vector<std::byte> back(64 * 1024);
  ASSERT_TRUE(s->read_at(ByteOffset{0}, back));
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 16384, back.begin()));
  EXPECT_TRUE(all_zero({back.data() + 16384, 16384}));
  EXPECT_TRUE(std::equal(a.begin() + 32768, a.end(), back.begin() + 32768));
}

// LevelDB's RandomAccessFile promise: any number of threads at once. Each thread owns a slice and
// checks every write it makes; the slices are adjacent, so neighbouring I/O runs concurrently.
TYPED_TEST_P(BackingStoreContract, ConcurrentWritersAndReadersOfDisjointRangesSeeTheirOwnBytes) {
  constexpr unsigned kThreads = 4;
  constexpr std::size_t kBlock = 65536;
  constexpr std::uint64_t kSlice = TestFixture::kRegion / kThreads;
  auto s = this->make();
  ASSERT_TRUE(s);
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (unsigned t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (unsigned i = 0; i < 64; ++i) {
        const std::uint64_t off = t * kSlice + (i % (kSlice / kBlock)) * kBlock;
        const auto a = random_bytes(kBlock, t * 1000 + i);
        if (!s->write_at(ByteOffset{off}, a)) ++bad;
        std::vector<std::byte> back(kBlock);
        if (!s->read_at(ByteOffset{off}, back) || back != a) ++bad;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

// A batch larger than a ring (40 pieces; the POSIX store's rings have 32 entries), pieces of
// odd sizes at odd offsets where allowed, in no particular order: each lands at its offset and
// reads back through a read batch and through read_at.
TYPED_TEST_P(BackingStoreContract, BatchesMoveEveryPieceToAndFromItsOwnOffset) {
  constexpr std::size_t kPieces = 40;
  auto s = this->make();
  ASSERT_TRUE(s);
  std::vector<std::vector<std::byte>> data;
  std::vector<WritePiece> writes;
  std::vector<std::uint64_t> offs;
  for (std::size_t i = 0; i < kPieces; ++i) {
    // Piece i owns slot (i * 7) % kPieces of 48 KiB: a permutation, so offsets jump around.
    const std::uint64_t slot = (i * 7) % kPieces;
    offs.push_back(this->up(slot * 49152 + (i % 3) * 100));
    data.push_back(random_bytes(this->up(4096 + i * 811), 100 + static_cast<unsigned>(i)));
  }
  for (std::size_t i = 0; i < kPieces; ++i) writes.push_back({ByteOffset{offs[i]}, data[i]});
  auto w = s->write_batch(writes);
  ASSERT_TRUE(w) << w.error().message();
  for (const auto& p : writes) EXPECT_TRUE(p.result);
  std::vector<std::vector<std::byte>> back(kPieces);
  std::vector<ReadPiece> reads;
  for (std::size_t i = 0; i < kPieces; ++i) {
    back[i].assign(data[i].size(), std::byte{0xEE});
    reads.push_back({ByteOffset{offs[i]}, back[i]});
  }
  auto r = s->read_batch(reads);
  ASSERT_TRUE(r) << r.error().message();
  for (std::size_t i = 0; i < kPieces; ++i) {
    EXPECT_TRUE(reads[i].result);
    EXPECT_EQ(back[i], data[i]) << "piece " << i;
    std::vector<std::byte> one(data[i].size());
    ASSERT_TRUE(s->read_at(ByteOffset{offs[i]}, one));
    EXPECT_EQ(one, data[i]) << "piece " << i;
  }
  std::span<ReadPiece> none;
  EXPECT_TRUE(s->read_batch(none));
}

// A piece past the end in the middle of a read batch fails alone, with read_at's error; the
// pieces before and after it complete with their bytes.
TYPED_TEST_P(BackingStoreContract, APieceFailingInTheMiddleOfABatchFailsAlone) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const auto a = random_bytes(16384, 21);
  const auto b = random_bytes(16384, 22);
  ASSERT_TRUE(s->write_at(ByteOffset{0}, a));
  ASSERT_TRUE(s->write_at(ByteOffset{65536}, b));
  std::vector<std::byte> ba(a.size()), bad(8192), bb(b.size()), bz(4096, std::byte{0xEE});
  std::vector<ReadPiece> reads = {{ByteOffset{0}, ba},
                                  {ByteOffset{s->size_bytes() + 4096}, bad},
                                  {ByteOffset{65536}, bb},
                                  {ByteOffset{this->up(300000)}, bz}};
  auto r = s->read_batch(reads);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo) << r.error().message();
  EXPECT_TRUE(reads[0].result);
  ASSERT_FALSE(reads[1].result);
  EXPECT_EQ(reads[1].result.error().code, Errc::kIo);
  EXPECT_NE(reads[1].result.error().message().find(s->name().substr(0, 20)), std::string::npos)
      << reads[1].result.error().message();
  EXPECT_TRUE(reads[2].result);
  EXPECT_TRUE(reads[3].result);
  EXPECT_EQ(ba, a);
  EXPECT_EQ(bb, b);
  EXPECT_TRUE(all_zero(bz));
}

// read_batch_each: the caller's work runs once for every piece whose read succeeded, on the
// calling thread, with the piece's bytes already in its buffer, before the call returns; never
// for a failed piece; a piece whose work fails gets the work's error, and the call returns the
// first failed piece's error in batch order.
TYPED_TEST_P(BackingStoreContract, ReadWorkRunsOncePerReadPieceWithItsBytesIn) {
  auto s = this->make();
  ASSERT_TRUE(s);
  const auto a = random_bytes(this->up(20000), 31);
  ASSERT_TRUE(s->write_at(ByteOffset{0}, a));
  constexpr std::size_t kPieces = 6;  // piece 2 reads past the end, piece 4's work fails
  std::vector<std::vector<std::byte>> back(kPieces);
  std::vector<ReadPiece> reads;
  for (std::size_t i = 0; i < kPieces; ++i) {
    back[i].assign(this->up(4096), std::byte{0xEE});
    const std::uint64_t off = i == 2 ? s->size_bytes() + 4096 : this->up(i * 3000);
    reads.push_back({ByteOffset{off}, back[i]});
  }
  std::vector<int> calls(kPieces, 0);
  std::vector<bool> had_bytes(kPieces, false);
  const std::thread::id caller = std::this_thread::get_id();
  bool other_thread = false;
  auto r = s->read_batch_each(reads, [&](std::size_t i) -> Result<void> {
    ++calls[i];
    other_thread = other_thread || std::this_thread::get_id() != caller;
    const std::uint64_t off = reads[i].off.value;
    had_bytes[i] = std::equal(back[i].begin(), back[i].end(), a.begin() + off);
    if (i == 4) return make_error(Errc::kBusy, "the caller's work on piece 4");
    return ok();
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo) << "not the first failed piece's error in batch order";
  EXPECT_FALSE(other_thread) << "work ran on another thread";
  for (std::size_t i = 0; i < kPieces; ++i) {
    EXPECT_EQ(calls[i], i == 2 ? 0 : 1) << "piece " << i;
    if (i != 2) {
      EXPECT_TRUE(had_bytes[i]) << "piece " << i << "'s work ran before its bytes were in";
    }
    EXPECT_EQ(static_cast<bool>(reads[i].result), i != 2 && i != 4) << "piece " << i;
  }
  ASSERT_FALSE(reads[4].result);
  EXPECT_EQ(reads[4].result.error().code, Errc::kBusy);
}

// write_batch_each: each piece is prepared once, in batch order, on the calling thread, and
// written with what prepare put in its buffer; when prepare fails, that piece and every later
// one are not written and carry its error; the earlier ones are written.
TYPED_TEST_P(BackingStoreContract, WritePreparesEachPieceInOrderAndStopsAtAFailedOne) {
  auto s = this->make();
  ASSERT_TRUE(s);
  constexpr std::size_t kPieces = 5;  // prepare fails on piece 3
  const std::uint64_t len = this->up(8192);
  std::vector<std::vector<std::byte>> bufs(kPieces, std::vector<std::byte>(len, std::byte{0}));
  std::vector<std::vector<std::byte>> want;
  std::vector<WritePiece> writes;
  for (std::size_t i = 0; i < kPieces; ++i) {
    want.push_back(random_bytes(len, 40 + static_cast<unsigned>(i)));
    writes.push_back({ByteOffset{(kPieces - 1 - i) * 2 * len}, bufs[i]});  // descending offsets
  }
  std::vector<std::size_t> order;
  const std::thread::id caller = std::this_thread::get_id();
  bool other_thread = false;
  auto w = s->write_batch_each(writes, [&](std::size_t i) -> Result<void> {
    order.push_back(i);
    other_thread = other_thread || std::this_thread::get_id() != caller;
    if (i == 3) return make_error(Errc::kBusy, "the caller's work on piece 3");
    std::copy(want[i].begin(), want[i].end(), bufs[i].begin());
    return ok();
  });
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kBusy);
  EXPECT_FALSE(other_thread) << "prepare ran on another thread";
  EXPECT_EQ(order, (std::vector<std::size_t>{0, 1, 2, 3}));
  for (std::size_t i = 0; i < kPieces; ++i) {
    std::vector<std::byte> back(len);
    ASSERT_TRUE(s->read_at(writes[i].off, back));
    if (i < 3) {
      EXPECT_TRUE(writes[i].result) << "piece " << i;
      EXPECT_EQ(back, want[i]) << "piece " << i;
    } else {
      ASSERT_FALSE(writes[i].result) << "piece " << i;
      EXPECT_EQ(writes[i].result.error().code, Errc::kBusy);
      EXPECT_TRUE(all_zero(back)) << "piece " << i << " was written after a failed prepare";
    }
  }
}

// Read-only stores refuse every piece of a write batch and change nothing.
TYPED_TEST_P(BackingStoreContract, ReadOnlyStoresRefuseEveryPieceOfAWriteBatch) {
  auto s = this->make(/*read_only=*/true);
  ASSERT_TRUE(s);
  const auto a = random_bytes(4096, 23);
  std::vector<WritePiece> writes = {{ByteOffset{0}, a}, {ByteOffset{8192}, a}};
  auto w = s->write_batch(writes);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kReadOnly);
  for (const auto& p : writes) {
    ASSERT_FALSE(p.result);
    EXPECT_EQ(p.result.error().code, Errc::kReadOnly);
  }
  std::vector<std::byte> back(4096);
  ASSERT_TRUE(s->read_at(ByteOffset{8192}, back));
  EXPECT_TRUE(all_zero(back));
}

REGISTER_TYPED_TEST_SUITE_P(
    BackingStoreContract, BatchesMoveEveryPieceToAndFromItsOwnOffset,
    APieceFailingInTheMiddleOfABatchFailsAlone, ReadOnlyStoresRefuseEveryPieceOfAWriteBatch,
    ReadWorkRunsOncePerReadPieceWithItsBytesIn, WritePreparesEachPieceInOrderAndStopsAtAFailedOne,
    WritesReadBackAtTheirOffsetsAndUnwrittenBytesReadAsZeros,
    AReadSpanningWrittenAndUnwrittenBytesReturnsBoth, ReadPastTheEndIsAnIoErrorNamingTheStore,
    AWritePastTheEndGrowsTheStoreOrIsNoSpace, SyncSucceedsAndKeepsWhatWasWritten,
    ADurableWriteReadsBackLikeAWriteAndLeavesItsNeighboursAlone, SizeAndNameStayTheSameAcrossIo,
    ReadOnlyStoresRefuseWritesAndDiscardsButRead,
    DiscardedRangesReadAsZerosAndTheirNeighboursKeepTheirBytes,
    ConcurrentWritersAndReadersOfDisjointRangesSeeTheirOwnBytes);

}  // namespace cryptmap::volume::contract
