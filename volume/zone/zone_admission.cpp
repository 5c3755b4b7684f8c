// ZoneAdmission (zone_admission.h): per-zone counters under striped mutexes, one condition
// variable per stripe.
//
// Invariant that lets the turnstile work without any per-ticket storage: a ticket may complete
// before its turn only with a failure (a success needs its turn). So in each zone the tickets in
// [turn, poison_seq) are all still outstanding and complete in seq order, and every ticket >=
// poison_seq is doomed and may complete in any order. `turn` therefore advances by one on each
// in-order completion, and `completed` counts everything for draining and for the in-flight bound.
#include "volume/zone/zone_admission.h"

#include <array>
#include <atomic>
#include <bit>
#include <limits>
#include <new>

#include "base/check.h"
#include "base/mutex.h"

namespace cryptmap::volume {
namespace {

constexpr std::size_t kStripes = 64;
constexpr std::uint64_t kNotPoisoned = std::numeric_limits<std::uint64_t>::max();

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

struct ZoneSlot {
  ByteOffset projected;
  ByteOffset committed;
  std::uint64_t next_seq = 0;
  std::uint64_t turn = 0;
  std::uint64_t completed = 0;
  std::uint64_t poison_seq = kNotPoisoned;
  ByteOffset poison_offset;
  Errc poison_code = Errc::kIo;
  const char* poison_what = "";
  ZoneCond cond = ZoneCond::kEmpty;  // as of the last create/resync: full/read-only/offline gate
  std::uint32_t ahead_waiters = 0;   // admits waiting for the projected wp to reach them
};

struct Stripe {
  Mutex mu;
  CondVar cv;
};

}  // namespace

struct ZoneAdmission::Impl {
  const ZoneMap& map;
  const ZoneAdmissionOptions opts;
  // Guarded by stripes[zone % kStripes].mu: a lock chosen by index, which GUARDED_BY cannot
  // name, so touch it only through slot(), which REQUIRES the stripe's mutex.
  std::unique_ptr<ZoneSlot[]> zones;
  std::array<Stripe, kStripes> stripes;
  std::atomic<bool> cancelled{false};
  std::atomic<std::uint64_t> inflight{0};
  Mutex drain_mu;  // guards nothing (inflight is atomic): taken so a drain wake-up is not missed
  CondVar drain_cv;

  Impl(const ZoneMap& m, const ZoneAdmissionOptions& o, std::unique_ptr<ZoneSlot[]> z)
      : map(m), opts(o), zones(std::move(z)) {}

  Stripe& stripe(std::uint64_t zone) { return stripes[zone % kStripes]; }

  // Zone `zone`'s slot; `st` is stripe(zone), held by the caller.
  ZoneSlot& slot(Stripe& st, std::uint64_t zone) REQUIRES(st.mu) {
    CRYPTMAP_CHECK(&st == &stripe(zone));
    return zones[zone];
  }

