// RbdBackingStore (rbd_backing_store.h): one rados cluster handle, one io context, one image.
#include "volume/store/rbd_backing_store.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/error.h"

#if CRYPTMAP_HAVE_LIBRBD
#include <dlfcn.h>
#include <rados/librados.h>
#include <rbd/features.h>
#include <rbd/librbd.h>

#include <spdlog/spdlog.h>

#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "base/mutex.h"
#endif

namespace cryptmap::volume {

bool is_rbd_uri(std::string_view image) noexcept { return image.substr(0, 4) == "rbd:"; }

// rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=NAME]
Result<RbdSpec> parse_rbd_spec(const std::string& spec) {
  if (!is_rbd_uri(spec))
    return make_error_fmt(Errc::kInvalid, "RBD image argument", kNoObject,
                          "%s: expected rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=NAME]", spec.c_str());
  RbdSpec s;
  std::string_view rest = std::string_view(spec).substr(4);
  std::string_view main = rest.substr(0, rest.find(':'));
  std::string_view opts = main.size() < rest.size() ? rest.substr(main.size() + 1) : "";
  const auto slash = main.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == main.size())
    return make_error_fmt(Errc::kInvalid, "RBD image argument", kNoObject,
                          "%s: expected rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=NAME]", spec.c_str());
  s.pool = std::string(main.substr(0, slash));
  std::string_view image = main.substr(slash + 1);
  if (const auto at = image.find('@'); at != std::string_view::npos) {
    s.snap = std::string(image.substr(at + 1));
    image = image.substr(0, at);
  }
  s.image = std::string(image);
  while (!opts.empty()) {
    const std::string_view kv = opts.substr(0, opts.find(':'));
    opts = kv.size() < opts.size() ? opts.substr(kv.size() + 1) : "";
    if (kv.substr(0, 5) == "conf=")
      s.conf = std::string(kv.substr(5));
    else if (kv.substr(0, 3) == "id=")
      s.id = std::string(kv.substr(3));
    else
      return make_error_fmt(Errc::kInvalid, "RBD image argument", kNoObject,
                            "%s: unknown option (conf= and id= are known)", spec.c_str());
  }
  if (s.image.empty())
    return make_error_fmt(Errc::kInvalid, "RBD image argument", kNoObject, "%s: no image name",
                          spec.c_str());
  return s;
}

std::string pin_rbd_client(const std::string& image) {
  auto s = parse_rbd_spec(image);
  if (!s) return image;  // not an rbd: argument, or one its open will refuse with the reason
  std::string pinned = image;
  const char* conf = std::getenv("CEPH_CONF");
  if (s->conf.empty() && conf != nullptr && *conf != '\0') {
    std::error_code ec;
    const auto abs = std::filesystem::absolute(conf, ec);
    const std::string path = ec ? std::string(conf) : abs.string();
    // A path with ':' cannot be spelled in the argument (QEMU's syntax has no escape).
    if (path.find(':') == std::string::npos) pinned += ":conf=" + path;
  }
  const char* id = std::getenv("CRYPTMAP_CEPH_ID");
  if (s->id.empty() && id != nullptr && *id != '\0') pinned += ":id=" + std::string(id);
  return pinned;
}

RbdStoreOptions rbd_options_from_env(bool read_only) {
  RbdStoreOptions o;
  o.read_only = read_only;
  if (const char* t = std::getenv("CRYPTMAP_RBD_TIMEOUT")) {
    char* end = nullptr;
    const long s = std::strtol(t, &end, 10);
    if (end != t && *end == '\0' && s > 0 && s < 86400) o.timeout = std::chrono::seconds(s);
  }
  if (const char* t = std::getenv("CRYPTMAP_RBD_LOCK_WAIT")) {
    char* end = nullptr;
    const long s = std::strtol(t, &end, 10);
    if (end != t && *end == '\0' && s >= 0 && s < 86400) o.lock_wait = std::chrono::seconds(s);
  }
  return o;
}

#if !CRYPTMAP_HAVE_LIBRBD

Result<std::unique_ptr<BackingStore>> open_rbd_store(const std::string& spec,
                                                     const RbdStoreOptions&) {
  return make_error_fmt(Errc::kUnsupported, "open RBD store", kNoObject,
                        "%s: this cryptmap was built without librbd (install librbd-dev)",
                        spec.c_str());
}

#else

