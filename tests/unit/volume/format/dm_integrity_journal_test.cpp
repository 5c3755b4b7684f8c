// dm-integrity journal replay plan (volume/format/dm_integrity_journal.h, docs/integrity.md
// §1.3) on synthetic journals written by tests/support/integrity_journal_writer.h from the
// documented format: clean journal, one committed section, a torn section, a wrapped sequence,
// all four sequences, unknown commit ids, corrupt entries, and the re-initialisation rules.
#include "volume/format/dm_integrity_journal.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/support/integrity_journal_writer.h"
#include "volume/format/dm_integrity.h"

namespace cryptmap::volume::integrity {
namespace {

using cryptmap::test::JournalWriter;

// 8 MiB device, 4 KiB blocks, tag 32: entry 104, 32 entries and 264 sectors per section.
Geometry geo(std::uint32_t sections = 4, std::uint32_t sector_size = 4096) {
  GeometryParams p;
  p.dev_sectors = 16384;
  p.tag_size = 32;
  p.sector_size = sector_size;
  p.journal_sections = sections;
  auto g = compute_geometry(p);
  EXPECT_TRUE(g) << g.error().message();
  return *g;
}

JournalWriter writer(const Geometry& g) {
  JournalWriter w(g.journal_sections, g.sectors_per_block(), g.tag_size);
  EXPECT_EQ(w.entries(), g.journal_section_entries);
  EXPECT_EQ(w.section_sectors(), g.journal_section_sectors);
  return w;
}

std::vector<std::byte> block_of(const Geometry& g, unsigned seed) {
  std::vector<std::byte> b(g.block_bytes());
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte((i * 7 + seed * 31) & 0xff);
  return b;
}
std::vector<std::byte> tag_of(const Geometry& g, unsigned seed) {
  std::vector<std::byte> t(g.tag_size);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = std::byte(0xA0 + seed + i);
  return t;
}

TEST(DmIntegrityJournal, CleanJournalNeedsNothing) {
  const Geometry g = geo();
  JournalWriter w = writer(g);
  // Identical to what format writes.
  std::vector<std::byte> formatted(w.bytes().size());
  write_initial_journal(g, formatted);
  ASSERT_TRUE(std::equal(formatted.begin(), formatted.end(), w.bytes().begin()));
  for (bool journal_mode : {false, true}) {
    auto r = plan_journal_replay(g, w.bytes(), journal_mode);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(r->empty);
    EXPECT_TRUE(r->writes.empty());
    EXPECT_FALSE(r->reinitialise);
    EXPECT_EQ(r->write_sections, g.journal_sections);
    EXPECT_EQ(r->continue_section, 0u);
    EXPECT_EQ(r->commit_seq, 1u);  // the kernel's next commit after a format uses sequence 1
  }
}

TEST(DmIntegrityJournal, OneCommittedSection) {
  const Geometry g = geo();
  JournalWriter w = writer(g);
  // The kernel's first commit after format: section 0 with sequence 1, entries 0 and 5.
  w.put(0, 0, 16, block_of(g, 1), tag_of(g, 1));
  w.put(0, 5, 8, block_of(g, 2), tag_of(g, 2));
  w.seal(0, 1);
  auto r = plan_journal_replay(g, w.bytes(), false);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->empty);
  EXPECT_EQ(r->write_start, 1u);  // after the last section of the last used sequence
  EXPECT_EQ(r->write_sections, 4u);
  const std::vector<JournalWrite> want{{0, 0, 16}, {0, 5, 8}};
  EXPECT_EQ(r->writes, want);
  // Mode D: re-initialised with sequence last_used - 2 = 3.
  EXPECT_TRUE(r->reinitialise);
  EXPECT_EQ(r->erase_seq, 3u);
  EXPECT_EQ(r->commit_seq, 0u);
  // Mode J: the whole ring is consistent, the journal continues where it is.
  auto j = plan_journal_replay(g, w.bytes(), true);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->writes, want);
  EXPECT_FALSE(j->reinitialise);
  EXPECT_EQ(j->continue_section, 1u);
  EXPECT_EQ(j->commit_seq, 1u);
  // The entry's block and tag come back whole (displaced last bytes restored).
  std::vector<std::byte> b(g.block_bytes());
  journal_entry_block(g, w.bytes(), 0, 5, b);
  EXPECT_EQ(b, block_of(g, 2));
  const auto t = journal_entry_tag(g, w.bytes(), 0, 5);
  EXPECT_EQ(std::vector<std::byte>(t.begin(), t.end()), tag_of(g, 2));
}

