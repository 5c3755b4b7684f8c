// LUKS2 --integrity volumes in dm-integrity direct mode (volume/integrity/integrity_volume.h,
// docs/integrity.md): round trips for every composition and both sector sizes, the same volume
// at two placements in an image, tampering (ciphertext, tag, swapped blocks) failing exactly the
// affected blocks, never-written blocks of a no-wipe volume, read-modify-write, one tag check per
// block read, journal replay on open (both modes; journal mode is served read-only), and what is
// refused (damaged journals, discards).
#include "volume/integrity/integrity_volume.h"
#include "volume/integrity/tag_page_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <numeric>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "base/bytes.h"
#include "crypto/auth_cipher.h"
#include "tests/support/integrity_journal_writer.h"
#include "tests/unit/volume/integrity_test_util.h"
#include "volume/format/dm_integrity.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint64_t kMiB = 1u << 20;

struct Opened {
  MemBackingStore* mem = nullptr;  // owned by vol
  std::unique_ptr<Volume> vol;
};

VolumeLayout layout_of(const char* enc, const char* integ, std::uint32_t ss, std::uint64_t off) {
  return test::integrity_layout(enc, integ, ss, off, /*journal=*/false);
}

std::vector<std::byte> key_for(const VolumeLayout& l) {
  auto c = crypto::auth_composition(l.auth_encryption, l.integrity);
  std::vector<std::byte> k(c->cipher_key_size + c->mac_key_size);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::byte(0x11 * i + 3);
  return k;
}

std::unique_ptr<MemBackingStore> formatted(std::uint64_t bytes, const VolumeLayout& l) {
  auto mem = std::make_unique<MemBackingStore>(bytes, "mem:integrity");
  auto c = crypto::auth_composition(l.auth_encryption, l.integrity);
  EXPECT_TRUE(c);
  auto g = format_integrity_area(*mem, l, static_cast<std::uint32_t>(c->tag_size));
  EXPECT_TRUE(g) << g.error().message();
  return mem;
}

// Fixtures that read, copy or tamper with the image under an open volume write through: every
// write is in the image (mode D) or in mode J's open batch when it returns, as before the
// sector cache. Write-back has its own tests (IntegrityWriteBack.*, the crash test).
VolumeOptions write_through() {
  VolumeOptions o;
  o.no_write_workqueue = true;
  return o;
}

Result<Opened> open_on(std::unique_ptr<MemBackingStore> mem, const VolumeLayout& l,
                       const VolumeOptions& options = write_through()) {
  Opened o;
  o.mem = mem.get();
  CRYPTMAP_TRY(v, open_integrity_volume(l, key_for(l), std::move(mem), options, nullptr));
  o.vol = std::move(v);
  return o;
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = std::byte(x >> 24);
  }
  return v;
}

IntegrityCounters counters(const Opened& o) { return *integrity_counters(*o.vol); }

struct Tampered {
  Opened o;
  integrity::Geometry g;
  std::vector<std::byte> data;
  VolumeLayout l;
};

// Closes the volume and opens a copy of its image: what an image tampered with while closed
// reads like (an open volume reads resident tag pages from its tag page cache, as the kernel's
// dm-integrity reads its metadata from dm-bufio, and cached blocks from its sector cache).
void reopen(Tampered& t, const VolumeOptions& options = {}) {
  ASSERT_TRUE(t.o.vol->flush());  // dirty blocks written back before the image is copied
  std::vector<std::byte> image(t.o.mem->size_bytes());
  t.o.mem->peek(0, image);
  t.o.vol.reset();
  auto mem = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
  mem->poke(0, image);
  auto o = open_on(std::move(mem), t.l, options);
  ASSERT_TRUE(o) << o.error().message();
  t.o = std::move(*o);
}

struct Mode {
  const char* enc;
  const char* integ;
  std::uint32_t ss;
};
const Mode kModes[] = {
    {"aes-xts-random", "hmac(sha256)", 4096}, {"aes-xts-plain64", "hmac(sha256)", 4096},
    {"aes-xts-random", "hmac(sha512)", 4096}, {"aes-gcm-random", "aead", 4096},
    {"chacha20-random", "poly1305", 4096},    {"aes-xts-random", "hmac(sha256)", 512},
    {"aes-gcm-random", "aead", 512}};

class Modes : public ::testing::TestWithParam<Mode> {};

TEST_P(Modes, WriteReadAcrossAnInterleaveBoundary) {
  for (bool cached : {false, true}) {
    SCOPED_TRACE(cached ? "sector cache" : "no sector cache");
    const Mode m = GetParam();
    const VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    VolumeOptions options;
    if (!cached) options.cache_bytes = 0;
    auto o = open_on(formatted(40 * kMiB, l), l, options);
    ASSERT_TRUE(o) << o.error().message();
    // Interleave area 0 holds 16 MiB of data: write 1 MiB across its end, unaligned.
    const std::uint64_t at = 16 * kMiB - 300 * 1024 - 77;
    const auto data = pattern(kMiB + 1234, 1);
    auto w = o->vol->write(ByteOffset{at}, data);
    ASSERT_FALSE(w) << "the head block was never written: its read-modify-write must fail";
    EXPECT_EQ(w.error().code, Errc::kAuth);
    // Write whole blocks around it first, then the unaligned range.
    const std::uint64_t lo = at / m.ss * m.ss, hi = (at + data.size() + m.ss - 1) / m.ss * m.ss;
    ASSERT_TRUE(o->vol->write(ByteOffset{lo}, std::vector<std::byte>(hi - lo)));
    ASSERT_TRUE(o->vol->write(ByteOffset{at}, data));
    std::vector<std::byte> back(data.size());
    const auto before = counters(*o);
    ASSERT_TRUE(o->vol->read(ByteOffset{at}, back));
    EXPECT_EQ(back, data);
    // One check per block read from the store, no more; none for blocks in the sector cache.
    EXPECT_EQ(counters(*o).tags_verified - before.tags_verified, cached ? 0 : (hi - lo) / m.ss);
    EXPECT_EQ(counters(*o).tags_failed, before.tags_failed);
    // The bytes around the range are the zeros written before.
    std::vector<std::byte> edge(at - lo);
    ASSERT_TRUE(o->vol->read(ByteOffset{lo}, edge));
    EXPECT_EQ(edge, std::vector<std::byte>(at - lo));
    if (!cached) continue;
    // Written back with their tags: a cold open verifies each block once.
    Tampered t{std::move(*o), {}, {}, l};
    VolumeOptions cold;
    cold.cache_bytes = 0;
    reopen(t, cold);
    std::fill(back.begin(), back.end(), std::byte{0});
    ASSERT_TRUE(t.o.vol->read(ByteOffset{at}, back));
    EXPECT_EQ(back, data);
    EXPECT_EQ(counters(t.o).tags_verified, (hi - lo) / m.ss);
  }
}

INSTANTIATE_TEST_SUITE_P(Compositions, Modes, ::testing::ValuesIn(kModes), [](const auto& i) {
  std::string n = std::string(i.param.enc) + "_" + i.param.integ + "_" + std::to_string(i.param.ss);
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

// The same volume moved to another place in a (larger) image reads the same: tags bind the
// volume-relative sector, not an image offset (docs/integrity.md §0).
TEST(IntegrityVolume, SameVolumeAtTwoPlacements) {
  for (const Mode& m : {kModes[0], kModes[3]}) {
    const VolumeLayout a = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    auto mem = formatted(24 * kMiB, a);
    auto o = open_on(std::move(mem), a);
    ASSERT_TRUE(o);
    const auto data = pattern(3 * kMiB, 2);
    ASSERT_TRUE(o->vol->write(ByteOffset{0}, data));
    ASSERT_TRUE(o->vol->flush());  // written back: the image is copied under the open volume
    std::vector<std::byte> image(24 * kMiB);
    o->mem->peek(0, image);
    o->vol.reset();
    // Placement B: 5 MiB further into a 5 MiB larger image (a LUKS2 data offset changed, or
    // the volume inside a bigger disk image).
    const VolumeLayout b = layout_of(m.enc, m.integ, m.ss, 6 * kMiB);
    auto memb = std::make_unique<MemBackingStore>(29 * kMiB, "mem:moved");
    memb->poke(6 * kMiB, std::span(image).subspan(1 * kMiB));
    auto ob = open_on(std::move(memb), b);
    ASSERT_TRUE(ob) << ob.error().message();
    std::vector<std::byte> back(data.size());
    ASSERT_TRUE(ob->vol->read(ByteOffset{0}, back));
    EXPECT_EQ(back, data) << m.enc;
    EXPECT_EQ(counters(*ob).tags_failed, 0u);
  }
}

Tampered written_volume(const Mode& m) {
  const VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
  auto mem = formatted(24 * kMiB, l);
  std::vector<std::byte> sb(integrity::kSbBytes);
  mem->peek(1 * kMiB, sb);
  auto g = integrity::geometry_from_superblock(*integrity::parse_superblock(sb), 24 * kMiB / 512,
                                               1 * kMiB / 512);
  auto o = open_on(std::move(mem), l);
  EXPECT_TRUE(o);
  Tampered t{std::move(*o), *g, pattern(64 * m.ss, 3), l};
  EXPECT_TRUE(t.o.vol->write(ByteOffset{0}, t.data));
  EXPECT_TRUE(t.o.vol->flush());  // on the image, to be tampered with
  return t;
}

// Reads every block alone: which ones fail.
std::vector<std::uint64_t> failing_blocks(Opened& o, std::uint32_t ss, std::size_t n) {
  std::vector<std::uint64_t> bad;
  std::vector<std::byte> b(ss);
  for (std::size_t k = 0; k < n; ++k) {
    auto r = o.vol->read(ByteOffset{k * ss}, b);
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kAuth);
      bad.push_back(k);
    }
  }
  return bad;
}

TEST(IntegrityVolume, TamperFailsExactlyTheAffectedBlocks) {
  for (const Mode& m : kModes) {
    SCOPED_TRACE(std::string(m.enc) + " " + m.integ + " " + std::to_string(m.ss));
    const std::uint32_t spb = m.ss / 512;
    {  // a flipped ciphertext byte in block 5
      Tampered t = written_volume(m);
      std::byte b[1];
      const std::uint64_t at = t.g.data_sector(5 * spb) * 512 + 100;
      t.o.mem->peek(at, b);
      b[0] ^= std::byte{0x01};
      t.o.mem->poke(at, b);
      reopen(t);
      EXPECT_EQ(failing_blocks(t.o, m.ss, 64), std::vector<std::uint64_t>{5});
      // A read covering it fails as a whole; one not covering it does not.
      std::vector<std::byte> big(16 * m.ss);
      EXPECT_FALSE(t.o.vol->read(ByteOffset{0}, big));
      EXPECT_TRUE(t.o.vol->read(ByteOffset{8 * m.ss}, big));
      EXPECT_EQ(std::memcmp(big.data(), t.data.data() + 8 * m.ss, big.size()), 0);
      // A partial write into the bad block fails (RMW under verified contents); a whole-block
      // write repairs it.
      EXPECT_FALSE(t.o.vol->write(ByteOffset{5 * m.ss + 1}, std::span(t.data).first(10)));
      EXPECT_TRUE(t.o.vol->write(ByteOffset{5 * m.ss}, std::span(t.data).first(m.ss)));
      EXPECT_TRUE(failing_blocks(t.o, m.ss, 64).empty());
    }
    {  // a flipped tag byte of block 9
      Tampered t = written_volume(m);
      std::byte b[1];
      const std::uint64_t at = t.g.tag_byte(9 * spb) + 2;
      t.o.mem->peek(at, b);
      b[0] ^= std::byte{0x40};
      t.o.mem->poke(at, b);
      reopen(t);
      EXPECT_EQ(failing_blocks(t.o, m.ss, 64), std::vector<std::uint64_t>{9});
    }
    {  // blocks 3 and 40 swapped, data and tags together: both fail (the sector is bound)
      Tampered t = written_volume(m);
      const std::uint32_t T = t.g.tag_size;
      std::vector<std::byte> d3(m.ss), d40(m.ss), t3(T), t40(T);
      t.o.mem->peek(t.g.data_sector(3 * spb) * 512, d3);
      t.o.mem->peek(t.g.data_sector(40 * spb) * 512, d40);
      t.o.mem->peek(t.g.tag_byte(3 * spb), t3);
      t.o.mem->peek(t.g.tag_byte(40 * spb), t40);
      t.o.mem->poke(t.g.data_sector(3 * spb) * 512, d40);
      t.o.mem->poke(t.g.data_sector(40 * spb) * 512, d3);
      t.o.mem->poke(t.g.tag_byte(3 * spb), t40);
      t.o.mem->poke(t.g.tag_byte(40 * spb), t3);
      reopen(t);
      EXPECT_EQ(failing_blocks(t.o, m.ss, 64), (std::vector<std::uint64_t>{3, 40}));
    }
  }
}

// Rolling a block back to an older version with its older tag is not detected: per-sector
// AEAD has no freshness (as dm-integrity; docs/integrity.md §4).
TEST(IntegrityVolume, ReplayOfAnOldBlockIsNotDetected) {
  Tampered t = written_volume(kModes[0]);
  const std::uint32_t ss = 4096, spb = 8, T = t.g.tag_size;
  std::vector<std::byte> old_d(ss), old_t(T);
  t.o.mem->peek(t.g.data_sector(7 * spb) * 512, old_d);
  t.o.mem->peek(t.g.tag_byte(7 * spb), old_t);
  ASSERT_TRUE(t.o.vol->write(ByteOffset{7 * ss}, pattern(ss, 9)));
  t.o.mem->poke(t.g.data_sector(7 * spb) * 512, old_d);
  t.o.mem->poke(t.g.tag_byte(7 * spb), old_t);
  reopen(t);
  std::vector<std::byte> back(ss);
  ASSERT_TRUE(t.o.vol->read(ByteOffset{7 * ss}, back));
  EXPECT_EQ(std::memcmp(back.data(), t.data.data() + 7 * ss, ss), 0);
}

TEST(IntegrityVolume, NeverWrittenBlocksFail) {
  const VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  auto o = open_on(formatted(24 * kMiB, l), l);
  ASSERT_TRUE(o);
  std::vector<std::byte> b(4096);
  auto r = o->vol->read(ByteOffset{123 * 4096}, b);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kAuth);
  EXPECT_EQ(r.error().sys_errno, EILSEQ);
  EXPECT_EQ(r.error().object, 123u);
  for (std::byte x : b) ASSERT_EQ(x, std::byte{0});  // nothing unverified left the volume
}

