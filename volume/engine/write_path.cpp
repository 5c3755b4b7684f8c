#include "volume/engine/write_path.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace cryptmap::volume {

using crypto::CryptoDir;

// Write-through of a request's pieces: up to kWriteDepth pieces, each in its own pool buffer,
// go to the store as one batch (BackingStore::write_batch_each), each merged and encrypted (by
// the crypto workers and the caller) just before it is submitted, so piece k+1 is encrypted
// while piece k is already in flight and all of them are in flight together. The first buffer
// is waited for, the others only tried: without a free one the queued pieces are written
// first (one piece at a time at worst). The pieces of a batch carry no order among themselves
// (the store may complete them in any order): this path serves conventional storage only, a
// sequential zone's writes take write_zoned. Durable writes (`fua`) go one piece at a time
// through the store's durable write. Every queued piece is written even after an error in an
// earlier batch; the first error is returned. Caller holds the exclusive range.
class WritePath::Pipe {
 public:
  static constexpr std::size_t kWriteDepth = 4;

  Pipe(WritePath& w, std::uint64_t off, std::span<const std::byte> in, BufferPool::Buffer& buf,
       bool fua = false)
      : w_(w), ctx_(w.ctx_), off_(off), in_(in), buf_(buf), fua_(fua) {}
  ~Pipe() { (void)drain(); }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  // Queues sectors [pos, pos + n) of the request, n <= one buffer; writes the queued pieces
  // first when the batch is full or no buffer is free for another piece.
  Result<void> add(std::uint64_t pos, std::uint64_t n) {
    Result<void> first = ok();
    if (m_ == kWriteDepth) first = drain();
    if (m_ > 0) {
      BufferPool::Buffer& spare = spares_[m_ - 1];
      if (!spare) spare = ctx_.buffers->try_acquire();
      if (!spare) first = keep_first(first, drain());
    }
    BufferPool::Buffer& use = m_ == 0 ? buf_ : spares_[m_ - 1];
    if (!use) use = ctx_.buffers->acquire();  // only buf_ is ever waited for
    first_[m_] = pos;
    pieces_[m_] = {ByteOffset{ctx_.geo.image_offset(pos)}, use.span().first(ctx_.geo.bytes(n))};
    ++m_;
    return first;
  }

  // Merges, encrypts and writes the queued pieces; returns the first error.
  Result<void> drain() {
    const std::size_t m = std::exchange(m_, 0);
    if (m == 0) return ok();
    auto prepare = [this](std::size_t q) -> Result<void> {
      // The piece's buffer is the pool buffer behind pieces_[q].in (never the caller's memory).
      const std::span<std::byte> b(const_cast<std::byte*>(pieces_[q].in.data()),
                                   pieces_[q].in.size());
      return w_.seal(off_, in_, first_[q], b);
    };
    if (!fua_) {
      return ctx_.store->write_batch_each(std::span<WritePiece>(pieces_.data(), m), prepare);
    }
    Result<void> first = ok();
    for (std::size_t q = 0; q < m; ++q) {
      Result<void> r = prepare(q);
      if (r) r = ctx_.store->write_fua(pieces_[q].off, pieces_[q].in);
      first = keep_first(first, r);
    }
    return first;
  }

 private:
  static Result<void> keep_first(Result<void> a, Result<void> b) { return a ? b : a; }

  WritePath& w_;
  EngineContext& ctx_;
  const std::uint64_t off_;
  const std::span<const std::byte> in_;
  BufferPool::Buffer& buf_;
  const bool fua_;
  std::array<BufferPool::Buffer, kWriteDepth - 1> spares_;  // never waited for
  std::array<WritePiece, kWriteDepth> pieces_;
  std::array<std::uint64_t, kWriteDepth> first_{};
  std::size_t m_ = 0;  // queued pieces
};

