// dm-integrity journal replay plan: docs/integrity.md §1.3 (the kernel's replay_journal and
// do_journal_write with from_replay set).
#include "volume/format/dm_integrity_journal.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "base/bytes.h"

namespace cryptmap::volume::integrity {
namespace {

constexpr unsigned kSeqs = 4;
constexpr std::uint32_t kUnusedHi = 0xFFFFFFFFu;

unsigned next_seq(unsigned q) { return (q + 1) % kSeqs; }
unsigned prev_seq(unsigned q) { return (q + kSeqs - 1) % kSeqs; }

std::size_t section_bytes(const Geometry& g) {
  return std::size_t{g.journal_section_sectors} * 512;
}

std::uint64_t commit_id_at(const Geometry& g, std::span<const std::byte> journal, std::uint32_t i,
                           std::uint32_t j) {
  return load_le64(journal.data() + i * section_bytes(g) + std::size_t{j} * 512 + 504);
}

const std::byte* entry_at(const Geometry& g, std::span<const std::byte> journal, std::uint32_t i,
                          std::uint32_t n) {
  return journal.data() + i * section_bytes(g) + journal_entry_offset(g, n);
}

bool entry_unused(const std::byte* e) { return load_le32(e + 4) == kUnusedHi; }

}  // namespace

Result<JournalReplay> plan_journal_replay(const Geometry& g, std::span<const std::byte> journal,
                                          bool journal_mode) {
  const std::uint32_t S = g.journal_sections;
  if (S == 0 || g.journal_section_entries == 0 || journal.size() != S * section_bytes(g))
    return fail(make_error(Errc::kInvalid, "dm-integrity journal: wrong size", journal.size()));
  JournalReplay r;
  // Which sequences occur, and the last section carrying each (every sector's commit id must
  // belong to one of the four sequences).
  std::array<bool, kSeqs> used{};
  std::array<std::uint32_t, kSeqs> max_section{};
  for (std::uint32_t i = 0; i < S; ++i) {
    for (std::uint32_t j = 0; j < g.journal_section_sectors; ++j) {
      const std::uint64_t id = commit_id_at(g, journal, i, j);
      unsigned k = 0;
      while (k < kSeqs && id != journal_commit_id(i, j, k)) ++k;
      if (k == kSeqs)
        return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity journal commit id", i,
                                   "journal section %u sector %u: commit id %016llx belongs to "
                                   "no sequence (damaged journal); nothing was replayed",
                                   i, j, static_cast<unsigned long long>(id)));
      used[k] = true;
      max_section[k] = i;
    }
    if (r.empty)
      for (std::uint32_t n = 0; n < g.journal_section_entries; ++n)
        if (!entry_unused(entry_at(g, journal, i, n))) {
          r.empty = false;
          break;
        }
  }
  // The first unused sequence (special case: 3 unused means the lowest unused after a run
  // from 0), then the one last used and the one the committed run must carry.
  unsigned unused = 0;
  if (!used[kSeqs - 1]) {
    unused = kSeqs - 1;
    while (unused != 0 && !used[unused - 1]) --unused;
  } else {
    while (unused < kSeqs && used[unused]) ++unused;
    if (unused == kSeqs)
      return fail(make_error(Errc::kCorrupt,
                             "dm-integrity journal: all four commit sequences in use (damaged "
                             "journal); nothing was replayed"));
  }
  const unsigned last_used = prev_seq(unused);
  unsigned want = prev_seq(last_used);
  if (!used[want] && used[prev_seq(want)]) r.empty = true;

  std::uint32_t start = max_section[last_used] + 1;
  if (start >= S) {
    want = next_seq(want);
    start = 0;
  }
  r.write_start = start;
  // Walk forward while every sector of a section carries `want` (it advances at the wrap);
  // the first torn or older section ends the committed run.
  std::uint32_t i = start;
  std::uint32_t n_sections = 0;
  for (; n_sections < S; ++n_sections) {
    bool whole = true;
    for (std::uint32_t j = 0; j < g.journal_section_sectors && whole; ++j)
      whole = commit_id_at(g, journal, i, j) == journal_commit_id(i, j, want);
    if (!whole) break;
    if (++i >= S) {
      want = next_seq(want);
      i = 0;
    }
  }
  r.write_sections = n_sections;

  if (!r.empty) {
    const std::uint32_t spb_mask = g.sectors_per_block() - 1;
    for (std::uint32_t s = 0; s < n_sections; ++s) {
      const std::uint32_t sec = static_cast<std::uint32_t>((std::uint64_t{start} + s) % S);
      for (std::uint32_t n = 0; n < g.journal_section_entries; ++n) {
        const std::byte* e = entry_at(g, journal, sec, n);
        if (entry_unused(e)) continue;
        const std::uint64_t sector = load_le64(e);
        if (sector >= g.provided_data_sectors) {
          ++r.dropped;  // as the kernel: entries beyond the device are skipped on replay
          continue;
        }
        if ((sector & spb_mask) != 0)
          return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity journal entry", sector,
                                     "journal section %u entry %u: sector %llu is not aligned to "
                                     "the %u-byte block (damaged journal); nothing was replayed",
                                     sec, n, static_cast<unsigned long long>(sector),
                                     g.block_bytes()));
        r.writes.push_back({sec, n, sector});
      }
    }
  }

  if (n_sections == S && (journal_mode || r.empty)) {
    r.continue_section = start;
    r.commit_seq = want;
  } else {
    r.reinitialise = true;
    r.erase_seq = prev_seq(prev_seq(last_used));
    r.continue_section = 0;
    r.commit_seq = next_seq(r.erase_seq);
  }
  return r;
}

std::vector<JournalWrite> final_journal_writes(std::span<const JournalWrite> writes) {
  std::vector<JournalWrite> w(writes.begin(), writes.end());
  // Stable: writes of one sector keep their replay order, and the last of each run wins.
  std::stable_sort(w.begin(), w.end(), [](const JournalWrite& a, const JournalWrite& b) {
    return a.sector < b.sector;
  });
  std::size_t n = 0;
  for (std::size_t i = 0; i < w.size(); ++i)
    if (i + 1 == w.size() || w[i + 1].sector != w[i].sector) w[n++] = w[i];
  w.resize(n);
  return w;
}

void journal_entry_block(const Geometry& g, std::span<const std::byte> journal,
                         std::uint32_t section, std::uint32_t entry, std::span<std::byte> out) {
  const std::uint32_t spb = g.sectors_per_block();
  const std::byte* e = entry_at(g, journal, section, entry);
  const std::byte* data =
      journal.data() + section * section_bytes(g) + (8 + std::size_t{entry} * spb) * 512;
  for (std::uint32_t k = 0; k < spb; ++k) {
    std::memcpy(out.data() + std::size_t{k} * 512, data + std::size_t{k} * 512, 504);
    std::memcpy(out.data() + std::size_t{k} * 512 + 504, e + 8 + std::size_t{k} * 8, 8);
  }
}

std::span<const std::byte> journal_entry_tag(const Geometry& g, std::span<const std::byte> journal,
                                             std::uint32_t section, std::uint32_t entry) {
  const std::byte* e = entry_at(g, journal, section, entry);
  return {e + 8 + std::size_t{g.sectors_per_block()} * 8, g.tag_size};
}

}  // namespace cryptmap::volume::integrity
