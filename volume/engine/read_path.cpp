#include "volume/engine/read_path.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace cryptmap::volume {

using crypto::CryptoDir;

Result<std::size_t> ReadPath::read(std::uint64_t off, std::span<std::byte> out,
                                   Volume::Deliver* deliver) {
  const std::size_t len = static_cast<std::size_t>(ctx_.geo.clamp(off, out.size()));
  if (len == 0) {
    if (deliver != nullptr) (*deliver)({});
    return std::size_t{0};
  }
  const SectorSpan s = ctx_.geo.covering(off, len);
  // Pin a read-ahead window before the range lock (pin() may wait for a load, which takes
  // a range lock itself: see read_ahead.h).
  ReadAhead::Pin pin;
  if (ctx_.read_ahead) pin = ctx_.read_ahead->pin(s.first, s.end);
  bool delivered = false;
  Result<std::size_t> r = read_range(off, out.first(len), s, pin, deliver, delivered);
  pin = ReadAhead::Pin();
  if (r && ctx_.read_ahead && !delivered) ctx_.read_ahead->note(off, len);
  if (r && deliver != nullptr && !delivered) (*deliver)(out.first(*r));
  return r;
}

// With `deliver`, a request a loaded window holds is handed to it from the window's memory
// while the pin (no reuse) and the shared range (no writer, so no invalidation) are held, and
// `delivered` is set (the stream is noted first, so the next windows load while the reply is
// sent); everything else is read into `dst` and delivered by the caller.
Result<std::size_t> ReadPath::read_range(std::uint64_t off, std::span<std::byte> dst, SectorSpan s,
                                         const ReadAhead::Pin& pin, Volume::Deliver* deliver,
                                         bool& delivered) {
  const std::size_t len = dst.size();
  RangeLock::Guard guard = ctx_.ranges.acquire(s.first, s.end, /*exclusive=*/false);
  if (pin && deliver != nullptr) {
    if (const std::span<const std::byte> v = ctx_.read_ahead->view(pin, off, len); !v.empty()) {
      ctx_.read_ahead->note(off, len);
      delivered = true;
      (*deliver)(v);
      return len;
    }
  } else if (pin && ctx_.read_ahead->copy(pin, off, dst)) {
    return len;
  }
  BufferPool::Buffer buf;  // waited for: at most one per request (see BufferPool)
  if (!ctx_.cache || len >= ctx_.bypass_bytes) return stream_read(off, dst, s, buf);
  if (Result<void> r = read_blocks(off, dst, s, /*fill_cache=*/true, buf); !r) {
    ctx_.log_error("read", r.error());
    return r.error();
  }
  return len;
}

// Sectors p of the request [off, off + out.size()): cache hits are copied; runs of adjacent
// misses (at most one buffer long) are fetched and decrypted, and inserted clean when
// `fill_cache`. Safe against write-back: a block that is not resident has its latest data in
// the store (dirty blocks are never evicted; writers are excluded by the shared range), and
// the write-back never writes a block that is not resident and dirty. Caller holds the range.
Result<void> ReadPath::read_blocks(std::uint64_t off, std::span<std::byte> out, SectorSpan p,
                                   bool fill_cache, BufferPool::Buffer& buf) {
  const SectorGeometry& g = ctx_.geo;
  const std::size_t len = out.size();
  std::uint64_t pos = p.first;
  while (pos < p.end) {
    if (ctx_.cache) {
      const ByteSpan part = g.in_sector(off, len, pos);
      if (ctx_.cache->read(pos, part.lo - g.byte_of(pos),
                           out.subspan(part.lo - off, part.size()))) {
        ++pos;
        continue;
      }
    }
    const std::uint64_t limit = std::min<std::uint64_t>(p.end, pos + ctx_.buf_sectors);
    std::uint64_t end = pos + 1;
    while (end < limit && !(ctx_.cache && ctx_.cache->contains(end))) ++end;
    if (!buf) buf = ctx_.buffers->acquire();
    std::span<std::byte> b = buf.span().first(g.bytes(end - pos));
    CRYPTMAP_TRY_VOID(ctx_.fetch(pos, b));
    const ByteSpan part = overlap(off, len, g.byte_of(pos), b.size());
    std::memcpy(out.data() + (part.lo - off), b.data() + (part.lo - g.byte_of(pos)), part.size());
    if (fill_cache) {
      for (std::uint64_t k = 0; k < end - pos; ++k) {
        (void)ctx_.cache->put(pos + k, b.subspan(g.bytes(k), ctx_.ss), /*dirty=*/false);
      }
    }
    pos = end;
  }
  return ok();
}

