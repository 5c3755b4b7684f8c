// NbdBackingStore (nbd_backing_store.h): libnbd handles, one poller thread each, callers parked
// on a per-call Batch until every request they issued has completed.
#include "volume/store/nbd_backing_store.h"

#include <cerrno>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "volume/store/rbd_backing_store.h"

#if CRYPTMAP_HAVE_LIBNBD
#include <libnbd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "base/io_thread.h"
#include "base/mutex.h"
#include "base/unique_fd.h"
#endif

namespace cryptmap::volume {

bool is_nbd_uri(std::string_view image) noexcept {
  // libnbd's schemes: nbd, nbds, nbd+unix, nbds+unix, nbd+vsock, nbds+vsock.
  const auto colon = image.find("://");
  if (colon == std::string_view::npos) return false;
  const std::string_view scheme = image.substr(0, colon);
  return scheme == "nbd" || scheme == "nbds" || scheme == "nbd+unix" || scheme == "nbds+unix" ||
         scheme == "nbd+vsock" || scheme == "nbds+vsock";
}

NbdStoreOptions nbd_options_from_env(bool read_only) {
  NbdStoreOptions o;
  o.read_only = read_only;
  if (const char* t = std::getenv("CRYPTMAP_NBD_TIMEOUT")) {
    char* end = nullptr;
    const double s = std::strtod(t, &end);
    if (end != t && *end == '\0' && s > 0 && s < 86400)
      o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
  }
  if (const char* c = std::getenv("CRYPTMAP_NBD_CONNECTIONS")) {
    char* end = nullptr;
    const long n = std::strtol(c, &end, 10);
    if (end != c && *end == '\0' && n >= 1 && n <= 16) o.connections = static_cast<unsigned>(n);
  }
  return o;
}

bool is_store_uri(std::string_view image) noexcept {
  return is_nbd_uri(image) || is_rbd_uri(image);
}

Result<std::unique_ptr<BackingStore>> open_image_store(const std::string& image,
                                                       const PosixStoreOptions& options) {
  if (is_nbd_uri(image)) return open_nbd_store(image, nbd_options_from_env(options.read_only));
  if (is_rbd_uri(image)) return open_rbd_store(image, rbd_options_from_env(options.read_only));
  return open_posix_store(image, options);
}

#if !CRYPTMAP_HAVE_LIBNBD

Result<std::unique_ptr<BackingStore>> open_nbd_store(const std::string& uri,
                                                     const NbdStoreOptions&) {
  return make_error_fmt(Errc::kUnsupported, "open NBD store", kNoObject,
                        "%s: this cryptmap was built without libnbd (install libnbd-dev)",
                        uri.c_str());
}

#else

namespace {

using Clock = std::chrono::steady_clock;

Error nbd_error(Errc code, const char* what, std::uint64_t object, const std::string& uri,
                int err) {
  Error e = make_error_fmt(code, what, object, "%s", uri.c_str());
  e.sys_errno = err;
  return e;
}

// Error for a failed libnbd call: libnbd's own message (thread-local) goes into the detail.
Error libnbd_error(Errc code, const char* what, const std::string& uri) {
  const char* msg = nbd_get_error();
  Error e = make_error_fmt(code, what, kNoObject, "%s: %s", uri.c_str(), msg ? msg : "?");
  e.sys_errno = nbd_get_errno();
  return e;
}

// The requests one range of a call issued (a read_at/write_at/sync/discard, or one piece of a
// batch); the caller waits on it.
struct Batch {
  Mutex mu;
  CondVar cv;
  int pending GUARDED_BY(mu) = 0;
  int first_errno GUARDED_BY(mu) = 0;
};

class Connection;
// A range in flight: its completion counter and the distinct connections carrying its requests,
// kept alive until every request has completed (a reconnect may replace them in the store's list
// meanwhile, and reuse the index of a dead one that still has a request pending, so they are
// not kept by index).
struct InFlight {
  Batch batch;
  std::array<std::shared_ptr<Connection>, 32> used{};
  std::size_t n_used = 0;
  int submit_errno = 0;
};

// libnbd completion callback (runs on a poller thread, libnbd's handle lock held: no nbd_* calls).
int on_complete(void* user_data, int* error) {
  auto* b = static_cast<Batch*>(user_data);
  MutexLock lock(b->mu);
  if (*error != 0 && b->first_errno == 0) b->first_errno = *error;
  if (--b->pending == 0) b->cv.notify_all();
  return 1;  // retire the command
}

// What the store and its connections' pollers share about durability: writes issued and those an
// acknowledged flush covers, and whether a connection was lost while some were not yet covered
// (their data may not have reached stable storage on the server: the next sync() says so).
struct Durability {
  std::atomic<std::uint64_t> write_gen{0};
  std::atomic<std::uint64_t> flushed_gen{0};
  std::atomic<bool> lost_unflushed{false};
};

// One NBD connection and the thread that drives its state machine.
class Connection {
 public:
  Connection(nbd_handle* h, int fd, UniqueFd wake, std::string uri, unsigned index,
             std::shared_ptr<Durability> durability)
      : h_(h),
        fd_(fd),
        wake_(std::move(wake)),
        uri_(std::move(uri)),
        index_(index),
        durability_(std::move(durability)) {
    poller_ = std::thread([this] { poll_loop(); });
  }
  ~Connection() {
    stop_.store(true);  // first: the poller must not report the closing connection as lost
    if (!dead_.load()) nbd_aio_disconnect(h_, 0);
    kick();
    poller_.join();
    nbd_close(h_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  nbd_handle* handle() const noexcept { return h_; }
  bool dead() const noexcept { return dead_.load(); }
  // Not dead, and libnbd has not seen it die either (the poller may not have noticed yet).
  bool usable() const noexcept {
    return !dead_.load() && nbd_aio_is_dead(h_) == 0 && nbd_aio_is_closed(h_) == 0;
  }
  unsigned index() const noexcept { return index_; }
  // Wakes the poller so it re-reads libnbd's direction (after a command was queued).
  void kick() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
  }
  // Drops the connection: the poller sees the socket closed, libnbd fails every request in
  // flight on it (ENOTCONN) and the handle is dead from then on.
  void kill() noexcept {
    ::shutdown(fd_, SHUT_RDWR);
    kick();
  }
  // When the server last sent anything on this connection (a reply or part of one), or when the
  // connection was made. A connection with requests in flight is stalled only when nothing came
  // for the timeout: on a slow server (busy, rate-limited) requests queued behind others wait
  // longer than the timeout while replies keep arriving.
  Clock::time_point last_heard() const noexcept {
    return Clock::time_point(Clock::duration(last_heard_.load(std::memory_order_relaxed)));
  }

 private:
  void poll_loop() {
    mark_io_thread();
    Clock::time_point stop_deadline{};
    while (true) {
      if (nbd_aio_is_dead(h_) || nbd_aio_is_closed(h_)) break;
      if (stop_.load()) {
        if (stop_deadline == Clock::time_point{})
          stop_deadline = Clock::now() + std::chrono::seconds(2);
        else if (Clock::now() >= stop_deadline)
          break;
      }
      const unsigned dir = nbd_aio_get_direction(h_);
      std::array<pollfd, 2> fds{};
      fds[0].fd = fd_;
      fds[0].events = static_cast<short>(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                         ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
      fds[1].fd = wake_.get();
      fds[1].events = POLLIN;
      const int r = ::poll(fds.data(), fds.size(), stop_.load() ? 100 : 1000);
      if (r < 0 && errno != EINTR) break;
      if (r <= 0) continue;
      if (fds[1].revents & POLLIN) {
        std::uint64_t v = 0;
        [[maybe_unused]] auto n = ::read(wake_.get(), &v, sizeof v);
      }
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        nbd_aio_notify_read(h_);
        last_heard_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
      } else if (fds[0].revents & POLLOUT) {
        nbd_aio_notify_write(h_);
      }
    }
    if (!stop_.load() && !dead_.load()) {
      if (durability_->write_gen.load() != durability_->flushed_gen.load())
        durability_->lost_unflushed.store(true);
      spdlog::error(
          "NBD {}: connection {} lost; its requests failed with EIO. The next request reconnects "
          "(at most one attempt a second while the server is unreachable)",
          uri_, index_);
    }
    dead_.store(true);
  }

  nbd_handle* const h_;
  const int fd_;  // the handle's socket (owned by libnbd)
  UniqueFd wake_;
  const std::string uri_;
  const unsigned index_;
  const std::shared_ptr<Durability> durability_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> dead_{false};
  std::atomic<Clock::rep> last_heard_{Clock::now().time_since_epoch().count()};
  std::thread poller_;
};

struct ExportFacts {
  std::uint64_t size = 0;
  bool read_only = false, can_flush = false, can_trim = false, multi_conn = false;
  bool can_fua = false;  // NBD_FLAG_SEND_FUA: a write may carry NBD_CMD_FLAG_FUA
  std::uint64_t min_block = 1, max_request = 4u << 20;
  std::uint64_t preferred_block = 0;  // 0: the server did not say
};

// Connects one handle, bounded by `timeout`.
Result<std::shared_ptr<Connection>> connect(const std::string& uri,
                                            std::chrono::milliseconds timeout, unsigned index,
                                            ExportFacts* facts,
                                            const std::shared_ptr<Durability>& durability) {
  nbd_handle* h = nbd_create();
  if (h == nullptr) return libnbd_error(Errc::kIo, "create NBD handle", uri);
  auto close_on_error = [&](Error e) {
    nbd_close(h);
    return e;
  };
  nbd_set_request_block_size(h, true);
  // libnbd zeroes every read buffer before the read by default (nbd_set_pread_initialize(3): a
  // guard for callers that use the buffer of a failed read, CVE-2022-0485); the store never
  // does (a failed piece returns its error, its buffer is not decrypted or copied out), and the
  // memset cost 6.7 % of the daemon's CPU under sequential reads (bench/README.md, nbd).
  nbd_set_pread_initialize(h, false);
  if (nbd_aio_connect_uri(h, uri.c_str()) < 0)
    return close_on_error(libnbd_error(Errc::kIo, "connect to NBD server", uri));
  const auto deadline = Clock::now() + timeout;
  while (!nbd_aio_is_ready(h)) {
    if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h))
      return close_on_error(libnbd_error(Errc::kIo, "connect to NBD server", uri));
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return close_on_error(make_error_fmt(Errc::kIo, "connect to NBD server", kNoObject,
                                           "%s: no answer within %lld s", uri.c_str(),
                                           static_cast<long long>(timeout.count() / 1000)));
    }
    const int fd = nbd_aio_get_fd(h);
    if (fd < 0) return close_on_error(libnbd_error(Errc::kIo, "connect to NBD server", uri));
    const unsigned dir = nbd_aio_get_direction(h);
    pollfd p{fd,
             static_cast<short>(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0)),
             0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR)
      return close_on_error(
          nbd_error(Errc::kIo, "connect to NBD server (poll)", kNoObject, uri, errno));
    if (r <= 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
      nbd_aio_notify_read(h);
    else if (p.revents & POLLOUT)
      nbd_aio_notify_write(h);
  }
  if (facts != nullptr) {
    const int64_t size = nbd_get_size(h);
    if (size < 0) return close_on_error(libnbd_error(Errc::kIo, "NBD export size", uri));
    facts->size = static_cast<std::uint64_t>(size);
    facts->read_only = nbd_is_read_only(h) == 1;
    facts->can_flush = nbd_can_flush(h) == 1;
    facts->can_trim = nbd_can_trim(h) == 1;
    facts->can_fua = nbd_can_fua(h) == 1;
    facts->multi_conn = nbd_can_multi_conn(h) == 1;
    const int64_t minb = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    const int64_t maxb = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    const int64_t prefb = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
    if (minb > 0) facts->min_block = static_cast<std::uint64_t>(minb);
    if (prefb > 0) facts->preferred_block = static_cast<std::uint64_t>(prefb);
    if (maxb > 0) facts->max_request = std::min<std::uint64_t>(facts->max_request, maxb);
    // Whole minimum blocks per request.
    facts->max_request =
        std::max(facts->min_block, facts->max_request / facts->min_block * facts->min_block);
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid())
    return close_on_error(nbd_error(Errc::kIo, "NBD store: eventfd", kNoObject, uri, errno));
  const int fd = nbd_aio_get_fd(h);
  return std::make_shared<Connection>(h, fd, std::move(wake), uri, index, durability);
}