  Error poison_error(const ZoneSlot& s, std::uint64_t zone) const {
    return make_error_fmt(Errc::kZoneOrder, "zone poisoned by an earlier failed write", zone,
                          "zone %llu: ticket %llu at %llu failed (%s); reset the zone", ull(zone),
                          ull(s.poison_seq), ull(s.poison_offset.value), s.poison_what);
  }
};

ZoneAdmission::ZoneAdmission(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ZoneAdmission::~ZoneAdmission() = default;

Result<std::unique_ptr<ZoneAdmission>> ZoneAdmission::create(const ZoneMap& map,
                                                             const ZoneAdmissionOptions& options) {
  if (options.max_inflight_per_zone == 0) {
    return make_error(Errc::kInvalid, "zone admission: max_inflight_per_zone must be > 0");
  }
  if (options.alignment_bytes < kSector512 || !std::has_single_bit(options.alignment_bytes)) {
    return make_error(Errc::kInvalid, "zone admission: alignment must be a power of two >= 512",
                      options.alignment_bytes);
  }
  std::unique_ptr<ZoneSlot[]> zones(new (std::nothrow) ZoneSlot[map.zone_count()]);
  if (!zones) return make_error(Errc::kNoSpace, "zone admission: out of memory", map.zone_count());
  for (std::uint64_t i = 0; i < map.zone_count(); ++i) {
    const ZoneInfo z = map.zone(i);
    zones[i].projected = zones[i].committed = z.wp;
    zones[i].cond = z.cond;
  }
  return std::unique_ptr<ZoneAdmission>(
      new ZoneAdmission(std::make_unique<Impl>(map, options, std::move(zones))));
}

bool ZoneAdmission::needs_admission(ByteOffset off, std::uint64_t len_bytes) const noexcept {
  return impl_->map.touches_sequential(off, len_bytes);
}

Result<ZoneTicket> ZoneAdmission::admit(ByteOffset off, std::uint64_t len_bytes,
                                        std::chrono::milliseconds wait_ahead) {
  Impl& im = *impl_;
  const ZoneMap& map = im.map;
  if (im.cancelled.load(std::memory_order_acquire)) {
    return make_error(Errc::kCancelled, "zone admission: shutting down", off.value);
  }
  if (len_bytes == 0) return make_error(Errc::kInvalid, "zone admission: empty write", off.value);
  CRYPTMAP_TRY(zone, map.zone_index(off));
  if (map.crosses_boundary(off, len_bytes)) {
    return make_error_fmt(Errc::kZoneOrder, "write crosses a zone boundary", zone,
                          "write at %llu len %llu leaves zone %llu", ull(off.value), ull(len_bytes),
                          ull(zone));
  }
  if (map.type(zone) == ZoneType::kConventional) {
    return make_error_fmt(Errc::kInvalid, "zone admission: conventional zone", zone,
                          "zone %llu has no write pointer; write it directly", ull(zone));
  }
  const ZoneInfo geo = map.zone(zone);  // start / capacity (immutable)
  Stripe& st = im.stripe(zone);
  MutexLock lock(st.mu);
  ZoneSlot& s = im.slot(st, zone);
  const bool may_wait = wait_ahead.count() > 0;
  const auto deadline = may_wait ? std::chrono::steady_clock::now() + wait_ahead
                                 : std::chrono::steady_clock::time_point{};
  bool waited = false;
  for (;;) {
    // Backpressure first, so the checks below see the state this ticket will be issued against.
    while (!(im.cancelled.load(std::memory_order_acquire) ||
             s.next_seq - s.completed < im.opts.max_inflight_per_zone)) {
      st.cv.wait(lock);
    }
    if (im.cancelled.load(std::memory_order_acquire)) {
      return make_error(Errc::kCancelled, "zone admission: shutting down", off.value);
    }
    if (s.poison_seq != kNotPoisoned) return im.poison_error(s, zone);
    switch (s.cond) {
      case ZoneCond::kOffline:
        return make_error_fmt(Errc::kIo, "write to an offline zone", zone, "zone %llu is offline",
                              ull(zone));
      case ZoneCond::kReadOnly:
        return make_error_fmt(Errc::kReadOnly, "write to a read-only zone", zone,
                              "zone %llu is read-only", ull(zone));
      case ZoneCond::kFull:
        return make_error_fmt(Errc::kZoneOrder, "write to a full zone", zone,
                              "zone %llu is full: write at %llu; reset the zone first", ull(zone),
                              ull(off.value));
      default:
        break;
    }
    if (off.value % im.opts.alignment_bytes != 0 || len_bytes % im.opts.alignment_bytes != 0) {
      return make_error_fmt(Errc::kZoneOrder, "unaligned write to a sequential zone", zone,
                            "zone %llu: %llu bytes at %llu, block %u", ull(zone), ull(len_bytes),
                            ull(off.value), im.opts.alignment_bytes);
    }
    // Ahead of the wp: the writes before it may still be on their way (another thread has
    // them); wait for them, bounded. Every admit, resync and cancel wakes the stripe.
    if (may_wait && off > s.projected && off + len_bytes <= geo.capacity_end() &&
        std::chrono::steady_clock::now() < deadline) {
      ++s.ahead_waiters;
      (void)st.cv.wait_until(lock, deadline);
      --s.ahead_waiters;
      waited = true;
      continue;
    }
    break;
  }
  if (off != s.projected) {
    if (waited) {
      return make_error_fmt(Errc::kZoneOrder, "write not at the zone write pointer", zone,
                            "zone %llu: write at %llu, write pointer at %llu after waiting %lld ms "
                            "for the writes before it",
                            ull(zone), ull(off.value), ull(s.projected.value),
                            static_cast<long long>(wait_ahead.count()));
    }
    return make_error_fmt(Errc::kZoneOrder, "write not at the zone write pointer", zone,
                          "zone %llu: write at %llu, write pointer at %llu", ull(zone),
                          ull(off.value), ull(s.projected.value));
  }
  if (off + len_bytes > geo.capacity_end()) {
    return make_error_fmt(Errc::kZoneOrder, "write past the zone capacity", zone,
                          "zone %llu: write ends at %llu, capacity ends at %llu", ull(zone),
                          ull(off.value + len_bytes), ull(geo.capacity_end().value));
  }
  ZoneTicket t{zone, s.next_seq++, off, len_bytes};
  s.projected = off + len_bytes;
  if (s.projected == geo.capacity_end()) s.cond = ZoneCond::kFull;
  im.inflight.fetch_add(1, std::memory_order_relaxed);
  // A write waiting for this wp may be next. (notify under the lock: the waiter rechecks.)
  if (s.ahead_waiters != 0) st.cv.notify_all();
  return t;
}

Result<void> ZoneAdmission::wait_turn(const ZoneTicket& t) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(t.zone < im.map.zone_count());
  Stripe& st = im.stripe(t.zone);
  MutexLock lock(st.mu);
  ZoneSlot& s = im.slot(st, t.zone);
  CRYPTMAP_CHECK(t.seq < s.next_seq && t.seq >= s.turn);
  while (
      !(s.turn == t.seq || s.poison_seq < t.seq || im.cancelled.load(std::memory_order_acquire))) {
    st.cv.wait(lock);
  }
  if (s.turn == t.seq && t.seq < s.poison_seq) return ok();  // its turn came: let it write
  if (im.cancelled.load(std::memory_order_acquire)) {
    return make_error(Errc::kCancelled, "zone admission: shutting down while waiting for turn",
                      t.offset.value);
  }
  return im.poison_error(s, t.zone);
}

void ZoneAdmission::complete(const ZoneTicket& t, const Result<void>& result) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(t.zone < im.map.zone_count());
  Stripe& st = im.stripe(t.zone);
  {
    MutexLock lock(st.mu);
    ZoneSlot& s = im.slot(st, t.zone);
    CRYPTMAP_CHECK(t.seq < s.next_seq && s.completed < s.next_seq);
    if (result) {
      // Only the ticket whose turn it is may have written.
      CRYPTMAP_CHECK(t.seq == s.turn && t.seq < s.poison_seq);
      s.committed = t.offset + t.len_bytes;
      ++s.turn;
    } else {
      CRYPTMAP_CHECK(t.seq >= s.turn);  // completing twice is a bug
      if (t.seq < s.poison_seq) {
        s.poison_seq = t.seq;
        s.poison_offset = t.offset;
        s.poison_code = result.error().code;
        s.poison_what = result.error().what;
      }
      if (t.seq == s.turn) ++s.turn;
    }
    ++s.completed;
  }
  st.cv.notify_all();
  if (im.inflight.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    MutexLock lock(im.drain_mu);
    im.drain_cv.notify_all();
  }
}