TEST(DmIntegrityJournal, TornSectionIsNotReplayed) {
  const Geometry g = geo();
  JournalWriter w = writer(g);
  w.put(0, 0, 16, block_of(g, 1), tag_of(g, 1));
  w.seal(0, 1);
  // Section 1 was being written when the machine stopped: its metadata and half its sectors
  // carry sequence 1, the rest still sequence 0.
  w.put(1, 0, 24, block_of(g, 3), tag_of(g, 3));
  for (std::uint32_t j = 0; j < g.journal_section_sectors / 2; ++j) w.set_id(1, j, 1);
  for (bool journal_mode : {false, true}) {
    auto r = plan_journal_replay(g, w.bytes(), journal_mode);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->write_start, 2u);
    EXPECT_EQ(r->write_sections, 3u);  // 2, 3, then 0; the walk stops at torn section 1
    const std::vector<JournalWrite> want{{0, 0, 16}};
    EXPECT_EQ(r->writes, want);
    EXPECT_TRUE(r->reinitialise);  // an incomplete ring is always re-initialised
    EXPECT_EQ(r->erase_seq, 3u);
  }
  // Only the torn section holds entries: nothing committed to write, journal re-initialised.
  JournalWriter t = writer(g);
  t.put(0, 0, 16, block_of(g, 1), tag_of(g, 1));
  t.set_id(0, 0, 1);
  auto r = plan_journal_replay(g, t.bytes(), true);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->empty);
  EXPECT_TRUE(r->writes.empty());
  EXPECT_TRUE(r->reinitialise);
}

TEST(DmIntegrityJournal, WrappedSequenceReplaysInRingOrder) {
  const Geometry g = geo();
  JournalWriter w = writer(g);
  // Sequence 3 was written in sections 2 and 3, then the writer wrapped to sequence 0 for
  // sections 0 and 1 (newer). The same sector in section 2 (older) and section 0 (newer).
  w.put(2, 1, 40, block_of(g, 1), tag_of(g, 1));
  w.put(3, 0, 48, block_of(g, 2), tag_of(g, 2));
  w.put(0, 3, 40, block_of(g, 3), tag_of(g, 3));
  w.put(1, 2, 56, block_of(g, 4), tag_of(g, 4));
  w.seal(2, 3);
  w.seal(3, 3);
  w.seal(0, 0);
  w.seal(1, 0);
  auto r = plan_journal_replay(g, w.bytes(), true);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->write_start, 2u);
  EXPECT_EQ(r->write_sections, 4u);
  const std::vector<JournalWrite> want{{2, 1, 40}, {3, 0, 48}, {0, 3, 40}, {1, 2, 56}};
  EXPECT_EQ(r->writes, want);  // section 0's sector 40 comes after section 2's: it wins
  EXPECT_FALSE(r->reinitialise);
  EXPECT_EQ(r->continue_section, 2u);
  EXPECT_EQ(r->commit_seq, 0u);
  auto d = plan_journal_replay(g, w.bytes(), false);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->reinitialise);
  EXPECT_EQ(d->erase_seq, 2u);  // last used 0, minus 2
}

TEST(DmIntegrityJournal, EveryPairOfAdjacentSequences) {
  // Sections 0..k-1 carry q+1 (newer), k..3 carry q: the run starts at k whatever q is.
  const Geometry g = geo();
  for (unsigned q = 0; q < 4; ++q)
    for (std::uint32_t k = 1; k < 4; ++k) {
      JournalWriter w = writer(g);
      for (std::uint32_t i = 0; i < 4; ++i) w.seal(i, i < k ? (q + 1) % 4 : q);
      w.put(k - 1, 0, 8, block_of(g, 1), tag_of(g, 1));
      auto r = plan_journal_replay(g, w.bytes(), true);
      ASSERT_TRUE(r) << "q " << q << " k " << k << ": " << r.error().message();
      EXPECT_EQ(r->write_start, k) << "q " << q;
      EXPECT_EQ(r->write_sections, 4u) << "q " << q << " k " << k;
      ASSERT_EQ(r->writes.size(), 1u);
      EXPECT_EQ(r->commit_seq, (q + 1) % 4) << "q " << q << " k " << k;
    }
}

TEST(DmIntegrityJournal, AllFourSequencesOrAnUnknownCommitIdAreRefused) {
  const Geometry g = geo();
  JournalWriter w = writer(g);
  for (std::uint32_t i = 0; i < 4; ++i) w.seal(i, i);
  auto r = plan_journal_replay(g, w.bytes(), true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCorrupt);
  EXPECT_NE(r.error().message().find("four"), std::string::npos) << r.error().message();

  JournalWriter u = writer(g);
  u.set_raw_id(2, 7, 0x0123456789abcdefull);
  r = plan_journal_replay(g, u.bytes(), false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCorrupt);
  EXPECT_NE(r.error().message().find("section 2 sector 7"), std::string::npos)
      << r.error().message();
  // A commit id of the right sequence but another position is unknown too.
  JournalWriter p = writer(g);
  p.set_raw_id(1, 3, JournalWriter::commit_id(1, 4, 0));
  EXPECT_FALSE(plan_journal_replay(g, p.bytes(), false));
}