// Whether the store holds the latest data of every sector of a range the caller holds
// shared, so a piece may be fetched whole without asking the cache: true while nothing in the
// cache is dirty (no block of the range can become dirty under the shared range, and no
// write-back can be writing one). Checked before each fetch; see stream_read for why an
// overlay after the fetch is not enough.
bool ReadPath::store_is_current() const noexcept {
  return !ctx_.cache || ctx_.cache->dirty_bytes() == 0;
}

// Read-ahead loads (on a prefetch thread): the same rule as a streaming piece, under the
// shared range; the window is read as buffer-sized pieces in flight together, each decrypted in
// place as soon as it is in (the window is the buffer: no pool buffer is taken). A store that
// splits large requests itself gets the window as one read, decrypted across the crypto
// workers once it is in (BackingStore::splits_large_requests).
bool ReadPath::load_ahead(std::uint64_t first, std::span<std::byte> dst,
                          const ReadAhead::LoadTicket& t) {
  RangeLock::Guard guard =
      ctx_.ranges.acquire(first, first + ctx_.geo.sectors_in(dst.size()), /*exclusive=*/false);
  if (!t.still_wanted() || !store_is_current()) return false;
  // While other windows load beside this one, the loaders already run in parallel: each keeps
  // its decryption on its own thread (no fan-out, no crypto worker's wake-up and join).
  EngineContext* ctx = &ctx_;
  const ReadAhead::LoadTicket* ticket = &t;
  const auto decrypt = [ctx, ticket](std::span<std::byte> b, std::uint64_t s) -> Result<void> {
    if (ticket->others_loading()) {
      return ctx->driver->convert_on_caller(CryptoDir::kDecrypt, b, SectorIndex{s});
    }
    return ctx->driver->convert(CryptoDir::kDecrypt, b, SectorIndex{s});
  };
  if (ctx_.whole_reads) {
    if (!ctx_.store->read_at(ByteOffset{ctx_.geo.image_offset(first)}, dst)) return false;
    return static_cast<bool>(decrypt(dst, first));
  }
  const SectorGeometry& g = ctx_.geo;
  std::array<ReadPiece, kReadDepth> pieces;
  std::array<std::uint64_t, kReadDepth> first_sector{};
  const std::uint64_t end = first + g.sectors_in(dst.size());
  for (std::uint64_t pos = first; pos < end;) {
    std::size_t m = 0;
    for (; pos < end && m < kReadDepth; ++m) {
      const std::uint64_t n = std::min<std::uint64_t>(end - pos, ctx_.buf_sectors);
      pieces[m] = {ByteOffset{g.image_offset(pos)}, dst.subspan(g.bytes(pos - first), g.bytes(n))};
      first_sector[m] = pos;
      pos += n;
    }
    ReadPiece* p = pieces.data();
    const std::uint64_t* fs = first_sector.data();
    const auto* dec = &decrypt;
    const Result<void> r = ctx_.store->read_batch_each(
        std::span<ReadPiece>(pieces.data(), m),
        [p, fs, dec](std::size_t q) -> Result<void> { return (*dec)(p[q].out, fs[q]); });
    if (!r) return false;
  }
  return true;
}

