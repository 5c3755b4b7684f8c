// IntegrityVolume — a LUKS2 `--integrity` volume (dm-crypt AEAD over the dm-integrity layout,
// docs/integrity.md) served in dm-integrity's direct mode D (`--integrity-no-journal`): every
// block's ciphertext and its tag tuple are written in place, and in journal mode J (the LUKS2
// default): written blocks gather in the open batch of journal sections in memory (reads see
// them); the batch is sealed when it is full, at flush or after 5 s and committed by the
// journal thread: its sections are written in one store batch with the in-place copy of the
// previous commit's blocks and synced once, while writers fill the next batch; its own blocks
// are copied with the next commit (alone when idle, and at close), reads seeing them meanwhile
// (docs/integrity.md §5). Open replays the journal first, in both modes
// (§1.3). Destroying the volume commits the open batch and copies it (best effort; flush
// reports errors).
//
// Sector cache and write-back (docs/integrity.md §5), as the engine's: writes put plaintext
// blocks into the volume's sector cache as dirty blocks (a partial block merged into its cached
// copy or its verified old contents) and are acknowledged; the flusher (at half the dirty limit
// and after the flush age), flush and close write them back: each run is encrypted with fresh
// IVs and its tags produced there, and written with its tags as one unit (mode D: in place, up
// to 8 runs as one store batch; mode J: into the open journal batch, one commit per pass). Writers
// at the dirty limit, and every writer with --perf-no_write_workqueue, write through as before.
// Reads copy cached blocks and verify the others once each (inserted clean unless the request is
// large).
//
// Tag pages (the 4 KiB of the image holding tags) are kept in a bounded tag page cache
// (volume/integrity/tag_page_cache.h; the volume's tag area, at most a quarter of --cache-size),
// filled by reads and updated by every in-place write under the page's stripe lock: a read
// whose tag pages are resident reads only its data, a write reads only the edge pages it shares
// with other runs, and only when they are not resident. A mode-D write-back batch of scattered
// runs holds only its own pages' stripes. The volume logs its write-path counters at close
// (IntegrityCounters). Changing the image under an open volume is not seen through cached pages
// (as dm-bufio's metadata cache in the kernel): tests tamper with closed images.
//
// Read: data and tags of a run are read (in flight together) into the volume's private buffers,
// blocks waiting in the open journal batch replace theirs, each block is
// verified and decrypted there (crypto::AuthSectorCipher, exactly once per block read), and only
// then copied to the caller. A block whose tag fails makes the request fail with Errc::kAuth
// (EIO at the FUSE edge); the failure is logged with its volume-relative sector (512-byte units,
// as the kernel's "INTEGRITY AEAD ERROR, sector N"). Other requests are unaffected.
// Write: whole blocks are encrypted with fresh IVs and written with their tags; a partial block
// is read-modify-written under its verified old contents (so it fails on a never-written block
// of a --integrity-no-wipe volume, as the kernel's). Discards are refused (kUnsupported).
// Every block's crypto is a request of the volume's CryptoEngine with the engine's backlog
// protocol, carrying the block's tag tuple with it (one block per request when verifying); runs
// of 128 KiB or more are cut into per-core slices; sequential readers are served by the engine's
// read-ahead (windows loaded and verified by its loaders; writers invalidate them under their
// tag-page locks).
//
// Sector numbering: the volume hands its volume-relative SectorIndex to the cipher, which owns
// the one conversion to the authenticated sector (crypto::aad_sector); the dm-integrity geometry
// maps the same index to image positions. The store only moves bytes.
//
// Thread-safety: thread-safe. Reads and writes of runs whose tag pages (the 4 KiB of the image
// holding their tags) differ proceed together; a run's tag pages are held shared by readers and
// exclusively by writers and write-back (striped locks), so a block is never read between its
// data and its tag write, nor written back while a writer changes it. Mode J's journal batches
// have their own lock, taken briefly to add a run's encrypted blocks or to overlay them on a
// read; a full batch is committed by the volume's journal thread (its sections and the previous
// batch's in-place copy, one sync) while writers fill the next one: no request waits for a
// commit unless a batch fills while the one before is still being committed, or it flushes.
// Lock order: the one write-back pass, a scratch slot, the volume, tag-page stripes, the
// journal batches, the caches' own locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "base/result.h"
#include "volume/engine/volume_engine.h"
#include "volume/format/dm_integrity.h"
#include "volume/volume.h"