TEST(DmIntegrityJournal, CorruptEntries) {
  const Geometry g = geo();
  {  // a committed entry whose sector is not block-aligned: refused, nothing planned
    JournalWriter w = writer(g);
    w.put(0, 0, 16, block_of(g, 1), tag_of(g, 1));
    w.put_sector(0, 1, 42);
    w.seal(0, 1);
    auto r = plan_journal_replay(g, w.bytes(), false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kCorrupt);
    EXPECT_NE(r.error().message().find("aligned"), std::string::npos) << r.error().message();
  }
  {  // beyond the device, or the in-memory "in progress" marker: dropped as the kernel does
    JournalWriter w = writer(g);
    w.put(0, 0, 16, block_of(g, 1), tag_of(g, 1));
    w.put_sector(0, 1, g.provided_data_sectors);
    w.put_sector(0, 2, 0xFFFFFFFE00000000ull);
    w.seal(0, 1);
    auto r = plan_journal_replay(g, w.bytes(), false);
    ASSERT_TRUE(r) << r.error().message();
    const std::vector<JournalWrite> want{{0, 0, 16}};
    EXPECT_EQ(r->writes, want);
    EXPECT_EQ(r->dropped, 2u);
  }
  {  // a wrong size
    JournalWriter w = writer(g);
    auto r = plan_journal_replay(g, w.bytes().first(512), false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kInvalid);
  }
}

TEST(DmIntegrityJournal, ReinitialisedJournalIsInitialJournalOfEraseSeq) {
  const Geometry g = geo(3, 512);
  JournalWriter w(3, 1, g.tag_size);
  for (std::uint32_t i = 0; i < 3; ++i) w.seal(i, 3);
  std::vector<std::byte> out(w.bytes().size());
  write_initial_journal(g, out, 3);
  EXPECT_TRUE(std::equal(out.begin(), out.end(), w.bytes().begin()));
  // And replay of it is clean, starting over.
  auto r = plan_journal_replay(g, out, true);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty);
  EXPECT_FALSE(r->reinitialise);
}

// The same sector written in two committed sections (and twice in one section): the plan keeps
// every copy in ring order, and final_journal_writes keeps only the later one of each sector,
// in sector order (what the kernel's one-by-one copy leaves on disk). Fails when an earlier
// copy survives or the order is not the ring's.
TEST(DmIntegrityJournal, OnlyTheLaterCopyOfASectorSurvivesReplay) {
  const Geometry g = geo();
  JournalWriter w = writer(g);
  // The kernel's first two commits after format: sections 0 and 1 with sequence 1.
  w.put(0, 0, 40, block_of(g, 1), tag_of(g, 1));  // sector 40, older
  w.put(0, 1, 8, block_of(g, 2), tag_of(g, 2));
  w.put(0, 2, 16, block_of(g, 3), tag_of(g, 3));  // sector 16, older (same section)
  w.put(0, 7, 16, block_of(g, 4), tag_of(g, 4));  // sector 16, newer
  w.put(1, 3, 40, block_of(g, 5), tag_of(g, 5));  // sector 40, newer (later section)
  w.put(1, 4, 0, block_of(g, 6), tag_of(g, 6));
  w.seal(0, 1);
  w.seal(1, 1);
  auto r = plan_journal_replay(g, w.bytes(), true);
  ASSERT_TRUE(r) << r.error().message();
  const std::vector<JournalWrite> all{{0, 0, 40}, {0, 1, 8},  {0, 2, 16},
                                      {0, 7, 16}, {1, 3, 40}, {1, 4, 0}};
  EXPECT_EQ(r->writes, all);
  const std::vector<JournalWrite> last{{1, 4, 0}, {0, 1, 8}, {0, 7, 16}, {1, 3, 40}};
  EXPECT_EQ(final_journal_writes(r->writes), last);
  // Across the ring's wrap: the section after the wrap is the later one.
  const std::vector<JournalWrite> wrapped{{3, 0, 24}, {0, 0, 24}};
  EXPECT_EQ(final_journal_writes(wrapped), std::vector<JournalWrite>({{0, 0, 24}}));
  EXPECT_TRUE(final_journal_writes({}).empty());
}

}  // namespace
}  // namespace cryptmap::volume::integrity