namespace {

// librbd and librados (and libceph-common under them, ~11 MiB resident together) are loaded
// when the first RBD image is opened, not at the start of every cryptmap process: the daemon
// serving image files does not map them (issue #13's RSS goal). The functions the store calls
// are looked up once; their types come from the Ceph headers, so a mismatch fails to compile.
#define CRYPTMAP_RBD_FUNCTIONS(X)  \
  X(rados_create)                  \
  X(rados_conf_read_file)          \
  X(rados_conf_parse_env)          \
  X(rados_conf_set)                \
  X(rados_connect)                 \
  X(rados_ioctx_create)            \
  X(rados_ioctx_destroy)           \
  X(rados_shutdown)                \
  X(rbd_aio_create_completion)     \
  X(rbd_aio_discard)               \
  X(rbd_aio_flush)                 \
  X(rbd_aio_get_return_value)      \
  X(rbd_aio_read)                  \
  X(rbd_aio_release)               \
  X(rbd_aio_write)                 \
  X(rbd_aio_write2)                \
  X(rbd_aio_writev)                \
  X(rbd_close)                     \
  X(rbd_config_image_list)         \
  X(rbd_config_image_list_cleanup) \
  X(rbd_get_features)              \
  X(rbd_get_size)                  \
  X(rbd_list_lockers)              \
  X(rbd_lock_acquire)              \
  X(rbd_open)                      \
  X(rbd_open_read_only)            \
  X(rbd_stat)

struct RbdApi {
#define CRYPTMAP_RBD_POINTER(f) decltype(&::f) f = nullptr;
  CRYPTMAP_RBD_FUNCTIONS(CRYPTMAP_RBD_POINTER)
#undef CRYPTMAP_RBD_POINTER
};

// The sonames of Debian 12's librados2 and librbd1 (what the build linked against).
constexpr const char* kLibrados = "librados.so.2";
constexpr const char* kLibrbd = "librbd.so.1";

struct RbdLibraries {
  RbdApi api;
  std::string missing;  // empty when every function was found
};

// Loads both libraries once per process (never unloaded: librbd keeps threads).
const RbdLibraries& rbd_libraries() {
  static const RbdLibraries libs = [] {
    RbdLibraries l;
    void* handles[2] = {dlopen(kLibrados, RTLD_NOW | RTLD_LOCAL),
                        dlopen(kLibrbd, RTLD_NOW | RTLD_LOCAL)};
    for (int i = 0; i < 2; ++i) {
      if (handles[i] == nullptr) {
        const char* why = dlerror();
        l.missing = std::string(i == 0 ? kLibrados : kLibrbd) + ": " + (why ? why : "not found");
        return l;
      }
    }
    auto find = [&](const char* name) -> void* {
      for (void* h : handles)
        if (void* f = dlsym(h, name)) return f;
      if (l.missing.empty()) l.missing = std::string(name) + " not found in librbd/librados";
      return nullptr;
    };
#define CRYPTMAP_RBD_LOOKUP(f) l.api.f = reinterpret_cast<decltype(&::f)>(find(#f));
    CRYPTMAP_RBD_FUNCTIONS(CRYPTMAP_RBD_LOOKUP)
#undef CRYPTMAP_RBD_LOOKUP
    return l;
  }();
  return libs;
}

// Only called after open_rbd_store found every function.
const RbdApi& rbd_api() { return rbd_libraries().api; }

Error rbd_error(int r, const char* what, std::uint64_t object, const std::string& spec) {
  const int err = r < 0 ? -r : r;
  Error e =
      make_error_fmt(err == ENOENT ? Errc::kNotFound : Errc::kIo, what, object, "%s", spec.c_str());
  e.sys_errno = err;
  return e;
}

// The requests one call issued; librbd's completion threads wake the caller.
struct Batch {
  Mutex mu;
  CondVar cv;
  bool done GUARDED_BY(mu) = false;
  ssize_t ret GUARDED_BY(mu) = 0;
};

void on_complete(rbd_completion_t c, void* arg) {
  auto* b = static_cast<Batch*>(arg);
  const ssize_t r = rbd_api().rbd_aio_get_return_value(c);
  rbd_api().rbd_aio_release(c);
  MutexLock lock(b->mu);
  b->ret = r;
  b->done = true;
  b->cv.notify_all();
}

// Who holds the image's exclusive lock: "client.4123 at 127.0.0.1:0/3088" (rbd_list_lockers), or
// "another client" when the cluster does not say.
std::string lock_holder(rbd_image_t image) {
  int exclusive = 0;
  std::array<char, 128> tag{}, clients{}, cookies{}, addrs{};
  std::size_t tag_len = tag.size(), clients_len = clients.size(), cookies_len = cookies.size(),
              addrs_len = addrs.size();
  const ssize_t n = rbd_api().rbd_list_lockers(image, &exclusive, tag.data(), &tag_len,
                                               clients.data(), &clients_len, cookies.data(),
                                               &cookies_len, addrs.data(), &addrs_len);
  if (n <= 0 || clients[0] == '\0') return "another client";
  return std::string(clients.data()) + " at " + std::string(addrs.data());
}

// A read-write open takes the image's exclusive lock and keeps it until close: rbd_lock_acquire
// switches librbd to its standard lock policy, under which this client refuses to hand the lock
// over, so no other librbd client (another cryptmap, a VM, `rbd` writing) can write the image
// underneath the volume. A lock held by another client fails the open, naming the holder. A
// holder that died (kill -9, a lost host) keeps the lock until the cluster expires its watch
// (osd_client_watch_timeout, 30 s by default): with `wait` the open keeps trying that long first
// (a restart after a crash). An image without the exclusive-lock feature has no lock to take:
// logged, opened.
Result<void> take_exclusive_lock(rbd_image_t image, const std::string& spec,
                                 std::chrono::milliseconds wait) {
  std::uint64_t features = 0;
  if (rbd_api().rbd_get_features(image, &features) == 0 &&
      (features & RBD_FEATURE_EXCLUSIVE_LOCK) == 0) {
    spdlog::warn(
        "RBD {}: the image has no exclusive-lock feature, so nothing keeps other clients from "
        "writing it while cryptmap does (rbd feature enable POOL/IMAGE exclusive-lock)",
        spec);
    return ok();
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool logged = false;
  while (true) {
    const int r = rbd_api().rbd_lock_acquire(image, RBD_LOCK_MODE_EXCLUSIVE);
    if (r == 0) return ok();
    if (r != -EROFS && r != -EBUSY && r != -EAGAIN)
      return rbd_error(r, "take the RBD image's exclusive lock", kNoObject, spec);
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (!logged) {  // only when waiting: wait > 0
      spdlog::warn("RBD {}: its exclusive lock is held by {}; waiting up to {} s for it", spec,
                   lock_holder(image), wait.count() / 1000);
      logged = true;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  Error e = make_error_fmt(Errc::kBusy,
                           "open RBD image read-write: another client holds its exclusive lock "
                           "(close the image there; a client that died keeps it until the "
                           "cluster expires its watch, 30 s by default: retry then, set "
                           "CRYPTMAP_RBD_LOCK_WAIT=SECONDS to wait, or break it: rbd lock rm)",
                           kNoObject, "%s held by %s", spec.c_str(), lock_holder(image).c_str());
  e.sys_errno = EBUSY;
  return e;
}

// How the store makes one write durable by itself (write_fua), from the image's effective
// librbd settings (rbd_config_image_list: the client's configuration with the pool's and the
// image's overrides). librbd passes LIBRADOS_OP_FLAG_FADVISE_FUA to its cache layer, and only the
// cache can complete a write before the OSDs committed it (librados completes a write on commit):
//  - no cache (rbd_cache false): every write completes on commit, FUA or not;
//  - write-around (rbd_cache_policy writearound, the default;
//    librbd/cache/WriteAroundObjectDispatch.cc): completes plain writes at dispatch, but a FUA
//    write is dispatched "unoptimized" and completes on commit;
//  - write-through (ObjectCacher with max_dirty 0): waits for the write's own flush;
//  - write-back (ObjectCacherObjectDispatch.cc, osdc/ObjectCacher.cc writex): the source read
//    completes a write once it is in the client's memory and does not look at the FUA flag (on
//    16.2.15 a FUA write did wait for the OSD, docs/network-stores.md §6.3, but nothing
//    promises it), so the store writes and then flushes (rbd_aio_flush);
//  - a persistent write-log cache (rbd_plugins pwl_cache) or anything not reported: write and
//    flush, the one way librbd's API promises durability.
struct DurableWrites {
  bool fua = false;
  std::string why;
  bool on_commit = false;  // rbd_cache off: every write completes only once the OSDs have it
};
DurableWrites durable_writes_of(rbd_image_t image) {
  std::vector<rbd_config_option_t> options(256);
  int n = static_cast<int>(options.size());
  int r = rbd_api().rbd_config_image_list(image, options.data(), &n);
  if (r == -ERANGE && n > static_cast<int>(options.size())) {
    options.resize(static_cast<std::size_t>(n));
    r = rbd_api().rbd_config_image_list(image, options.data(), &n);
  }
  if (r < 0) return {false, "librbd did not report the image's cache settings"};
  std::string cache, policy, plugins;
  for (int i = 0; i < n; ++i) {
    const std::string name = options[i].name != nullptr ? options[i].name : "";
    const std::string value = options[i].value != nullptr ? options[i].value : "";
    if (name == "rbd_cache") cache = value;
    if (name == "rbd_cache_policy") policy = value;
    if (name == "rbd_plugins") plugins = value;
  }
  rbd_api().rbd_config_image_list_cleanup(options.data(), n);
  if (plugins.find("pwl") != std::string::npos)
    return {false, "a persistent write-log cache (rbd_plugins " + plugins + ")"};
  if (cache == "false") return {true, "rbd_cache off", true};
  if (cache != "true") return {false, "librbd did not report rbd_cache"};
  if (policy == "writearound" || policy == "writethrough")
    return {true, "rbd_cache_policy " + policy};
  return {false, "rbd_cache_policy " + (policy.empty() ? std::string("unreported") : policy) +
                     " completes writes from memory, FUA or not"};
}

class RbdBackingStore final : public BackingStore {
 public:
  RbdBackingStore(std::string spec, rados_t cluster, rados_ioctx_t io, rbd_image_t image,
                  std::uint64_t size, std::uint64_t object_size, bool read_only, bool fua,
                  bool on_commit, std::chrono::milliseconds timeout)
      : spec_(std::move(spec)),
        cluster_(cluster),
        io_(io),
        image_(image),
        size_(size),
        object_size_(object_size),
        read_only_(read_only),
        fua_(fua),
        on_commit_(on_commit),
        timeout_(timeout) {}
  ~RbdBackingStore() override {
    rbd_api().rbd_close(image_);
    rbd_api().rados_ioctx_destroy(io_);
    rbd_api().rados_shutdown(cluster_);
  }
  RbdBackingStore(const RbdBackingStore&) = delete;
  RbdBackingStore& operator=(const RbdBackingStore&) = delete;

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    if (out.empty()) return ok();
    if (off.value > size_ || out.size() > size_ - off.value)
      return rbd_error(EIO, "read RBD image past its end", off.value, spec_);
    return issue("read from RBD image", off.value, [&](rbd_completion_t c) {
      return rbd_api().rbd_aio_read(image_, off.value, out.size(),
                                    reinterpret_cast<char*>(out.data()), c);
    });
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (read_only_) {
      Error e = rbd_error(EROFS, "write RBD image", off.value, spec_);
      e.code = Errc::kReadOnly;
      return e;
    }
    if (in.empty()) return ok();
    if (off.value > size_ || in.size() > size_ - off.value) {
      Error e = rbd_error(ENOSPC, "write RBD image past its end", off.value, spec_);
      e.code = Errc::kNoSpace;
      return e;
    }
    return issue("write to RBD image", off.value, [&](rbd_completion_t c) {
      return rbd_api().rbd_aio_write(image_, off.value, in.size(),
                                     reinterpret_cast<const char*>(in.data()), c);
    });
  }
  // One write carrying LIBRADOS_OP_FLAG_FADVISE_FUA where the image's cache completes such a
  // write only on commit (durable_writes_of); else a write and rbd_aio_flush (the default), which
  // makes every completed write durable.
  Result<void> write_fua(ByteOffset off, std::span<const std::byte> in) override {
    if (!fua_ || read_only_ || in.empty() || off.value > size_ || in.size() > size_ - off.value)
      return BackingStore::write_fua(off, in);  // write_at's errors, or write and flush
    return issue("durable write to RBD image", off.value, [&](rbd_completion_t c) {
      return rbd_api().rbd_aio_write2(image_, off.value, in.size(),
                                      reinterpret_cast<const char*>(in.data()), c,
                                      LIBRADOS_OP_FLAG_FADVISE_FUA);
    });
  }
  Result<void> sync() override {
    if (read_only_) return ok();
    return issue("flush RBD image", kNoObject,
                 [&](rbd_completion_t c) { return rbd_api().rbd_aio_flush(image_, c); });
  }
  Result<void> discard(ByteOffset off, std::uint64_t len) override {
    if (read_only_) {
      Error e = rbd_error(EROFS, "discard on RBD image", off.value, spec_);
      e.code = Errc::kReadOnly;
      return e;
    }
    if (len == 0) return ok();
    if (off.value > size_ || len > size_ - off.value) {
      Error e = rbd_error(EINVAL, "discard past the end of RBD image", off.value, spec_);
      e.code = Errc::kInvalid;
      return e;
    }
    return issue("discard on RBD image", off.value, [&](rbd_completion_t c) {
      return rbd_api().rbd_aio_discard(image_, off.value, len, c);
    });
  }
  // Every piece is queued (rbd_aio_*) before any is waited for, so librbd has them all in
  // flight together; a piece outside the image takes read_at/write_at for its error.
  Result<void> read_batch(std::span<ReadPiece> pieces) const override {
    if (pieces.size() < 2) return BackingStore::read_batch(pieces);
    std::unique_ptr<Batch[]> batches(new Batch[pieces.size()]);
    std::vector<int> started(pieces.size(), 1);  // 1: not queued here
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const ReadPiece& p = pieces[i];
      if (p.out.empty() || p.off.value > size_ || p.out.size() > size_ - p.off.value) continue;
      started[i] = start(batches[i], [&](rbd_completion_t c) {
        return rbd_api().rbd_aio_read(image_, p.off.value, p.out.size(),
                                      reinterpret_cast<char*>(p.out.data()), c);
      });
    }
    Result<void> first = ok();
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      ReadPiece& p = pieces[i];
      p.result = started[i] <= 0
                     ? finish("read from RBD image", p.off.value, batches[i], started[i])
                     : read_at(p.off, p.out);
      if (!p.result && first) first = p.result;
    }
    return first;
  }
  // Pieces that follow each other in the image (the engine's write-behind and write-back pass a
  // request's or a run's 256 KiB buffers as neighbouring pieces) go out as one rbd_aio_writev:
  // librbd cuts it at object boundaries itself, so a 1 MiB write inside one object is one OSD op
  // instead of four (docs/network-stores.md §6.3). Every piece of a group gets the group's
  // result; a piece outside the image takes write_at for its error.
  Result<void> write_batch(std::span<WritePiece> pieces) override {
    if (pieces.size() < 2 || read_only_) return BackingStore::write_batch(pieces);
    const std::size_t n = pieces.size();
    auto valid = [&](const WritePiece& p) {
      return !p.in.empty() && p.off.value <= size_ && p.in.size() <= size_ - p.off.value;
    };
    std::unique_ptr<Batch[]> batches(new Batch[n]);
    std::vector<int> started(n, 1);           // per group's first piece; 1: not queued here
    std::vector<std::size_t> group_of(n, n);  // the first piece of each piece's group
    std::vector<iovec> iov(n);
    for (std::size_t i = 0; i < n;) {
      if (!valid(pieces[i])) {
        group_of[i] = i;
        ++i;
        continue;
      }
      std::size_t j = i + 1;
      std::uint64_t end = pieces[i].off.value + pieces[i].in.size();
      while (j < n && valid(pieces[j]) && pieces[j].off.value == end) {
        end += pieces[j].in.size();
        ++j;
      }
      for (std::size_t k = i; k < j; ++k) {
        iov[k] = {const_cast<std::byte*>(pieces[k].in.data()), pieces[k].in.size()};
        group_of[k] = i;
      }
      const WritePiece& p = pieces[i];
      started[i] = start(batches[i], [&](rbd_completion_t c) {
        if (j == i + 1)
          return rbd_api().rbd_aio_write(image_, p.off.value, p.in.size(),
                                         reinterpret_cast<const char*>(p.in.data()), c);
        return rbd_api().rbd_aio_writev(image_, &iov[i], static_cast<int>(j - i), p.off.value, c);
      });
      i = j;
    }
    Result<void> first = ok();
    for (std::size_t i = 0; i < n; ++i) {
      WritePiece& p = pieces[i];
      const std::size_t g = group_of[i];
      if (!valid(p)) {
        p.result = write_at(p.off, p.in);
      } else if (g == i) {
        p.result = started[i] <= 0
                       ? finish("write to RBD image", p.off.value, batches[i], started[i])
                       : write_at(p.off, p.in);
      } else {
        p.result = pieces[g].result;
      }
      if (!p.result && first) first = p.result;
    }
    return first;
  }
  std::uint64_t size_bytes() const noexcept override { return size_; }
  std::uint64_t optimal_io_bytes() const noexcept override { return object_size_; }
  // librbd cuts one request at the image's object boundaries and issues the object requests in
  // parallel; pieces of one object would each be an OSD op of their own (docs/network-stores.md
  // §6.3).
  bool splits_large_requests() const noexcept override { return true; }
  // Writes complete in librbd's cache (write-around, write-through, write-back) unless it is off;
  // rbd_aio_flush is acknowledged by librbd once the OSDs have every write; FUA as above.
  StoreDurability durability() const noexcept override {
    return {.volatile_writes = !on_commit_, .flush = true, .fua = fua_};
  }
  bool read_only() const noexcept override { return read_only_; }
  const std::string& name() const noexcept override { return spec_; }

 private:
  template <class Submit>
  Result<void> issue(const char* what, std::uint64_t off, Submit&& submit) const {
    Batch batch;
    return finish(what, off, batch, start(batch, std::forward<Submit>(submit)));
  }
  // Queues one request whose completion signals `batch`; 0 or librbd's negative errno.
  template <class Submit>
  static int start(Batch& batch, Submit&& submit) {
    rbd_completion_t c = nullptr;
    if (const int r = rbd_api().rbd_aio_create_completion(&batch, on_complete, &c); r < 0) return r;
    if (const int r = submit(c); r < 0) {
      rbd_api().rbd_aio_release(c);
      return r;
    }
    return 0;
  }
  // Waits for the request start() queued (none when it failed: `started` < 0).
  // librados fails a request the cluster does not answer after its op timeouts (set to
  // `timeout_` at open); librbd owns the request and its buffer until it completes, so the wait
  // cannot end before. Should the completion not come within the timeout and a grace period, one
  // log line says so (the request is still waiting on the cluster), and the wait goes on.
  Result<void> finish(const char* what, std::uint64_t off, Batch& batch, int started) const {
    if (started < 0) return rbd_error(started, what, off, spec_);
    MutexLock lock(batch.mu);
    const auto late = std::chrono::steady_clock::now() + timeout_ + kGrace;
    bool said = false;
    while (!batch.done) {
      if (said) {
        batch.cv.wait(lock);
        continue;
      }
      if (batch.cv.wait_until(lock, late) || std::chrono::steady_clock::now() < late) continue;
      said = true;
      spdlog::error(
          "RBD {}: {}{} not answered after {} ms (CRYPTMAP_RBD_TIMEOUT is {} ms): librados did "
          "not time it out; still waiting for the cluster. Check the cluster (ceph -s)",
          spec_, what, off == kNoObject ? std::string() : " at offset " + std::to_string(off),
          (timeout_ + kGrace).count(), timeout_.count());
    }
    if (batch.ret < 0) {
      if (batch.ret == -ETIMEDOUT)
        spdlog::error(
            "RBD {}: {}{} timed out: the cluster did not answer within {} ms "
            "(CRYPTMAP_RBD_TIMEOUT); it fails with EIO. Check the cluster (ceph -s)",
            spec_, what, off == kNoObject ? std::string() : " at offset " + std::to_string(off),
            timeout_.count());
      return rbd_error(static_cast<int>(batch.ret), what, off, spec_);
    }
    return ok();
  }
  static constexpr std::chrono::milliseconds kGrace{10000};

  const std::string spec_;
  rados_t cluster_;
  rados_ioctx_t io_;
  rbd_image_t image_;
  const std::uint64_t size_;
  const std::uint64_t object_size_;  // rbd_stat's obj_size (4 MiB by default)
  const bool read_only_;
  const bool fua_;                           // write_fua is one FUA write (durable_writes_of)
  const bool on_commit_;                     // writes complete only once committed (rbd_cache off)
  const std::chrono::milliseconds timeout_;  // librados's op timeouts (CRYPTMAP_RBD_TIMEOUT)
};

}  // namespace