class NbdBackingStore final : public BackingStore {
 public:
  NbdBackingStore(std::string uri, ExportFacts facts, bool read_only,
                  std::chrono::milliseconds timeout, std::vector<std::shared_ptr<Connection>> conns,
                  std::shared_ptr<Durability> durability)
      : uri_(std::move(uri)),
        facts_(facts),
        read_only_(read_only),
        timeout_(timeout),
        durability_(std::move(durability)),
        conns_size_(static_cast<unsigned>(conns.size())),
        conns_(std::move(conns)) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    if (out.empty()) return ok();
    if (off.value > facts_.size || out.size() > facts_.size - off.value)
      return nbd_error(Errc::kIo, "read NBD export past its end", off.value, uri_, 0);
    if (aligned(off.value, out.size())) return issue(Op::kRead, off.value, out.data(), out.size());
    // Widen to whole minimum blocks (rare: headers; the engine issues whole sectors).
    const std::uint64_t a = down(off.value), e = up(off.value + out.size());
    std::vector<std::byte> bounce(e - a);
    CRYPTMAP_TRY_VOID(issue(Op::kRead, a, bounce.data(), bounce.size()));
    std::memcpy(out.data(), bounce.data() + (off.value - a), out.size());
    return ok();
  }

  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return write_as(Op::kWrite, off, in);
  }

  // NBD_CMD_WRITE with NBD_CMD_FLAG_FUA when the server advertises it (the server answers once
  // the data is stable, NBD protocol); else a write and then a flush (the default).
  Result<void> write_fua(ByteOffset off, std::span<const std::byte> in) override {
    if (!facts_.can_fua || read_only_) return BackingStore::write_fua(off, in);
    return write_as(Op::kWriteFua, off, in);
  }

  Result<void> sync() override {
    if (read_only_) return ok();
    // A connection lost while writes were not yet flushed: the server may have dropped them
    // (a restarted server loses what it had not made stable). Reported once, as a failed
    // fsync(2) reports a writeback error once; the flush below still runs.
    const bool lost = durability_->lost_unflushed.exchange(false);
    const std::uint64_t gen = durability_->write_gen.load();
    if (facts_.can_flush && gen != durability_->flushed_gen.load()) {
      CRYPTMAP_TRY_VOID(issue(Op::kFlush, 0, nullptr, 0));
      std::uint64_t seen = durability_->flushed_gen.load();
      while (seen < gen && !durability_->flushed_gen.compare_exchange_weak(seen, gen)) {
      }
    }
    if (lost)
      return nbd_error(Errc::kIo,
                       "flush NBD export: the connection was lost after writes that had not been "
                       "flushed; they may not have reached the server's stable storage (check the "
                       "data written since the last successful sync)",
                       kNoObject, uri_, EIO);
    return ok();
  }

  Result<void> discard(ByteOffset off, std::uint64_t len) override {
    if (read_only_)
      return nbd_error(Errc::kReadOnly, "discard on NBD export", off.value, uri_, EROFS);
    if (len == 0) return ok();
    if (!facts_.can_trim)
      return nbd_error(Errc::kUnsupported, "discard on NBD export (server cannot trim)", off.value,
                       uri_, EOPNOTSUPP);
    if (off.value > facts_.size || len > facts_.size - off.value)
      return nbd_error(Errc::kInvalid, "discard past the end of NBD export", off.value, uri_,
                       EINVAL);
    // Only whole minimum blocks are trimmed (a discard is advisory).
    const std::uint64_t a = up(off.value), e = down(off.value + len);
    if (e <= a) return ok();
    durability_->write_gen.fetch_add(1);
    return issue(Op::kTrim, a, nullptr, e - a);
  }

  // Every piece's requests are queued before any is waited for, so the pieces travel over the
  // connections together (the engine's streaming reads and write-back passes). A piece that is
  // not aligned to the minimum block, or outside the export, takes read_at/write_at afterwards.
  Result<void> read_batch(std::span<ReadPiece> pieces) const override {
    if (pieces.size() < 2) return BackingStore::read_batch(pieces);
    std::unique_ptr<InFlight[]> io(new InFlight[pieces.size()]);
    std::vector<bool> direct(pieces.size());
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const ReadPiece& p = pieces[i];
      direct[i] = !p.out.empty() && p.off.value <= facts_.size &&
                  p.out.size() <= facts_.size - p.off.value && aligned(p.off.value, p.out.size());
      if (direct[i]) submit(Op::kRead, p.off.value, p.out.data(), p.out.size(), io[i]);
    }
    Result<void> first = ok();
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      ReadPiece& p = pieces[i];
      p.result = direct[i] ? wait(Op::kRead, p.off.value, io[i]) : read_at(p.off, p.out);
      if (!p.result && first) first = p.result;
    }
    return first;
  }

  Result<void> write_batch(std::span<WritePiece> pieces) override {
    if (pieces.size() < 2 || read_only_) return BackingStore::write_batch(pieces);
    std::unique_ptr<InFlight[]> io(new InFlight[pieces.size()]);
    std::vector<bool> direct(pieces.size());
    {
      ReaderLock lock(rmw_);  // aligned writes only: a read-modify-write waits for all of them
      for (std::size_t i = 0; i < pieces.size(); ++i) {
        const WritePiece& p = pieces[i];
        direct[i] = !p.in.empty() && p.off.value <= facts_.size &&
                    p.in.size() <= facts_.size - p.off.value && aligned(p.off.value, p.in.size());
        if (!direct[i]) continue;
        durability_->write_gen.fetch_add(1);
        submit(Op::kWrite, p.off.value, const_cast<std::byte*>(p.in.data()), p.in.size(), io[i]);
      }
      for (std::size_t i = 0; i < pieces.size(); ++i)
        if (direct[i]) pieces[i].result = wait(Op::kWrite, pieces[i].off.value, io[i]);
    }
    Result<void> first = ok();
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      WritePiece& p = pieces[i];
      if (!direct[i]) p.result = write_at(p.off, p.in);
      if (!p.result && first) first = p.result;
    }
    return first;
  }

  std::uint64_t size_bytes() const noexcept override { return facts_.size; }
  std::uint64_t optimal_io_bytes() const noexcept override { return facts_.preferred_block; }
  // One request per read up to the server's maximum (cut there, spread over the connections):
  // a 1 MiB read-ahead window as one request instead of four pieces cost the daemon about an
  // eighth less CPU per byte (one poller wake-up and one completion per window; bench/README.md,
  // nbd; docs/network-stores.md §2).
  bool splits_large_requests() const noexcept override { return true; }
  // From the server's flags: without flush support the server is taken to acknowledge only
  // stable writes (§2); FUA as the server advertises it.
  StoreDurability durability() const noexcept override {
    return {.volatile_writes = facts_.can_flush, .flush = facts_.can_flush, .fua = facts_.can_fua};
  }
  bool read_only() const noexcept override { return read_only_; }
  const std::string& name() const noexcept override { return uri_; }

 private:
  enum class Op : std::uint8_t { kRead, kWrite, kWriteFua, kFlush, kTrim };
  static constexpr std::uint64_t kMaxTrim = 1u << 30;
  // Longest wait for one call, in timeouts, while its connections keep answering other requests
  // (a server that never answers one request but serves the rest).
  static constexpr int kMaxWaitTimeouts = 10;

  // A write (kWrite or kWriteFua) of `in`; unaligned edges are read-modify-written.
  Result<void> write_as(Op op, ByteOffset off, std::span<const std::byte> in) {
    if (read_only_) return nbd_error(Errc::kReadOnly, "write NBD export", off.value, uri_, EROFS);
    if (in.empty()) return ok();
    if (off.value > facts_.size || in.size() > facts_.size - off.value)
      return nbd_error(Errc::kNoSpace, "write NBD export past its end", off.value, uri_, ENOSPC);
    durability_->write_gen.fetch_add(1);
    auto* data = const_cast<std::byte*>(in.data());  // libnbd's pwrite only reads it
    if (aligned(off.value, in.size())) {
      ReaderLock lock(rmw_);
      return issue(op, off.value, data, in.size());
    }
    // Read-modify-write of the partial minimum blocks, exclusive against every other write so
    // no concurrent write to the same block is lost.
    WriterLock lock(rmw_);
    const std::uint64_t a = down(off.value), e = up(off.value + in.size());
    std::vector<std::byte> bounce(e - a);
    CRYPTMAP_TRY_VOID(issue(Op::kRead, a, bounce.data(), bounce.size()));
    std::memcpy(bounce.data() + (off.value - a), in.data(), in.size());
    return issue(op, a, bounce.data(), bounce.size());
  }

  bool aligned(std::uint64_t off, std::uint64_t len) const noexcept {
    return off % facts_.min_block == 0 && len % facts_.min_block == 0;
  }
  std::uint64_t down(std::uint64_t x) const noexcept {
    return x / facts_.min_block * facts_.min_block;
  }
  std::uint64_t up(std::uint64_t x) const noexcept { return down(x + facts_.min_block - 1); }

  std::shared_ptr<Connection> pick_live() const {
    MutexLock lock(conns_mu_);
    const std::size_t n = conns_.size();
    const std::size_t start = next_.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& c = conns_[(start + i) % n];
      if (c->usable()) return c;
    }
    return nullptr;
  }

  // A live connection, reconnecting when every one is dead (a restarted or briefly unreachable
  // server): one attempt at a time, at most one a second, each bounded by the timeout (10 s at
  // most), so requests fail fast while the server stays away. A server whose export changed
  // size is not used.
  std::shared_ptr<Connection> pick() const {
    if (auto c = pick_live()) return c;
    MutexLock lock(reconnect_mu_);
    if (auto c = pick_live()) return c;  // another thread reconnected meanwhile
    const auto now = Clock::now();
    if (now - last_reconnect_ < std::chrono::seconds(1)) return nullptr;
    last_reconnect_ = now;
    const auto limit = std::min<std::chrono::milliseconds>(timeout_, std::chrono::seconds(10));
    ExportFacts facts;
    auto first = connect(uri_, limit, 0, &facts, durability_);
    if (!first) {
      spdlog::warn("NBD {}: reconnecting failed: {}", uri_, first.error().message());
      return nullptr;
    }
    if (facts.size != facts_.size || facts.min_block != facts_.min_block ||
        (facts.read_only && !read_only_) || (facts_.can_fua && !facts.can_fua)) {
      spdlog::error(
          "NBD {}: the server is back but its export changed (size {} bytes, was {}; or it is "
          "read-only now, or lost FUA); not using it. Close the volume and check the export",
          uri_, facts.size, facts_.size);
      return nullptr;
    }
    std::vector<std::shared_ptr<Connection>> fresh{std::move(*first)};
    for (unsigned i = 1; i < conns_size_; ++i) {
      auto c = connect(uri_, limit, i, nullptr, durability_);
      if (!c) break;  // fewer connections until the next reconnect; the first one serves
      fresh.push_back(std::move(*c));
    }
    spdlog::warn("NBD {}: reconnected ({} connection(s))", uri_, fresh.size());
    std::vector<std::shared_ptr<Connection>> old;
    {
      MutexLock c(conns_mu_);
      old.swap(conns_);
      conns_ = fresh;
    }
    return fresh.front();  // `old` is destroyed here, outside conns_mu_ (joins its pollers)
  }

  static const char* op_name(Op op) noexcept {
    switch (op) {
      case Op::kRead:
        return "read from NBD export";
      case Op::kWrite:
        return "write to NBD export";
      case Op::kWriteFua:
        return "write to NBD export (FUA)";
      case Op::kFlush:
        return "flush NBD export";
      case Op::kTrim:
        return "trim NBD export";
    }
    return "?";
  }

  // Issues `op` over [off, off + len) in pieces spread over the connections and waits for all.
  Result<void> issue(Op op, std::uint64_t off, std::byte* buf, std::uint64_t len) const {
    InFlight io;
    submit(op, off, buf, len, io);
    return wait(op, off, io);
  }

  // Queues `op` over [off, off + len) in requests of at most the server's maximum, spread over
  // the connections; a request that cannot be queued ends the submission (io.submit_errno).
  void submit(Op op, std::uint64_t off, std::byte* buf, std::uint64_t len, InFlight& io) const {
    Batch& batch = io.batch;
    int resubmits = 0;
    std::uint64_t done = 0;
    while (true) {  // one piece per turn; a flush is one piece of length 0
      const std::uint64_t piece =
          op == Op::kFlush ? 0
                           : std::min(len - done, op == Op::kTrim ? kMaxTrim : facts_.max_request);
      std::shared_ptr<Connection> c = pick();
      if (c == nullptr) {
        io.submit_errno = ENOTCONN;
        break;
      }
      const auto used_end = io.used.begin() + static_cast<std::ptrdiff_t>(io.n_used);
      const bool seen = std::find(io.used.begin(), used_end, c) != used_end;
      if (!seen && io.n_used == io.used.size()) {  // 32 connections in one call: a reconnect storm
        io.submit_errno = ENOTCONN;
        break;
      }
      {
        MutexLock lock(batch.mu);
        ++batch.pending;
      }
      const nbd_completion_callback cb{
          .callback = on_complete, .user_data = &batch, .free = nullptr};
      int64_t cookie = -1;
      switch (op) {
        case Op::kRead:
          cookie = nbd_aio_pread(c->handle(), buf + done, piece, off + done, cb, 0);
          break;
        case Op::kWrite:
          cookie = nbd_aio_pwrite(c->handle(), buf + done, piece, off + done, cb, 0);
          break;
        case Op::kWriteFua:
          cookie =
              nbd_aio_pwrite(c->handle(), buf + done, piece, off + done, cb, LIBNBD_CMD_FLAG_FUA);
          break;
        case Op::kFlush:
          cookie = nbd_aio_flush(c->handle(), cb, 0);
          break;
        case Op::kTrim:
          cookie = nbd_aio_trim(c->handle(), piece, off + done, cb, 0);
          break;
      }
      if (cookie < 0) {
        io.submit_errno = nbd_get_errno() != 0 ? nbd_get_errno() : EIO;
        {
          MutexLock lock(batch.mu);
          --batch.pending;
        }
        // The connection died between pick() and the submission: nothing reached the server,
        // so the piece goes to another (or a reconnected) connection, a few times at most.
        if (!c->usable() && ++resubmits <= 3) {
          io.submit_errno = 0;
          continue;
        }
        break;
      }
      c->kick();
      if (!seen) io.used[io.n_used++] = std::move(c);
      done += piece;
      if (done >= len) break;
    }
  }

  // Waits for every request submit() queued. When the connections carrying them have sent
  // nothing for the timeout (measured from the later of the wait's start and their last reply),
  // or the wait has lasted kMaxWaitTimeouts timeouts in all, they are dropped (their requests
  // then fail) and the wait goes on until libnbd has failed them.
  Result<void> wait(Op op, std::uint64_t off, InFlight& io) const {
    Batch& batch = io.batch;
    MutexLock lock(batch.mu);
    const Clock::time_point start = Clock::now();
    const Clock::time_point cap = start + kMaxWaitTimeouts * timeout_;
    auto deadline = start + timeout_;
    bool dropped = false;
    while (batch.pending > 0) {
      if (batch.cv.wait_until(lock, deadline) || Clock::now() < deadline) continue;
      if (dropped) {  // the connection was dropped and libnbd still holds requests: keep waiting
        deadline = Clock::now() + timeout_;
        continue;
      }
      // A slow server that still answers is not stalled: wait on from its last reply.
      Clock::time_point heard = start;
      for (std::size_t i = 0; i < io.n_used; ++i) heard = std::max(heard, io.used[i]->last_heard());
      const Clock::time_point now = Clock::now();
      if (heard + timeout_ > now && now < cap) {
        deadline = std::min(heard + timeout_, cap);
        continue;
      }
      if (now >= cap)
        spdlog::error(
            "NBD {}: {} at offset {} not answered within {} ms although the server answers other "
            "requests; dropping the connection, its requests fail with EIO (the next request "
            "reconnects). Check the server",
            uri_, op_name(op), off, kMaxWaitTimeouts * timeout_.count());
      else
        spdlog::error(
            "NBD {}: no reply to {} at offset {} within {} ms; dropping the connection, its "
            "requests fail with EIO (the next request reconnects). Check the server",
            uri_, op_name(op), off, timeout_.count());
      lock.unlock();
      for (const auto& c : io.used)
        if (c) c->kill();
      lock.lock();
      dropped = true;
      deadline = Clock::now() + timeout_;
    }
    const int err = batch.first_errno != 0 ? batch.first_errno : io.submit_errno;
    if (err == 0) return ok();
    return nbd_error(Errc::kIo, op_name(op), op == Op::kFlush ? kNoObject : off, uri_,
                     dropped ? ETIMEDOUT : err);
  }

  const std::string uri_;
  const ExportFacts facts_;
  const bool read_only_;
  const std::chrono::milliseconds timeout_;
  // Writes and trims issued / covered by the last acknowledged flush (sync skips a no-op flush),
  // and connection losses with unflushed writes; shared with the connections' pollers.
  const std::shared_ptr<Durability> durability_;
  const unsigned conns_size_;  // connections opened at start (a reconnect opens as many)
  mutable Mutex conns_mu_;
  mutable std::vector<std::shared_ptr<Connection>> conns_ GUARDED_BY(conns_mu_);
  mutable std::atomic<std::size_t> next_{0};
  mutable Mutex reconnect_mu_;  // one reconnect at a time
  mutable Clock::time_point last_reconnect_ GUARDED_BY(reconnect_mu_){};
  SharedMutex rmw_;  // shared: aligned writes; exclusive: a read-modify-write
};

}  // namespace