void ZoneAdmission::cancel() {
  Impl& im = *impl_;
  im.cancelled.store(true, std::memory_order_release);
  for (Stripe& st : im.stripes) {
    // Lock so a waiter between its predicate check and its sleep cannot miss the wake-up.
    { MutexLock lock(st.mu); }
    st.cv.notify_all();
  }
}

bool ZoneAdmission::cancelled() const noexcept {
  return impl_->cancelled.load(std::memory_order_acquire);
}

void ZoneAdmission::wait_drained() {
  Impl& im = *impl_;
  MutexLock lock(im.drain_mu);
  while (im.inflight.load(std::memory_order_acquire) != 0) im.drain_cv.wait(lock);
}

Result<void> ZoneAdmission::resync_zone(const ZoneInfo& z) {
  Impl& im = *impl_;
  if (z.index >= im.map.zone_count() || !z.sequential()) {
    return make_error(Errc::kInvalid, "zone admission: resync of a conventional or unknown zone",
                      z.index);
  }
  Stripe& st = im.stripe(z.index);
  {
    MutexLock lock(st.mu);
    ZoneSlot& s = im.slot(st, z.index);
    if (s.completed != s.next_seq) {
      return make_error_fmt(Errc::kBusy, "zone admission: tickets in flight", z.index,
                            "zone %llu has %llu writes in flight; drain them first", ull(z.index),
                            ull(s.next_seq - s.completed));
    }
    s.projected = s.committed = z.wp;
    s.cond = z.cond;
    s.turn = s.next_seq;
    s.poison_seq = kNotPoisoned;
  }
  st.cv.notify_all();
  return ok();
}

ZoneAdmissionStatus ZoneAdmission::status(std::uint64_t zone) const {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(zone < im.map.zone_count());
  Stripe& st = im.stripe(zone);
  MutexLock lock(st.mu);
  const ZoneSlot& s = im.slot(st, zone);
  ZoneAdmissionStatus out;
  out.projected_wp = s.projected;
  out.committed_wp = s.committed;
  out.next_seq = s.next_seq;
  out.turn = s.turn;
  out.completed = s.completed;
  out.poisoned = s.poison_seq != kNotPoisoned;
  out.poison_seq = out.poisoned ? s.poison_seq : 0;
  return out;
}

}  // namespace cryptmap::volume