Result<std::unique_ptr<BackingStore>> open_rbd_store(const std::string& spec,
                                                     const RbdStoreOptions& options) {
  CRYPTMAP_TRY(s, parse_rbd_spec(spec));
  if (const RbdLibraries& libs = rbd_libraries(); !libs.missing.empty())
    return make_error_fmt(Errc::kUnsupported, "load librbd for an RBD image", kNoObject,
                          "%s (install librbd1)", libs.missing.c_str());
  rados_t cluster = nullptr;
  if (s.id.empty())
    if (const char* id = std::getenv("CRYPTMAP_CEPH_ID"); id != nullptr) s.id = id;
  if (const int r = rbd_api().rados_create(&cluster, s.id.empty() ? nullptr : s.id.c_str()); r < 0)
    return rbd_error(r, "create Ceph cluster handle", kNoObject, spec);
  auto fail_with = [&](int r, const char* what) {
    rbd_api().rados_shutdown(cluster);
    Error e = rbd_error(r, what, kNoObject, spec);
    return e;
  };
  // conf= wins, else $CEPH_CONF, else the default search path.
  if (const int r =
          rbd_api().rados_conf_read_file(cluster, s.conf.empty() ? nullptr : s.conf.c_str());
      r < 0)
    return fail_with(r, "read Ceph configuration (conf=, $CEPH_CONF or /etc/ceph/ceph.conf)");
  rbd_api().rados_conf_parse_env(cluster, nullptr);  // CEPH_ARGS
  const std::string secs = std::to_string(std::max<long long>(1, options.timeout.count() / 1000));
  for (const char* opt : {"client_mount_timeout", "rados_osd_op_timeout", "rados_mon_op_timeout"})
    rbd_api().rados_conf_set(cluster, opt, secs.c_str());
  // A discard inside an object is skipped by default; the store promises discarded ranges read
  // as zeros (the BackingStore contract), so librbd must zero them.
  rbd_api().rados_conf_set(cluster, "rbd_skip_partial_discard", "false");
  if (const int r = rbd_api().rados_connect(cluster); r < 0)
    return fail_with(r, "connect to Ceph cluster");
  rados_ioctx_t io = nullptr;
  if (const int r = rbd_api().rados_ioctx_create(cluster, s.pool.c_str(), &io); r < 0)
    return fail_with(r, "open RBD pool");
  const bool read_only = options.read_only || !s.snap.empty();
  rbd_image_t image = nullptr;
  const char* snap = s.snap.empty() ? nullptr : s.snap.c_str();
  const int r = read_only ? rbd_api().rbd_open_read_only(io, s.image.c_str(), &image, snap)
                          : rbd_api().rbd_open(io, s.image.c_str(), &image, snap);
  if (r < 0) {
    rbd_api().rados_ioctx_destroy(io);
    return fail_with(r, "open RBD image");
  }
  if (!read_only) {
    // Named without conf=/id= in the message: its detail is short, and the holder must fit.
    const std::string name = "rbd:" + s.pool + "/" + s.image;
    if (auto locked = take_exclusive_lock(image, name, options.lock_wait); !locked) {
      rbd_api().rbd_close(image);
      rbd_api().rados_ioctx_destroy(io);
      rbd_api().rados_shutdown(cluster);
      return locked.error();
    }
  }
  std::uint64_t size = 0;
  if (const int g = rbd_api().rbd_get_size(image, &size); g < 0) {
    rbd_api().rbd_close(image);
    rbd_api().rados_ioctx_destroy(io);
    return fail_with(g, "RBD image size");
  }
  rbd_image_info_t info{};
  const std::uint64_t object_size =
      rbd_api().rbd_stat(image, &info, sizeof info) == 0 ? info.obj_size : 0;
  DurableWrites durable;
  if (!read_only) {
    durable = durable_writes_of(image);
    spdlog::debug("RBD {}: a durable write is {} ({})", spec,
                  durable.fua ? "one FUA write" : "a write and a flush", durable.why);
  }
  return std::unique_ptr<BackingStore>(std::make_unique<RbdBackingStore>(
      spec, cluster, io, image, size, object_size, read_only, durable.fua, durable.on_commit,
      std::chrono::milliseconds(std::max<long long>(1, options.timeout.count() / 1000) * 1000)));
}

#endif  // CRYPTMAP_HAVE_LIBRBD

}  // namespace cryptmap::volume