namespace cryptmap::crypto {
class AuthSectorCipher;
}

namespace cryptmap::volume {

// Opens `layout` (layout.integrity non-empty) over `store`: reads and checks the superblock at
// layout.data_offset_bytes, recomputes the geometry from the store size, keys the cipher,
// replays the journal (kCorrupt for a damaged journal, nothing written; kReadOnly when a
// read-only store holds a journal needing replay).
Result<std::unique_ptr<Volume>> open_integrity_volume(VolumeLayout layout,
                                                      std::span<const std::byte> volume_key,
                                                      std::unique_ptr<BackingStore> store,
                                                      const VolumeOptions& options,
                                                      std::shared_ptr<spdlog::logger> logger);
// The same, with every block's crypto going through the CryptoEngine `make_engine` builds over
// the volume's cipher (tests pass the engine tests' hostile fakes; empty: the synchronous
// engine), driven with the engine's backlog protocol (volume/engine/README.md, "Backlog
// protocol"); each request carries its blocks with their tag tuples.
Result<std::unique_ptr<Volume>> open_integrity_volume_with_engine(
    VolumeLayout layout, std::span<const std::byte> volume_key, const EngineFactory& make_engine,
    std::unique_ptr<BackingStore> store, const VolumeOptions& options,
    std::shared_ptr<spdlog::logger> logger);

// Mode J: the journal sections one commit holds at most (docs/integrity.md §5): half the ring,
// so that a commit never overwrites the sections of the commit before it (whose in-place copy
// it carries and makes durable), at least one (a one- or two-section ring commits one section
// at a time, copying the previous commit first), and at most a third of 8 MiB of sections (the
// batch is its commit's section image in locked memory, held three times: open, committing and
// committed batches): 20 sections, 2.5 MiB of 4 KiB blocks, on a 1 GiB volume.
std::uint32_t journal_batch_sections(const integrity::Geometry& g);

// Sequential readers: read-ahead windows are loaded (read, verified, decrypted) this many
// requests ahead, by as many loader threads (bench/README.md, rahmac).
inline constexpr std::uint32_t kIntegrityReadAheadDepth = 4;

// Counters of an integrity volume (tests: each tag verified exactly once per block read).
struct IntegrityCounters {
  std::uint64_t tags_verified = 0;  // blocks whose tag was checked (pass or fail)
  std::uint64_t tags_failed = 0;
  std::uint64_t tags_written = 0;
  // The tag page cache (4 KiB pages of the image holding tags): lookups that found the page,
  // lookups that did not, pages evicted, and its capacity in pages.
  std::uint64_t tag_page_hits = 0;
  std::uint64_t tag_page_misses = 0;
  std::uint64_t tag_page_evictions = 0;
  std::uint64_t tag_page_capacity = 0;
  // Mode J: journal batches committed since open.
  std::uint64_t journal_commits = 0;
  // The write path: tag pages read from the store because a write shares them with blocks it
  // does not write and they were not resident; store write batches of blocks and their tags
  // (mode D: one per write-through run or write-back batch; mode J: in-place copies); requests
  // that found a tag-page stripe they needed held by another and waited.
  std::uint64_t write_tag_page_reads = 0;
  std::uint64_t store_write_batches = 0;
  std::uint64_t tag_page_waits = 0;
  // Bytes of the volume's own buffers besides its sector cache and tag page cache (request
  // slots, journal batches, section image, in-place tag pages): the budget of
  // docs/integrity.md §5.
  std::uint64_t buffer_bytes = 0;
};
// The counters of `vol` when it is an integrity volume, else nullopt.
std::optional<IntegrityCounters> integrity_counters(const Volume& vol);
// Mode J: waits until every journal batch of `vol` sealed so far (full, or older than 5 s) is
// committed by its journal thread, and returns the error of a commit that failed twice; ok at
// once for other volumes. (flush commits the open batch too.)
Result<void> integrity_await_commits(Volume& vol);

// luksFormat: writes the dm-integrity superblock and the initial journal for `layout` at
// layout.data_offset_bytes of `data` (docs/integrity.md §1, §3). `tag_size` from the
// composition. Returns the geometry (provided_data_sectors = the volume size).
Result<integrity::Geometry> format_integrity_area(BackingStore& data, const VolumeLayout& layout,
                                                  std::uint32_t tag_size);

}  // namespace cryptmap::volume