TEST(IntegrityVolume, RefusesDamagedJournalsSuperblocksAndDiscards) {
  VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  {
    auto mem = formatted(24 * kMiB, l);
    // Entry 3 of section 0 in use for sector 42: not aligned to the 4 KiB block (damaged).
    std::vector<std::byte> sb(integrity::kSbBytes);
    mem->peek(1 * kMiB, sb);
    auto g = integrity::geometry_from_superblock(*integrity::parse_superblock(sb), 24 * kMiB / 512,
                                                 1 * kMiB / 512);
    std::byte e[8]{};
    store_le64(e, 42);
    mem->poke(g->journal_first_sector() * 512 + integrity::journal_entry_offset(*g, 3), e);
    auto o = open_on(std::move(mem), l);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error().code, Errc::kCorrupt);
    EXPECT_NE(o.error().message().find("aligned"), std::string::npos) << o.error().message();
  }
  {
    auto mem = formatted(24 * kMiB, l);
    std::byte junk[1] = {std::byte{'X'}};
    mem->poke(1 * kMiB, junk);
    auto o = open_on(std::move(mem), l);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error().code, Errc::kCorrupt);
  }
  {
    auto o = open_on(formatted(24 * kMiB, l), l);
    ASSERT_TRUE(o);
    auto d = o->vol->discard(ByteOffset{0}, 1 * kMiB);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, Errc::kUnsupported);
  }
  {  // --allow-discards (or the LUKS2 flag) is refused at open, as cryptsetup does
    VolumeLayout d = l;
    d.allow_discards = true;
    auto o = open_on(formatted(24 * kMiB, d), d);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error().code, Errc::kUnsupported);
  }
  {  // a superblock for another tag size (the segment says hmac-sha512)
    auto mem = formatted(24 * kMiB, l);
    VolumeLayout other = l;
    other.integrity = "hmac(sha512)";
    auto o = open_on(std::move(mem), other);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error().code, Errc::kCorrupt);
  }
}

// Writers on interleaved blocks (neighbours share tag sectors) and readers at the same time:
// no read ever sees a bad tag, and every block ends with its writer's last contents.
TEST(IntegrityVolume, ConcurrentWritersSharingTagSectors) {
  const VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  auto o = open_on(formatted(24 * kMiB, l), l);
  ASSERT_TRUE(o);
  constexpr int kThreads = 6, kBlocks = 96, kRounds = 40;
  ASSERT_TRUE(o->vol->write(ByteOffset{0}, std::vector<std::byte>(kBlocks * 4096)));
  std::atomic<int> errors{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r)
        for (int k = t; k < kBlocks; k += kThreads) {
          const auto d = pattern(4096, static_cast<unsigned>(1000 * r + k));
          if (!o->vol->write(ByteOffset{std::uint64_t(k) * 4096}, d)) ++errors;
        }
    });
  std::thread reader([&] {
    std::vector<std::byte> b(16 * 4096);
    while (!done.load())
      if (!o->vol->read(ByteOffset{0}, b)) ++errors;
  });
  for (auto& t : ts) t.join();
  done = true;
  reader.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(counters(*o).tags_failed, 0u);
  std::vector<std::byte> b(4096);
  for (int k = 0; k < kBlocks; ++k) {
    ASSERT_TRUE(o->vol->read(ByteOffset{std::uint64_t(k) * 4096}, b));
    EXPECT_EQ(b, pattern(4096, static_cast<unsigned>(1000 * (kRounds - 1) + k))) << k;
  }
}

// ---- The tag page cache (volume/integrity/tag_page_cache.h) ----

std::vector<std::byte> page_filled(std::uint8_t v) {
  return std::vector<std::byte>(TagPageCache::kPageBytes, std::byte{v});
}

TEST(TagPageCache, HoldsWhatWasPutEvictsTheLeastRecentlyUsedAndErases) {
  auto c = TagPageCache::create(8);  // one set of 8 ways
  ASSERT_TRUE(c);
  TagPageCache& cache = **c;
  EXPECT_EQ(cache.capacity(), 8u);
  std::vector<std::byte> out(TagPageCache::kPageBytes);
  EXPECT_FALSE(cache.get(5, out));
  for (std::uint8_t p = 0; p < 8; ++p) cache.put(p, page_filled(p));
  ASSERT_TRUE(cache.get(0, out));  // page 0 becomes the most recently used
  EXPECT_EQ(out, page_filled(0));
  cache.put(3, page_filled(33));  // an update in place, no eviction
  EXPECT_EQ(cache.stats().evictions, 0u);
  cache.put(100, page_filled(100));  // evicts page 1, the least recently used
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_FALSE(cache.get(1, out));
  ASSERT_TRUE(cache.get(0, out));
  ASSERT_TRUE(cache.get(3, out));
  EXPECT_EQ(out, page_filled(33));
  ASSERT_TRUE(cache.get(100, out));
  EXPECT_EQ(out, page_filled(100));
  cache.erase(100);
  EXPECT_FALSE(cache.get(100, out));
  cache.clear();
  for (std::uint64_t p = 0; p < 8; ++p) EXPECT_FALSE(cache.get(p, out)) << p;
}

// Tag areas of a 1 GiB-like layout (areas of 49 pages starting inside a page, 4 145 pages apart
// with the data between them): a cache with as many pages as the areas hold keeps every one of
// them (numbered densely over the areas before the set mapping). Fails when pages map to sets
// by image offset: the data areas' gaps make sets alias and evict each other.
TEST(TagPageCache, ACacheAsLargeAsTheTagAreasKeepsThemAll) {
  const TagPageCache::Areas areas{8 * 4096 + 1536, 4144 * 4096, 49};
  constexpr std::uint64_t kAreas = 64;
  auto c = TagPageCache::create(kAreas * areas.area_pages, areas);
  ASSERT_TRUE(c);
  TagPageCache& cache = **c;
  ASSERT_GE(cache.capacity(), kAreas * areas.area_pages);
  std::vector<std::byte> out(TagPageCache::kPageBytes);
  std::vector<std::uint64_t> pages;
  for (std::uint64_t a = 0; a < kAreas; ++a) {
    const std::uint64_t first = (areas.first_byte + a * areas.stride_bytes) / 4096;
    for (std::uint64_t p = first; p < first + areas.area_pages; ++p) pages.push_back(p);
  }
  for (std::uint64_t p : pages) cache.put(p, page_filled(static_cast<std::uint8_t>(p)));
  EXPECT_EQ(cache.stats().evictions, 0u);
  for (std::uint64_t p : pages) {
    ASSERT_TRUE(cache.get(p, out)) << p;
    EXPECT_EQ(out, page_filled(static_cast<std::uint8_t>(p))) << p;
  }
}

// A page read from the store while an unlocked writer (mode J's journal thread) rewrites it is
// not cached by the reader (it may hold the contents from before the write), a page read
// before or after is. Fails when put_filled caches a page whose read overlapped a write.
TEST(TagPageCache, APageReadAcrossAStoreWriteIsNotCached) {
  auto c = TagPageCache::create(16);
  ASSERT_TRUE(c);
  std::vector<std::byte> before(4096, std::byte{1}), after(4096, std::byte{2}), out(4096);
  auto t = (*c)->fill_ticket();
  EXPECT_TRUE((*c)->put_filled(7, before, t));  // no write since the ticket
  t = (*c)->fill_ticket();
  (*c)->begin_store_write();
  const auto during = (*c)->fill_ticket();
  (*c)->put(7, after);  // the writer's own copy
  (*c)->end_store_write();
  EXPECT_FALSE((*c)->put_filled(7, before, t)) << "read before the write, put after it";
  EXPECT_FALSE((*c)->put_filled(7, before, during)) << "read during the write";
  ASSERT_TRUE((*c)->get(7, out));
  EXPECT_EQ(out, after);
  EXPECT_TRUE((*c)->put_filled(8, after, (*c)->fill_ticket()));
}

// A read whose tag pages are resident reads only its data from the store; the tag is still
// verified once per block read (a cache hit is not a store read of the tag, but the block is).
// A no-journal write reads no tag window when its edge pages are resident, and none at all
// when its tags cover whole pages.
TEST(IntegrityVolume, TagPageCacheSparesTagReads) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);  // T 48
  auto o = open_on(formatted(40 * kMiB, l), l);
  ASSERT_TRUE(o);
  ASSERT_TRUE(o->vol->write(ByteOffset{0}, pattern(512 * 4096, 4)));
  Tampered t{std::move(*o), {}, {}, l};
  VolumeOptions no_read_ahead;  // every store read below is the test thread's own
  no_read_ahead.no_read_workqueue = true;
  no_read_ahead.cache_bytes = 0;  // no sector cache: every read reaches the store
  reopen(t, no_read_ahead);       // a cold cache
  MemBackingStore& mem = *t.o.mem;
  std::vector<std::byte> b(4096);
  const std::uint64_t r0 = mem.read_calls();
  ASSERT_TRUE(t.o.vol->read(ByteOffset{10 * 4096}, b));
  EXPECT_EQ(mem.read_calls() - r0, 2u) << "cold: data and tag page";
  const auto before = counters(t.o);
  for (std::uint64_t k = 0; k < 85; ++k)  // blocks 0..84: their tags are tag page 0
    ASSERT_TRUE(t.o.vol->read(ByteOffset{k * 4096}, b));
  EXPECT_EQ(mem.read_calls() - r0, 2u + 85u) << "warm: data only";
  EXPECT_EQ(counters(t.o).tags_verified - before.tags_verified, 85u);
  EXPECT_EQ(counters(t.o).tag_page_hits - before.tag_page_hits, 85u);
  EXPECT_EQ(std::memcmp(b.data(), pattern(512 * 4096, 4).data() + 84 * 4096, 4096), 0);
  // Mode D writes: block 20 (tag page 0 resident): no store read.
  const std::uint64_t r1 = mem.read_calls();
  ASSERT_TRUE(t.o.vol->write(ByteOffset{20 * 4096}, pattern(4096, 5)));
  EXPECT_EQ(mem.read_calls(), r1);
  // Block 300 (tag page 3, cold): one read of that page, then none.
  ASSERT_TRUE(t.o.vol->write(ByteOffset{300 * 4096}, pattern(4096, 6)));
  EXPECT_EQ(mem.read_calls(), r1 + 1);
  ASSERT_TRUE(t.o.vol->write(ByteOffset{301 * 4096}, pattern(4096, 7)));
  EXPECT_EQ(mem.read_calls(), r1 + 1);
  // 256 blocks from block 256 (tags at bytes 12288 .. 24576 of the area: pages 3..5, whole):
  // no read at all, cache or not.
  ASSERT_TRUE(t.o.vol->write(ByteOffset{256 * 4096}, pattern(256 * 4096, 8)));
  EXPECT_EQ(mem.read_calls(), r1 + 1);
  // What the open volume reads is what a fresh open reads.
  auto expect = pattern(512 * 4096, 4);
  std::memcpy(expect.data() + 20 * 4096, pattern(4096, 5).data(), 4096);
  const auto b8 = pattern(256 * 4096, 8);
  std::memcpy(expect.data() + 256 * 4096, b8.data(), b8.size());
  std::vector<std::byte> all(512 * 4096);
  ASSERT_TRUE(t.o.vol->read(ByteOffset{0}, all));
  EXPECT_EQ(all, expect);
  reopen(t);
  ASSERT_TRUE(t.o.vol->read(ByteOffset{0}, all));
  EXPECT_EQ(all, expect);
}

// Writers of neighbouring blocks (their tags share tag pages) and readers at the same time with
// a cache of 8 tag pages over 24 pages of tags, so pages are evicted and reloaded mid-run: no
// read sees a bad tag, and after a reopen (a cold cache: what the store holds) every block
// holds its writer's last contents with a valid tag. A cached page written back stale would
// lose a neighbour's tag.
TEST(IntegrityVolume, TagPageCacheStaysCoherentUnderConcurrentWritersAndEviction) {
  for (bool journal : {false, true}) {
    SCOPED_TRACE(journal ? "journal" : "no journal");
    VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);  // T 28: 146 per page
    VolumeOptions tiny;
    tiny.cache_bytes = 0;  // the minimum: 8 tag pages
    auto o = open_on(formatted(40 * kMiB, l), l, tiny);
    ASSERT_TRUE(o);
    constexpr int kThreads = 4, kBlocks = 146 * 24, kRounds = 2;
    ASSERT_TRUE(o->vol->write(ByteOffset{0}, std::vector<std::byte>(kBlocks * 4096)));
    Tampered t{std::move(*o), {}, {}, l};
    t.l.integrity_no_journal = !journal;
    reopen(t, tiny);
    EXPECT_EQ(counters(t.o).tag_page_capacity, 8u);
    std::atomic<int> errors{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> ts;
    for (int th = 0; th < kThreads; ++th)
      ts.emplace_back([&, th] {
        for (int r = 0; r < kRounds; ++r)
          for (int k = th; k < kBlocks; k += kThreads) {
            const auto d = pattern(4096, static_cast<unsigned>(100000 * r + k));
            if (!t.o.vol->write(ByteOffset{std::uint64_t(k) * 4096}, d)) ++errors;
          }
      });
    std::thread reader([&] {
      std::vector<std::byte> b(8 * 4096);
      for (std::uint64_t at = 0; !done.load(); at = (at + 997 * 4096) % ((kBlocks - 8) * 4096))
        if (!t.o.vol->read(ByteOffset{at / 4096 * 4096}, b)) ++errors;
    });
    for (auto& th : ts) th.join();
    done = true;
    reader.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(counters(t.o).tags_failed, 0u);
    EXPECT_GT(counters(t.o).tag_page_evictions, 0u) << "the run never evicted a tag page";
    ASSERT_TRUE(t.o.vol->flush());
    reopen(t);
    std::vector<std::byte> b(4096);
    for (int k = 0; k < kBlocks; ++k) {
      ASSERT_TRUE(t.o.vol->read(ByteOffset{std::uint64_t(k) * 4096}, b)) << k;
      ASSERT_EQ(b, pattern(4096, static_cast<unsigned>(100000 * (kRounds - 1) + k))) << k;
    }
  }
}

