#include "fs/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "base/exit_code.h"
#include "base/io_thread.h"
#include "base/secret.h"
#include "fs/volume_server.h"
#include "volume/metadata_lock.h"
#include "volume/online_reencrypt.h"
#include "volume/open.h"

namespace cryptmap::fs {
namespace {

// A signal handler can reach nothing but a global: this is the write end of the self-pipe
// the daemon's poll loop watches (-1 when no daemon runs in this process).
std::atomic<int> g_signal_pipe{-1};

void on_stop_signal(int sig) {
  const int fd = g_signal_pipe.load();
  if (fd >= 0) {
    const auto b = static_cast<unsigned char>(sig);
    [[maybe_unused]] ssize_t n = ::write(fd, &b, 1);
  }
}

// Installs SIGINT/SIGTERM/SIGHUP -> self-pipe for the daemon's lifetime, restores on exit.
// A handler (not signalfd) because threads created before the daemon started (a KDF's, TBB's)
// may not block the signals; a handler works whichever thread receives them.
class StopSignals {
 public:
  StopSignals() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
      read_.reset(p[0]);
      write_.reset(p[1]);
      g_signal_pipe.store(p[1]);
    }
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &old_[i]);
    signal(SIGPIPE, SIG_IGN);
  }
  ~StopSignals() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &old_[i], nullptr);
    g_signal_pipe.store(-1);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int fd() const { return read_.get(); }
  int take() {
    unsigned char b = 0;
    return ::read(read_.get(), &b, 1) == 1 ? b : 0;
  }

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  UniqueFd read_, write_;
  struct sigaction old_[3]{};
};

Reply error_reply(const Error& e, const std::string& object) {
  Reply r;
  r.exit_code = exit_code_for(e);
  r.message = user_message(e, object);
  r.daemon_pid = getpid();
  return r;
}

Reply ok_reply() {
  Reply r;
  r.daemon_pid = getpid();
  return r;
}

// The daemon side of `open`: opens the data image as the store its kind calls for, keys the
// sector cipher and assembles the volume described by an add request (volume/open.h).
// The engine options an add request asks for.
volume::VolumeOptions volume_options_of(const Request& add) {
  volume::VolumeOptions vo;
  vo.read_only = add.read_only;
  vo.allow_discards = add.layout.allow_discards;
  vo.no_read_workqueue = (add.open_flags & kOpenNoReadWorkqueue) != 0;
  vo.no_write_workqueue = (add.open_flags & kOpenNoWriteWorkqueue) != 0;
  vo.unordered_zone_writes = (add.open_flags & kOpenUnorderedZoneWrites) != 0;
  vo.cache_bytes = add.cache_bytes;
  return vo;
}

Result<std::unique_ptr<volume::Volume>> open_requested_volume(
    const Request& add, std::shared_ptr<spdlog::logger> logger,
    volume::StoreDurability* durability = nullptr) {
  return volume::open_unlocked(add.source.image, add.layout, add.volume_key.span(),
                               volume_options_of(add), std::move(logger), durability);
}