Result<std::size_t> WritePath::write(std::uint64_t off, std::span<const std::byte> in, bool fua) {
  if (ctx_.read_only) {
    return make_error_fmt(Errc::kReadOnly, "write to volume", off, "%s is opened read-only",
                          ctx_.store->name().c_str());
  }
  const std::size_t len = in.size();
  if (!ctx_.geo.fits(off, len)) {
    return make_error_fmt(Errc::kNoSpace, "write past the end of the volume", off,
                          "volume is %llu bytes", static_cast<unsigned long long>(ctx_.geo.size));
  }
  if (len == 0) return std::size_t{0};
  const SectorSpan s = ctx_.geo.covering(off, len);
  bool through = false;  // dirty data at the limit: write through, as large writes do
  if (ctx_.cache && !ctx_.write_through && !fua) {
    Result<bool> t = writeback_->throttle();
    if (!t) {
      ctx_.log_error("write", t.error());
      return t.error();
    }
    through = *t;
  }
  RangeLock::Guard guard = ctx_.ranges.acquire(s.first, s.end, /*exclusive=*/true);
  if (ctx_.read_ahead) ctx_.read_ahead->invalidate(s.first, s.end);
  if (ctx_.cache && ctx_.write_through) {
    // Only clean blocks exist in this mode: drop (wipe) the ones this write makes stale.
    for (std::uint64_t k = s.first; k < s.end; ++k) ctx_.cache->erase(k);
  } else if (ctx_.cache && fua) {
    // Resident blocks (dirty ones among them) take the new bytes, so the partial edge sectors
    // merge() reads come from them, and reads and write-backs stay current.
    for (std::uint64_t pos = s.first; pos < s.end; ++pos) {
      const ByteSpan in_sec = ctx_.geo.in_sector(off, len, pos);
      (void)ctx_.cache->write_if_present(pos, in_sec.lo - ctx_.geo.byte_of(pos),
                                         in.subspan(in_sec.lo - off, in_sec.size()));
    }
  } else if (ctx_.cache) {
    if (behind_ != nullptr && len >= ctx_.bypass_bytes) {
      Result<bool> q = write_behind(off, in, s, guard);
      if (!q) {
        ctx_.log_error("write", q.error());
        return q.error();
      }
      if (*q) return len;
    }
    if (Result<void> r = write_cached(off, in, s, through); !r) {
      ctx_.log_error("write", r.error());
      return r.error();
    }
    return len;
  }
  BufferPool::Buffer buf;
  Pipe pipe(*this, off, in, buf, fua);
  Result<void> r = ok();
  for (std::uint64_t pos = s.first; pos < s.end && r;) {
    const std::uint64_t n = std::min<std::uint64_t>(s.end - pos, ctx_.buf_sectors);
    r = pipe.add(pos, n);
    pos += n;
  }
  if (Result<void> d = pipe.drain(); r && !d) r = d;
  if (!r) {
    ctx_.log_error("write", r.error());
    return r.error();
  }
  return len;
}

// Fills `b` with the plaintext of sectors [pos, pos + b.size()/ss) with the request's bytes
// merged in (partial head and tail sectors are taken from the cache when resident, which only
// a durable write's and a write-behind's pieces find there, else read from the store).
Result<void> WritePath::merge(std::uint64_t off, std::span<const std::byte> in, std::uint64_t pos,
                              std::span<std::byte> b) {
  const SectorGeometry& g = ctx_.geo;
  const std::uint64_t n = g.sectors_in(b.size());
  const std::uint64_t start = g.byte_of(pos);
  const bool head_partial = g.head_partial(off, pos);
  const bool tail_partial = g.tail_partial(off, in.size(), pos, n);
  auto load = [this](std::uint64_t k, std::span<std::byte> sec) -> Result<void> {
    if (ctx_.cache && ctx_.cache->read(k, 0, sec)) return ok();
    return ctx_.fetch(k, sec);
  };
  if (head_partial) CRYPTMAP_TRY_VOID(load(pos, b.first(ctx_.ss)));
  if (tail_partial && !(n == 1 && head_partial)) {
    CRYPTMAP_TRY_VOID(load(pos + n - 1, b.last(ctx_.ss)));
  }
  const ByteSpan part = overlap(off, in.size(), start, b.size());
  std::memcpy(b.data() + (part.lo - start), in.data() + (part.lo - off), part.size());
  return ok();
}

Result<CryptoDriver::FromTo> WritePath::seal_edges(std::uint64_t off, std::span<const std::byte> in,
                                                   std::uint64_t pos, std::span<std::byte> b) {
  const SectorGeometry& g = ctx_.geo;
  const std::uint64_t n = g.sectors_in(b.size());
  auto edge = [&](std::uint64_t k) -> Result<void> {  // a partial sector: merge, then encrypt
    const std::span<std::byte> sec = b.subspan(g.bytes(k), ctx_.ss);
    CRYPTMAP_TRY_VOID(merge(off, in, pos + k, sec));
    return ctx_.driver->convert(CryptoDir::kEncrypt, sec, SectorIndex{pos + k});
  };
  std::uint64_t lo = 0, hi = n;  // the whole sectors: [lo, hi) of the piece
  if (n > 0 && g.head_partial(off, pos)) {
    CRYPTMAP_TRY_VOID(edge(0));
    lo = 1;
  }
  if (hi > lo && g.tail_partial(off, in.size(), pos, n)) {
    CRYPTMAP_TRY_VOID(edge(n - 1));
    hi = n - 1;
  }
  if (hi == lo) return CryptoDriver::FromTo{};
  const std::uint64_t from = g.byte_of(pos + lo) - off;  // inside the request: whole sectors
  return CryptoDriver::FromTo{in.subspan(from, g.bytes(hi - lo)),
                              b.subspan(g.bytes(lo), g.bytes(hi - lo)), SectorIndex{pos + lo}};
}