// A no-journal write whose tag page write fails (its data write landed): the cache drops the
// page, so the open volume reads what a fresh open reads (the block fails its tag in both),
// never a tag the store does not hold.
TEST(IntegrityVolume, FailedTagWriteDropsTheCachedPage) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  auto o = open_on(formatted(40 * kMiB, l), l);
  ASSERT_TRUE(o);
  const auto v0 = pattern(64 * 4096, 11);
  ASSERT_TRUE(o->vol->write(ByteOffset{0}, v0));
  std::vector<std::byte> b(4096);
  ASSERT_TRUE(o->vol->read(ByteOffset{5 * 4096}, b));  // tag page 0 resident
  std::vector<std::byte> sb(integrity::kSbBytes);
  o->mem->peek(1 * kMiB, sb);
  auto g = integrity::geometry_from_superblock(*integrity::parse_superblock(sb), 40 * kMiB / 512,
                                               1 * kMiB / 512);
  ASSERT_TRUE(g);
  const std::uint64_t page = g->tag_byte(5 * 8) / 4096 * 4096;
  o->mem->fail_writes(page, 4096);
  EXPECT_FALSE(o->vol->write(ByteOffset{5 * 4096}, pattern(4096, 12)));
  o->mem->fail_writes(0, 0);
  auto r = o->vol->read(ByteOffset{5 * 4096}, b);
  ASSERT_FALSE(r) << "read the new data with a tag the store does not hold";
  EXPECT_EQ(r.error().code, Errc::kAuth);
  ASSERT_TRUE(o->vol->read(ByteOffset{6 * 4096}, b));  // its neighbours are intact
  EXPECT_EQ(std::memcmp(b.data(), v0.data() + 6 * 4096, 4096), 0);
  Tampered t{std::move(*o), *g, v0, l};
  reopen(t);
  EXPECT_EQ(failing_blocks(t.o, 4096, 64), std::vector<std::uint64_t>{5});
}

// Large runs are verified + decrypted (encrypted) in parallel slices, each slice blocks with
// exactly their tags and sector numbers: what a parallel writer wrote reads back through a
// volume that runs everything inline, and the other way round (a slice with shifted tags or
// sectors fails verification); two bad blocks in different slices of one 1 MiB read both fail
// and are counted (each verified once), the error names the lower one.
TEST(IntegrityVolume, LargeRunsAreConvertedInParallelSlicesWithTheirTags) {
  for (const Mode& m : {kModes[0], kModes[3], kModes[5]}) {
    SCOPED_TRACE(std::string(m.enc) + " " + std::to_string(m.ss));
    const VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    VolumeOptions inline_only;
    inline_only.force_inline = true;
    const std::uint64_t bytes = m.ss == 4096 ? kMiB : 128 * 1024;  // one run: 256 blocks
    const auto a = pattern(bytes, 21), b = pattern(bytes, 22);
    auto o = open_on(formatted(24 * kMiB, l), l);
    ASSERT_TRUE(o);
    ASSERT_TRUE(o->vol->write(ByteOffset{0}, a));  // parallel
    Tampered t{std::move(*o), {}, {}, l};
    reopen(t, inline_only);
    std::vector<std::byte> back(bytes);
    ASSERT_TRUE(t.o.vol->read(ByteOffset{0}, back));
    EXPECT_EQ(back, a);
    ASSERT_TRUE(t.o.vol->write(ByteOffset{bytes}, b));  // inline
    reopen(t);
    const auto before = counters(t.o);
    ASSERT_TRUE(t.o.vol->read(ByteOffset{bytes}, back));  // parallel
    EXPECT_EQ(back, b);
    EXPECT_EQ(counters(t.o).tags_verified - before.tags_verified, bytes / m.ss);
    // Blocks 10 and 200 of the first run: one flipped ciphertext byte each.
    std::vector<std::byte> sb(integrity::kSbBytes);
    t.o.mem->peek(1 * kMiB, sb);
    auto g = integrity::geometry_from_superblock(*integrity::parse_superblock(sb), 24 * kMiB / 512,
                                                 1 * kMiB / 512);
    ASSERT_TRUE(g);
    for (std::uint64_t k : {200u, 10u}) {
      std::byte x[1];
      const std::uint64_t at = g->data_sector(k * (m.ss / 512)) * 512 + 7;
      t.o.mem->peek(at, x);
      x[0] ^= std::byte{0x80};
      t.o.mem->poke(at, x);
    }
    const auto c0 = counters(t.o);
    std::fill(back.begin(), back.end(), std::byte{0});
    auto r = t.o.vol->read(ByteOffset{0}, back);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kAuth);
    EXPECT_EQ(r.error().object, 10u);
    EXPECT_EQ(counters(t.o).tags_failed - c0.tags_failed, 2u);
    EXPECT_EQ(counters(t.o).tags_verified - c0.tags_verified, bytes / m.ss);
    for (std::byte x : back) ASSERT_EQ(x, std::byte{0}) << "plaintext left a failed read";
    EXPECT_EQ(failing_blocks(t.o, m.ss, bytes / m.ss), (std::vector<std::uint64_t>{10, 200}));
  }
}

// Counts the store reads made by one thread (the test's reader), forwarding to a MemBackingStore.
class ReaderCountingStore final : public BackingStore {
 public:
  explicit ReaderCountingStore(MemBackingStore& m) : m_(m) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    if (std::this_thread::get_id() == reader_) reads_.fetch_add(1);
    return m_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return m_.write_at(off, in);
  }
  Result<void> sync() override { return m_.sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t n) override { return m_.discard(off, n); }
  std::uint64_t size_bytes() const noexcept override { return m_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return m_.name(); }
  std::uint64_t reader_reads() const { return reads_.load(); }

 private:
  MemBackingStore& m_;
  const std::thread::id reader_ = std::this_thread::get_id();
  mutable std::atomic<std::uint64_t> reads_{0};
};

// Read-ahead, as the engine's: a sequential reader finds its next requests loaded, verified
// and decrypted by the prefetch threads: from its third request on it never reads the store
// itself, no block is verified more than once, and it reads what was written. A write into a
// loaded window is seen by the next read (the writer invalidates the window under its tag-page
// locks), in both modes. A bad block met by a loader fails once, in the reader's own read
// (counted and logged once), and every other block still reads.
TEST(IntegrityVolume, SequentialReadersAreServedByReadAhead) {
  for (bool journal : {false, true}) {
    SCOPED_TRACE(journal ? "journal" : "no journal");
    VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
    auto base = open_on(formatted(40 * kMiB, l), l);
    ASSERT_TRUE(base);
    constexpr std::uint64_t kBytes = 4 * kMiB, kReq = 64 * 1024;
    // Written past what is read by the windows the last requests load ahead: a never-written
    // block there fails its tag, the loader drops that window and the next request's note
    // loads (verifies) it again, up to kIntegrityReadAheadDepth times.
    auto want = pattern(kBytes + kIntegrityReadAheadDepth * kReq, 31);
    ASSERT_TRUE(base->vol->write(ByteOffset{0}, want));
    l.integrity_no_journal = !journal;
    auto* store = new ReaderCountingStore(*base->mem);
    // The write below stays in the sector cache (read over the loaded window) for the whole
    // test: an age write-back would invalidate windows and make loaders verify blocks again.
    VolumeOptions no_age;
    no_age.flush_age_ms = 3'600'000;
    auto v =
        open_integrity_volume(l, key_for(l), std::unique_ptr<BackingStore>(store), no_age, nullptr);
    ASSERT_TRUE(v) << v.error().message();
    Volume& vol = **v;
    std::vector<std::byte> b(kReq);
    std::uint64_t own_after_two = 0;
    for (std::uint64_t at = 0; at < kBytes; at += kReq) {
      if (at == 2 * kReq) own_after_two = store->reader_reads();
      if (at == kBytes / 2) {  // a write into the window loaded for the next request
        const auto w = pattern(4096, 32);
        std::memcpy(want.data() + at + 8192, w.data(), w.size());
        ASSERT_TRUE(vol.write(ByteOffset{at + 8192}, w));
      }
      ASSERT_TRUE(vol.read(ByteOffset{at}, b)) << at;
      ASSERT_EQ(std::memcmp(b.data(), want.data() + at, kReq), 0) << at;
    }
    // Only the request whose window the write invalidated reads the store itself (its data,
    // in two pieces around the written block, which comes from the sector cache, and its tag
    // pages unless cached).
    EXPECT_LE(store->reader_reads() - own_after_two, 3u)
        << "the reader read the store itself after its second request";
    const auto c = *integrity_counters(vol);
    EXPECT_EQ(c.tags_failed, 0u);
    // Every block verified at least once, but the written one when the reader got it from the
    // sector cache (its own plaintext, not read from the store).
    EXPECT_GE(c.tags_verified, kBytes / 4096 - 1);
    // At most the windows ahead of the last request (kIntegrityReadAheadDepth), the request
    // after the write twice, and once more the window a loader had in flight when the write
    // (into the cache, the volume held shared) overtook it: that load is verified, then dropped.
    EXPECT_LE(c.tags_verified,
              kBytes / 4096 + kIntegrityReadAheadDepth * kReq / 4096 + 2 * kReq / 4096);
  }
  {  // a bad block in the stream
    const VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
    auto o = open_on(formatted(40 * kMiB, l), l);
    ASSERT_TRUE(o);
    const auto data = pattern(64 * 4096, 33);
    ASSERT_TRUE(o->vol->write(ByteOffset{0}, data));
    std::vector<std::byte> sb(integrity::kSbBytes);
    o->mem->peek(1 * kMiB, sb);
    auto g = integrity::geometry_from_superblock(*integrity::parse_superblock(sb), 40 * kMiB / 512,
                                                 1 * kMiB / 512);
    ASSERT_TRUE(g);
    Tampered t{std::move(*o), *g, data, l};
    std::byte x[1];
    t.o.mem->peek(g->data_sector(20 * 8) * 512, x);
    x[0] ^= std::byte{1};
    t.o.mem->poke(g->data_sector(20 * 8) * 512, x);
    reopen(t);
    EXPECT_EQ(failing_blocks(t.o, 4096, 64), std::vector<std::uint64_t>{20});
    EXPECT_EQ(counters(t.o).tags_failed, 1u);
  }
}

// The volume round trips of ctest's IntegrityHmacFallback.volume_integrity_test (the hmac-sha256
// Modes, placements, tampering, read-ahead) run the HMAC-SHA256 fallback (OpenSSL's SHA-256)
// on a CPU with SHA-NI: fails when CRYPTMAP_TEST_HMAC_SHA256=openssl is not honoured, so that
// run cannot pass on SHA-NI silently.
TEST(IntegrityVolume, HmacSha256ImplementationIsTheOneAskedFor) {
  const char* v = std::getenv("CRYPTMAP_TEST_HMAC_SHA256");
  if (v != nullptr && std::string_view(v) == "openssl")
    EXPECT_STREQ(crypto::hmac_sha256_implementation(), "openssl");
  else
    EXPECT_STRNE(crypto::hmac_sha256_implementation(), "");
}

TEST(IntegrityVolume, SizeIsProvidedDataSectors) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 16 * kMiB);
  auto o = open_on(formatted(256 * kMiB, l), l);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->vol->size_bytes(), 481792ull * 512);  // docs/integrity.md §1.2 worked example
  std::vector<std::byte> b(4096);
  EXPECT_FALSE(o->vol->write(ByteOffset{o->vol->size_bytes()}, b));
  EXPECT_EQ(*o->vol->read(ByteOffset{o->vol->size_bytes()}, b), 0u);
}

// ---- Journal replay on open (docs/integrity.md §1.3, §5) ----

integrity::Geometry geometry_of(const MemBackingStore& mem, const VolumeLayout& l) {
  std::vector<std::byte> sb(integrity::kSbBytes);
  mem.peek(l.data_offset_bytes, sb);
  auto g = integrity::geometry_from_superblock(*integrity::parse_superblock(sb),
                                               mem.size_bytes() / 512, l.data_offset_bytes / 512);
  EXPECT_TRUE(g);
  return *g;
}

// A mode-D volume whose blocks 0..15 were written with version A, then blocks 3 and 7 with
// version B; `a3`/`a7` keep version A's ciphertext and tag, as a journal would hold them.
struct JournalCase {
  std::unique_ptr<MemBackingStore> mem;
  integrity::Geometry g;
  std::vector<std::byte> a, b;  // plaintext of versions A (16 blocks) and B (one block)
  std::vector<std::byte> a3, t3, a7, t7;
};

JournalCase journal_case(const VolumeLayout& l) {
  JournalCase c;
  const std::uint32_t ss = l.sector_size, spb = ss / 512;
  VolumeLayout d = l;
  d.integrity_no_journal = true;
  // 72 MiB: the default journal has 4 sections of 264 sectors for 4 KiB blocks.
  auto o = open_on(formatted(72 * kMiB, d), d);
  EXPECT_TRUE(o);
  c.g = geometry_of(*o->mem, d);
  c.a = pattern(16 * ss, 21);
  c.b = pattern(ss, 22);
  EXPECT_TRUE(o->vol->write(ByteOffset{0}, c.a));
  EXPECT_GE(c.g.journal_sections, 4u);
  for (auto [k, data, tag] : {std::tuple{3u, &c.a3, &c.t3}, std::tuple{7u, &c.a7, &c.t7}}) {
    data->resize(ss);
    tag->resize(c.g.tag_size);
    o->mem->peek(c.g.data_sector(k * spb) * 512, *data);
    o->mem->peek(c.g.tag_byte(k * spb), *tag);
    EXPECT_TRUE(o->vol->write(ByteOffset{k * ss}, c.b));
  }
  std::vector<std::byte> image(o->mem->size_bytes());
  o->mem->peek(0, image);
  o->vol.reset();
  c.mem = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
  c.mem->poke(0, image);
  return c;
}

test::JournalWriter journal_writer(const integrity::Geometry& g) {
  return test::JournalWriter(g.journal_sections, g.sectors_per_block(), g.tag_size);
}

void poke_journal(MemBackingStore& mem, const integrity::Geometry& g,
                  const test::JournalWriter& w) {
  mem.poke(g.journal_first_sector() * 512, w.bytes());
}

std::vector<std::byte> journal_bytes(const MemBackingStore& mem, const integrity::Geometry& g) {
  std::vector<std::byte> j(std::size_t{g.journal_sections} * g.journal_section_sectors * 512);
  mem.peek(g.journal_first_sector() * 512, j);
  return j;
}

std::vector<std::byte> block(const Opened& o, std::uint64_t k, std::uint32_t ss) {
  std::vector<std::byte> b(ss);
  EXPECT_TRUE(o.vol->read(ByteOffset{k * ss}, b)) << "block " << k;
  return b;
}

