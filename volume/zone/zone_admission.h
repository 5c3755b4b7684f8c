// ZoneAdmission — the ordering point for writes into sequential zones (docs/architecture.md §4.6),
// and the per-zone ticket turnstile that issues them in that order even when their crypto
// finishes out of order.
//
// A host-managed drive accepts a write into a sequential zone only at the zone's write pointer.
// dm-crypt keeps the issuer's order by encrypting and submitting such writes inline (the 2020 zoned
// patch, DM_CRYPT_WRITE_INLINE); cryptmap does the same with three steps per write:
//
//   1. admit(off, len) — on ONE thread, in arrival order (the FUSE reader, or whichever single
//      thread fans requests out). Checks what the drive will check against the *projected* wp
//      (the wp once every admitted write has landed): off == projected wp, block alignment, inside
//      one zone and its capacity. Otherwise kZoneOrder, as the drive would answer. On success the
//      projected wp advances and the write gets a ticket: (zone, seq), seq dense per zone.
//   2. wait_turn(ticket) — blocks until every earlier ticket of the zone has completed. Crypto may
//      run before this (pipelined) or after it (inline), but the store write must come after it.
//   3. complete(ticket, result) — exactly once per ticket, success or not. Success advances the
//      committed wp and lets the next ticket go. Failure poisons the zone: the failed write left a
//      hole, so every later ticket of that zone fails (kZoneOrder) at wait_turn, and new admits are
//      refused until resync_zone() (after the store's zone reset). A job that fails before writing
//      (crypto error, cancelled, allocation) still calls complete with its error — a tombstone — so
//      the zone's lane never waits for a ticket that will not come.
//
// Bounds: no queues at all; per zone only counters. At most `max_inflight_per_zone` tickets per
// zone are admitted and not completed; admit() waits for room (backpressure on the single
// admitting thread). Every blocking wait ends on cancel() with kCancelled.
//
// Thread-safety: all methods are thread-safe. admit() defines the order: call it from one thread
// (or serialise callers yourself); concurrent admits are safe but their relative order is whatever
// the lock gives. Ownership: the ZoneMap (the store's) must outlive this object; the admission
// never writes it. Lock order: a zone stripe's mutex is a leaf (nothing is called while holding
// it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "base/result.h"
#include "base/units.h"
#include "volume/zone/zone_map.h"

namespace cryptmap::volume {

// Handle for one admitted write. A value; pass it back unchanged.
struct ZoneTicket {
  std::uint64_t zone = 0;
  std::uint64_t seq = 0;  // dense per zone, starting at 0
  ByteOffset offset{};
  std::uint64_t len_bytes = 0;
};

struct ZoneAdmissionOptions {
  // Admitted-but-not-completed tickets allowed per zone before admit() waits.
  std::uint32_t max_inflight_per_zone = 64;
  // Writes must start and end on this boundary (the store's logical_block_bytes()).
  std::uint32_t alignment_bytes = 4096;
};

// Per-zone counters, for tests, metrics and the engine's drain logic.
struct ZoneAdmissionStatus {
  ByteOffset projected_wp{};    // where the next admitted write must start
  ByteOffset committed_wp{};    // end of the last successfully completed write
  std::uint64_t next_seq = 0;   // tickets issued so far
  std::uint64_t turn = 0;       // the seq allowed to write now (while not poisoned)
  std::uint64_t completed = 0;  // tickets completed (success or tombstone)
  bool poisoned = false;
  std::uint64_t poison_seq = 0;  // the first failed ticket (valid when poisoned)
};

class ZoneAdmission {
 public:
  // Starts from the map's current write pointers. kInvalid for a zero max_inflight or an alignment
  // that is not a power of two >= 512.
  static Result<std::unique_ptr<ZoneAdmission>> create(const ZoneMap& map,
                                                       const ZoneAdmissionOptions& options);
  ~ZoneAdmission();
  ZoneAdmission(const ZoneAdmission&) = delete;
  ZoneAdmission& operator=(const ZoneAdmission&) = delete;

  // True when [off, off + len) touches a sequential zone and must go through admit().
  bool needs_admission(ByteOffset off, std::uint64_t len_bytes) const noexcept;

  // The ordering point (see the file comment). Errors: kZoneOrder (not at the projected wp, crosses
  // a zone boundary, unaligned, past capacity, zone full, zone poisoned), kReadOnly / kIo
  // (read-only / offline zone), kInvalid (zero length, past the end, conventional zone),
  // kCancelled.
  // `wait_ahead` > 0 (callers that cannot serialise admission: FUSE over io_uring, where the
  // kernel hands one writer's requests to several threads): a write that starts AHEAD of the
  // projected wp, inside the zone, waits up to that long for the writes before it to be
  // admitted (it holds no ticket and no lock meanwhile); still not at the wp then, it fails
  // with kZoneOrder saying how long it waited. A write behind the wp fails at once.
  Result<ZoneTicket> admit(ByteOffset off, std::uint64_t len_bytes,
                           std::chrono::milliseconds wait_ahead = std::chrono::milliseconds{0});

  // Blocks until it is this ticket's turn. Errors: kZoneOrder when an earlier ticket of the zone
  // failed (the zone is poisoned), kCancelled after cancel(). On error the caller must still
  // complete() the ticket (with that error).
  Result<void> wait_turn(const ZoneTicket& ticket);

  // Exactly once per ticket. REQUIRES (checked; a violation is a bug and aborts): a successful
  // result only for a ticket whose wait_turn() returned ok and whose write succeeded.
  void complete(const ZoneTicket& ticket, const Result<void>& result);

  // Shutdown: every current and future wait (admit room, wait_turn) returns kCancelled; new admits
  // fail. complete() keeps working so holders can hand their tickets back. Idempotent.
  void cancel();
  bool cancelled() const noexcept;

  // Blocks until every admitted ticket has been completed (used by unmount after cancel()).
  void wait_drained();

  // Adopts the store's view of a zone after a reset/finish/report: projected = committed = its wp
  // (for full zones nothing more can be admitted), clears the poison. kBusy while tickets of the
  // zone are in flight (drain them first); kInvalid for a conventional zone.
  Result<void> resync_zone(const ZoneInfo& zone);

  ZoneAdmissionStatus status(std::uint64_t zone) const;

 private:
  struct Impl;
  explicit ZoneAdmission(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cryptmap::volume