Result<void> WritePath::seal(std::uint64_t off, std::span<const std::byte> in, std::uint64_t pos,
                             std::span<std::byte> b) {
  CRYPTMAP_TRY(whole, seal_edges(off, in, pos, b));
  return ctx_.driver->encrypt_from(std::span(&whole, 1));
}

// Write-back mode: whole sectors go into the cache as dirty blocks; partial ones are merged
// into the cached block, or read-modify-written from the store when not resident. Sectors the
// cache has no room for (everything dirty or pinned) are written through instead, so a full
// cache slows writers down but never blocks them. Large writes and writes at the dirty limit
// (`through`) update resident blocks in place and write the others through. Caller must hold
// the exclusive range.
Result<void> WritePath::write_cached(std::uint64_t off, std::span<const std::byte> in, SectorSpan s,
                                     bool through) {
  const SectorGeometry& g = ctx_.geo;
  cache::SectorCache& cache = *ctx_.cache;
  BufferPool::Buffer buf;  // waited for: at most one per request (see BufferPool)
  Pipe pipe(*this, off, in, buf);
  std::uint64_t run_begin = 0, run_end = 0;  // pending write-through run [begin, end)
  auto flush_run = [&]() -> Result<void> {
    if (run_end == run_begin) return ok();
    Result<void> r = pipe.add(run_begin, run_end - run_begin);
    run_begin = run_end = 0;
    return r;
  };
  for (std::uint64_t pos = s.first; pos < s.end; ++pos) {
    const ByteSpan in_sec = g.in_sector(off, in.size(), pos);
    const std::span<const std::byte> part = in.subspan(in_sec.lo - off, in_sec.size());
    const std::size_t skip = in_sec.lo - g.byte_of(pos);
    bool cached = false;
    if (through || in.size() >= ctx_.bypass_bytes) {
      // Large write, or dirty data at the limit: keep resident blocks current, write the
      // others through.
      cached = cache.write_if_present(pos, skip, part);
    } else if (part.size() == ctx_.ss) {
      cached = cache.put(pos, part, /*dirty=*/true) != cache::PutResult::kNoRoom;
    } else if (cache.write_if_present(pos, skip, part)) {
      cached = true;
    } else {
      CRYPTMAP_TRY_VOID(flush_run());
      CRYPTMAP_TRY_VOID(pipe.drain());  // the buffer is free again
      if (!buf) buf = ctx_.buffers->acquire();
      std::span<std::byte> sec = buf.span().first(ctx_.ss);
      CRYPTMAP_TRY_VOID(ctx_.fetch(pos, sec));
      std::memcpy(sec.data() + skip, part.data(), part.size());
      cached = cache.put(pos, sec, /*dirty=*/true) != cache::PutResult::kNoRoom;
      if (!cached) {  // written through right here
        CRYPTMAP_TRY_VOID(ctx_.driver->convert(CryptoDir::kEncrypt, sec, SectorIndex{pos}));
        CRYPTMAP_TRY_VOID(ctx_.store->write_at(ByteOffset{g.image_offset(pos)}, sec));
        continue;
      }
    }
    if (!cached) {
      if (run_end == run_begin) run_begin = run_end = pos;
      ++run_end;
      if (run_end - run_begin == ctx_.buf_sectors) CRYPTMAP_TRY_VOID(flush_run());
    } else {
      CRYPTMAP_TRY_VOID(flush_run());
    }
  }
  CRYPTMAP_TRY_VOID(flush_run());
  return pipe.drain();
}