Result<std::unique_ptr<BackingStore>> open_nbd_store(const std::string& uri,
                                                     const NbdStoreOptions& options) {
  // spdlog's registry is built on first use; build it here, before the pollers start, so their
  // log lines never race its construction (libspdlog's static initialisation is invisible to TSan).
  (void)spdlog::default_logger_raw();
  ExportFacts facts;
  auto durability = std::make_shared<Durability>();
  std::vector<std::shared_ptr<Connection>> conns;
  CRYPTMAP_TRY(first, connect(uri, options.timeout, 0, &facts, durability));
  conns.push_back(std::move(first));
  if (facts.read_only && !options.read_only) {
    return nbd_error(Errc::kReadOnly,
                     "open NBD export read-write (the server exports it read-only: use --readonly)",
                     kNoObject, uri, EROFS);
  }
  // Several connections only when the server says flushes are visible across them.
  const unsigned want = facts.multi_conn ? std::clamp(options.connections, 1u, 16u) : 1u;
  for (unsigned i = 1; i < want; ++i) {
    CRYPTMAP_TRY(c, connect(uri, options.timeout, i, nullptr, durability));
    conns.push_back(std::move(c));
  }
  if (!facts.can_flush && !options.read_only) {
    spdlog::info("NBD {}: the server has no flush command; its writes are stable when answered",
                 uri);
  }
  return std::unique_ptr<BackingStore>(
      std::make_unique<NbdBackingStore>(uri, facts, options.read_only || facts.read_only,
                                        options.timeout, std::move(conns), std::move(durability)));
}

#endif  // CRYPTMAP_HAVE_LIBNBD

}  // namespace cryptmap::volume