TEST(IntegrityJournal, CommittedEntriesAreReplayedOnOpenInDirectMode) {
  for (const Mode& m : {kModes[0], kModes[3], kModes[5]}) {
    SCOPED_TRACE(std::string(m.enc) + " " + std::to_string(m.ss));
    const VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    JournalCase c = journal_case(l);
    const std::uint32_t spb = m.ss / 512;
    auto w = journal_writer(c.g);
    // The kernel's first commit after format: section 0, sequence 1, blocks 3 and 7 (version A).
    w.put(0, 0, 3 * spb, c.a3, c.t3);
    w.put(0, 1, 7 * spb, c.a7, c.t7);
    w.seal(0, 1);
    // Section 1 torn (half its sectors carry sequence 1): its entry for block 9 is not replayed.
    w.put(1, 0, 9 * spb, c.a3, c.t3);
    for (std::uint32_t j = 0; j < c.g.journal_section_sectors / 2; ++j) w.set_id(1, j, 1);
    poke_journal(*c.mem, c.g, w);
    auto o = open_on(std::move(c.mem), l);
    ASSERT_TRUE(o) << o.error().message();
    EXPECT_EQ(block(*o, 3, m.ss),
              std::vector<std::byte>(c.a.begin() + 3 * m.ss, c.a.begin() + 4 * m.ss));
    EXPECT_EQ(block(*o, 7, m.ss),
              std::vector<std::byte>(c.a.begin() + 7 * m.ss, c.a.begin() + 8 * m.ss));
    EXPECT_EQ(block(*o, 9, m.ss),
              std::vector<std::byte>(c.a.begin() + 9 * m.ss, c.a.begin() + 10 * m.ss));
    EXPECT_EQ(counters(*o).tags_failed, 0u);
    // Mode D: the journal is re-initialised as the kernel leaves it (sequence 1 - 2 = 3).
    std::vector<std::byte> want(journal_bytes(*o->mem, c.g).size());
    integrity::write_initial_journal(c.g, want, 3);
    EXPECT_TRUE(journal_bytes(*o->mem, c.g) == want);
    EXPECT_FALSE(o->vol->read_only());
    ASSERT_TRUE(o->vol->write(ByteOffset{3 * m.ss}, c.b));
    // A second open finds a clean journal and writes nothing.
    std::vector<std::byte> image(o->mem->size_bytes());
    o->mem->peek(0, image);
    o->vol.reset();
    auto mem = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
    mem->poke(0, image);
    auto again = open_on(std::move(mem), l);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->mem->write_calls(), 0u);
    EXPECT_EQ(block(*again, 3, m.ss), c.b);
  }
}

TEST(IntegrityJournal, JournalModeReplaysThenContinuesTheRing) {
  VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  l.integrity_no_journal = false;
  JournalCase c = journal_case(l);
  auto w = journal_writer(c.g);
  // Wrapped: sections 2 and 3 carry sequence 3 (older), 0 and 1 sequence 0 (newer). Block 3
  // is in section 2 (with block 7's bytes, which would fail its tag) and again in section 0
  // (version A): the newer one must win. Block 7 is in section 3.
  w.put(2, 4, 3 * 8, c.a7, c.t7);  // block 7's bytes at block 3: would fail if it stayed
  w.put(3, 0, 7 * 8, c.a7, c.t7);
  w.put(0, 2, 3 * 8, c.a3, c.t3);
  w.seal(2, 3);
  w.seal(3, 3);
  w.seal(0, 0);
  w.seal(1, 0);
  poke_journal(*c.mem, c.g, w);
  auto o = open_on(std::move(c.mem), l);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(block(*o, 3, 4096),
            std::vector<std::byte>(c.a.begin() + 3 * 4096, c.a.begin() + 4 * 4096));
  EXPECT_EQ(block(*o, 7, 4096),
            std::vector<std::byte>(c.a.begin() + 7 * 4096, c.a.begin() + 8 * 4096));
  // The whole ring was consistent: mode J continues with the journal as it is.
  EXPECT_TRUE(std::equal(w.bytes().begin(), w.bytes().end(), journal_bytes(*o->mem, c.g).begin()));
  // Journaled writes continue the ring where replay left it: section 2, sequence 0. The write
  // waits in the open section (nothing on disk, reads see it) until the flush commits it.
  ASSERT_FALSE(o->vol->read_only());
  const std::uint64_t writes = o->mem->write_calls();
  ASSERT_TRUE(o->vol->write(ByteOffset{5 * 4096}, c.b));
  EXPECT_EQ(o->mem->write_calls(), writes);
  EXPECT_EQ(block(*o, 5, 4096), c.b);
  ASSERT_TRUE(o->vol->flush());
  const auto j = journal_bytes(*o->mem, c.g);
  const std::size_t sec2 = 2 * std::size_t{c.g.journal_section_sectors} * 512;
  for (std::uint32_t s = 0; s < c.g.journal_section_sectors; ++s)
    ASSERT_EQ(load_le64(j.data() + sec2 + s * 512 + 504), test::JournalWriter::commit_id(2, s, 0));
  EXPECT_EQ(load_le64(j.data() + sec2), 5u * 8);  // entry 0: block 5
  EXPECT_EQ(block(*o, 5, 4096), c.b);
}

TEST(IntegrityJournal, CorruptEntryFailsExactlyItsBlock) {
  const VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  JournalCase c = journal_case(l);
  auto w = journal_writer(c.g);
  auto bad = c.t3;
  bad[0] ^= std::byte{0x10};
  w.put(0, 0, 3 * 8, c.a3, bad);  // a flipped tag byte in the journal entry
  w.put(0, 1, 7 * 8, c.a7, c.t7);
  w.seal(0, 1);
  poke_journal(*c.mem, c.g, w);
  auto o = open_on(std::move(c.mem), l);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(failing_blocks(*o, 4096, 16), std::vector<std::uint64_t>{3});
  EXPECT_EQ(block(*o, 7, 4096),
            std::vector<std::byte>(c.a.begin() + 7 * 4096, c.a.begin() + 8 * 4096));
}

// Forwards to a store the test keeps, so that it can be inspected after a failed open.
class RefStore final : public BackingStore {
 public:
  explicit RefStore(MemBackingStore& m) : m_(m) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return m_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return m_.write_at(off, in);
  }
  Result<void> sync() override { return m_.sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t n) override { return m_.discard(off, n); }
  std::uint64_t size_bytes() const noexcept override { return m_.size_bytes(); }
  bool read_only() const noexcept override { return m_.read_only(); }
  const std::string& name() const noexcept override { return m_.name(); }

 private:
  MemBackingStore& m_;
};

TEST(IntegrityJournal, HostileJournalIsRefusedWithNothingWritten) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE(which);
    JournalCase c = journal_case(l);
    auto w = journal_writer(c.g);
    w.put(0, 0, 3 * 8, c.a3, c.t3);
    w.seal(0, 1);
    if (which == 0) w.set_raw_id(2, 5, 0xdeadbeefull);  // a commit id of no sequence
    if (which == 1)
      for (std::uint32_t i = 0; i < c.g.journal_sections; ++i) w.seal(i, i % 4);
    if (which == 2) w.put_sector(0, 1, 13);  // a committed entry for an unaligned sector
    poke_journal(*c.mem, c.g, w);
    c.mem->reset_counters();
    auto v = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*c.mem), {}, nullptr);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, Errc::kCorrupt) << v.error().message();
    EXPECT_EQ(c.mem->write_calls(), 0u);
    EXPECT_EQ(c.mem->sync_calls(), 0u);
  }
}

TEST(IntegrityJournal, ReadOnlyImageWithPendingJournalIsRefused) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  JournalCase c = journal_case(l);
  auto w = journal_writer(c.g);
  w.put(0, 0, 3 * 8, c.a3, c.t3);
  w.seal(0, 1);
  poke_journal(*c.mem, c.g, w);
  std::vector<std::byte> image(c.mem->size_bytes());
  c.mem->peek(0, image);
  auto ro = std::make_unique<MemBackingStore>(image.size(), "mem:ro", true);
  ro->poke(0, image);
  auto o = open_on(std::move(ro), l);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, Errc::kReadOnly);
  EXPECT_NE(o.error().message().find("replay"), std::string::npos) << o.error().message();
  // A clean journal opens read-only as before.
  auto clean = std::make_unique<MemBackingStore>(image.size(), "mem:ro", true);
  JournalCase d = journal_case(l);
  std::vector<std::byte> img2(d.mem->size_bytes());
  d.mem->peek(0, img2);
  clean->poke(0, img2);
  auto ok = open_on(std::move(clean), l);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(block(*ok, 3, 4096), d.b);
}

// Mode J batches as the kernel does: writes fill the open batch of journal sections in memory
// (a block written twice keeps one entry, its last version); the batch is committed (one sync)
// when it is full or at a flush, then its blocks are written in place; reads see every
// acknowledged write meanwhile (each tag verified once per block read); a reopen after the
// flush replays it. The 512-byte case has a 10-section ring: batches of 5 sections.
TEST(IntegrityJournal, WritesAreBatchedIntoSectionsUntilFullOrFlushed) {
  for (const Mode& m : {kModes[0], kModes[3], kModes[5]}) {
    SCOPED_TRACE(std::string(m.enc) + " " + std::to_string(m.ss));
    VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    VolumeLayout d = l;  // formatted and wiped in mode D, served in mode J
    l.integrity_no_journal = false;
    auto base = open_on(formatted(40 * kMiB, d), d);
    ASSERT_TRUE(base);
    const integrity::Geometry g = geometry_of(*base->mem, d);
    // The open batch: half the ring's sections, at least 1 (docs/integrity.md §5).
    const std::uint32_t sections = journal_batch_sections(g);
    EXPECT_EQ(sections, std::max<std::uint32_t>(1, g.journal_sections / 2));
    const std::size_t cap = std::size_t{sections} * g.journal_section_entries;
    if (m.ss == 512) {
      EXPECT_GT(sections, 1u);
    }
    const std::uint64_t blocks = 2 * cap + 8;
    ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(blocks * m.ss)));
    MemBackingStore& mem = *base->mem;
    VolumeOptions no_read_ahead;  // the sequential reads below: every block read by the reader
    no_read_ahead.no_read_workqueue = true;
    no_read_ahead.cache_bytes = 0;  // no sector cache: writes go to the journal batch at once
    auto j = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), no_read_ahead,
                                   nullptr);
    ASSERT_TRUE(j) << j.error().message();
    // Blocks 1, 3, 5, ... (cap - 1 of them) and block 3 again: one batch, not yet full.
    std::vector<std::vector<std::byte>> want(blocks, std::vector<std::byte>(m.ss));
    const std::uint64_t w0 = mem.write_calls(), s0 = mem.sync_calls();
    for (std::uint64_t i = 0; i + 1 < cap; ++i) {
      want[2 * i + 1] = pattern(m.ss, 300 + static_cast<unsigned>(i));
      ASSERT_TRUE((*j)->write(ByteOffset{(2 * i + 1) * m.ss}, want[2 * i + 1]));
    }
    want[3] = pattern(m.ss, 299);
    ASSERT_TRUE((*j)->write(ByteOffset{3 * m.ss}, want[3]));
    EXPECT_EQ(mem.write_calls(), w0) << "a write reached the disk before its batch filled";
    const auto verified0 = integrity_counters(**j)->tags_verified;
    for (std::uint64_t k = 0; k < blocks; ++k) {
      std::vector<std::byte> b(m.ss);
      ASSERT_TRUE((*j)->read(ByteOffset{k * m.ss}, b)) << "block " << k;
      EXPECT_EQ(b, want[k]) << "block " << k;
    }
    EXPECT_EQ(integrity_counters(**j)->tags_verified - verified0, blocks);
    // The batch's last entry, then one block more: exactly one commit (one sync).
    const std::uint64_t last = 2 * cap + 2, next = 2 * cap + 4;
    want[last] = pattern(m.ss, 298);
    want[next] = pattern(m.ss, 297);
    ASSERT_TRUE((*j)->write(ByteOffset{last * m.ss}, std::span(want[last])));
    EXPECT_EQ(mem.sync_calls(), s0);
    ASSERT_TRUE((*j)->write(ByteOffset{next * m.ss}, std::span(want[next])));
    ASSERT_TRUE(integrity_await_commits(**j));  // the journal thread commits it
    EXPECT_EQ(mem.sync_calls(), s0 + 1);
    // Committed: sections 0 .. sections-1 carry the next sequence (1); entry 1 is block 3,
    // the batch's last entry is the last one of its last section.
    const auto jb = journal_bytes(mem, g);
    const std::size_t sec_bytes = std::size_t{g.journal_section_sectors} * 512;
    for (std::uint32_t i = 0; i < sections; ++i)
      for (std::uint32_t s = 0; s < g.journal_section_sectors; ++s)
        ASSERT_EQ(load_le64(jb.data() + i * sec_bytes + s * 512 + 504),
                  test::JournalWriter::commit_id(i, s, 1))
            << "section " << i << " sector " << s;
    EXPECT_EQ(load_le64(jb.data() + integrity::journal_entry_offset(g, 1)), 3u * (m.ss / 512));
    EXPECT_EQ(load_le64(jb.data() + (sections - 1) * sec_bytes +
                        integrity::journal_entry_offset(g, g.journal_section_entries - 1)),
              last * (m.ss / 512));
    // Block `next` waits in the next batch: a reopen without flush would not see it; after the
    // flush it is on disk, and a reopen (replay) reads every block as written.
    ASSERT_TRUE((*j)->flush());
    j->reset();
    auto again = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), {}, nullptr);
    ASSERT_TRUE(again) << again.error().message();
    for (std::uint64_t k = 0; k < blocks; ++k) {
      std::vector<std::byte> b(m.ss);
      ASSERT_TRUE((*again)->read(ByteOffset{k * m.ss}, b)) << "block " << k;
      EXPECT_EQ(b, want[k]) << "block " << k;
    }
  }
}