// Write-behind: the whole request [s.first, s.end) is merged (partial edge sectors from the
// cache or the store, as the Pipe does) and encrypted into the job's buffers; only then do
// resident blocks take the new bytes (in place; they become dirty, as a large write-through
// makes them), so a failed encryption changes nothing. The job keeps the exclusive range until
// its store write completed: later requests on the range wait for it at the range lock.
Result<bool> WritePath::write_behind(std::uint64_t off, std::span<const std::byte> in, SectorSpan s,
                                     RangeLock::Guard& range) {
  WriteBehind::Job* job = behind_->try_reserve(s.first, s.count());
  if (job == nullptr) return false;
  // The pieces' whole sectors are encrypted kGroup pieces at a time as one conversion (one
  // fan-out over the crypto workers for a whole 1 MiB request, not one per piece).
  constexpr std::size_t kGroup = 8;
  std::array<CryptoDriver::FromTo, kGroup> group;
  std::size_t m = 0;
  Result<void> r = ok();
  for (std::size_t q = 0; q < behind_->pieces(*job) && r; ++q) {
    Result<CryptoDriver::FromTo> whole =
        seal_edges(off, in, behind_->piece_first(*job, q), behind_->piece(*job, q));
    if (!whole) {
      r = whole.error();
      break;
    }
    if (!whole->out.empty()) group[m++] = *whole;
    if (m == kGroup) r = ctx_.driver->encrypt_from(std::span(group.data(), std::exchange(m, 0)));
  }
  if (r && m > 0) r = ctx_.driver->encrypt_from(std::span(group.data(), m));
  if (!r) {
    behind_->cancel(job);
    return r.error();
  }
  behind_->sealed(*job);
  for (std::uint64_t pos = s.first; pos < s.end; ++pos) {
    const ByteSpan in_sec = ctx_.geo.in_sector(off, in.size(), pos);
    (void)ctx_.cache->write_if_present(pos, in_sec.lo - ctx_.geo.byte_of(pos),
                                       in.subspan(in_sec.lo - off, in_sec.size()));
  }
  behind_->submit(job, std::move(range));
  return true;
}

void WritePath::drop_cached(SectorSpan s) {
  if (ctx_.read_ahead) ctx_.read_ahead->invalidate(s.first, s.end);
  if (ctx_.cache) {
    for (std::uint64_t k = s.first; k < s.end; ++k) ctx_.cache->erase(k);
  }
}

// A write admitted into a sequential zone (whole sectors, by admission): in its turn,
// encrypt each buffer-sized piece (parallel inside the piece) and write it. Never cached:
// resident clean blocks are dropped under the exclusive range first.
Result<std::size_t> WritePath::write_zoned(const ZoneTicket& t, std::uint64_t off,
                                           std::span<const std::byte> in) {
  const SectorGeometry& g = ctx_.geo;
  const std::uint64_t s0 = g.sector_of(off);
  const SectorSpan s{s0, s0 + g.sectors_in(in.size())};
  Result<void> r = ctx_.zoned->issue_in_turn(t, [&]() -> Result<void> {
    RangeLock::Guard guard = ctx_.ranges.acquire(s.first, s.end, /*exclusive=*/true);
    drop_cached(s);
    BufferPool::Buffer buf = ctx_.buffers->acquire();
    for (std::uint64_t pos = s.first; pos < s.end;) {
      const std::uint64_t n = std::min<std::uint64_t>(s.end - pos, ctx_.buf_sectors);
      std::span<std::byte> b = buf.span().first(g.bytes(n));
      CRYPTMAP_TRY_VOID(ctx_.driver->encrypt_from(in.subspan(g.bytes(pos - s.first), b.size()), b,
                                                  SectorIndex{pos}));
      CRYPTMAP_TRY_VOID(ctx_.store->write_at(ByteOffset{g.image_offset(pos)}, b));
      pos += n;
    }
    return ok();
  });
  if (!r) return r.error();
  return in.size();
}

// Whole sectors inside [off, off + len) only (dm-crypt discards whole sectors).
Result<std::size_t> WritePath::discard(std::uint64_t off, std::uint64_t len) {
  const SectorGeometry& g = ctx_.geo;
  if (ctx_.read_only) {
    return make_error_fmt(Errc::kReadOnly, "discard on volume", off, "%s is opened read-only",
                          ctx_.store->name().c_str());
  }
  len = g.clamp(off, len);
  if (len == 0) return std::size_t{0};
  const SectorSpan s = g.inner(off, len);
  if (s.empty()) return std::size_t{0};
  if (!ctx_.zoned && !ctx_.allow_discards) {
    return make_error_fmt(Errc::kUnsupported, "discard on volume", off,
                          "discards are not allowed on %s (open with --allow-discards)",
                          ctx_.store->name().c_str());
  }
  RangeLock::Guard guard = ctx_.ranges.acquire(s.first, s.end, /*exclusive=*/true);
  drop_cached(s);
  const std::uint64_t img = g.image_offset(s.first);
  const std::uint64_t img_len = g.bytes(s.count());
  if (ctx_.zoned) {
    CRYPTMAP_TRY_VOID(ctx_.zoned->discard(img, img_len, ctx_.allow_discards));
  } else {
    CRYPTMAP_TRY_VOID(ctx_.store->discard(ByteOffset{img}, img_len));
  }
  return static_cast<std::size_t>(img_len);
}

}  // namespace cryptmap::volume