// Large reads (and every read without a cache) stream from the store in buffer-sized pieces
// without filling the cache. The pieces go to the store as one read batch, as many as the
// request has buffers for (the first waited for, up to kReadDepth - 1 more only tried, so a
// request never waits for a second buffer), and each is decrypted (across the crypto workers)
// and copied out as soon as its read completed, while the later ones are still in flight
// (BackingStore::read_batch_each): a request costs about the store time plus the crypto of one
// piece, not the store time plus the crypto of all. A piece is fetched whole only while nothing
// in the cache is dirty: then
// no block of the shared range can be dirty (writers are excluded) and no write-back can be writing
// it, so the store is current. Otherwise the piece takes the per-block path (cache hits, fetched
// misses). An overlay of dirty blocks after the fetch is NOT enough: a write-back pass (it
// holds the range shared too) can write a block and mark it clean in between, and the stale
// store copy would be returned (#5, fio verify). Caller holds the range.
// A store that splits large requests itself (BackingStore::splits_large_requests) gets the
// request's whole sectors as one read straight into `out`, decrypted there across the crypto
// workers (no pool buffer, no copy); only a partial head or tail sector takes a piece.
Result<std::size_t> ReadPath::stream_read(std::uint64_t off, std::span<std::byte> out, SectorSpan s,
                                          BufferPool::Buffer& buf) {
  const SectorGeometry& g = ctx_.geo;
  Result<void> result = ok();
  const SectorSpan whole = g.inner(off, out.size());
  if (ctx_.whole_reads && !whole.empty()) {
    if (s.first < whole.first) result = stream_pieces(off, out, {s.first, whole.first}, buf);
    if (result && store_is_current()) {
      result = ctx_.fetch(whole.first,
                          out.subspan(g.byte_of(whole.first) - off, g.bytes(whole.count())));
    } else if (result) {
      result = stream_pieces(off, out, whole, buf);  // per block: something is dirty
    }
    if (result && whole.end < s.end) result = stream_pieces(off, out, {whole.end, s.end}, buf);
  } else {
    result = stream_pieces(off, out, s, buf);
  }
  if (!result) {
    ctx_.log_error("read", result.error());
    return result.error();
  }
  return out.size();
}

// Sectors `s` of the request [off, off + out.size()) as buffer-sized pieces, up to kReadDepth
// in flight together (the pipeline above). Caller holds the range.
Result<void> ReadPath::stream_pieces(std::uint64_t off, std::span<std::byte> out, SectorSpan s,
                                     BufferPool::Buffer& buf) {
  const SectorGeometry& g = ctx_.geo;
  std::array<BufferPool::Buffer, kReadDepth - 1> spares;  // never waited for
  std::array<ReadPiece, kReadDepth> pieces;
  std::array<std::uint64_t, kReadDepth> first_sector{};
  // What each completed piece needs: decrypt it in its buffer, copy its part of the request.
  struct Piecework {
    EngineContext* ctx;
    const ReadPiece* pieces;
    const std::uint64_t* first_sector;
    std::uint64_t off;
    std::span<std::byte> out;
    Result<void> operator()(std::size_t q) const {
      const std::span<std::byte> b = pieces[q].out;
      CRYPTMAP_TRY_VOID(ctx->driver->convert(CryptoDir::kDecrypt, b, SectorIndex{first_sector[q]}));
      const SectorGeometry& geo = ctx->geo;
      const ByteSpan part = overlap(off, out.size(), geo.byte_of(first_sector[q]), b.size());
      std::memcpy(out.data() + (part.lo - off), b.data() + (part.lo - geo.byte_of(first_sector[q])),
                  part.size());
      return ok();
    }
  };
  const Piecework work{&ctx_, pieces.data(), first_sector.data(), off, out};
  Result<void> result = ok();
  for (std::uint64_t pos = s.first; pos < s.end && result;) {
    if (!store_is_current()) {
      const std::uint64_t n = std::min<std::uint64_t>(s.end - pos, ctx_.buf_sectors);
      if (!buf) buf = ctx_.buffers->acquire();
      result = read_blocks(off, out, SectorSpan{pos, pos + n}, /*fill_cache=*/false, buf);
      pos += n;
      continue;
    }
    if (!buf) buf = ctx_.buffers->acquire();
    std::size_t m = 0;
    std::uint64_t next = pos;
    while (next < s.end && m < kReadDepth) {
      BufferPool::Buffer& use = m == 0 ? buf : spares[m - 1];
      if (!use) use = ctx_.buffers->try_acquire();
      if (!use) break;
      const std::uint64_t n = std::min<std::uint64_t>(s.end - next, ctx_.buf_sectors);
      pieces[m] = {ByteOffset{g.image_offset(next)}, use.span().first(g.bytes(n))};
      first_sector[m] = next;
      ++m;
      next += n;
    }
    result = ctx_.store->read_batch_each(std::span<ReadPiece>(pieces.data(), m), work);
    pos = next;
  }
  return result;
}

}  // namespace cryptmap::volume