// An open batch older than 5 s is committed without a flush (the kernel's commit timer):
// a lone journaled write reaches the journal and its place, and a reopen replays it.
TEST(IntegrityJournal, AnIdleOpenBatchIsCommittedAfterFiveSeconds) {
  VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  VolumeLayout d = l;
  l.integrity_no_journal = false;
  auto base = open_on(formatted(40 * kMiB, d), d);
  ASSERT_TRUE(base);
  ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(16 * 4096)));
  MemBackingStore& mem = *base->mem;
  auto j = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), {}, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  const auto b = pattern(4096, 77);
  const std::uint64_t s0 = mem.sync_calls();
  // The clock starts before the write (its batch's age counts from the write); the wait is
  // bounded generously (a loaded machine delays the timer, never advances it).
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*j)->write(ByteOffset{9 * 4096}, b));
  while (mem.sync_calls() == s0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GT(mem.sync_calls(), s0) << "no commit within 60 s";
  EXPECT_GE(waited, std::chrono::seconds(4)) << "committed long before the 5 s age";
  // Reopen a copy of what is on disk now (the volume is still open): the write is there.
  std::vector<std::byte> image(mem.size_bytes());
  mem.peek(0, image);
  auto copy = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
  copy->poke(0, image);
  auto again = open_on(std::move(copy), l);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(block(*again, 9, 4096), b);
}

// Counts a store's write batches, their pieces, single writes and syncs (over a MemBackingStore).
class BatchCountingStore final : public BackingStore {
 public:
  explicit BatchCountingStore(MemBackingStore& m) : m_(m) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return m_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    ++single_writes;
    return m_.write_at(off, in);
  }
  Result<void> write_batch(std::span<WritePiece> pieces) override {
    ++batches;
    last_batch_pieces = pieces.size();
    return m_.write_batch(pieces);
  }
  Result<void> sync() override {
    ++syncs;
    return m_.sync();
  }
  Result<void> discard(ByteOffset off, std::uint64_t n) override { return m_.discard(off, n); }
  std::uint64_t size_bytes() const noexcept override { return m_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return m_.name(); }

  std::atomic<std::uint64_t> batches{0}, single_writes{0}, syncs{0};
  std::atomic<std::size_t> last_batch_pieces{0};

 private:
  MemBackingStore& m_;
};

// Mode J pipelined as the kernel's (docs/integrity.md §5): a commit writes its journal sections
// and the in-place copy of the previous commit's blocks as one store batch and syncs once; its
// own blocks wait, committed, for the next commit (reads see them; replay covers them). Fails
// when a commit copies its own blocks right after its sync (more batches) or copies them one
// run at a time.
TEST(IntegrityJournal, ACommitCarriesThePreviousCommitsCopyInOneStoreBatch) {
  VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  VolumeLayout d = l;
  l.integrity_no_journal = false;
  auto base = open_on(formatted(40 * kMiB, d), d);
  ASSERT_TRUE(base);
  MemBackingStore& mem = *base->mem;
  const integrity::Geometry g = geometry_of(mem, d);
  const std::uint32_t sections = journal_batch_sections(g);
  const std::size_t cap = std::size_t{sections} * g.journal_section_entries;
  const std::uint64_t blocks = 3 * (2 * cap + 2);
  ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(blocks * 4096)));
  auto in_place = [&](std::uint64_t k) {
    std::vector<std::byte> b(4096);
    mem.peek(g.data_sector(k * 8) * 512, b);
    return b;
  };
  VolumeOptions o;  // no cache, no read-ahead: every write goes to the journal batch at once
  o.no_read_workqueue = true;
  o.cache_bytes = 0;
  auto store = std::make_unique<BatchCountingStore>(mem);
  BatchCountingStore& st = *store;
  auto j = open_integrity_volume(l, key_for(l), std::move(store), o, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  std::vector<std::vector<std::byte>> want(blocks, std::vector<std::byte>(4096));
  const std::uint64_t b0 = st.batches, w0 = st.single_writes;
  // Batch 1: cap blocks, none adjacent (one run each); the next block commits it.
  std::vector<std::vector<std::byte>> before(cap);
  for (std::size_t i = 0; i < cap; ++i) {
    before[i] = in_place(3 * i);
    want[3 * i] = pattern(4096, 500 + static_cast<unsigned>(i));
    ASSERT_TRUE((*j)->write(ByteOffset{3 * i * 4096}, want[3 * i]));
  }
  EXPECT_EQ(st.batches - b0 + st.single_writes - w0, 0u);
  const std::uint64_t s0 = st.syncs;
  std::uint64_t k = 3 * cap;
  for (std::size_t i = 0; i < cap; ++i, k += 3) {
    want[k] = pattern(4096, 700 + static_cast<unsigned>(i));
    ASSERT_TRUE((*j)->write(ByteOffset{k * 4096}, want[k]));
    if (i == 0) {
      // Commit 1: its journal sections alone, one sync; its blocks are not in place yet.
      ASSERT_TRUE(integrity_await_commits(**j));
      EXPECT_EQ(st.batches - b0, 1u);
      EXPECT_EQ(st.single_writes - w0, 0u);
      EXPECT_EQ(st.syncs - s0, 1u);
      for (std::size_t b = 0; b < cap; ++b)
        EXPECT_EQ(in_place(3 * b), before[b])
            << "block " << 3 * b << " copied before the next commit";
    }
  }
  // Reads see committed blocks not yet copied (and the open batch).
  for (std::uint64_t b = 0; b < blocks; ++b) {
    std::vector<std::byte> got(4096);
    ASSERT_TRUE((*j)->read(ByteOffset{b * 4096}, got)) << "block " << b;
    EXPECT_EQ(got, want[b]) << "block " << b;
  }
  // Commit 2 (batch 2 is full, one block more): its sections and batch 1's copy (cap blocks,
  // one piece each, plus their tag pages) as one store batch, one sync.
  ASSERT_TRUE((*j)->write(ByteOffset{1 * 4096}, want[1]));
  ASSERT_TRUE(integrity_await_commits(**j));
  EXPECT_EQ(st.batches - b0, 2u);
  EXPECT_EQ(st.single_writes - w0, 0u);
  EXPECT_EQ(st.syncs - s0, 2u);
  EXPECT_GT(st.last_batch_pieces, cap + 1);
  for (std::size_t b = 0; b < cap; ++b)
    EXPECT_NE(in_place(3 * b), before[b]) << "block " << 3 * b << " not copied by commit 2";
  // A copy of the image now (batch 2 committed, not copied) reopens with every block (replay).
  std::vector<std::byte> image(mem.size_bytes());
  mem.peek(0, image);
  auto copy = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
  copy->poke(0, image);
  auto again = open_on(std::move(copy), l, o);
  ASSERT_TRUE(again) << again.error().message();
  for (std::uint64_t b = 0; b < blocks; ++b)
    EXPECT_EQ(block(*again, b, 4096), want[b]) << "block " << b;
  // Close copies everything; a reopen reads every block.
  j->reset();
  auto closed = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), o, nullptr);
  ASSERT_TRUE(closed) << closed.error().message();
  Opened c{&mem, std::move(*closed)};
  for (std::uint64_t b = 0; b < blocks; ++b) EXPECT_EQ(block(c, b, 4096), want[b]) << "block " << b;
}

// Journaled writes (mode J) under a crash at every point: a store that stops after a given
// number of writes (the last one torn: only its first half lands) and fails every sync from
// then on. After each crash the image is reopened (replay): every block reads with a valid
// tag and holds either its contents as of the last successful flush or one of the versions
// written since (acknowledged writes wait in the open journal section until a flush, as the
// kernel's).
class CrashStore final : public BackingStore {
 public:
  // `writes_left` is the test's: it outlives a store destroyed by a failed open.
  CrashStore(MemBackingStore& m, std::uint64_t& writes_left) : m_(m), left_(writes_left) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return m_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (left_ == 0) return fail(make_error(Errc::kIo, "crashed"));
    if (--left_ == 0) {
      m_.poke(off.value, in.first(in.size() / 2));
      return fail(make_error(Errc::kIo, "crashed"));
    }
    return m_.write_at(off, in);
  }
  Result<void> sync() override {
    return left_ == 0 ? fail(make_error(Errc::kIo, "crashed")) : m_.sync();
  }
  Result<void> discard(ByteOffset off, std::uint64_t n) override { return m_.discard(off, n); }
  std::uint64_t size_bytes() const noexcept override { return m_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return m_.name(); }

 private:
  MemBackingStore& m_;
  std::uint64_t& left_;
};

TEST(IntegrityJournal, CrashAtEveryWriteLeavesEveryBlockOldOrNew) {
  for (const Mode& m : {kModes[0], kModes[6]}) {
    SCOPED_TRACE(std::string(m.enc) + " " + std::to_string(m.ss));
    VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    l.integrity_no_journal = false;
    const std::uint64_t blocks = 96;  // more than one section's entries: several commits
    // The starting image: blocks 0..95 written (version 0) in place, then blocks 3, 50 and 51
    // again (same contents) through the journal, so that open has committed entries to replay
    // (a crash can hit the replay too). 40 MiB: 2 sections of 32 entries with 4 KiB blocks,
    // so the workload wraps the ring.
    const auto v0 = pattern(blocks * m.ss, 100);
    VolumeLayout d = l;
    d.integrity_no_journal = true;
    auto base = formatted(40 * kMiB, d);
    {
      auto o = open_on(std::move(base), d);
      ASSERT_TRUE(o) << o.error().message();
      ASSERT_TRUE(o->vol->write(ByteOffset{0}, v0));
      // (o->vol stays open, idle: it owns the store the journal-mode volume works on.)
      auto j =
          open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*o->mem), {}, nullptr);
      ASSERT_TRUE(j) << j.error().message();
      ASSERT_TRUE((*j)->write(ByteOffset{3 * m.ss}, std::span(v0).subspan(3 * m.ss, m.ss)));
      ASSERT_TRUE((*j)->write(ByteOffset{50 * m.ss}, std::span(v0).subspan(50 * m.ss, 2 * m.ss)));
      j->reset();
      base = std::make_unique<MemBackingStore>(o->mem->size_bytes(), "mem:integrity");
      std::vector<std::byte> image(o->mem->size_bytes());
      o->mem->peek(0, image);
      base->poke(0, image);
    }
    std::vector<std::byte> image(base->size_bytes());
    base->peek(0, image);
    // Workload: 6 writes of various sizes (one spans several sections), each a new version,
    // with flushes after the third and the last.
    struct W {
      std::uint64_t first, n;
      bool flush;
    };
    const W work[] = {{3, 1, false},  {10, 70, false}, {0, 2, true},
                      {40, 5, false}, {95, 1, false},  {20, 33, true}};
    for (std::uint64_t crash_after = 1;; ++crash_after) {
      MemBackingStore mem(image.size(), "mem:integrity");
      mem.poke(0, image);
      // durable[k]: block k as of the last successful flush; maybe[k]: versions written since.
      std::vector<std::vector<std::byte>> durable(blocks);
      std::vector<std::vector<std::vector<std::byte>>> maybe(blocks);
      for (std::uint64_t k = 0; k < blocks; ++k)
        durable[k].assign(v0.begin() + k * m.ss, v0.begin() + (k + 1) * m.ss);
      std::uint64_t left = crash_after;
      // Open replays the journal the starting image holds: a crash can hit that too.
      auto v = open_integrity_volume(l, key_for(l), std::make_unique<CrashStore>(mem, left), {},
                                     nullptr);
      ASSERT_TRUE(v || left == 0) << v.error().message();
      unsigned version = 1;
      for (const W& w : work) {
        if (!v) break;
        const auto data = pattern(w.n * m.ss, 100 + version++);
        auto r = (*v)->write(ByteOffset{w.first * m.ss}, data);
        for (std::uint64_t k = 0; k < w.n; ++k)
          maybe[w.first + k].emplace_back(data.begin() + k * m.ss, data.begin() + (k + 1) * m.ss);
        if (!r) break;
        if (!w.flush) continue;
        if (!(*v)->flush()) break;
        for (std::uint64_t k = 0; k < blocks; ++k)
          if (!maybe[k].empty()) {
            durable[k] = maybe[k].back();
            maybe[k].clear();
          }
      }
      const bool crashed = left == 0;
      if (v) v->reset();
      // Reopen what the "disk" holds: replay, then every block is old or new, tag valid.
      Opened o;
      auto re = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), {}, nullptr);
      if (re) o.vol = std::move(*re);
      ASSERT_TRUE(re) << "crash after " << crash_after << ": " << re.error().message();
      for (std::uint64_t k = 0; k < blocks; ++k) {
        std::vector<std::byte> b(m.ss);
        auto r = o.vol->read(ByteOffset{k * m.ss}, b);
        ASSERT_TRUE(r) << "crash after " << crash_after << ": block " << k << " has a bad tag";
        ASSERT_TRUE(b == durable[k] ||
                    std::find(maybe[k].begin(), maybe[k].end(), b) != maybe[k].end())
            << "crash after " << crash_after << ": block " << k << " is neither old nor new";
      }
      if (!crashed) break;  // the whole workload ran: every crash point was tried
    }
  }
}

// A disk with a volatile write cache, 512-byte sectors: writes since the last sync live in an
// overlay over `base` until sync() makes them durable (with `volatile_cache`; else writes go to
// the overlay and stay there: a scratch view over an image). Before every write that touches
// the journal area [journal_lo, journal_hi), `on_journal_write` sees it first.
class OverlayStore final : public BackingStore {
 public:
  using Sector = std::array<std::byte, 512>;
  OverlayStore(MemBackingStore& base, bool volatile_cache)
      : base_(base), volatile_(volatile_cache) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    CRYPTMAP_TRY_VOID(base_.read_at(off, out));
    std::lock_guard l(mu_);
    const std::uint64_t end = off.value + out.size();
    for (auto it = over_.lower_bound(off.value / 512); it != over_.end() && it->first * 512 < end;
         ++it) {
      const std::uint64_t lo = std::max(off.value, it->first * 512);
      const std::uint64_t hi = std::min(end, it->first * 512 + 512);
      std::memcpy(out.data() + (lo - off.value), it->second.data() + (lo - it->first * 512),
                  hi - lo);
    }
    return ok();
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    WritePiece p{off, in};
    return write_batch(std::span(&p, 1));
  }
  Result<void> write_batch(std::span<WritePiece> pieces) override {
    if (on_journal_write)
      for (const WritePiece& p : pieces)
        if (p.off.value < journal_hi && p.off.value + p.in.size() > journal_lo) {
          on_journal_write(pieces);
          break;
        }
    std::lock_guard l(mu_);
    for (const WritePiece& p : pieces) put(p.off.value, p.in);
    return ok();
  }
  Result<void> sync() override {
    std::lock_guard l(mu_);
    ++syncs;
    if (!volatile_) return ok();
    for (const auto& [s, b] : over_) base_.poke(s * 512, b);
    over_.clear();
    return ok();
  }
  Result<void> discard(ByteOffset, std::uint64_t) override {
    return fail(make_error(Errc::kUnsupported, "discard"));
  }
  std::uint64_t size_bytes() const noexcept override { return base_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return base_.name(); }

  // Bytes (whole sectors) written since the last sync, inside [lo, hi).
  void unsynced_in(std::uint64_t lo, std::uint64_t hi, OverlayStore& to) const {
    std::lock_guard l(mu_);
    for (auto it = over_.lower_bound(lo / 512); it != over_.end() && it->first * 512 < hi; ++it)
      to.over_[it->first] = it->second;
  }
  void put(std::uint64_t off, std::span<const std::byte> in) {
    EXPECT_EQ((off | in.size()) % 512, 0u) << "a write not in whole sectors";
    for (std::size_t i = 0; i + 512 <= in.size(); i += 512)
      std::memcpy(over_[(off + i) / 512].data(), in.data() + i, 512);
  }

  std::uint64_t journal_lo = 0, journal_hi = 0;
  std::function<void(std::span<WritePiece>)> on_journal_write;
  std::atomic<std::uint64_t> syncs{0};

 private:
  MemBackingStore& base_;
  const bool volatile_;
  mutable std::mutex mu_;
  std::map<std::uint64_t, Sector> over_;
};