// Test seam (tests/integration/reencrypt_online_datashift_start.sh): with
// CRYPTMAP_TEST_PAUSE_BEFORE_SWITCH=FIFO in the daemon's environment, the online start of a
// datashift decryption, once prepared (nothing written yet), opens FIFO for reading before it
// checks for a stop: it waits there until the test has opened FIFO for writing (so the test knows
// the daemon is at this point) and closed it again (after making the CLI leave, say).
void pause_before_switch_for_testing() {
  const char* fifo = std::getenv("CRYPTMAP_TEST_PAUSE_BEFORE_SWITCH");
  if (fifo == nullptr || fifo[0] == '\0') return;
  int fd = -1;
  do {
    fd = ::open(fifo, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return;
  char b[64];
  for (;;) {
    const ssize_t n = ::read(fd, b, sizeof b);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  ::close(fd);
}

// The CLI of a running reencryption shut its side of the connection (SIGINT) or went away.
bool peer_left(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

// What an add request says about a volume, without its key: what resume assembles it from.
Request spec_of(const Request& add) {
  Request spec;
  spec.verb = Verb::kAdd;
  spec.name = add.name;
  spec.source = add.source;
  spec.layout = add.layout;
  spec.read_only = add.read_only;
  spec.allow_other = add.allow_other;
  spec.open_flags = add.open_flags;
  spec.cache_bytes = add.cache_bytes;
  return spec;
}

Reply reply_with(int exit_code, std::string message) {
  Reply r = ok_reply();
  r.exit_code = exit_code;
  r.message = std::move(message);
  return r;
}

// One online reencryption (docs/reencrypt.md §10), run on a thread of its own. The control
// thread creates it, sets `stop` and joins it; the run's thread owns `conn` and `passphrase`,
// writes `final_layout` before `ended`, and clears `running` before it releases the image's
// metadata lock.
struct Run {
  std::string name;
  Request spec;   // the volume's add, without its key
  UniqueFd conn;  // the CLI's connection: progress replies, then the final one
  SecretBytes passphrase;
  std::uint64_t hotzone_bytes = 0;
  std::string new_header;  // a datashift decryption to start first: NEW-FILE (else empty)
  volume::OnlineReencryption::DecryptShiftInit shift_init;
  std::atomic<bool> stop{false};    // stop at the next hotzone boundary (shutdown, close --force)
  std::atomic<bool> running{true};  // status shows the run
  std::atomic<bool> ended{false};   // the thread has replied: join it
  std::optional<volume::VolumeLayout> final_layout;
  // The volume's source once the header moved to NEW-FILE; written before `ended`.
  std::optional<VolumeSource> new_source;
  // A failed step's hotzone left fenced (its offset); written before `ended`.
  std::optional<std::uint64_t> fenced_at;
  std::thread thread;
};

class Daemon {
 public:
  Daemon(const DaemonOptions& opts, std::shared_ptr<spdlog::logger> log)
      : opts_(opts), log_(std::move(log)) {}
  ~Daemon() { stop_runs(); }  // before the server their volumes belong to
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Adds the volume `req` describes; `opened` is that volume when the caller opened it already
  // (the first one, opened before the mount to learn whether it orders writes), `opened_store`
  // its store's durability semantics (status shows them).
  Reply add(const Request& req, std::unique_ptr<volume::Volume> opened = nullptr,
            volume::StoreDurability opened_store = {}) {
    if (auto r = check_volume_name(req.name); !r) return error_reply(r.error(), req.name);
    for (const VolumeStatus& v : server_->status()) {
      if (v.name == req.name) {
        Reply r;
        r.exit_code = kExitBusy;
        r.message = "Device " + req.name + " already exists.";
        return r;
      }
    }
    if (req.allow_other && !allow_other_) {
      Reply r = ok_reply();
      r.exit_code = kExitUsage;
      r.message = "The cryptmap daemon serving " + opts_.paths.mount_dir +
                  " was started without --allow-other, so other users cannot reach " + req.name +
                  ". Close its volumes first, or open with another --mount-dir.";
      return r;
    }
    // cryptsetup's reencryption lock, shared while the volume is served: a reencryption by
    // another process (cryptsetup reencrypt --force-offline-reencrypt, a cryptmap reencrypt
    // under another mount directory) would rewrite the data under the served file.
    volume::ReencryptLock reenc_lock;
    if (req.layout.type == volume::VolumeType::kLuks2) {
      auto l = volume::ReencryptLock::try_take(req.layout.uuid, false);
      if (!l)
        return reply_with(kExitBusy, "Cannot open " + req.source.image + " as " + req.name + ": " +
                                         l.error().message() +
                                         ". Wait for that reencryption to finish (or stop it), "
                                         "then open again.");
      reenc_lock = std::move(*l);
    }
    VolumeSource source = req.source;
    source.store = opened_store;
    if (opened == nullptr) {
      auto vol = open_volume(req, &source.store);
      if (!vol) return error_reply(vol.error(), req.source.image);
      opened = std::move(*vol);
    }
    auto added =
        server_->add_volume(req.name, std::move(opened), source, req.allow_other ? 0660 : 0600);
    if (!added) return error_reply(added.error(), req.name);
    specs_.insert_or_assign(req.name, spec_of(req));
    reenc_locks_.insert_or_assign(req.name, std::move(reenc_lock));
    log_->info("opened {} ({} {}, {} bytes, cache {} KiB{}{}) as {}/{}", req.source.image,
               volume::volume_type_name(req.layout.type), req.layout.cipher.to_string(),
               server_->status().back().size_bytes, req.cache_bytes / 1024,
               req.read_only ? ", read-only" : "", req.allow_other ? ", allow-other" : "",
               opts_.paths.mount_dir, req.name);
    return ok_reply();
  }

  Result<std::unique_ptr<volume::Volume>> open_volume(
      const Request& req, volume::StoreDurability* durability = nullptr) {
    auto vol = open_requested_volume(req, log_, durability);
    if (!vol) log_->error("open {} from {}: {}", req.name, req.source.image, vol.error().message());
    return vol;
  }

  // luksSuspend: I/O held, the volume (cache, cipher, keys) destroyed; its spec stays.
  Reply suspend(const Request& req) {
    if (runs_.count(req.name) != 0) return run_in_progress(req.name);
    if (auto f = fenced(req.name)) return std::move(*f);
    auto r = server_->suspend_volume(req.name);
    if (r) return ok_reply();
    switch (r.error().code) {
      case Errc::kNotFound:
        return reply_with(kExitBadDevice, "Device " + req.name + " is not active.");
      case Errc::kInvalid:
        return reply_with(kExitUsage, r.error().message());
      default:
        return reply_with(kExitUsage, "Failed to suspend device " + req.name + ": " +
                                          r.error().message() +
                                          ". It is still served, its data intact.");
    }
  }

  // luksResume: the CLI unlocked the header again; assemble the volume as the add did.
  Reply resume(Request& req) {
    if (runs_.count(req.name) != 0) return run_in_progress(req.name);
    if (auto f = fenced(req.name)) return std::move(*f);
    auto spec = specs_.find(req.name);
    if (spec == specs_.end())
      return reply_with(kExitBadDevice, "Device " + req.name + " is not active.");
    Request full = spec_of(spec->second);
    full.volume_key = std::move(req.volume_key);
    if (full.volume_key.size() != full.layout.key_bytes)
      return reply_with(kExitUsage, "The key for " + req.name + " has " +
                                        std::to_string(full.volume_key.size()) +
                                        " bytes, its volume needs " +
                                        std::to_string(full.layout.key_bytes) + ".");
    if (auto st = status_of(req.name); st && !st->suspended)
      return reply_with(kExitUsage, "Volume " + req.name + " is not suspended.");
    auto vol = open_volume(full);
    full.volume_key = SecretBytes();  // the cipher holds its own copy
    if (!vol) return error_reply(vol.error(), full.source.image);
    auto r = server_->resume_volume(req.name, std::move(*vol));
    if (!r)
      return reply_with(r.error().code == Errc::kNotFound ? kExitBadDevice : kExitUsage,
                        r.error().message());
    return ok_reply();
  }

  // resize: the server holds the file's I/O while the volume changes size. The spec keeps the
  // size from now on, so a luksResume or refresh assembles the volume at this size.
  Reply resize(const Request& req) {
    if (runs_.count(req.name) != 0) return run_in_progress(req.name);
    if (auto f = fenced(req.name)) return std::move(*f);
    auto spec = specs_.find(req.name);
    if (spec == specs_.end())
      return reply_with(kExitBadDevice, "Device " + req.name + " is not active.");
    auto r = server_->resize_volume(req.name, req.new_size);
    if (!r) {
      const Error& e = r.error();
      if (e.code == Errc::kNotFound)
        return reply_with(kExitBadDevice, "Device " + req.name + " is not active.");
      if (e.code == Errc::kNoSpace)  // cryptsetup's words
        return reply_with(kExitUsage, "Device " + spec->second.source.image +
                                          " is too small: " + std::string(e.detail_view()) +
                                          ". The size of " + req.name + " is unchanged.");
      return reply_with(kExitUsage, "Cannot resize " + req.name + ": " + e.message() +
                                        ". Its size is unchanged.");
    }
    spec->second.layout.size_bytes = *r;
    return ok_reply();
  }

  // refresh: the CLI unlocked the header again; assemble the volume with the new flags at its
  // current size and let the server swap it in.
  Reply refresh(Request& req) {
    if (runs_.count(req.name) != 0) return run_in_progress(req.name);
    if (auto f = fenced(req.name)) return std::move(*f);
    auto spec = specs_.find(req.name);
    if (spec == specs_.end())
      return reply_with(kExitBadDevice, "Device " + req.name + " is not active.");
    Request full = spec_of(spec->second);
    full.volume_key = std::move(req.volume_key);
    full.layout.allow_discards = req.layout.allow_discards;  // the flag, or the header's
    full.layout.no_read_workqueue = req.layout.no_read_workqueue;
    full.layout.no_write_workqueue = req.layout.no_write_workqueue;
    full.open_flags = (req.open_flags & (kOpenNoReadWorkqueue | kOpenNoWriteWorkqueue |
                                         kOpenSameCpuCrypt | kOpenSubmitFromCryptCpus)) |
                      (spec->second.open_flags & kOpenUnorderedZoneWrites);
    if (full.volume_key.size() != full.layout.key_bytes)
      return reply_with(kExitUsage, "The key for " + req.name + " has " +
                                        std::to_string(full.volume_key.size()) +
                                        " bytes, its volume needs " +
                                        std::to_string(full.layout.key_bytes) + ".");
    if (auto st = status_of(req.name)) {
      if (st->suspended)
        return reply_with(
            kExitUsage,
            "Volume " + req.name + " is suspended: resume it first (luksResume " + req.name + ").");
      full.layout.size_bytes = st->size_bytes;  // refresh keeps the size (resize changes it)
    }
    auto vol = open_volume(full);
    full.volume_key = SecretBytes();  // the cipher holds its own copy
    if (!vol) return error_reply(vol.error(), full.source.image);
    auto r = server_->replace_volume(req.name, std::move(*vol));
    if (!r)
      return reply_with(r.error().code == Errc::kNotFound ? kExitBadDevice : kExitUsage,
                        "Cannot refresh " + req.name + ": " + r.error().message() +
                            ". It is still served with its old flags.");
    spec->second = spec_of(full);
    log_->info("refreshed {}: allow-discards {}, no_read_workqueue {}, no_write_workqueue {}",
               req.name, full.layout.allow_discards, (full.open_flags & kOpenNoReadWorkqueue) != 0,
               (full.open_flags & kOpenNoWriteWorkqueue) != 0);
    return ok_reply();
  }

  // reencrypt of a served volume (online, docs/reencrypt.md §10): the run goes on a thread of
  // its own (one per volume), which owns the CLI's connection; the control thread stays free
  // (status shows the run's progress). Refused while one runs for the volume already.
  Reply reencrypt(Request& req, UniqueFd& conn) {
    auto spec = specs_.find(req.name);
    if (spec == specs_.end())
      return reply_with(kExitBadDevice, "Device " + req.name + " is not active.");
    if (runs_.count(req.name) != 0) return run_in_progress(req.name);
    if (auto f = fenced(req.name)) return std::move(*f);
    const Request& add = spec->second;
    if (auto st = status_of(req.name); st && st->suspended)
      return reply_with(kExitUsage, "Volume " + req.name +
                                        " is suspended: resume it first (luksResume " + req.name +
                                        "), then run reencrypt again.");
    // A datashift decryption starts from a header inside the image, into a new absolute path.
    if (!req.new_header.empty() && (!add.source.header.empty() || req.new_header[0] != '/'))
      return reply_with(kExitUsage, "Cannot start a decryption with a data shift of " + req.name +
                                        " into " + req.new_header +
                                        ": it needs the volume served with its header inside " +
                                        add.source.image + " and an absolute NEW-FILE path.");
    auto run = std::make_unique<Run>();
    run->name = req.name;
    run->spec = spec_of(add);
    run->conn = std::move(conn);
    run->passphrase = std::move(req.volume_key);
    run->hotzone_bytes = req.hotzone_bytes;
    run->new_header = std::move(req.new_header);
    run->shift_init = req.shift_init;
    Run& r = *run;
    runs_.emplace(req.name, std::move(run));
    r.thread = std::thread([this, &r] {
      // It holds hotzones against the file's I/O and writes the image: an allocation that
      // waited on reclaim could wait on writeback through that file (docs/architecture.md §4.1).
      mark_io_thread();
      Reply out = run_reencryption(r);
      send(r.conn.get(), out);
      r.conn.reset();
      r.ended.store(true);
    });
    return Reply{};  // the run's thread replies
  }

  // A volume whose failed online step left its hotzone fenced (its I/O fails with EIO) may only
  // be closed and opened again: open recovers the hotzone from the header. Rebuilding the volume
  // from its spec (luksResume after luksSuspend, refresh, resize) or another run would serve the
  // half-converted hotzone with one key. Empty when `name` is not fenced.
  std::optional<Reply> fenced(const std::string& name) const {
    auto f = fenced_.find(name);
    if (f == fenced_.end()) return std::nullopt;
    return reply_with(kExitUsage, "The hotzone at byte " + std::to_string(f->second) + " of " +
                                      name +
                                      " is fenced after a failed online reencryption step (its "
                                      "I/O fails with EIO): close " +
                                      name +
                                      " and open it again (open recovers the hotzone), then "
                                      "resume with cryptmap reencrypt --resume-only.");
  }

  Reply run_in_progress(const std::string& name) const {
    return reply_with(kExitBusy, "Reencryption of " + name +
                                     " is already running in the cryptmap daemon (pid " +
                                     std::to_string(getpid()) +
                                     "); wait for it, or stop it with Ctrl-C (SIGINT) of its "
                                     "cryptmap reencrypt (it stops at a hotzone boundary).");
  }

  // The run of `r`, on its thread: the metadata lock of the image is taken for the whole run
  // (the CLI released it after the init; held until the header is left as it stays, so no other
  // tool sees a hotzone in progress), both keys are unlocked with the passphrase, the volume is
  // swapped for one whose boundary moves with the run (the file's I/O held for the swap only),
  // and the run goes hotzone by hotzone, each held in the served volume while it converts, with
  // a progress reply after each. It stops at a hotzone boundary when the CLI leaves (SIGINT,
  // or killed) or the daemon stops it (shutdown, close --force).
  Reply run_reencryption(Run& run) {
    const Request& add = run.spec;
    const std::string& name = run.name;
    const bool shift_start = !run.new_header.empty();
    // The metadata lock is the header's (cryptsetup locks the device holding the metadata); a
    // datashift decryption to start takes NEW-FILE's too, where the header goes.
    const std::string& header = add.source.header.empty() ? add.source.image : add.source.header;
    auto take_lock = [&](const std::string& path) -> Result<volume::MetadataLock> {
      for (int waited_ms = 0;; waited_ms += 20) {
        auto l = volume::MetadataLock::try_take(path, true);
        if (l) return l;
        if (l.error().code != Errc::kBusy || waited_ms >= 10000 || run.stop.load() ||
            peer_left(run.conn.get()))
          return l;
        ::usleep(20 * 1000);
      }
    };
    volume::MetadataLock lock, new_lock;
    for (const std::string* path :
         std::initializer_list<const std::string*>{&header, &run.new_header}) {
      if (path->empty()) continue;
      auto l = take_lock(*path);
      if (!l)
        return reply_with(kExitBusy, "Cannot start the online reencryption of " + name + ": " +
                                         l.error().message() +
                                         " (another cryptmap or cryptsetup command?). Try again "
                                         "once it is done.");
      (path == &header ? lock : new_lock) = std::move(*l);
    }
    auto started = shift_start
                       ? volume::OnlineReencryption::start_decrypt_shift(
                             add.source.image, run.new_header, run.passphrase.span(),
                             run.shift_init, run.hotzone_bytes, volume_options_of(add), log_)
                       : volume::OnlineReencryption::start(add.source.image, add.source.header,
                                                           run.passphrase.span(), run.hotzone_bytes,
                                                           volume_options_of(add), log_);
    run.passphrase = SecretBytes();  // both keys are unlocked; the passphrase goes
    if (!started) {
      if (!shift_start) return error_reply(started.error(), header);
      Reply out = error_reply(started.error(), run.new_header);
      out.message += ". Nothing was written to " + add.source.image + "; " + name +
                     " is still served through the header inside it.";
      return out;
    }
    volume::OnlineReencryption& r = **started;
    std::unique_ptr<volume::Volume> moving = r.take_served_volume();
    volume::Volume* served = moving.get();  // the server owns it; close waits for this run
    // The header of the run from now on (NEW-FILE once a datashift decryption switched to it).
    std::string run_header = add.source.header;
    // Stopped while it was being prepared (the CLI left, close --force, shutdown): nothing is
    // written, and nothing switched to NEW-FILE, which the CLI then removes.
    if (shift_start) pause_before_switch_for_testing();
    if (shift_start && (run.stop.load() || peer_left(run.conn.get())))
      return reply_with(kExitUsage, "The decryption with a data shift of " + name +
                                        " was stopped before it started; nothing was changed (" +
                                        name + " is still served through the header inside " +
                                        add.source.image + ").");
    if (shift_start) {
      // cryptsetup's reencrypt_decrypt_with_datashift_init on an active device: the device
      // suspended (here the file's I/O held, the old volume flushed), the data's first part
      // moved, the header committed in reencryption (into NEW-FILE), the new table live.
      VolumeSource moved_to{add.source.image, run.new_header, {}};
      if (auto st = status_of(name)) moved_to.store = st->source.store;  // the same image store
      const auto t0 = std::chrono::steady_clock::now();
      auto swapped = server_->replace_volume(
          name, std::move(moving), [&] { return r.switch_header(); }, moved_to);
      if (!swapped)
        return reply_with(kExitUsage, "Cannot start the decryption with a data shift of " + name +
                                          ": " + swapped.error().message() + ". " +
                                          add.source.image + " is as before and " + name +
                                          " is still served through the header inside it; " +
                                          run.new_header + " holds only a copy of that header.");
      run.new_source = moved_to;
      run_header = run.new_header;
      log_->info(
          "{}: the header of {} is now {} (decryption with a data shift started; the file's I/O "
          "held {} ms for the flush, the move and the header)",
          name, add.source.image, run.new_header,
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                t0)
              .count());
    } else if (auto swapped = server_->replace_volume(name, std::move(moving)); !swapped) {
      return reply_with(kExitUsage, "Cannot start the online reencryption of " + name + ": " +
                                        swapped.error().message() +
                                        ". It is still served as before; the header is paused.");
    }
    log_->info("online reencryption of {} ({}): {} of {} bytes done", name, add.source.image,
               r.done_bytes(), r.total_bytes());
    // What status shows: the two segments either side of the boundary, as the header says.
    auto publish_layout = [&]() -> std::optional<volume::VolumeLayout> {
      auto now = r.layout();
      if (!now) return std::nullopt;
      volume::VolumeLayout l = std::move(*now);
      l.allow_discards = add.layout.allow_discards;
      l.no_read_workqueue = add.layout.no_read_workqueue;
      l.no_write_workqueue = add.layout.no_write_workqueue;
      l.size_bytes = add.layout.size_bytes;
      (void)server_->set_status_layout(name, l);
      return l;
    };
    publish_layout();
    Reply progress = ok_reply();
    progress.progress = true;
    Result<void> failed = ok();
    std::uint64_t recovered_at = 0;  // a failed step's hotzone
    const char* why = "finished";
    const bool init_only = shift_start && run.shift_init.init_only;
    for (;;) {
      progress.done_bytes = r.done_bytes();
      progress.total_bytes = r.total_bytes();
      send(run.conn.get(), progress);
      if (init_only) {
        why = "initialized";
        break;
      }
      if (peer_left(run.conn.get())) {
        why = "stopped by the CLI";
        break;
      }
      if (run.stop.load()) {
        why = "stopped by the daemon";
        break;
      }
      const std::uint64_t before = r.done_bytes();
      auto stepped = r.step(*served);
      if (!stepped) {
        failed = fail(stepped.error());
        recovered_at = before;
        break;
      }
      if (!*stepped) break;
      publish_layout();
    }
    // After a failed step the header names the hotzone it failed in: left as it is (open
    // recovers it), never finished.
    auto stopped = [&]() -> Result<volume::OnlineReencryption::Stopped> {
      if (!failed) return fail(failed.error());
      return r.stop();
    }();
    run.final_layout = publish_layout();  // the control thread puts it into the volume's spec
    run.running.store(false);
    lock.release();  // the header is as it stays: other tools may look now
    new_lock.release();
    Reply out = ok_reply();
    out.done_bytes = r.done_bytes();
    out.total_bytes = r.total_bytes();
    if (!stopped) {
      out.exit_code = exit_code_for(stopped.error());
      if (out.exit_code == kExitOk) out.exit_code = kExitUsage;
      out.message = "Reencryption of " + name + " failed: " + stopped.error().message();
      const std::string paused = " stays served (the header is paused at " +
                                 std::to_string(r.done_bytes()) +
                                 "); once the image is healthy, resume with cryptmap reencrypt "
                                 "--resume-only.";
      if (!failed && r.hotzone_fenced()) {
        run.fenced_at = r.done_bytes();
        out.message += ". The hotzone at " + std::to_string(r.done_bytes()) +
                       " could not be recovered: its I/O fails until you close " + name +
                       " and open it again (open recovers it); then resume with cryptmap "
                       "reencrypt --resume-only.";
      } else if (!failed && r.done_bytes() > recovered_at) {
        out.message += ". The hotzone at " + std::to_string(recovered_at) +
                       " was recovered from its resilience data and " + name + paused;
      } else if (!failed) {
        out.message += ". Nothing of the hotzone at " + std::to_string(recovered_at) +
                       " was changed; " + name + paused;
      } else {
        out.message += ". It stays served; resume with cryptmap reencrypt --resume-only.";
      }
      log_->error("online reencryption of {}: {}", name, out.message);
      return out;
    }
    log_->info("online reencryption of {}: {} ({} bytes this run)", name,
               stopped->finished ? "finished" : why, stopped->bytes);
    if (!stopped->finished && !init_only) {
      out.exit_code = kExitUsage;
      out.message = "Reencryption of " + name + " was interrupted at " +
                    std::to_string(r.done_bytes()) + " of " + std::to_string(r.total_bytes()) +
                    " bytes" + (run.stop.load() ? " (the daemon stopped it)" : "") +
                    "; the header is paused. Resume it with cryptmap reencrypt --resume-only " +
                    (run_header.empty() ? "" : "--header " + run_header + " ") + add.source.image +
                    " (or, once closed, cryptsetup reencrypt --resume-only).";
    }
    return out;
  }

  // Joins the runs whose thread has ended. On the control thread, before each request.
  void reap_runs() {
    for (auto it = runs_.begin(); it != runs_.end();)
      it = it->second->ended.load() ? finish_run(it) : std::next(it);
  }
  // Stops the runs of `name` (every run when empty) at their next hotzone boundary and waits.
  void stop_runs(const std::string& name = {}) {
    for (auto& [n, r] : runs_)
      if (name.empty() || n == name) r->stop.store(true);
    for (auto it = runs_.begin(); it != runs_.end();)
      it = name.empty() || it->first == name ? finish_run(it) : std::next(it);
  }
  // Joins a run's thread; its final layout becomes the volume's spec (what luksResume and
  // refresh assemble from now).
  std::map<std::string, std::unique_ptr<Run>>::iterator finish_run(
      std::map<std::string, std::unique_ptr<Run>>::iterator it) {
    Run& r = *it->second;
    r.thread.join();
    if (auto spec = specs_.find(r.name); spec != specs_.end()) {
      if (r.final_layout) spec->second.layout = std::move(*r.final_layout);
      if (r.new_source) spec->second.source = std::move(*r.new_source);
    }
    if (r.fenced_at) fenced_[r.name] = *r.fenced_at;
    return runs_.erase(it);
  }

  // close: while a reencryption runs on the volume, refused as cryptsetup refuses to deactivate
  // a device another process holds (the run holds it); --force stops the run at its next
  // hotzone boundary (a paused header, resumable) and closes.
  Reply remove(const Request& req) {
    if (runs_.count(req.name) != 0) {
      if (!req.force)
        return reply_with(kExitBusy,
                          "Device " + req.name +
                              " is still in use: an online reencryption runs on it. Stop it "
                              "with Ctrl-C (SIGINT) of its cryptmap reencrypt, or close with "
                              "--force (the reencryption stops at a hotzone boundary, "
                              "resumable with cryptmap reencrypt --resume-only).");
      stop_runs(req.name);
    }
    auto r = server_->remove_volume(req.name, req.force);
    if (r.has_value() || r.error().code != Errc::kBusy) {
      specs_.erase(req.name);
      fenced_.erase(req.name);
      reenc_locks_.erase(req.name);
    }
    if (r) return ok_reply();
    Reply out = ok_reply();
    switch (r.error().code) {
      case Errc::kNotFound:
        out.exit_code = kExitBadDevice;
        out.message = "Device " + req.name + " is not active.";
        break;
      case Errc::kBusy:
        out.exit_code = kExitBusy;
        out.message = "Device " + req.name + " is still in use (close it, detach its loop " +
                      "device, or use --force).";
        break;
      default:  // the volume is gone, but its last flush failed
        out.exit_code = kExitUsage;
        out.message = "Device " + req.name +
                      " was closed, but flushing it failed: " + r.error().message() +
                      ". Writes since the last fsync may be lost.";
    }
    return out;
  }

  Reply status(const Request& req) {
    Reply out = ok_reply();
    for (VolumeStatus& v : server_->status()) {
      if (!req.name.empty() && v.name != req.name) continue;
      if (auto spec = specs_.find(v.name); spec != specs_.end())
        v.open_flags = spec->second.open_flags;
      if (auto run = runs_.find(v.name); run != runs_.end())
        v.reencrypting = run->second->running.load();
      out.volumes.push_back(std::move(v));
    }
    if (!req.name.empty() && out.volumes.empty()) {
      out.exit_code = kExitBadDevice;
      out.message = req.name + " is inactive.";
    }
    return out;
  }

  // Serves one connection: one request, one reply. Returns true when the last volume is gone
  // and the daemon should exit (the reply is then sent by the caller after unmounting).
  void handle_connection(UniqueFd& conn, bool& last_closed, Reply& deferred) {
    reap_runs();
    const int fd = conn.get();
    timeval tv{10, 0};  // a client that stalls cannot stall the daemon for long
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (auto peer = check_peer(fd); !peer) {
      log_->warn("control connection refused: {}", peer.error().message());
      send(fd, error_reply(peer.error(), "control socket"));
      return;
    }
    auto frame = recv_frame(fd);
    if (!frame) {
      log_->warn("control request: {}", frame.error().message());
      return;
    }
    auto req = decode_request(frame->span());
    if (!req) {
      log_->warn("control request: {}", req.error().message());
      send(fd, error_reply(req.error(), "control request"));
      return;
    }
    Reply reply;
    switch (req->verb) {
      case Verb::kAdd:
        reply = add(*req);
        break;
      case Verb::kRemove:
        reply = remove(*req);
        break;
      case Verb::kStatus:
        reply = status(*req);
        break;
      case Verb::kSuspend:
        reply = suspend(*req);
        break;
      case Verb::kResume:
        reply = resume(*req);
        break;
      case Verb::kResize:
        reply = resize(*req);
        break;
      case Verb::kRefresh:
        reply = refresh(*req);
        break;
      case Verb::kReencrypt:
        reply = reencrypt(*req, conn);
        if (!conn.valid()) return;  // the run's thread owns the connection and replies
        break;
    }
    req->volume_key = SecretBytes();
    // The last volume is gone (closed, or closed with a failed flush: kExitUsage): exit.
    const bool removed = reply.exit_code == kExitOk || reply.exit_code == kExitUsage;
    if (req->verb == Verb::kRemove && removed && server_->volume_count() == 0) {
      last_closed = true;
      deferred = std::move(reply);
      return;
    }
    send(fd, reply);
  }

  void send(int fd, const Reply& r) {
    auto body = encode_reply(r);
    if (!body) return;
    if (auto s = send_frame(fd, body->span()); !s)
      log_->warn("control reply: {}", s.error().message());
  }

  int run(Request first, const std::function<void(const Reply&)>& report) {
    // This thread opens every volume's store and flushes at suspend, close and shutdown, so it
    // is an I/O thread itself; and PR_SET_IO_FLUSHER is inherited by every thread a marked
    // thread creates: marked first, it marks the threads libraries start under the stores it
    // opens (librbd's and librados's, which cryptmap cannot reach otherwise), the FUSE workers
    // and the engines' workers alike (docs/architecture.md §4.1).
    mark_io_thread();
    if (auto h = harden_process(); !h)
      log_->warn("process hardening failed: {}", h.error().message());
    StopSignals signals;
    // The first volume is opened before the mount: whether it orders its writes (a zoned volume)
    // decides how the server receives requests.
    volume::StoreDurability first_store;
    auto first_volume = open_volume(first, &first_store);
    if (!first_volume) {
      Reply r = error_reply(first_volume.error(), first.source.image);
      first.volume_key = SecretBytes();
      report(r);
      return r.exit_code;
    }
    ServerOptions so;
    so.mount_dir = opts_.paths.mount_dir;
    so.fuse_debug = opts_.fuse_debug;
    so.fuse_transport = opts_.fuse_transport;
    so.allow_other = allow_other_ = first.allow_other;
    so.logger = log_;
    // Zoned first volume: keep arrival order from receipt to admission (docs/architecture.md §4.6).
    so.ordered_receive = (*first_volume)->orders_writes();
    auto server = VolumeServer::mount(so);
    if (!server) {
      Reply r = error_reply(server.error(), opts_.paths.mount_dir);
      // The refusal of --fuse-transport=uring already says what to do; the hint is for the rest.
      const bool uring_refused = std::string_view(server.error().what) == "FUSE over io_uring";
      r.message = "Cannot mount " + opts_.paths.mount_dir + ": " + server.error().message() +
                  (uring_refused ? "." : ". Is /dev/fuse usable and the directory free?");
      report(r);
      return r.exit_code;
    }
    server_ = std::move(*server);
    Reply first_reply = add(first, std::move(*first_volume), first_store);
    first.volume_key = SecretBytes();  // wipe our copy now: the cipher holds its own
    if (first_reply.exit_code != kExitOk) {
      server_.reset();  // unmount: nothing was served
      report(first_reply);
      return first_reply.exit_code;
    }
    auto listener = listen_control(opts_.paths.socket);
    if (!listener) {
      server_.reset();
      Reply r = error_reply(listener.error(), opts_.paths.socket);
      report(r);
      return r.exit_code;
    }
    report(first_reply);
    log_->info("daemon {} serving {} (control socket {})", getpid(), opts_.paths.mount_dir,
               opts_.paths.socket);

    for (;;) {
      pollfd fds[2] = {{listener->get(), POLLIN, 0}, {signals.fd(), POLLIN, 0}};
      const int n = ::poll(fds, 2, 500);
      reap_runs();
      if (n < 0 && errno != EINTR) {
        log_->error("poll: {}", std::strerror(errno));
        break;
      }
      if (fds[1].revents & POLLIN) {
        log_->info("signal {}: flushing, unmounting, exiting", signals.take());
        break;
      }
      if (server_->stopped()) {
        log_->warn("{} was unmounted from outside; exiting", opts_.paths.mount_dir);
        break;
      }
      if (n > 0 && (fds[0].revents & POLLIN)) {
        UniqueFd conn(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn.valid()) continue;
        bool last_closed = false;
        Reply deferred;
        handle_connection(conn, last_closed, deferred);
        if (last_closed) {
          log_->info("last volume closed: unmounting {}", opts_.paths.mount_dir);
          server_.reset();
          ::unlink(opts_.paths.socket.c_str());
          send(conn.get(), deferred);
          return kExitOk;
        }
      }
    }
    stop_runs();      // each at a hotzone boundary: the headers stay resumable
    server_.reset();  // stop(): flush, unmount, destroy volumes (keys wiped)
    ::unlink(opts_.paths.socket.c_str());
    return kExitOk;
  }

 private:
  // The served volume `name`'s status (none when it is not served).
  std::optional<VolumeStatus> status_of(const std::string& name) const {
    for (VolumeStatus& v : server_->status())
      if (v.name == name) return std::move(v);
    return std::nullopt;
  }

  DaemonOptions opts_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<VolumeServer> server_;
  std::map<std::string, Request> specs_;  // by name: every served volume's add, without its key
  std::map<std::string, std::unique_ptr<Run>> runs_;  // online reencryptions, by volume name
  std::map<std::string, volume::ReencryptLock> reenc_locks_;  // held while served (add)
  std::map<std::string, std::uint64_t> fenced_;  // fenced() volumes: the hotzone's offset
  bool allow_other_ = false;  // the mount's allow_other (chosen by the first volume)
};

}  // namespace

std::string user_message(const Error& e, const std::string& object) {
  switch (exit_code_for(e)) {
    case kExitPermission:
      return "No key available with this passphrase.";
    case kExitBadDevice:
      if (e.code == Errc::kIo || e.code == Errc::kNotFound)
        return "Device " + object + " does not exist or access denied. (" + e.message() + ")";
      break;
    default:
      break;
  }
  return e.message();
}

int serve(const DaemonOptions& opts, Request first,
          const std::function<void(const Reply&)>& report) {
  auto log = opts.logger ? opts.logger : spdlog::default_logger();
  Daemon d(opts, log);
  return d.run(std::move(first), report);
}

}  // namespace cryptmap::fs
