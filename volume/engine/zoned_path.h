// ZonedWritePath — the engine side of sequential zones (docs/architecture.md §4.6, dm-crypt's zoned
// inline path): writes into sequential zones are admitted on the caller's thread in arrival
// order, then each waits at its zone's turnstile and is encrypted (parallel within the request)
// and written while it holds the turn; never cached, never read-modify-written. Also the zoned
// half of discard: whole sequential zones are reset, partial ones refused.
//
// All offsets here are IMAGE byte offsets. Thread-safety: every method is thread-safe; admit()
// defines the order (the caller serialises it). Ownership: the store outlives this object.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "base/result.h"
#include "volume/zone/zone_admission.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {

class ZonedWritePath {
 public:
  // kInvalid when `sector_size` does not divide the zone size.
  static Result<std::unique_ptr<ZonedWritePath>> create(ZonedStore& store,
                                                        std::uint32_t sector_size,
                                                        std::uint32_t max_inflight_per_zone);
  ~ZonedWritePath();
  ZonedWritePath(const ZonedWritePath&) = delete;
  ZonedWritePath& operator=(const ZonedWritePath&) = delete;

  bool needs_admission(std::uint64_t off, std::uint64_t len) const noexcept {
    return admission_->needs_admission(ByteOffset{off}, len);
  }
  // The ordering point. Besides ZoneAdmission's checks, refuses writes that are not whole
  // encryption sectors (kZoneOrder: a sequential zone cannot be read-modify-written).
  // `wait_ahead`: ZoneAdmission::admit's bounded wait for a write ahead of the write pointer.
  Result<ZoneTicket> admit(std::uint64_t off, std::uint64_t len,
                           std::chrono::milliseconds wait_ahead = std::chrono::milliseconds{0});

  // Waits for the ticket's turn, runs `issue` (encrypt + store write) and completes the
  // ticket with its result (a tombstone when the turn never came). Exactly once per ticket.
  template <class F>
  Result<void> issue_in_turn(const ZoneTicket& t, F&& issue) {
    Result<void> turn = admission_->wait_turn(t);
    Result<void> r = turn ? issue() : turn;
    admission_->complete(t, r);
    return r;
  }

  // Discards [off, off + len) zone by zone: sequential zones must be covered whole and are
  // reset (then admission adopts the new write pointer); conventional pieces are punched when
  // `allow_conventional`, else kUnsupported. Everything is checked before anything changes.
  // kBusy when a sequential zone still has writes in flight.
  Result<void> discard(std::uint64_t off, std::uint64_t len, bool allow_conventional);

  // Shutdown (before the final write-back): blocked admits/turns end with kCancelled, then
  // waits until every ticket is back.
  void shutdown();

  const ZoneAdmission& admission() const noexcept { return *admission_; }

 private:
  ZonedWritePath(ZonedStore& store, std::uint32_t sector_size,
                 std::unique_ptr<ZoneAdmission> admission);
  ZonedStore& store_;
  const std::uint32_t ss_;
  std::unique_ptr<ZoneAdmission> admission_;
};

}  // namespace cryptmap::volume