// Mode J's ring invariant (docs/integrity.md §5): a commit never overwrites the journal sections
// of the commit before it while that commit's in-place copy is not durable. Checked on a
// one-section ring (commits one at a time, the copy synced first), a two-section ring, a small
// ring and a big one (commits of half the ring: more than the 8 sections of before): before
// every write that reaches the journal, the worst a power cut could leave then (the durable
// image, plus only the journal writes since the last sync, the in-place copies since then lost)
// is replayed on a scratch view and must read every block as of the last flush or as one of
// the writes since. Fails when a commit may take more than half the ring (or a one-section
// ring's commit does not copy first): a flushed batch's sections are overwritten before its copy
// is durable and its blocks read older than the flush.
TEST(IntegrityJournal, CommitsNeverOverwriteSectionsWhoseCopyIsNotDurable) {
  const VolumeLayout d = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  VolumeLayout l = d;
  l.integrity_no_journal = false;
  VolumeOptions o;  // no cache, no read-ahead: every write goes to the journal batch at once
  o.no_read_workqueue = true;
  o.cache_bytes = 0;
  // Image sizes: journal rings of 1, 2 and 4 sections, and 62 sections (1 GiB).
  for (std::uint64_t mib : {32, 40, 72, 1024}) {
    SCOPED_TRACE(std::to_string(mib) + " MiB");
    auto disk = formatted(mib * kMiB, d);
    const integrity::Geometry g = geometry_of(*disk, d);
    const std::uint32_t batch = journal_batch_sections(g);
    const std::size_t cap = std::size_t{batch} * g.journal_section_entries;
    // Half the ring, at least 1, at most a third of 8 MiB of sections (docs/integrity.md §5).
    EXPECT_EQ(batch, std::min<std::uint32_t>(std::max<std::uint32_t>(1, g.journal_sections / 2),
                                             (8u << 20) / 3 / (g.journal_section_sectors * 512)));
    if (mib == 32) {
      EXPECT_EQ(g.journal_sections, 1u);
    }
    if (mib == 1024) {
      EXPECT_GT(batch, 8u) << "commits do not grow with the ring";
    }
    const std::uint64_t blocks = 3 * cap + 2;
    ASSERT_LE(blocks * 8, g.provided_data_sectors);
    std::vector<std::vector<std::byte>> durable(blocks);
    std::vector<std::vector<std::vector<std::byte>>> maybe(blocks);
    {
      const auto v0 = pattern(blocks * 4096, 900);
      auto w = open_integrity_volume(d, key_for(d), std::make_unique<RefStore>(*disk), o, nullptr);
      ASSERT_TRUE(w) << w.error().message();
      ASSERT_TRUE((*w)->write(ByteOffset{0}, v0));
      ASSERT_TRUE((*w)->flush());
      for (std::uint64_t k = 0; k < blocks; ++k)
        durable[k].assign(v0.begin() + k * 4096, v0.begin() + (k + 1) * 4096);
    }
    auto vstore = std::make_unique<OverlayStore>(*disk, true);
    OverlayStore& vs = *vstore;
    vs.journal_lo = g.journal_first_sector() * 512;
    vs.journal_hi =
        vs.journal_lo + std::uint64_t{g.journal_sections} * g.journal_section_sectors * 512;
    unsigned checks = 0;
    std::mutex versions_mu;  // durable, maybe: the flusher's 5 s commit checks from its thread
    vs.on_journal_write = [&](std::span<WritePiece> pieces) {
      std::lock_guard vl(versions_mu);
      ++checks;
      // The scratch view: replay's writes stay in it, the disk is not touched.
      auto crash = std::make_unique<OverlayStore>(*disk, false);
      vs.unsynced_in(vs.journal_lo, vs.journal_hi, *crash);
      for (const WritePiece& p : pieces)
        if (p.off.value >= vs.journal_lo && p.off.value < vs.journal_hi)
          crash->put(p.off.value, p.in);
      auto v = open_integrity_volume(l, key_for(l), std::move(crash), o, nullptr);
      ASSERT_TRUE(v) << "check " << checks << ": " << v.error().message();
      std::vector<std::byte> b(4096);
      for (std::uint64_t k = 0; k < blocks; ++k) {
        ASSERT_TRUE((*v)->read(ByteOffset{k * 4096}, b)) << "check " << checks << ": block " << k;
        ASSERT_TRUE(b == durable[k] ||
                    std::find(maybe[k].begin(), maybe[k].end(), b) != maybe[k].end())
            << "check " << checks << ": block " << k << " reads older than the last flush";
      }
    };
    auto jv = open_integrity_volume(l, key_for(l), std::move(vstore), o, nullptr);
    ASSERT_TRUE(jv) << jv.error().message();
    unsigned version = 1;
    auto write_blocks = [&](std::uint64_t first, std::uint64_t n) {
      const auto data = pattern(n * 4096, 900 + version++);
      {
        std::lock_guard vl(versions_mu);
        for (std::uint64_t k = 0; k < n; ++k)
          maybe[first + k].emplace_back(data.begin() + k * 4096, data.begin() + (k + 1) * 4096);
      }
      for (std::uint64_t k = 0; k < n; k += 64) {  // requests of at most 256 KiB
        const std::uint64_t m = std::min<std::uint64_t>(64, n - k);
        ASSERT_TRUE((*jv)->write(ByteOffset{(first + k) * 4096},
                                 std::span(data).subspan(k * 4096, m * 4096)));
      }
    };
    auto flush_all = [&] {
      ASSERT_TRUE((*jv)->flush());
      std::lock_guard vl(versions_mu);
      for (std::uint64_t k = 0; k < blocks; ++k)
        if (!maybe[k].empty()) {
          durable[k] = maybe[k].back();
          maybe[k].clear();
        }
    };
    write_blocks(0, cap);  // batch A, committed by the flush
    flush_all();
    const std::uint64_t s0 = vs.syncs;
    write_blocks(cap, cap + 1);  // batch B: committed at its last block, carrying A's copy
    // One commit (one sync; a ring too small for two batches copies and syncs first).
    EXPECT_LE(vs.syncs - s0, 2u);
    write_blocks(2 * cap + 1, cap + 1);  // batch C, over A's sections on a small ring
    write_blocks(0, cap / 2);
    flush_all();
    EXPECT_GE(checks, 4u);
    jv->reset();
    // Closed: everything durable, and a reopen reads every block's last version.
    auto again =
        open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*disk), o, nullptr);
    ASSERT_TRUE(again) << again.error().message();
    std::vector<std::byte> b(4096);
    for (std::uint64_t k = 0; k < blocks; ++k) {
      ASSERT_TRUE((*again)->read(ByteOffset{k * 4096}, b)) << "block " << k;
      EXPECT_EQ(b, durable[k]) << "block " << k;
    }
  }
}

// A commit's in-place copy whose tags touch more tag pages than one store batch holds (256: a
// big commit of scattered blocks) is written as several store batches, in block order, before
// its one sync (docs/integrity.md §5): on a 1 GiB volume (commits of 20 sections, 640 blocks),
// 640 blocks 147 apart (each tag on its own page, 28-byte tags) are committed, then copied by
// the next commit; every block reads back after a reopen. Fails when the split drops or
// misplaces blocks, tags or pages at a batch boundary.
TEST(IntegrityJournal, ACopyTouchingManyTagPagesIsSplitIntoSeveralStoreBatches) {
  VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  VolumeLayout d = l;
  l.integrity_no_journal = false;
  auto disk = formatted(1024 * kMiB, d);
  const integrity::Geometry g = geometry_of(*disk, d);
  const std::size_t cap = std::size_t{journal_batch_sections(g)} * g.journal_section_entries;
  const std::uint64_t stride = 147;  // 147 · 28 bytes of tags > 4 KiB: one page per block
  ASSERT_GT(cap, 300u);
  ASSERT_LT((cap * stride + 2) * 8, g.provided_data_sectors);
  VolumeOptions o;
  o.no_read_workqueue = true;
  o.cache_bytes = 0;
  auto store = std::make_unique<BatchCountingStore>(*disk);
  BatchCountingStore& st = *store;
  auto j = open_integrity_volume(l, key_for(l), std::move(store), o, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> want;
  for (std::uint64_t i = 0; i < cap; ++i) want.emplace_back(i * stride, pattern(4096, 2000 + i));
  want.emplace_back(1, pattern(4096, 1999));  // commits the scattered batch
  for (const auto& [k, b] : want) ASSERT_TRUE((*j)->write(ByteOffset{k * 4096}, b));
  ASSERT_TRUE(integrity_await_commits(**j));  // the scattered batch, committed
  // The flush commits {1} and carries the scattered batch's copy: several store batches, one sync.
  const std::uint64_t b0 = st.batches, s0 = st.syncs;
  ASSERT_TRUE((*j)->flush());
  EXPECT_GE(st.batches - b0, 2u) << "the copy of " << cap << " scattered blocks in one batch";
  EXPECT_EQ(st.syncs - s0, 2u);  // the commit, then the flush's own
  {
    // What the copy put in place, without the journal: a copy of the image with a clean
    // journal (nothing to replay) reads every scattered block from its place.
    std::vector<std::byte> image(disk->size_bytes());
    disk->peek(0, image);
    integrity::write_initial_journal(
        g, std::span(image).subspan(
               g.journal_first_sector() * 512,
               std::size_t{g.journal_sections} * g.journal_section_sectors * 512));
    auto mem = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
    mem->poke(0, image);
    auto placed = open_on(std::move(mem), l, o);
    ASSERT_TRUE(placed) << placed.error().message();
    for (std::size_t i = 0; i < cap; ++i)
      EXPECT_EQ(block(*placed, want[i].first, 4096), want[i].second)
          << "block " << want[i].first << " not copied in place";
  }
  j->reset();
  auto again = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*disk), o, nullptr);
  ASSERT_TRUE(again) << again.error().message();
  Opened c{disk.get(), std::move(*again)};
  for (const auto& [k, b] : want) EXPECT_EQ(block(c, k, 4096), b) << "block " << k;
  EXPECT_EQ(counters(c).tags_failed, 0u);
}

// A gate stores hold their calls at: while held, pass() waits; reached() says whether a call
// got to it within `limit` (a bound against hanging, not a timing).
class Gate {
 public:
  void pass() {
    std::unique_lock l(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(l, [&] { return !held_; });
    --waiting_;
  }
  void hold(bool held) {
    std::lock_guard l(mu_);
    held_ = held;
    cv_.notify_all();
  }
  bool reached(std::chrono::seconds limit) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, limit, [&] { return waiting_ > 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  unsigned waiting_ = 0;
};

// A store whose syncs wait at a gate while it is held (over a MemBackingStore).
class GatedSyncStore final : public BackingStore {
 public:
  explicit GatedSyncStore(MemBackingStore& m) : m_(m) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return m_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return m_.write_at(off, in);
  }
  Result<void> sync() override {
    gate_.pass();
    return m_.sync();
  }
  Result<void> discard(ByteOffset off, std::uint64_t n) override { return m_.discard(off, n); }
  std::uint64_t size_bytes() const noexcept override { return m_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return m_.name(); }

  void hold(bool held) { gate_.hold(held); }
  // Whether a sync reached the gate within `limit` (a bound against hanging, not a timing).
  bool sync_at_gate(std::chrono::seconds limit) { return gate_.reached(limit); }

 private:
  MemBackingStore& m_;
  Gate gate_;
};

// Mode J commits outside the locks writers and readers take (docs/integrity.md §5): while a
// full batch's commit waits in its sync, writers fill the next batch and readers read every
// block, the committing ones included (from the batch). Fails when the commit's store I/O and
// sync run under a lock that writers or readers need (the commit then blocks them until the
// sync returns: the bounded wait below runs out).
TEST(IntegrityJournal, WritersFillTheNextBatchWhileTheCommitBeforeIsInFlight) {
  VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  l.integrity_no_journal = false;
  auto disk = formatted(40 * kMiB, l);
  const integrity::Geometry g = geometry_of(*disk, l);
  const std::size_t cap = std::size_t{journal_batch_sections(g)} * g.journal_section_entries;
  VolumeOptions o;  // no cache, no read-ahead: every write goes to the journal batch at once
  o.no_read_workqueue = true;
  o.cache_bytes = 0;
  auto store = std::make_unique<GatedSyncStore>(*disk);
  GatedSyncStore& st = *store;
  auto j = open_integrity_volume(l, key_for(l), std::move(store), o, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  std::vector<std::vector<std::byte>> want(2 * cap);
  for (std::size_t k = 0; k < 2 * cap; ++k)
    want[k] = pattern(4096, 3000 + static_cast<unsigned>(k));
  for (std::size_t k = 0; k < cap; ++k)
    ASSERT_TRUE((*j)->write(ByteOffset{k * 4096}, want[k]));  // batch 1, full
  st.hold(true);
  // Block cap needs room: batch 1 is sealed and committed; its sync waits at the gate.
  auto sealing = std::async(std::launch::async,
                            [&] { return (*j)->write(ByteOffset{cap * 4096}, want[cap]); });
  ASSERT_TRUE(st.sync_at_gate(std::chrono::seconds(60))) << "no commit reached its sync";
  auto others = std::async(std::launch::async, [&]() -> bool {
    for (std::size_t k = cap + 1; k < 2 * cap; ++k)  // batch 2, up to full
      if (!(*j)->write(ByteOffset{k * 4096}, want[k])) return false;
    std::vector<std::byte> b(4096);
    for (std::size_t k = 0; k < 2 * cap; ++k)
      if (!(*j)->read(ByteOffset{k * 4096}, b) || b != want[k]) return false;
    return true;
  });
  const bool overlapped = others.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  EXPECT_TRUE(overlapped) << "writers and readers waited for the commit's sync";
  EXPECT_EQ(integrity_counters(**j)->journal_commits, 0u) << "the commit did not wait at the gate";
  st.hold(false);
  ASSERT_TRUE(sealing.get());
  EXPECT_TRUE(others.get()) << "a write failed or a block read back wrong";
  ASSERT_TRUE((*j)->flush());
  EXPECT_EQ(integrity_counters(**j)->journal_commits, 2u);
  j->reset();
  auto again = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*disk), o, nullptr);
  ASSERT_TRUE(again) << again.error().message();
  Opened c{disk.get(), std::move(*again)};
  for (std::size_t k = 0; k < 2 * cap; ++k) EXPECT_EQ(block(c, k, 4096), want[k]) << "block " << k;
}

