// dm-integrity journal replay (docs/integrity.md §1.3): what the kernel's replay_journal does
// on every activation, as a pure plan over the journal bytes, so that nothing is written before
// the whole journal has been checked. The caller (volume/integrity) copies the planned entries
// to their data and tag places in order, syncs, then re-initialises the journal when the plan
// says so. Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "volume/format/dm_integrity.h"

namespace cryptmap::volume::integrity {

// One committed journal entry to copy to its place.
struct JournalWrite {
  std::uint32_t section = 0;
  std::uint32_t entry = 0;
  std::uint64_t sector = 0;  // logical sector, block-aligned, < provided_data_sectors
  bool operator==(const JournalWrite&) const = default;
};

struct JournalReplay {
  bool empty = true;                 // no entry of any section is in use
  std::uint32_t write_start = 0;     // first section of the committed run
  std::uint32_t write_sections = 0;  // committed sections replayed from write_start (ring order)
  std::vector<JournalWrite> writes;  // in replay order: a later write of a sector wins
  std::uint32_t dropped = 0;         // committed entries beyond provided_data_sectors (dropped)
  bool reinitialise = false;         // after write-back, every section gets erase_seq's commit ids
  unsigned erase_seq = 0;
  unsigned commit_seq = 0;  // the sequence the next commit uses (journal mode)
  std::uint32_t continue_section = 0;
};

// Plans the replay of `journal` (journal_sections · section_sectors · 512 bytes, read from
// journal_first_sector()). `journal_mode`: the volume runs in mode J (else D). kCorrupt, with
// nothing to write, for a sector whose commit id belongs to no sequence, all four sequences in
// use, or a committed entry whose sector is not block-aligned (the kernel fails the device in
// these cases; cryptmap refuses to open instead). kInvalid when the size is wrong.
Result<JournalReplay> plan_journal_replay(const Geometry& g, std::span<const std::byte> journal,
                                          bool journal_mode);
// The writes of a replay (`writes`, in replay order) that decide the image: for each sector the
// last one (the kernel copies entries one by one in that order, so a later copy of a sector
// overwrites the earlier ones), ascending by sector, so that the caller can write runs of
// adjacent blocks and each tag page once, in any order, before its one sync.
std::vector<JournalWrite> final_journal_writes(std::span<const JournalWrite> writes);
// The block of entry `entry` of section `section`: its journal data sectors with each sector's
// displaced last 8 bytes put back. `out` is block_bytes() long.
void journal_entry_block(const Geometry& g, std::span<const std::byte> journal,
                         std::uint32_t section, std::uint32_t entry, std::span<std::byte> out);
// The tag (tag_size bytes) of that entry.
std::span<const std::byte> journal_entry_tag(const Geometry& g, std::span<const std::byte> journal,
                                             std::uint32_t section, std::uint32_t entry);

}  // namespace cryptmap::volume::integrity