// A commit writes its batch's sections from the batch itself (docs/integrity.md §5: the section
// image is built as writers add blocks, commit ids stamped at commit): the journal holds, byte
// for byte, what an independent writer of the format makes (test::JournalWriter) from the
// blocks and tags the commits left in place: striped entries with the pieces' displaced last
// bytes, every sector's commit id of its section and sequence (the ring wrapped once), a block
// written twice into one batch once, and the entries after the last one unused with zero data
// sectors although the batch's memory held a full earlier batch. Fails when a commit writes
// a piece's data bytes where its commit id belongs, or stale entries of an earlier batch.
TEST(IntegrityJournal, ACommitWritesTheKernelsSectionBytesFromItsBatch) {
  for (const Mode& m : {kModes[0], kModes[3]}) {
    SCOPED_TRACE(std::string(m.enc) + " " + m.integ);
    VolumeLayout l = layout_of(m.enc, m.integ, 4096, 1 * kMiB);
    VolumeLayout d = l;
    l.integrity_no_journal = false;
    auto disk = formatted(72 * kMiB, d);  // 4 sections: batches of 2
    const integrity::Geometry g = geometry_of(*disk, d);
    ASSERT_EQ(g.journal_sections, 4u);
    const std::uint32_t per = g.journal_section_entries;
    const std::size_t cap = std::size_t{journal_batch_sections(g)} * per;
    ASSERT_EQ(cap, 2u * per);
    VolumeOptions o;  // no cache, no read-ahead: every write goes to the journal batch at once
    o.no_read_workqueue = true;
    o.cache_bytes = 0;
    // Batches A, B (sections 0-1, 2-3, sequence 1), C (0-1, sequence 2 after the wrap): full,
    // each committed when the next one's first block arrives; D (2-3, sequence 2): the blocks
    // of `tail`, one of them twice, in the batch memory A used, committed by the flush.
    const std::uint64_t c0 = 2 * cap;
    std::vector<std::uint64_t> tail;
    for (std::uint64_t k = 0; k < per + 8; ++k) tail.push_back(3 * cap + 8 + k);
    {
      auto j = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*disk), o, nullptr);
      ASSERT_TRUE(j) << j.error().message();
      for (std::uint64_t k = 0; k < 3 * cap; ++k)
        ASSERT_TRUE(
            (*j)->write(ByteOffset{k * 4096}, pattern(4096, 40 + static_cast<unsigned>(k))));
      for (std::uint64_t k : tail)
        ASSERT_TRUE((*j)->write(ByteOffset{k * 4096}, pattern(4096, 9 + static_cast<unsigned>(k))));
      ASSERT_TRUE((*j)->write(ByteOffset{tail[3] * 4096}, pattern(4096, 7)));
      ASSERT_TRUE((*j)->flush());
      EXPECT_EQ(integrity_counters(**j)->journal_commits, 4u);
    }  // closed: D copied in place too
    auto w = journal_writer(g);
    auto put = [&](std::uint32_t section, std::uint32_t n, std::uint64_t k) {
      std::vector<std::byte> c(4096), t(g.tag_size);
      disk->peek(g.data_sector(k * 8) * 512, c);
      disk->peek(g.tag_byte(k * 8), t);
      w.put(section, n, k * 8, c, t);
    };
    for (std::uint32_t x = 0; x < cap; ++x) put(x / per, x % per, c0 + x);
    for (std::uint32_t x = 0; x < tail.size(); ++x) put(2 + x / per, x % per, tail[x]);
    for (std::uint32_t i = 0; i < 4; ++i) w.seal(i, 2);
    const auto got = journal_bytes(*disk, g);
    ASSERT_EQ(got.size(), w.bytes().size());
    const std::size_t sec = std::size_t{g.journal_section_sectors} * 512;
    for (std::uint32_t i = 0; i < 4; ++i)
      EXPECT_TRUE(std::equal(got.begin() + i * sec, got.begin() + (i + 1) * sec,
                             w.bytes().begin() + i * sec))
          << "section " << i << " differs from the format's bytes";
  }
}

// Readers of a batch whose commit is in flight read its blocks while the journal thread has
// stamped commit ids over each 512-byte piece's last 8 bytes (docs/integrity.md §5): they take
// those bytes from the batch's entries. A store holds the commit's journal write at a gate;
// meanwhile every block of the committing batch reads back right (each verified against its
// tag). Fails when readers copy the committing batch's blocks whole (the commit ids then fail
// the tags: EIO).
class GatedJournalWriteStore final : public BackingStore {
 public:
  GatedJournalWriteStore(MemBackingStore& m, std::uint64_t lo, std::uint64_t hi)
      : m_(m), lo_(lo), hi_(hi) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return m_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (off.value >= lo_ && off.value < hi_) gate_.pass();
    return m_.write_at(off, in);
  }
  Result<void> sync() override { return m_.sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t n) override { return m_.discard(off, n); }
  std::uint64_t size_bytes() const noexcept override { return m_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return m_.name(); }

  void hold(bool held) { gate_.hold(held); }
  // Whether a journal write reached the gate within `limit` (a bound against hanging).
  bool write_at_gate(std::chrono::seconds limit) { return gate_.reached(limit); }

 private:
  MemBackingStore& m_;
  const std::uint64_t lo_, hi_;
  Gate gate_;
};

// A mode-D write-back batch of scattered runs holds only its own tag pages' stripes: while the
// batch of blocks A and Z waits in its store write (A's data held at a gate), a writer of block
// M, whose tag page lies between theirs on another stripe, finishes. Fails when the batch holds
// the stripes of every page from A's to Z's (the writer then waits for the batch: the bounded
// wait below runs out); everything reads back after the gate opens.
TEST(IntegrityVolume, AWriteBackBatchHoldsOnlyItsOwnTagPages) {
  const VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);  // T 28
  auto disk = formatted(40 * kMiB, l);
  const integrity::Geometry g = geometry_of(*disk, l);
  const std::uint64_t spb = g.sectors_per_block();
  auto page = [&](std::uint64_t k) { return g.tag_byte(k * spb) / 4096; };
  const std::uint64_t a = 0, m = 146 * 10 + 5, z = 146 * 20 + 5;
  ASSERT_LT(page(a), page(m));
  ASSERT_LT(page(m), page(z));
  ASSERT_LT(page(z) - page(a), 64u);  // one interleave area, stripes page % 64 all different
  const std::uint64_t a_off = g.data_sector(a * spb) * 512;
  auto store = std::make_unique<GatedJournalWriteStore>(*disk, a_off, a_off + 4096);
  GatedJournalWriteStore& st = *store;
  VolumeOptions o;  // the default cache: writes go into it, write-back writes them
  o.no_read_workqueue = true;
  auto j = open_integrity_volume(l, key_for(l), std::move(store), o, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  Volume& v = **j;
  ASSERT_TRUE(v.write(ByteOffset{a * 4096}, pattern(4096, 1)));
  ASSERT_TRUE(v.write(ByteOffset{z * 4096}, pattern(4096, 3)));
  st.hold(true);
  auto flushed = std::async(std::launch::async, [&] { return v.flush(); });
  ASSERT_TRUE(st.write_at_gate(std::chrono::seconds(60))) << "the write-back never wrote A";
  auto wrote = std::async(std::launch::async,
                          [&] { return v.write(ByteOffset{m * 4096}, pattern(4096, 2)); });
  const bool finished = wrote.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  st.hold(false);
  EXPECT_TRUE(finished) << "a writer of a block between the batch's runs waited for the batch";
  ASSERT_TRUE(flushed.get());
  ASSERT_TRUE(wrote.get());
  ASSERT_TRUE(v.flush());
  std::vector<std::byte> b(4096);
  const std::pair<std::uint64_t, unsigned> want[] = {{a, 1}, {m, 2}, {z, 3}};
  for (auto [k, seed] : want) {
    ASSERT_TRUE(v.read(ByteOffset{k * 4096}, b)) << k;
    EXPECT_EQ(b, pattern(4096, seed)) << k;
  }
}

TEST(IntegrityJournal, ReadersOfACommittingBatchNeverSeeItsCommitIds) {
  for (const Mode& m : {kModes[0], kModes[3], kModes[5]}) {
    SCOPED_TRACE(std::string(m.enc) + " " + std::to_string(m.ss));
    VolumeLayout l = layout_of(m.enc, m.integ, m.ss, 1 * kMiB);
    l.integrity_no_journal = false;
    auto disk = formatted(40 * kMiB, l);
    const integrity::Geometry g = geometry_of(*disk, l);
    const std::size_t cap = std::size_t{journal_batch_sections(g)} * g.journal_section_entries;
    VolumeOptions o;  // no cache, no read-ahead: every write goes to the journal batch at once
    o.no_read_workqueue = true;
    o.cache_bytes = 0;
    const std::uint64_t lo = g.journal_first_sector() * 512;
    auto store = std::make_unique<GatedJournalWriteStore>(
        *disk, lo, lo + std::uint64_t{g.journal_sections} * g.journal_section_sectors * 512);
    GatedJournalWriteStore& st = *store;
    auto j = open_integrity_volume(l, key_for(l), std::move(store), o, nullptr);
    ASSERT_TRUE(j) << j.error().message();
    std::vector<std::vector<std::byte>> want(cap + 1);
    for (std::size_t k = 0; k <= cap; ++k) want[k] = pattern(m.ss, 5000 + static_cast<unsigned>(k));
    // Batch 1 full (as one request: adjacent blocks), then one block more seals it.
    std::vector<std::byte> all;
    for (std::size_t k = 0; k < cap; ++k) all.insert(all.end(), want[k].begin(), want[k].end());
    ASSERT_TRUE((*j)->write(ByteOffset{0}, all));
    st.hold(true);
    ASSERT_TRUE((*j)->write(ByteOffset{cap * m.ss}, want[cap]));
    ASSERT_TRUE(st.write_at_gate(std::chrono::seconds(60))) << "no commit reached its write";
    std::vector<std::byte> b(m.ss);
    for (std::size_t k = 0; k <= cap; ++k) {
      auto r = (*j)->read(ByteOffset{k * m.ss}, b);
      EXPECT_TRUE(r) << "block " << k << ": " << (r ? "" : r.error().message());
      EXPECT_EQ(b, want[k]) << "block " << k;
    }
    EXPECT_EQ(integrity_counters(**j)->tags_failed, 0u);
    st.hold(false);
    ASSERT_TRUE((*j)->flush());
    j->reset();
    auto again =
        open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(*disk), o, nullptr);
    ASSERT_TRUE(again) << again.error().message();
    Opened c{disk.get(), std::move(*again)};
    for (std::size_t k = 0; k <= cap; ++k) EXPECT_EQ(block(c, k, m.ss), want[k]) << "block " << k;
  }
}

// The memory budget (docs/integrity.md §5; issue #13's cache + 64 MiB for the daemon): a 1 GiB
// journal-mode volume with the default cache holds at most 16 MiB of buffers besides its sector
// cache and tag page cache (request slots, the three journal batches, the section image, the
// in-place tag pages). Fails with one 1 MiB slot per request (19 MiB of slots alone) or with
// 4 MiB batches.
TEST(IntegrityVolume, BuffersStayWithinTheBudgetAt1GiB) {
  VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 16 * kMiB);
  l.integrity_no_journal = false;
  auto disk = formatted(1060 * kMiB, l);
  auto j = open_integrity_volume(l, key_for(l), std::move(disk), {}, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  ASSERT_GE((*j)->size_bytes(), 1000 * kMiB);
  const IntegrityCounters c = *integrity_counters(**j);
  EXPECT_LE(c.buffer_bytes, 16 * kMiB);
  EXPECT_GT(c.buffer_bytes, 8 * kMiB);  // the journal's batches are counted
  EXPECT_LE(c.tag_page_capacity * 4096, VolumeOptions{}.cache_bytes / 4);
}

// The tag page cache of a 1 GiB hmac volume (48-byte tags: 3 072 tag pages, 12 MiB) holds every
// tag page with the default cache (a quarter of it at most; the sector cache has the rest), so
// 4 KiB random writes in mode D read no tag page once each has been read: writing every block
// once in a scattered order and then again reads each tag page from the store at most once.
// Fails with the tag page cache an eighth of the cache (8 MiB: a third of the pages re-read).
TEST(IntegrityVolume, TagPagesOfA1GiBHmacVolumeStayResidentUnderRandomWrites) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 16 * kMiB);
  auto disk = formatted(1060 * kMiB, l);
  VolumeOptions o;
  o.no_write_workqueue = true;  // write through: every write reaches the tags now
  auto j = open_integrity_volume(l, key_for(l), std::move(disk), o, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  Volume& v = **j;
  const std::uint64_t blocks = v.size_bytes() / 4096;
  ASSERT_GE(blocks, 250000u);
  EXPECT_LE(integrity_counters(v)->tag_page_capacity * 4096, VolumeOptions{}.cache_bytes / 4);
  std::vector<std::byte> b(4096, std::byte{7});
  // A stride coprime to the block count visits every block in a scattered order.
  std::uint64_t stride = 7919;
  while (std::gcd(stride, blocks) != 1) ++stride;
  for (int round = 0; round < 2; ++round)
    for (std::uint64_t i = 0, k = 0; i < blocks; ++i, k = (k + stride) % blocks)
      ASSERT_TRUE(v.write(ByteOffset{k * 4096}, b)) << k;
  const IntegrityCounters c = *integrity_counters(v);
  EXPECT_EQ(c.tag_page_evictions, 0u);
  EXPECT_LE(c.write_tag_page_reads, c.tag_page_capacity);
  EXPECT_EQ(c.tags_written, 2 * blocks);
}

// Replay writes the journal's entries as runs (docs/integrity.md §5), later copies winning: a
// journal of two full committed batches whose entries cover 2·cap − 1 adjacent blocks, one
// block in both batches (version A in the first, B in the second), replays as one store batch
// and one sync, and that block reads B. Fails when replay writes entry by entry, or when an
// earlier copy of a block wins.
TEST(IntegrityJournal, ReplayWritesRunsAsOneStoreBatchAndTheLaterCopyWins) {
  VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
  VolumeLayout d = l;
  l.integrity_no_journal = false;
  auto base = open_on(formatted(72 * kMiB, d), d);
  ASSERT_TRUE(base);
  MemBackingStore& mem = *base->mem;
  const integrity::Geometry g = geometry_of(mem, d);
  ASSERT_EQ(g.journal_sections, 4u);
  const std::size_t cap = std::size_t{journal_batch_sections(g)} * g.journal_section_entries;
  const std::uint64_t blocks = 2 * cap;
  ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(blocks * 4096)));
  VolumeOptions o;
  o.no_read_workqueue = true;
  o.cache_bytes = 0;
  auto j = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), o, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  std::vector<std::vector<std::byte>> want(blocks, std::vector<std::byte>(4096));
  auto put = [&](std::uint64_t k, unsigned seed) {
    want[k] = pattern(4096, seed);
    ASSERT_TRUE((*j)->write(ByteOffset{k * 4096}, want[k]));
  };
  // Batch 1: blocks 0 .. cap-1 (block 5 version A); block cap commits it and starts batch 2,
  // which gets block 5 again (version B) and blocks cap+1 .. 2·cap-2: full.
  for (std::uint64_t k = 0; k <= cap; ++k) put(k, 1000 + static_cast<unsigned>(k));
  put(5, 999);
  for (std::uint64_t k = cap + 1; k < 2 * cap - 1; ++k) put(k, 1000 + static_cast<unsigned>(k));
  // Batch 2 is full: one block more commits it (carrying batch 1's copy) and waits open.
  const auto last = pattern(4096, 998);
  ASSERT_TRUE((*j)->write(ByteOffset{(blocks - 1) * 4096}, last));
  // The image now: batch 1 in place (block 5 = A), batch 2 committed only; the ring whole.
  std::vector<std::byte> image(mem.size_bytes());
  mem.peek(0, image);
  auto copy = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
  copy->poke(0, image);
  auto counting = std::make_unique<BatchCountingStore>(*copy);
  BatchCountingStore& st = *counting;
  auto re = open_integrity_volume(l, key_for(l), std::move(counting), o, nullptr);
  ASSERT_TRUE(re) << re.error().message();
  EXPECT_EQ(st.batches, 1u) << "replay of " << blocks - 1 << " adjacent blocks";
  EXPECT_EQ(st.single_writes, 0u);
  EXPECT_EQ(st.syncs, 1u);
  Opened c{copy.get(), std::move(*re)};
  for (std::uint64_t k = 0; k + 1 < blocks; ++k)
    EXPECT_EQ(block(c, k, 4096), want[k]) << "block " << k;
  EXPECT_EQ(block(c, blocks - 1, 4096), std::vector<std::byte>(4096)) << "an uncommitted block";
  EXPECT_EQ(counters(c).tags_failed, 0u);
}

// The sector cache and write-back (docs/integrity.md §5), both modes: acknowledged writes wait
// in the cache as plaintext (nothing reaches the image; reads are served from the cache and
// verify nothing) until a flush writes them back with their tags: mode D in place, mode J as one
// journal commit (one sync for the commit, one for the flush). A copy of the image taken after
// the flush reads every block, each tag verified exactly once; a tampered block fails alone
// while its neighbours are served (a cached neighbour without a verification).
TEST(IntegrityWriteBack, WritesWaitInTheCacheUntilAFlushWritesThemWithTheirTags) {
  for (bool journal : {false, true}) {
    SCOPED_TRACE(journal ? "journal" : "no journal");
    VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
    VolumeLayout d = l;
    l.integrity_no_journal = !journal;
    VolumeOptions through;  // the base volume: zeros written in place at once
    through.no_write_workqueue = true;
    auto base = open_on(formatted(40 * kMiB, d), d, through);
    ASSERT_TRUE(base);
    ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(64 * 4096)));
    MemBackingStore& mem = *base->mem;
    VolumeOptions cached;
    cached.no_read_workqueue = true;  // every read below is the test thread's
    cached.flush_age_ms = 3'600'000;  // no age write-back during the test
    auto v = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), cached, nullptr);
    ASSERT_TRUE(v) << v.error().message();
    Opened o{&mem, std::move(*v)};
    const std::uint64_t w0 = mem.write_calls(), s0 = mem.sync_calls();
    // Blocks 0..19 whole, then 100 bytes into block 30 (a read-modify-write of its verified
    // zeros: one verification).
    auto want = std::vector<std::byte>(64 * 4096);
    const auto a = pattern(20 * 4096, 31), b = pattern(100, 32);
    std::copy(a.begin(), a.end(), want.begin());
    std::copy(b.begin(), b.end(), want.begin() + 30 * 4096 + 7);
    const auto c0 = counters(o);
    ASSERT_TRUE(o.vol->write(ByteOffset{0}, a));
    ASSERT_TRUE(o.vol->write(ByteOffset{30 * 4096 + 7}, b));
    EXPECT_EQ(counters(o).tags_verified - c0.tags_verified, 1u);
    EXPECT_EQ(mem.write_calls(), w0) << "an acknowledged write reached the image before a flush";
    std::vector<std::byte> back(31 * 4096);
    ASSERT_TRUE(o.vol->read(ByteOffset{0}, std::span(back).first(20 * 4096)));
    ASSERT_TRUE(o.vol->read(ByteOffset{30 * 4096}, std::span(back).subspan(30 * 4096, 4096)));
    EXPECT_EQ(std::memcmp(back.data(), want.data(), 20 * 4096), 0);
    EXPECT_EQ(std::memcmp(back.data() + 30 * 4096, want.data() + 30 * 4096, 4096), 0);
    EXPECT_EQ(counters(o).tags_verified - c0.tags_verified, 1u) << "cached blocks verified again";
    EXPECT_EQ(counters(o).tags_written, c0.tags_written);
    ASSERT_TRUE(o.vol->flush());
    EXPECT_EQ(counters(o).tags_written - c0.tags_written, 21u);
    EXPECT_EQ(mem.sync_calls() - s0, journal ? 2u : 1u);
    // What the image holds now: a copy, opened without a sector cache.
    std::vector<std::byte> image(mem.size_bytes());
    mem.peek(0, image);
    const integrity::Geometry g = geometry_of(mem, d);
    auto copy = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
    copy->poke(0, image);
    VolumeOptions uncached = cached;
    uncached.cache_bytes = 0;
    auto cold = open_on(std::move(copy), l, uncached);
    ASSERT_TRUE(cold) << cold.error().message();
    std::vector<std::byte> all(64 * 4096);
    ASSERT_TRUE(cold->vol->read(ByteOffset{0}, all));
    EXPECT_EQ(all, want);
    EXPECT_EQ(counters(*cold).tags_verified, 64u);
    // Tamper with block 5's ciphertext in a closed copy, open it with a cache: block 5 fails
    // alone, the others are read (verified once) and then served from the cache. (Mode J:
    // replay would write block 5 again from the journal.)
    if (journal) continue;
    const std::uint64_t at = g.data_sector(5 * 8) * 512 + 100;
    image[at] ^= std::byte{1};
    auto bad = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
    bad->poke(0, image);
    auto t = open_on(std::move(bad), l, cached);
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(failing_blocks(*t, 4096, 64), std::vector<std::uint64_t>{5});
    const auto c1 = counters(*t);
    EXPECT_EQ(failing_blocks(*t, 4096, 64), std::vector<std::uint64_t>{5});
    EXPECT_EQ(counters(*t).tags_verified - c1.tags_verified, 1u) << "only block 5 is re-read";
    EXPECT_FALSE(t->vol->read(ByteOffset{0}, all));
  }
}

// Mode D write-back at depth (docs/integrity.md §5, as the engine's): a pass writes up to 8
// runs, data and tag pages, as one store batch. 20 dirty blocks, none adjacent: 3 batches
// (8 + 8 + 4 runs), no single write, one sync; a cold copy reads every block, each verified
// once. Fails when runs are written one store batch each.
TEST(IntegrityWriteBack, APassWritesEightRunsPerStoreBatch) {
  VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", 4096, 1 * kMiB);
  auto base = open_on(formatted(40 * kMiB, l), l);
  ASSERT_TRUE(base);
  ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(64 * 4096)));
  MemBackingStore& mem = *base->mem;
  VolumeOptions cached;
  cached.no_read_workqueue = true;
  cached.flush_age_ms = 3'600'000;  // no age write-back during the test
  auto store = std::make_unique<BatchCountingStore>(mem);
  BatchCountingStore& st = *store;
  auto v = open_integrity_volume(l, key_for(l), std::move(store), cached, nullptr);
  ASSERT_TRUE(v) << v.error().message();
  Opened o{&mem, std::move(*v)};
  const std::uint64_t b0 = st.batches, w0 = st.single_writes, s0 = st.syncs;
  auto want = std::vector<std::byte>(64 * 4096);
  for (std::uint64_t k = 0; k < 40; k += 2) {
    const auto b = pattern(4096, 900 + static_cast<unsigned>(k));
    std::copy(b.begin(), b.end(), want.begin() + static_cast<std::ptrdiff_t>(k * 4096));
    ASSERT_TRUE(o.vol->write(ByteOffset{k * 4096}, b));
  }
  EXPECT_EQ(st.batches - b0 + st.single_writes - w0, 0u) << "written before the flush";
  const auto c0 = counters(o);
  ASSERT_TRUE(o.vol->flush());
  EXPECT_EQ(st.batches - b0, 3u);
  EXPECT_EQ(st.single_writes - w0, 0u);
  EXPECT_EQ(st.syncs - s0, 1u);
  EXPECT_EQ(counters(o).tags_written - c0.tags_written, 20u);
  std::vector<std::byte> image(mem.size_bytes());
  mem.peek(0, image);
  auto copy = std::make_unique<MemBackingStore>(image.size(), "mem:integrity");
  copy->poke(0, image);
  VolumeOptions uncached = cached;
  uncached.cache_bytes = 0;
  auto cold = open_on(std::move(copy), l, uncached);
  ASSERT_TRUE(cold) << cold.error().message();
  std::vector<std::byte> all(64 * 4096);
  ASSERT_TRUE(cold->vol->read(ByteOffset{0}, all));
  EXPECT_EQ(all, want);
  EXPECT_EQ(counters(*cold).tags_verified, 64u);
}

// Writers at the dirty limit write through while the flusher writes back, over a small cache
// (eviction, write-through and write-back of the same blocks interleave), with partial-block
// writes and a reader: no read sees a bad tag, and after close (write-back) a cold reopen reads
// every block's last contents. Both modes. Fails when a write-back overwrites a newer
// write-through, or a read miss reads a block whose newest copy is only in the cache.
TEST(IntegrityWriteBack, WriteThroughAndWriteBackOfTheSameBlocksStayCoherent) {
  for (bool journal : {false, true}) {
    SCOPED_TRACE(journal ? "journal" : "no journal");
    VolumeLayout l = layout_of("aes-gcm-random", "aead", 4096, 1 * kMiB);
    VolumeLayout d = l;
    l.integrity_no_journal = !journal;
    constexpr std::uint64_t kBlocks = 256;
    auto base = open_on(formatted(40 * kMiB, d), d);
    ASSERT_TRUE(base);
    ASSERT_TRUE(base->vol->write(ByteOffset{0}, std::vector<std::byte>(kBlocks * 4096)));
    ASSERT_TRUE(base->vol->flush());
    MemBackingStore& mem = *base->mem;
    VolumeOptions small;
    small.cache_bytes = 64 * 4096 * 8 / 7 + 4096;  // 64 blocks: write-through from 32 dirty
    small.flush_age_ms = 20;
    auto v = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), small, nullptr);
    ASSERT_TRUE(v) << v.error().message();
    Volume& vol = **v;
    // Thread t owns blocks k with k % 4 == t and writes them whole or in halves.
    std::vector<std::byte> model(kBlocks * 4096);
    std::atomic<bool> failed{false}, stop{false};
    std::vector<std::thread> writers;
    for (unsigned t = 0; t < 4; ++t)
      writers.emplace_back([&, t] {
        std::uint32_t x = t + 1;
        for (int i = 0; i < 400; ++i) {
          x = x * 1664525u + 1013904223u;
          const std::uint64_t k = (x >> 8) % (kBlocks / 4) * 4 + t;
          const std::size_t lo = (x & 1) ? 2048 * ((x >> 1) & 1) : 0;
          const std::size_t len = (x & 1) ? 2048 : 4096;
          const auto p = pattern(len, x);
          if (!vol.write(ByteOffset{k * 4096 + lo}, p)) failed = true;
          std::copy(p.begin(), p.end(), model.begin() + static_cast<std::ptrdiff_t>(k * 4096 + lo));
        }
      });
    std::thread reader([&] {
      std::vector<std::byte> b(8 * 4096);
      std::uint32_t x = 99;
      while (!stop) {
        x = x * 1664525u + 1013904223u;
        if (!vol.read(ByteOffset{(x >> 8) % (kBlocks - 8) * 4096}, b)) failed = true;
      }
    });
    for (auto& w : writers) w.join();
    stop = true;
    reader.join();
    EXPECT_FALSE(failed) << "a write or read failed";
    std::vector<std::byte> all(kBlocks * 4096);
    ASSERT_TRUE(vol.read(ByteOffset{0}, all));
    EXPECT_TRUE(all == model) << "the open volume reads other contents than written";
    v->reset();  // close: the rest is written back
    auto again = open_integrity_volume(l, key_for(l), std::make_unique<RefStore>(mem), {}, nullptr);
    ASSERT_TRUE(again) << again.error().message();
    ASSERT_TRUE((*again)->read(ByteOffset{0}, all));
    EXPECT_TRUE(all == model) << "the image holds other contents than written";
    EXPECT_EQ(integrity_counters(**again)->tags_failed, 0u);
  }
}

}  // namespace
}  // namespace cryptmap::volume
