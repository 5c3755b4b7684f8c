// open, close, status: the verbs that talk to the daemon (fs/daemon.h), plus the hidden
// `daemon` verb a spawned daemon runs as.
//
// `open` does everything that can fail because of the user's input in the foreground, in
// cryptsetup's order (image, header, name, passphrase/unlock), so a wrong passphrase exits 2
// with nothing mounted. Only then is the volume key handed to a daemon: a running one over the
// control socket, or a new one (fork + exec of this binary) over a socketpair; the CLI exits
// once the daemon has replied that the file is being served.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>
#include <CLI/CLI.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/io_thread.h"
#include "cli/apps/process.h"
#include "cli/apps/tab_commands.h"
#include "cli/commands.h"
#include "cli/luks_common.h"
#include "cli/tcrypt_unlock.h"
#include "cli/terminal/passphrase.h"
#include "cli/token_flags.h"
#include "crypto/auth_cipher.h"
#include "fs/control.h"
#include "fs/daemon.h"
#include "volume/format/bitlk.h"
#include "volume/format/fvault2.h"
#include "volume/format/loopaes.h"
#include "volume/format/luks.h"
#include "volume/format/luks2_reencrypt.h"
#include "volume/format/luks_admin.h"
#include "volume/format/plain.h"
#include "volume/format/unlock.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"
#include "volume/store/rbd_backing_store.h"

namespace cryptmap::cli {
using fs::call_daemon;
using fs::check_volume_name;
using fs::connect_control;
using fs::control_paths;
using fs::ControlPaths;
using fs::DaemonOptions;
using fs::decode_request;
using fs::default_mount_dir;
using fs::encode_reply;
using fs::kOpenNoReadWorkqueue;
using fs::kOpenNoWriteWorkqueue;
using fs::kOpenSameCpuCrypt;
using fs::kOpenSubmitFromCryptCpus;
using fs::kOpenUnorderedZoneWrites;
using fs::recv_frame;
using fs::Reply;
using fs::Request;
using fs::send_frame;
using fs::serve;
using fs::user_message;
using fs::Verb;
using fs::VolumeStatus;

std::string absolute(const std::string& path) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (r == nullptr) return path;
  std::string out(r);
  std::free(r);
  return out;
}

namespace {

// The activation flags of open and refresh (cryptsetup's names); with a LUKS2 header's persistent
// flags they make the request's layout.allow_discards and open_flags (apply_activation_flags).
struct ActivationFlags {
  bool allow_discards = false;           // --allow-discards
  bool perf_no_read_workqueue = false;   // --perf-no_read_workqueue
  bool perf_no_write_workqueue = false;  // --perf-no_write_workqueue
  bool perf_same_cpu_crypt = false;      // --perf-same_cpu_crypt (recorded: docs/formats.md §3.6)
  bool perf_submit_from_crypt_cpus = false;  // --perf-submit_from_crypt_cpus (recorded, as above)
};

struct OpenArgs {
  std::string image;
  std::string name;
  std::string type = "luks";
  std::string key_file;
  std::vector<std::string> key_files;  // --key-file as given (tcrypt: repeatable)
  TcryptArgs tcrypt;                   // --type tcrypt
  bool disable_veracrypt = false;
  std::uint32_t veracrypt_pim = 0;
  bool tcrypt_protect_hidden = false;  // --tcrypt-protect-hidden (cryptmap's, as VeraCrypt's)
  std::uint64_t keyfile_offset = 0;
  std::uint64_t keyfile_size = 0;
  int key_slot = -1;
  std::uint32_t tries = 3;
  std::string header;
  bool read_only = false;
  std::string mount_dir;
  bool foreground = false;
  bool fuse_debug = false;
  std::string fuse_transport = "auto";  // --fuse-transport auto|uring|dev (a new daemon's)
  bool test_passphrase = false;         // --test-passphrase: unlock only, map nothing (cryptsetup)
  bool allow_other = false;             // --allow-other: FUSE allow_other, file mode 0660
  bool all = false;                     // --all: every entry of the cryptmaptab
  std::string tab = "/etc/cryptmaptab";
  volume::PlainOptions plain;
  volume::LoopaesOptions loopaes;     // --type loopaes (from --cipher/--key-size/--hash/...)
  ActivationFlags flags;              // --allow-discards, --perf-no_*_workqueue
  bool integrity_no_journal = false;  // --integrity-no-journal (LUKS2 --integrity volumes)
  std::string cache_size;             // --cache-size: bytes with a K/M/G suffix; 0 = no cache
  bool debug_unordered_zone_writes = false;  // hidden: tests show ordering matters
  TokenFlags tokens;                         // --token-id/--token-only/--token-type (LUKS2)
  std::string volume_key_file;               // --volume-key-file: LUKS only, no passphrase
};

struct CloseArgs {
  std::string name;
  bool force = false;
  bool all = false;
  std::string mount_dir;
};

struct StatusArgs {
  std::string name;
  std::string mount_dir;
  bool zones = false;  // --zones: the zone table of zoned volumes
  bool json = false;
};

// luksSuspend NAME / luksResume NAME (the key options apply to luksResume).
struct SuspendArgs {
  std::string name;
  std::string mount_dir;
  std::string key_file;
  std::uint64_t keyfile_offset = 0;
  std::uint64_t keyfile_size = 0;
  int key_slot = -1;
  std::uint32_t tries = 3;
  TokenFlags tokens;  // luksResume, refresh: --token-id/--token-only/--token-type (LUKS2)
};

// resize NAME [--size SECTORS | --device-size BYTES] (cryptsetup's units).
struct ResizeArgs {
  std::string name;
  std::string mount_dir;
  std::optional<std::uint64_t> size_sectors;  // --size/-b
  std::optional<std::uint64_t> device_size;   // --device-size
  std::string key_file;  // accepted as cryptsetup does; the daemon holds the key
};

// refresh NAME [--allow-discards] [--perf-*] (+ the key options of luksResume).
struct RefreshArgs {
  SuspendArgs key;  // name, mount dir, key file, keyfile offset/size, key slot, tries
  ActivationFlags flags;
  bool persistent = false;
};

struct DaemonArgs {
  std::string mount_dir;
  int handoff_fd = -1;
  bool fuse_debug = false;
  std::string fuse_transport = "auto";
};

// --fuse-transport, already checked by CLI11 (IsMember).
fs::FuseTransport transport_of(const std::string& s) {
  if (s == "uring") return fs::FuseTransport::kUring;
  if (s == "dev") return fs::FuseTransport::kDev;
  return fs::FuseTransport::kAuto;
}

spdlog::level::level_enum level_for(const CommandContext& ctx) {
  if (!ctx.log_level.empty()) return spdlog::level::from_str(ctx.log_level);
  if (ctx.verbosity >= 2) return spdlog::level::trace;
  if (ctx.verbosity == 1) return spdlog::level::debug;
  return spdlog::level::warn;
}

// A daemon logs info and up unless -v/--debug ask for more or --log-level says exactly.
spdlog::level::level_enum daemon_level_for(const CommandContext& ctx) {
  if (!ctx.log_level.empty()) return spdlog::level::from_str(ctx.log_level);
  return std::min(level_for(ctx), spdlog::level::info);
}

// Where a daemon this command starts logs (fs/README.md "Logging"): what --log-target says
// (journal = syslog: journald reads /dev/log); else stderr in the foreground; else a file next
// to the mount directory when started from a terminal (someone is there to read it); else
// syslog (a service, a script, a boot unit) when a syslog daemon or journald listens on
// /dev/log, and the file when nothing does (its lines would be lost).
std::string daemon_log_target(const CommandContext& ctx, bool foreground) {
  if (ctx.log_target == "journal") return "syslog";
  if (!ctx.log_target.empty()) return ctx.log_target;
  if (foreground) return "stderr";
  if (::isatty(STDERR_FILENO) == 1) return "file";
  struct stat st {};
  return ::stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode) ? "syslog" : "file";
}

// The daemon's logger for `target` ("stderr", "file", "syslog"), registered as "cryptmap".
std::shared_ptr<spdlog::logger> make_daemon_logger(const std::string& target,
                                                   const ControlPaths& paths,
                                                   spdlog::level::level_enum level) {
  spdlog::drop("cryptmap");
  std::shared_ptr<spdlog::logger> log;
  try {
    if (target == "file") {
      const std::string file = paths.mount_dir + ".log";
      log = spdlog::basic_logger_mt("cryptmap", file);
      ::chmod(file.c_str(), 0600);
      log->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%P] [%l] %v");
    } else if (target == "syslog") {
      // ident "cryptmap", pid in every line, facility daemon; the sink maps spdlog levels to
      // syslog priorities (debug/trace -> LOG_DEBUG, info -> LOG_INFO, warn -> LOG_WARNING ...).
      log = spdlog::syslog_logger_mt("cryptmap", "cryptmap", LOG_PID, LOG_DAEMON, false);
      log->set_pattern("%v");
    }
  } catch (const spdlog::spdlog_ex& e) {
    // A file that cannot be written: syslog still reaches someone (a spawned daemon's stderr
    // is /dev/null).
    std::fprintf(stderr, "Cannot log to %s (%s); logging to %s.\n", target.c_str(), e.what(),
                 target == "file" ? "syslog" : "stderr");
    spdlog::drop("cryptmap");
    log.reset();
    if (target == "file") {
      log = spdlog::syslog_logger_mt("cryptmap", "cryptmap", LOG_PID, LOG_DAEMON, false);
      log->set_pattern("%v");
    }
  }
  if (!log) {
    spdlog::drop("cryptmap");
    log = spdlog::stderr_color_mt("cryptmap");
    log->set_pattern("%^%l%$: %v");
  }
  log->set_level(level);
  log->flush_on(spdlog::level::info);
  spdlog::set_default_logger(log);
  return log;
}

std::string log_place(const std::string& target, const ControlPaths& paths) {
  if (target == "file") return paths.mount_dir + ".log";
  if (target == "syslog") return "syslog/journal (journalctl -t cryptmap)";
  return "stderr";
}

// True when /etc/fuse.conf has an uncommented `user_allow_other` line (fusermount3 reads it
// and refuses allow_other to non-root users without it).
bool fuse_conf_allows_other() {
  std::ifstream in("/etc/fuse.conf");
  for (std::string line; std::getline(in, line);) {
    auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (line.compare(start, 16, "user_allow_other") == 0) return true;
  }
  return false;
}

// CLI processes log to stderr, warnings and up unless -v/--debug.
void configure_cli_logging(const CommandContext& ctx) {
  auto log = spdlog::stderr_color_mt("cryptmap");
  log->set_level(level_for(ctx));
  log->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(log);
}

void say(const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); }

void add_activation_flags(CLI::App& verb, ActivationFlags& f) {
  verb.add_flag("--allow-discards", f.allow_discards,
                "Allow discards (fallocate punch-hole on the mapped file) to reach the image");
  verb.add_flag("--perf-no_read_workqueue", f.perf_no_read_workqueue,
                "Decrypt reads on the requesting thread only; no read-ahead");
  verb.add_flag("--perf-no_write_workqueue", f.perf_no_write_workqueue,
                "Encrypt writes on the requesting thread and issue them before completing "
                "(write-through)");
  verb.add_flag("--perf-same_cpu_crypt", f.perf_same_cpu_crypt,
                "Accepted as cryptsetup's and shown by status; changes nothing: cryptmap has no "
                "per-CPU crypt queues to bind (docs/formats.md 3.6)");
  verb.add_flag("--perf-submit_from_crypt_cpus", f.perf_submit_from_crypt_cpus,
                "Accepted as cryptsetup's and shown by status; changes nothing: cryptmap always "
                "submits a write from the thread that encrypted it (docs/formats.md 3.6)");
}

// The flags given, or the header's persistent ones (LUKS2, already in req.layout), as cryptsetup
// merges them.
void apply_activation_flags(const ActivationFlags& f, Request& req) {
  if (f.allow_discards) req.layout.allow_discards = true;
  if (f.perf_no_read_workqueue || req.layout.no_read_workqueue)
    req.open_flags |= kOpenNoReadWorkqueue;
  if (f.perf_no_write_workqueue || req.layout.no_write_workqueue)
    req.open_flags |= kOpenNoWriteWorkqueue;
  if (f.perf_same_cpu_crypt || req.layout.same_cpu_crypt) req.open_flags |= kOpenSameCpuCrypt;
  if (f.perf_submit_from_crypt_cpus || req.layout.submit_from_crypt_cpus)
    req.open_flags |= kOpenSubmitFromCryptCpus;
}

ControlPaths paths_or_exit(const std::string& mount_dir, CommandContext& ctx, bool& ok_out) {
  auto p = control_paths(mount_dir.empty() ? default_mount_dir() : mount_dir);
  ok_out = p.has_value();
  if (!p) {
    say(p.error().message());
    ctx.exit_code = kExitUsage;
    return {};
  }
  return *p;
}

// Holds <mount-dir>.lock (flock) while deciding whether a daemon runs and starting one.
class DirLock {
 public:
  explicit DirLock(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_.valid()) ::flock(fd_.get(), LOCK_EX);
  }
  void release() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

Result<SecretBytes> ask(const OpenArgs& a, const KeySource& src) {
  return read_passphrase(src, "Enter passphrase for " + a.image + ": ", false);
}

// --tcrypt-protect-hidden: unlocks the hidden volume too (its own passphrase, the same
// keyfiles) and makes the outer volume refuse writes into it (docs/tcrypt.md §8).
bool protect_hidden(const OpenArgs& a, volume::TcryptMatch& outer, CommandContext& ctx) {
  if (a.tcrypt.options.hidden) {
    say("Option --tcrypt-protect-hidden protects a hidden volume while its outer volume is open; "
        "it cannot be combined with --tcrypt-hidden.");
    ctx.exit_code = kExitUsage;
    return false;
  }
  TcryptArgs h = a.tcrypt;
  h.options.hidden = true;
  h.options.key_only = true;
  h.prompt = "Enter passphrase for the hidden volume of " + a.image + ": ";
  auto hidden = unlock_tcrypt(a.image, h, ctx);
  if (!hidden) return false;
  const volume::VolumeLayout& o = outer.layout;
  const volume::VolumeLayout& in = hidden->layout;
  const std::uint64_t size = in.size_bytes;
  if (size == 0 || in.data_offset_bytes < o.data_offset_bytes) {
    say("The hidden volume of " + a.image + " does not lie inside its outer volume, so it " +
        "cannot be protected; open the hidden volume alone (--tcrypt-hidden).");
    ctx.exit_code = kExitUsage;
    return false;
  }
  outer.layout.guard_offset_bytes = in.data_offset_bytes - o.data_offset_bytes;
  outer.layout.guard_size_bytes = size;
  return true;
}

// open --volume-key-file F: exactly the header's key size read from F into locked memory,
// checked against the volume-key digest; no keyslot is used (cryptsetup's
// crypt_activate_by_volume_key).
std::optional<Request> unlock_with_key_file(const OpenArgs& a, const volume::Unlocker& unlocker,
                                            Request req, CommandContext& ctx) {
  if (unlocker.bitlk() != nullptr || unlocker.layout().key_bytes == 0) {
    say("Option --volume-key-file opens LUKS devices only; " + a.image + " is not one.");
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  const std::uint32_t need = unlocker.layout().key_bytes;
  KeySource vs;
  vs.key_file = a.volume_key_file;
  vs.keyfile_size = need;
  auto vk = read_passphrase(vs, "", false);
  if (!vk || vk->size() != need) {
    say("Cannot read " + std::to_string(need) + " bytes from keyfile " + a.volume_key_file +
        (vk ? "." : " (" + vk.error().message() + ")."));
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  auto key = unlocker.unlock_with_volume_key(vk->span());
  if (!key) {
    say(key.error().code == Errc::kBadKey ? std::string("Volume key does not match the volume.")
                                          : "Cannot use the volume key: " + key.error().message());
    ctx.exit_code = exit_code_for(key.error());
    return std::nullopt;
  }
  req.layout = std::move(key->layout);
  req.volume_key = std::move(key->volume_key);
  return req;
}

// open --type loopaes (docs/loopaes.md): the key file (whole; `-` = stdin, where users pipe
// `gpg --decrypt`) gives the keys and their count, the options the mapping. No header, so no
// key check: a wrong key file opens and reads garbage, as with cryptsetup.
std::optional<Request> unlock_loopaes(const OpenArgs& a, Request req, const KeySource& src,
                                      CommandContext& ctx) {
  if (!src.key_file) {
    say("Option --key-file is required (loop-AES keys come from a key file; for a GPG-encrypted "
        "one: gpg --decrypt KEYFILE | cryptmap open --type loopaes " +
        a.image + " NAME --key-file -).");
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  volume::UnlockOptions uo;
  uo.type = volume::VolumeType::kLoopaes;
  uo.loopaes = a.loopaes;
  auto store = volume::open_image_store(a.image, volume::metadata_store_options(true));
  if (!store) {
    say(user_message(store.error(), a.image));
    ctx.exit_code = exit_code_for(store.error());
    return std::nullopt;
  }
  auto unlocker = volume::Unlocker::prepare(**store, **store, uo);
  if (!unlocker) {
    const Error& e = unlocker.error();
    if (e.code == Errc::kNoSpace)
      say("Device " + a.image + " is too small for --offset " +
          std::to_string(a.loopaes.offset_sectors) + " (" + std::string(e.detail_view()) +
          "). Give the offset of the loop-AES data in 512-byte sectors.");
    else
      say("Cannot open " + a.image + " as loop-AES: " + e.message() + ".");
    ctx.exit_code = exit_code_for(e);
    return std::nullopt;
  }
  auto keyfile = read_passphrase(src, "", false);
  if (!keyfile) {
    say("Cannot read keyfile " + *src.key_file + ": " + keyfile.error().message());
    ctx.exit_code = exit_code_for(keyfile.error());
    return std::nullopt;
  }
  auto key = unlocker->unlock(keyfile->span());
  if (!key) {
    const Error& e = key.error();
    const std::string file = *src.key_file == "-" ? "stdin" : *src.key_file;
    if (std::string_view(e.what).find("GPG") != std::string_view::npos)
      say("Detected not yet supported GPG encrypted keyfile " + file +
          ". Please use gpg --decrypt " + (file == "stdin" ? "KEYFILE" : file) +
          " | cryptmap open --type loopaes " + a.image + " NAME --key-file -");
    else if (e.code == Errc::kInvalid)
      say("Incompatible loop-AES keyfile detected in " + file + ": " +
          std::string(e.detail_view()) + ".");
    else
      say("Cannot use the loop-AES keyfile " + file + ": " + e.message() + ".");
    ctx.exit_code = exit_code_for(e);
    return std::nullopt;
  }
  spdlog::debug("loop-AES: {} key(s), cipher {}", key->volume_key.size() / (a.loopaes.key_bits / 8),
                key->layout.cipher.to_string());
  req.layout = std::move(key->layout);
  req.volume_key = std::move(key->volume_key);
  return req;
}

// open of a LUKS2 image in reencryption (docs/reencrypt.md §9): under the metadata lock, an
// interrupted hotzone is recovered and the volume is served through both crypt segments, the
// reencryption paused (`cryptmap reencrypt --resume-only` or cryptsetup's goes on with it).
// Only an interrupted hotzone (`crashed`) needs the image writable and the lock exclusive.
std::optional<Request> unlock_in_reencryption(const OpenArgs& a, const KeySource& src, bool crashed,
                                              Request req, CommandContext& ctx) {
  auto refuse = [&](const std::string& what) -> std::optional<Request> {
    say("Cannot open " + a.image + ", a LUKS2 image in reencryption, " + what + ".");
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  };
  if (!a.volume_key_file.empty())
    return refuse(
        "with --volume-key-file (not implemented: both volume keys are needed; use a "
        "passphrase)");
  if (a.key_slot >= 0)
    return refuse("with --key-slot (both volume keys are unlocked with any keyslot of each)");
  // With --header the metadata (and its lock) is the header file's, the data the image's.
  const std::string& header = a.header.empty() ? a.image : a.header;
  auto lock = MetadataLock::take(header, crashed);
  auto open_store = [&](const std::string& path) -> std::unique_ptr<volume::BackingStore> {
    auto store = volume::open_image_store(path, volume::metadata_store_options(!crashed));
    if (store) return std::move(*store);
    say(user_message(store.error(), path) +
        (crashed ? " (the interrupted reencryption hotzone of this image must be recovered "
                   "first, which needs write access)"
                 : ""));
    ctx.exit_code = exit_code_for(store.error());
    return nullptr;
  };
  auto hdr = open_store(header);
  if (!hdr) return std::nullopt;
  std::unique_ptr<volume::BackingStore> data;  // the image, under a detached header
  if (!a.header.empty() && !(data = open_store(a.image))) return std::nullopt;
  const std::uint32_t attempts = passphrase_is_interactive(src) ? std::max(1u, a.tries) : 1;
  for (std::uint32_t i = 0; i < attempts; ++i) {
    auto pass = ask(a, src);
    if (!pass) {
      say(pass.error().message());
      ctx.exit_code = exit_code_for(pass.error());
      return std::nullopt;
    }
    auto opened = volume::reencrypt_open(*hdr, pass->span(), data.get());
    if (opened) {
      req.layout = std::move(opened->layout);
      req.volume_key = std::move(opened->volume_key);
      return req;
    }
    if (opened.error().code != Errc::kBadKey) {
      say("Cannot open " + a.image +
          " (LUKS2 reencryption in progress): " + opened.error().message());
      ctx.exit_code = exit_code_for(opened.error());
      return std::nullopt;
    }
    say("No key available with this passphrase.");
    ctx.exit_code = kExitPermission;
  }
  return std::nullopt;
}

// Builds the add request: header, passphrase, unlock. Returns the exit code on failure.
std::optional<Request> unlock(const OpenArgs& a, CommandContext& ctx) {
  Request req;
  req.verb = Verb::kAdd;
  req.name = a.name;
  req.read_only = a.read_only;
  req.allow_other = a.allow_other;
  struct stat st {};
  const bool network = volume::is_store_uri(a.image);  // the store's open below reports errors
  if (!network && ::stat(a.image.c_str(), &st) != 0) {
    say("Device " + a.image + " does not exist or access denied.");
    ctx.exit_code = kExitBadDevice;
    return std::nullopt;
  }
  // The daemon may have another environment: a network argument carries this CLI's Ceph client
  // settings (--ceph-conf/--ceph-id, $CEPH_CONF) with it.
  req.source.image = network ? volume::pin_rbd_client(a.image) : absolute(a.image);
  KeySource src = key_source_of(a);
  src.tries = a.tries;

  if (!a.volume_key_file.empty() && a.type != "luks" && a.type != "luks1" && a.type != "luks2") {
    say("Option --volume-key-file opens LUKS devices only (cryptsetup 2.6.1 asks " + a.type +
        " devices for a passphrase and ignores it).");
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  // The one unlock path (volume/format/unlock.h), in its two steps: the header (and whether
  // the image holds the data segment) before any passphrase is asked, then the keyslots for
  // each passphrase tried.
  if (a.type == "tcrypt") {
    if (a.tcrypt.options.whole_disk && !a.tcrypt.options.system) {
      say("Option --tcrypt-whole-disk serves a system-encrypted disk image whole; it needs "
          "--tcrypt-system (the header at byte 31744 of " +
          a.image + ").");
      ctx.exit_code = kExitUsage;
      return std::nullopt;
    }
    auto m = unlock_tcrypt(a.image, a.tcrypt, ctx);
    if (!m) return std::nullopt;
    if (a.tcrypt_protect_hidden && !protect_hidden(a, *m, ctx)) return std::nullopt;
    if (m->read_only && !a.read_only) {
      say("Legacy TrueCrypt " + m->mode + " volume " + a.image + ": opened read-only.");
      req.read_only = true;
    }
    req.layout = std::move(m->layout);
    req.volume_key = std::move(m->volume_key);
    return req;
  }
  if (a.type == "loopaes") return unlock_loopaes(a, std::move(req), src, ctx);
  volume::UnlockOptions uo;
  if (a.type == "plain")
    uo.type = volume::VolumeType::kPlain;
  else if (a.type == "luks1")
    uo.type = volume::VolumeType::kLuks1;
  else if (a.type == "luks2")
    uo.type = volume::VolumeType::kLuks2;
  else if (a.type == "bitlk")
    uo.type = volume::VolumeType::kBitlk;
  else if (a.type == "fvault2")
    uo.type = volume::VolumeType::kFvault2;
  else if (a.type != "luks") {
    say("Unknown device type " + a.type +
        " (use luks, luks1, luks2, plain, bitlk, fvault2, tcrypt or loopaes).");
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  const bool plain = uo.type == volume::VolumeType::kPlain;
  uo.plain = a.plain;
  uo.plain_key_from_file = !a.key_file.empty() && a.key_file != "-";
  if (a.key_slot >= 0) uo.keyslot = a.key_slot;
  uo.key_only = a.test_passphrase;
  uo.integrity_no_journal = a.integrity_no_journal;
  const volume::PosixStoreOptions ro = volume::metadata_store_options(true);
  const std::string header_path = a.header.empty() || plain ? a.image : a.header;
  if (!a.header.empty() && !plain) req.source.header = absolute(a.header);
  auto header_store = volume::open_image_store(header_path, ro);
  if (!header_store) {
    say(user_message(header_store.error(), header_path));
    ctx.exit_code = exit_code_for(header_store.error());
    return std::nullopt;
  }
  std::unique_ptr<volume::BackingStore> data_store;  // the image, when the header is detached
  if (header_path != a.image) {
    auto d = volume::open_image_store(a.image, ro);
    if (!d) {
      say(user_message(d.error(), a.image));
      ctx.exit_code = exit_code_for(d.error());
      return std::nullopt;
    }
    data_store = std::move(*d);
  }
  const volume::BackingStore& data = data_store ? *data_store : **header_store;
  if (!plain && a.type != "bitlk" && a.type != "fvault2") {
    if (auto refused = refuse_tokens(a.tokens, **header_store, header_path)) {
      ctx.exit_code = *refused;
      return std::nullopt;
    }
  }
  if (!plain && (a.type == "luks" || a.type == "luks2")) {
    auto reenc = volume::reencrypt_status(**header_store, data_store.get());
    if (reenc && reenc->in_reencryption)
      return unlock_in_reencryption(a, src, reenc->crashed, std::move(req), ctx);
  }
  auto unlocker = volume::Unlocker::prepare(**header_store, data, uo);
  if (!unlocker) {
    const Error& e = unlocker.error();
    if (plain) {
      say(e.message());
      ctx.exit_code = kExitUsage;
    } else if (uo.type == volume::VolumeType::kBitlk ||
               (!uo.type && volume::is_bitlk(**header_store))) {
      if (e.code == Errc::kInvalid)
        say("Device " + a.image + " is not a valid BITLK device. (" + e.message() + ")");
      else if (e.code == Errc::kUnsupported)
        say("Cannot activate BITLK device " + a.image + ": " + std::string(e.what) +
            (e.detail[0] ? std::string(" (") + e.detail.data() + ")" : std::string()) + ".");
      else
        say("Cannot use the BITLK metadata of " + a.image + ": " + e.message() +
            ". The metadata is damaged; cryptmap bitlkDump shows what it can read.");
      ctx.exit_code = exit_code_for(e);
    } else if (uo.type == volume::VolumeType::kFvault2 ||
               (!uo.type && volume::is_fvault2(**header_store))) {
      if (e.code == Errc::kInvalid)
        say("Device " + a.image + " is not a valid FVAULT2 device. (" + e.message() + ")");
      else
        say("Cannot use the FVAULT2 metadata of " + a.image + ": " + e.message() + ".");
      ctx.exit_code = exit_code_for(e);
    } else {
      if (e.code == Errc::kInvalid)
        say("Device " + header_path + " is not a valid LUKS device. (" + e.message() + ")");
      else if (e.code == Errc::kNoSpace)
        say("Device " + a.image + " is too small for the LUKS data segment of " + header_path +
            " (" + std::string(e.detail_view()) +
            "). Give the image this header belongs to, or restore the image's full size.");
      else
        say("Cannot use the LUKS header of " + header_path + ": " + e.message());
      ctx.exit_code = exit_code_for(e);
    }
    return std::nullopt;
  }
  if (!a.volume_key_file.empty()) return unlock_with_key_file(a, *unlocker, std::move(req), ctx);
  const std::uint32_t attempts =
      !plain && passphrase_is_interactive(src) ? std::max(1u, a.tries) : 1;
  // BitLocker with a clear key (suspended protection): no secret to ask for, as cryptsetup.
  const bool no_passphrase =
      unlocker->bitlk() != nullptr && unlocker->bitlk()->has_clear_key() && a.key_file.empty();
  for (std::uint32_t i = 0; i < attempts; ++i) {
    auto pass = no_passphrase ? SecretBytes::allocate(0) : ask(a, src);
    if (!pass) {
      say(pass.error().message());
      ctx.exit_code = exit_code_for(pass.error());
      return std::nullopt;
    }
    auto key = unlocker->unlock(pass->span());
    if (key) {
      if (!plain) {
        spdlog::debug("key slot {} unlocked", key->keyslot);
        if (a.test_passphrase && ctx.verbosity > 0)
          say("Key slot " + std::to_string(key->keyslot) + " unlocked.");
      }
      req.layout = std::move(key->layout);
      req.volume_key = std::move(key->volume_key);
      return req;
    }
    if (plain) {
      say(key.error().message());
      ctx.exit_code = exit_code_for(key.error());
      return std::nullopt;
    }
    if (key.error().code != Errc::kBadKey) {
      say("Cannot unlock " + header_path + ": " + key.error().message());
      ctx.exit_code = exit_code_for(key.error());
      return std::nullopt;
    }
    say("No key available with this passphrase.");
    ctx.exit_code = kExitPermission;
  }
  return std::nullopt;
}

int report_reply(const Result<Reply>& reply, const std::string& what) {
  if (!reply) {
    say("The cryptmap daemon did not answer (" + what + "): " + reply.error().message());
    return kExitUsage;
  }
  if (reply->exit_code != kExitOk) say(reply->message);
  return reply->exit_code;
}

// Starts a daemon (fresh exec of this binary) and hands it the first request over a socketpair.
int spawn_daemon(const ControlPaths& paths, const Request& req, const OpenArgs& a,
                 const CommandContext& ctx) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    say(std::string("Cannot start the daemon: socketpair: ") + std::strerror(errno));
    return kExitUsage;
  }
  UniqueFd mine(sv[0]), theirs(sv[1]);
  // Everything exec needs is built before fork: the child only calls async-signal-safe code.
  const std::string target = daemon_log_target(ctx, false);
  std::vector<std::string> args = {"cryptmap",      "daemon",       "--mount-dir",
                                   paths.mount_dir, "--handoff-fd", std::to_string(theirs.get())};
  CommandContext for_daemon = ctx;
  for_daemon.log_target = target;
  for (auto& w : logging_args(for_daemon)) args.push_back(std::move(w));
  if (a.fuse_debug) args.emplace_back("--fuse-debug");
  args.emplace_back("--fuse-transport");
  args.push_back(a.fuse_transport);
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    say(std::string("Cannot start the daemon: fork: ") + std::strerror(errno));
    return kExitNoMemory;
  }
  if (pid == 0) {
    ::setsid();
    ::fcntl(theirs.get(), F_SETFD, 0);  // the handoff end survives exec
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  theirs.reset();
  auto reply = call_daemon(mine.get(), req);
  if (!reply) {
    say("The cryptmap daemon failed to start for " + paths.mount_dir + " (see its log in " +
        log_place(target, paths) + ", or run open with --foreground): " + reply.error().message());
    return kExitUsage;
  }
  return report_reply(reply, "open");
}

Result<Reply> ask_running_daemon(const ControlPaths& paths, const Request& req) {
  CRYPTMAP_TRY(fd, connect_control(paths.socket));
  return call_daemon(fd.get(), req);
}

// open --all: every cryptmaptab entry without noauto, each through its own `cryptmap open`.
// Options that make sense per entry come from the table; on the command line only the mount
// directory, the table, --allow-other and the logging flags apply to all of them.
void run_open_all(const OpenArgs& a, const CLI::App& open, CommandContext& ctx) {
  static const std::set<std::string> kAllowed{"--all", "--tab", "--mount-dir", "--allow-other"};
  for (const CLI::Option* o : open.get_options()) {
    if (o->count() == 0 || kAllowed.count(o->get_name()) != 0) continue;
    say("open --all takes the volumes and their options from " + a.tab + "; " + o->get_name() +
        " cannot be combined with it (put it in the table's options, or open the volume alone).");
    ctx.exit_code = kExitUsage;
    return;
  }
  apps::TabRun run;
  run.tab = a.tab;
  run.mount_dir = a.mount_dir;
  run.open_args = logging_args(ctx);
  if (a.allow_other) run.open_args.emplace_back("--allow-other");
  ctx.exit_code = apps::open_from_tab(run);
}

// --type loopaes takes --cipher (the block cipher), --key-size (default 256), --hash (default
// by key size), --offset and --skip (default: the offset) as cryptsetup's action_open_loopaes;
// plain mode's other mapping options do not apply.
bool loopaes_options(OpenArgs& a, const CLI::App& open, CommandContext& ctx) {
  for (const char* o : {"--size", "--sector-size", "--iv-large-sectors"}) {
    if (open.get_option(o)->count() == 0) continue;
    say(std::string("Option ") + o + " is not supported for loop-AES devices (their sectors " +
        "are 512 bytes and the mapping runs to the end of the image).");
    ctx.exit_code = kExitUsage;
    return false;
  }
  if (open.get_option("--cipher")->count() > 0) a.loopaes.cipher = a.plain.cipher;
  if (open.get_option("--key-size")->count() > 0) a.loopaes.key_bits = a.plain.key_bits;
  if (open.get_option("--hash")->count() > 0) a.loopaes.hash = a.plain.hash;
  a.loopaes.offset_sectors = a.plain.offset_sectors;
  if (open.get_option("--skip")->count() > 0) a.loopaes.skip_sectors = a.plain.skip_sectors;
  if (auto r = volume::loopaes_check_options(a.loopaes); !r) {
    say(r.error().message() + ".");
    ctx.exit_code = kExitUsage;
    return false;
  }
  return true;
}

void run_open(OpenArgs& a, const CLI::App& open, CommandContext& ctx) {
  configure_cli_logging(ctx);
  if (a.all) {
    run_open_all(a, open, ctx);
    return;
  }
  if (a.image.empty()) {
    say("Command requires device and mapped name as arguments (or --all).");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (a.type == "tcrypt") {
    a.tcrypt.key_files = a.key_files;
    a.tcrypt.tries = a.tries;
    if (!finish_tcrypt_options(a.tcrypt, a.disable_veracrypt, a.veracrypt_pim, ctx)) return;
    if (open.get_option("--hash")->count() > 0) a.tcrypt.options.hash = a.plain.hash;
    if (open.get_option("--cipher")->count() > 0) a.tcrypt.options.cipher = a.plain.cipher;
    a.tcrypt.options.key_only = a.test_passphrase;
  } else if (a.key_files.size() > 1) {
    say("Only one --key-file is allowed for --type " + a.type +
        " (several keyfiles are a TCRYPT keyfile pool).");
    ctx.exit_code = kExitUsage;
    return;
  } else if (!a.key_files.empty()) {
    a.key_file = a.key_files.front();
  }
  if (a.type == "loopaes" && !loopaes_options(a, open, ctx)) return;
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  if (a.test_passphrase) {
    // cryptsetup open --test-passphrase: check the passphrase against the keyslots, map
    // nothing; exit 0 when a keyslot opens, 2 when none does. NAME is optional.
    if (a.type == "plain" || a.type == "loopaes") {
      say("Option --test-passphrase is allowed only for open of LUKS and TCRYPT devices.");
      ctx.exit_code = kExitUsage;
      return;
    }
    if (unlock(a, ctx)) ctx.exit_code = kExitOk;
    return;
  }
  if (a.name.empty()) {
    say("Command requires device and mapped name as arguments.");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (a.allow_other && ::getuid() != 0 && !fuse_conf_allows_other()) {
    say("Option --allow-other needs `user_allow_other` in /etc/fuse.conf for users other than "
        "root (ask the administrator to add that line), or open without --allow-other.");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (auto r = check_volume_name(a.name); !r) {
    say("Invalid volume name " + a.name + ": " + r.error().message());
    ctx.exit_code = kExitUsage;
    return;
  }
  // cryptsetup refuses an existing name before asking for the passphrase.
  Request probe;
  probe.verb = Verb::kStatus;
  probe.name = a.name;
  auto st = ask_running_daemon(paths, probe);
  if (st && st->exit_code == kExitOk) {
    say("Device " + a.name + " already exists.");
    ctx.exit_code = kExitBusy;
    return;
  }
  if (a.flags.allow_discards) a.plain.allow_discards = true;
  unsigned long long cache_bytes = volume::VolumeOptions{}.cache_bytes;
  if (!a.cache_size.empty() && !apps::parse_size(a.cache_size, cache_bytes)) {
    say("Invalid --cache-size '" + a.cache_size + "': give bytes with an optional K, M or G " +
        "suffix (e.g. 256M); 0 turns the sector cache off (every write goes straight to the " +
        "image).");
    ctx.exit_code = kExitUsage;
    return;
  }
  // The running daemon's mount cannot gain allow_other: say so before asking for the
  // passphrase (the daemon checks again, for a daemon started in between).
  if (st && a.allow_other && !apps::mount_has_option(paths.mount_dir, "allow_other")) {
    say("The cryptmap daemon serving " + paths.mount_dir + " was started without " +
        "--allow-other, so other users cannot reach " + a.name + ". Close its volumes first, " +
        "or open with another --mount-dir.");
    ctx.exit_code = kExitUsage;
    return;
  }
  // A foreground open becomes the daemon: what its unlock starts and leaves running (TBB's
  // workers after a TCRYPT unlock, a store library's threads) serves the volume too, so this
  // thread is an I/O thread before it unlocks and they inherit the mark (docs/architecture.md
  // §4.1). Quietly: the daemon logs a refusal once its logger exists.
  if (a.foreground) mark_io_thread_quietly();
  std::optional<Request> req = unlock(a, ctx);
  if (!req) return;
  if (a.flags.allow_discards) {
    say("WARNING: --allow-discards: discarded (punched) ranges become visible in the image, "
        "which reveals which blocks are unused and can leak the file system type. See "
        "cryptsetup(8), --allow-discards.");
  }
  apply_activation_flags(a.flags, *req);
  if (a.debug_unordered_zone_writes) req->open_flags |= kOpenUnorderedZoneWrites;
  req->cache_bytes = cache_bytes;

  DirLock lock(paths.lock);
  auto running = connect_control(paths.socket);
  if (running) {
    ctx.exit_code = report_reply(call_daemon(running->get(), *req), "open");
    return;
  }
  if (running.error().code != Errc::kNotFound) {
    say(running.error().message());
    ctx.exit_code = kExitUsage;
    return;
  }
  if (!a.foreground) {
    ctx.exit_code = spawn_daemon(paths, *req, a, ctx);
    return;
  }
  // Foreground: this process becomes the daemon; logs go to stderr unless --log-target.
  auto log = make_daemon_logger(daemon_log_target(ctx, true), paths, daemon_level_for(ctx));
  DaemonOptions opts;
  opts.paths = paths;
  opts.fuse_debug = a.fuse_debug;
  opts.fuse_transport = transport_of(a.fuse_transport);
  opts.logger = log;
  ctx.exit_code = serve(opts, std::move(*req), [&](const Reply& r) {
    lock.release();
    if (r.exit_code != kExitOk) say(r.message);
  });
}

// close --all: every volume the daemon of the mount directory serves; continues past a
// volume that cannot be closed and exits with the first failure's code.
void run_close_all(const ControlPaths& paths, bool force, CommandContext& ctx) {
  Request list;
  list.verb = Verb::kStatus;
  auto reply = ask_running_daemon(paths, list);
  if (!reply && reply.error().code == Errc::kNotFound) return;  // nothing open
  if (!reply || reply->exit_code != kExitOk) {
    ctx.exit_code = report_reply(reply, "close --all");
    return;
  }
  std::vector<std::string> failed;
  for (const VolumeStatus& v : reply->volumes) {
    Request req;
    req.verb = Verb::kRemove;
    req.name = v.name;
    req.force = force;
    auto r = ask_running_daemon(paths, req);
    if (!r && r.error().code == Errc::kNotFound) break;  // the daemon exited: all closed
    const int rc = report_reply(r, "close " + v.name);
    if (rc != kExitOk) {
      failed.push_back(v.name);
      if (ctx.exit_code == kExitOk) ctx.exit_code = rc;
    }
  }
  if (!failed.empty()) {
    std::string names;
    for (const auto& n : failed) names += (names.empty() ? "" : ", ") + n;
    say("close --all: could not close " + names + ".");
  }
}

void run_close(const CloseArgs& a, CommandContext& ctx) {
  configure_cli_logging(ctx);
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  if (a.all != a.name.empty()) {
    say(a.all ? "close --all takes no NAME." : "Command requires the mapped name (or --all).");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (a.all) {
    run_close_all(paths, a.force, ctx);
    return;
  }
  Request req;
  req.verb = Verb::kRemove;
  req.name = a.name;
  req.force = a.force;
  auto reply = ask_running_daemon(paths, req);
  if (!reply && reply.error().code == Errc::kNotFound) {
    say("Device " + a.name + " is not active.");
    ctx.exit_code = kExitBadDevice;
    return;
  }
  ctx.exit_code = report_reply(reply, "close");
}

// The data cipher as cryptsetup names it (an authenticated composition as the LUKS2 segment
// writes it: AEAD modes have no CipherSpec; a TCRYPT cascade as its chain, e.g.
// "aes-twofish-serpent-xts-plain64", the names in key order as tcryptDump's "Cipher chain").
std::string cipher_text(const volume::VolumeLayout& l) {
  if (!l.auth_encryption.empty()) return l.auth_encryption;
  crypto::CipherSpec spec = l.cipher;
  for (const auto& c : l.cascade) spec.cipher += "-" + c;
  return spec.to_string();
}

// A LUKS2 volume served in reencryption (docs/reencrypt.md §9): its crypt segments carry slices
// of the old key (offset 0) and the new one (after it); a linear segment is plaintext, the old
// side of an encryption or the new side of a decryption (whose layout's cipher is cipher_null).
// Empty for any other volume, and for a finished decryption (linear only).
struct PausedReencryption {
  std::uint64_t done_bytes = 0;  // under the new key (or decrypted)
  std::uint32_t old_key_bits = 0, new_key_bits = 0;
  std::string old_cipher;
};
bool decrypting(const volume::VolumeLayout& l) { return l.cipher.cipher == "cipher_null"; }
// Only linear segments: a finished decryption (cipher_null); an encryption with a data shift
// that has not started has them too (the moved start and the rest), under its new cipher.
bool linear_only(const volume::VolumeLayout& l) {
  return !l.segments.empty() && decrypting(l) &&
         std::all_of(l.segments.begin(), l.segments.end(), [](const volume::Segment& s) {
           return s.kind == volume::SegmentKind::kLinear;
         });
}
std::optional<PausedReencryption> paused_reencryption(const volume::VolumeLayout& l) {
  if (l.type != volume::VolumeType::kLuks2 || l.segments.empty() || linear_only(l))
    return std::nullopt;
  const auto linear = [](const volume::Segment& s) {
    return s.kind == volume::SegmentKind::kLinear;
  };
  if (std::none_of(l.segments.begin(), l.segments.end(), linear) &&
      l.segments.front().cipher.key_bytes == 0)
    return std::nullopt;
  PausedReencryption p;
  // A crypt segment is the new side when it has a key slice after the old key's, or the whole
  // key of an encryption (no old key).
  std::uint32_t old_bytes = decrypting(l) ? l.key_bytes : 0;
  for (const volume::Segment& s : l.segments) {
    if (linear(s)) {
      if (decrypting(l))
        p.done_bytes += s.length_bytes;
      else
        p.old_cipher = "plaintext";
    } else if (s.cipher.key_offset == 0 && (decrypting(l) || s.cipher.key_bytes < l.key_bytes)) {
      old_bytes = s.cipher.key_bytes;
      p.old_cipher = s.cipher.encryption;
    } else {
      old_bytes = s.cipher.key_offset;
      p.done_bytes += s.length_bytes;
    }
  }
  p.old_key_bits = old_bytes * 8;
  p.new_key_bits = (l.key_bytes - old_bytes) * 8;
  if (p.old_cipher.empty()) p.old_cipher = "(none left)";
  return p;
}

void print_status(const ControlPaths& paths, const Reply& r) {
  for (const VolumeStatus& v : r.volumes) {
    const auto& l = v.layout;
    std::printf("%s/%s is active%s\n", paths.mount_dir.c_str(), v.name.c_str(),
                v.open_count > 0 ? " and is in use." : ".");
    // A finished online decryption: a linear mapping of the plaintext, which cryptsetup's
    // status shows with no type and no crypt fields (docs/reencrypt.md §10).
    if (linear_only(l) && l.type == volume::VolumeType::kLuks2) {
      std::printf("  type:    n/a\n  mapping: linear (decrypted), device %s\n",
                  v.source.image.c_str());
      continue;
    }
    std::printf("  type:    %s\n", volume::volume_type_name(l.type));
    std::printf("  cipher:  %s\n", cipher_text(l).c_str());
    const auto reenc = paused_reencryption(l);
    std::printf("  keysize: %u bits\n", reenc ? reenc->new_key_bits : l.key_bytes * 8);
    if (reenc)
      std::printf("  reencryption: %s, %llu of %llu bytes under the new key (old: %s, %u bits)\n",
                  v.reencrypting ? "running" : "paused",
                  static_cast<unsigned long long>(reenc->done_bytes),
                  static_cast<unsigned long long>(v.size_bytes), reenc->old_cipher.c_str(),
                  reenc->old_key_bits);
    if (!l.integrity.empty()) {
      std::printf("  integrity: %s\n", l.integrity.c_str());
      if (auto c = crypto::auth_composition(l.auth_encryption, l.integrity))
        std::printf("  integrity tag size: %zu [bytes]\n", c->tag_size);
      std::printf("  integrity mode: %s\n", l.integrity_no_journal ? "no-journal" : "journal");
    }
    std::printf("  key location: cryptmap daemon (pid %lld)\n",
                static_cast<long long>(r.daemon_pid));
    std::printf("  device:  %s\n", v.source.image.c_str());
    if (!v.source.header.empty()) std::printf("  header:  %s\n", v.source.header.c_str());
    std::printf("  sector size:  %u\n", l.sector_size);
    const volume::ActiveOffsets at = volume::active_offsets(l);
    std::printf("  offset:  %llu sectors\n", static_cast<unsigned long long>(at.offset_sectors));
    std::printf("  size:    %llu sectors\n", static_cast<unsigned long long>(v.size_bytes / 512));
    if (at.iv_offset_sectors != 0)
      std::printf("  skipped: %llu sectors\n",
                  static_cast<unsigned long long>(at.iv_offset_sectors));
    std::printf("  mode:    %s%s\n", v.read_only ? "read-only" : "read/write",
                v.suspended ? " (suspended)" : "");
    const bool same_cpu = (v.open_flags & kOpenSameCpuCrypt) != 0;
    const bool submit_from = (v.open_flags & kOpenSubmitFromCryptCpus) != 0;
    const bool no_read_wq = (v.open_flags & kOpenNoReadWorkqueue) != 0;
    const bool no_write_wq = (v.open_flags & kOpenNoWriteWorkqueue) != 0;
    // cryptsetup's line and order (src/cryptsetup.c action_status)
    if (l.allow_discards || same_cpu || submit_from || no_read_wq || no_write_wq)
      std::printf("  flags:   %s%s%s%s%s\n", l.allow_discards ? "discards " : "",
                  same_cpu ? "same_cpu_crypt " : "", submit_from ? "submit_from_crypt_cpus " : "",
                  no_read_wq ? "no_read_workqueue " : "", no_write_wq ? "no_write_workqueue" : "");
    std::printf("  fuse transport: %s\n", v.fuse_transport.c_str());
  }
}

// status --zones: the zone table the daemon publishes as user.cryptmap.zones on the file.
void print_zones(const ControlPaths& paths, const Reply& r) {
  for (const VolumeStatus& v : r.volumes) {
    const std::string file = paths.mount_dir + "/" + v.name;
    std::string buf(1 << 16, '\0');
    const ssize_t n = ::getxattr(file.c_str(), "user.cryptmap.zones", buf.data(), buf.size());
    if (n < 0) {
      std::printf("%s: not zoned\n", file.c_str());
      continue;
    }
    buf.resize(static_cast<std::size_t>(n));
    std::printf("%s zones (offsets in bytes of the mapped file):\n", file.c_str());
    std::printf("# index start len capacity wp type cond\n%s", buf.c_str());
  }
}

// status --json: one object, field names documented in README.md ("status --json").
void print_status_json(const ControlPaths& paths, const Reply* r) {
  nlohmann::ordered_json out;
  out["mount_dir"] = paths.mount_dir;
  out["daemon_pid"] = r != nullptr ? nlohmann::ordered_json(r->daemon_pid) : nullptr;
  out["volumes"] = nlohmann::ordered_json::array();
  if (r != nullptr) {
    for (const VolumeStatus& v : r->volumes) {
      const auto& l = v.layout;
      nlohmann::ordered_json j;
      j["name"] = v.name;
      j["path"] = paths.mount_dir + "/" + v.name;
      j["image"] = v.source.image;
      j["header"] = v.source.header.empty() ? nullptr : nlohmann::ordered_json(v.source.header);
      j["type"] = volume::volume_type_name(l.type);
      j["cipher"] = cipher_text(l);
      const auto reenc = paused_reencryption(l);
      j["key_bits"] = reenc ? reenc->new_key_bits : l.key_bytes * 8;
      j["sector_size"] = l.sector_size;
      j["offset_sectors"] = volume::active_offsets(l).offset_sectors;
      j["size_sectors"] = v.size_bytes / 512;
      j["size_bytes"] = v.size_bytes;
      j["readonly"] = v.read_only;
      j["uuid"] = l.uuid.empty() ? nullptr : nlohmann::ordered_json(l.uuid);
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", v.file_mode);
      j["file_mode"] = mode;
      j["open_count"] = v.open_count;
      j["daemon_pid"] = r->daemon_pid;
      auto flags = nlohmann::ordered_json::array();
      if (v.read_only) flags.push_back("readonly");
      if (l.allow_discards) flags.push_back("allow-discards");
      if (v.open_flags & kOpenSameCpuCrypt) flags.push_back("same-cpu-crypt");
      if (v.open_flags & kOpenSubmitFromCryptCpus) flags.push_back("submit-from-crypt-cpus");
      if (v.open_flags & kOpenNoReadWorkqueue) flags.push_back("no-read-workqueue");
      if (v.open_flags & kOpenNoWriteWorkqueue) flags.push_back("no-write-workqueue");
      if (v.file_mode == 0660) flags.push_back("allow-other");
      if (v.suspended) flags.push_back("suspended");
      j["flags"] = std::move(flags);
      j["suspended"] = v.suspended;
      j["fuse_transport"] = v.fuse_transport;
      // The image store's durability semantics (BackingStore::durability).
      nlohmann::ordered_json sj;
      sj["volatile_writes"] = v.source.store.volatile_writes;
      sj["flush"] = v.source.store.flush;
      sj["fua"] = v.source.store.fua;
      j["store"] = std::move(sj);
      if (l.integrity.empty()) {
        j["integrity"] = nullptr;
      } else {
        nlohmann::ordered_json ij;
        ij["type"] = l.integrity;
        auto c = crypto::auth_composition(l.auth_encryption, l.integrity);
        ij["tag_size"] = c ? nlohmann::ordered_json(c->tag_size) : nullptr;
        ij["journal"] = !l.integrity_no_journal;
        ij["discards"] = false;
        j["integrity"] = std::move(ij);
      }
      if (reenc) {
        nlohmann::ordered_json rj;
        rj["state"] = v.reencrypting ? "running" : "paused";
        rj["done_bytes"] = reenc->done_bytes;
        rj["total_bytes"] = v.size_bytes;
        rj["old_cipher"] = reenc->old_cipher;
        rj["old_key_bits"] = reenc->old_key_bits;
        j["reencryption"] = std::move(rj);
      } else {
        j["reencryption"] = nullptr;
      }
      out["volumes"].push_back(std::move(j));
    }
  }
  std::printf("%s\n", out.dump(2).c_str());
}

void run_status(const StatusArgs& a, CommandContext& ctx) {
  configure_cli_logging(ctx);
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  Request req;
  req.verb = Verb::kStatus;
  req.name = a.name;
  auto reply = ask_running_daemon(paths, req);
  const bool no_daemon = !reply && reply.error().code == Errc::kNotFound;
  if (!reply && !no_daemon) {
    ctx.exit_code = report_reply(reply, "status");
    return;
  }
  const bool inactive = !a.name.empty() && (no_daemon || reply->exit_code != kExitOk);
  if (inactive) ctx.exit_code = no_daemon ? kExitBadDevice : reply->exit_code;
  if (a.json) {
    print_status_json(paths, no_daemon || inactive ? nullptr : &*reply);
    return;
  }
  if (inactive) {
    std::printf("%s/%s is inactive.\n", paths.mount_dir.c_str(), a.name.c_str());
    return;
  }
  if (!no_daemon) print_status(paths, *reply);
  if (a.zones && !no_daemon) print_zones(paths, *reply);
}

// The status of the active volume NAME, or nullopt after saying why not (not active: 4).
std::optional<VolumeStatus> active_volume(const ControlPaths& paths, const std::string& name,
                                          CommandContext& ctx) {
  if (name.empty()) {
    say("Command requires the mapped name as argument.");
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  Request req;
  req.verb = Verb::kStatus;
  req.name = name;
  auto reply = ask_running_daemon(paths, req);
  if ((!reply && reply.error().code == Errc::kNotFound) ||
      (reply && (reply->exit_code != kExitOk || reply->volumes.size() != 1))) {
    say("Device " + name + " is not active.");
    ctx.exit_code = kExitBadDevice;
    return std::nullopt;
  }
  if (!reply) {
    ctx.exit_code = report_reply(reply, "status");
    return std::nullopt;
  }
  return std::move(reply->volumes[0]);
}

// active_volume for luksSuspend/luksResume: every type but LUKS1/LUKS2 is refused (1) with
// cryptsetup 2.6.1's message for the verb (`refusal`: lib/setup.c crypt_suspend via onlyLUKS for
// luksSuspend, src/cryptsetup.c action_luksResume for luksResume).
std::optional<VolumeStatus> active_luks_volume(const ControlPaths& paths, const std::string& name,
                                               const std::string& refusal, CommandContext& ctx) {
  std::optional<VolumeStatus> st = active_volume(paths, name, ctx);
  if (st && st->layout.type != volume::VolumeType::kLuks1 &&
      st->layout.type != volume::VolumeType::kLuks2) {
    say(refusal);
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  return st;
}

// resize NAME: cryptsetup's rules per type (docs/resize.md §2), then the daemon changes the size
// while it serves the file; then a stat, so that the kernel's size of the file is the new one
// for whatever asks next without a stat of its own (`losetup -c`).
void run_resize(const ResizeArgs& a, CommandContext& ctx) {
  configure_cli_logging(ctx);
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  auto refuse = [&](const std::string& why) {
    say(why);
    ctx.exit_code = kExitUsage;
  };
  if (a.size_sectors && a.device_size)
    return refuse("Options --device-size and --size cannot be combined.");
  if (a.device_size && (*a.device_size == 0 || *a.device_size % 512 != 0))
    return refuse("Device size must be multiple of 512 bytes sector.");
  if (a.size_sectors && *a.size_sectors == 0)
    return refuse(
        "Invalid --size 0: give the new size in 512-byte sectors, or leave it out to "
        "use all the image holds.");
  if (a.size_sectors && *a.size_sectors > (~std::uint64_t{0} >> 9))
    return refuse("Invalid --size: too large.");
  std::optional<VolumeStatus> st = active_volume(paths, a.name, ctx);
  if (!st) return;
  const volume::VolumeLayout& l = st->layout;
  switch (l.type) {
    case volume::VolumeType::kTcrypt:
    case volume::VolumeType::kBitlk:
      return refuse("This operation is not supported for this device type.");
    case volume::VolumeType::kFvault2:
      return refuse("Cannot resize " + a.name + ": a FileVault2 volume's size is fixed by its " +
                    "metadata, so cryptmap does not resize it (cryptsetup would map another " +
                    "size). Close it and open it again.");
    default:
      break;
  }
  if (!l.integrity.empty())
    return refuse("Resize of LUKS2 device with integrity protection is not supported.");
  if (l.type == volume::VolumeType::kLuks2 && l.size_bytes != 0)
    return refuse("Can not resize LUKS2 device with static size.");
  if (!l.segments.empty())
    return refuse("Cannot resize " + a.name + ": its table has several segments.");
  if (st->suspended)
    return refuse("Cannot resize " + a.name + ": it is suspended (its key is not in memory). " +
                  "Resume it first (luksResume " + a.name + ").");
  if (st->read_only)
    return refuse("Cannot resize " + a.name + ": it is open read-only, and cryptmap resizes " +
                  "read/write volumes only. Close it and open it again (it then has the image's " +
                  "current size), or open it read/write.");
  Request req;
  req.verb = Verb::kResize;
  req.name = a.name;
  if (a.size_sectors) req.new_size = *a.size_sectors * 512;
  if (a.device_size) req.new_size = *a.device_size;
  if (req.new_size % l.sector_size != 0)
    return refuse("Device size is not aligned to requested sector size.");
  ctx.exit_code = report_reply(ask_running_daemon(paths, req), "resize");
  if (ctx.exit_code != kExitOk) return;
  struct stat file {};
  (void)::stat((paths.mount_dir + "/" + a.name).c_str(), &file);  // the kernel asks the daemon
}

// luksResume and refresh: unlocks the header of the open volume `st` again as open does (key file,
// keyslot, tries, token flags from `k`), and refuses when the header no longer describes that
// volume (`state`: "open" / "suspended"; `advice`: what to do then).
std::optional<Request> unlock_again(const SuspendArgs& k, const VolumeStatus& st,
                                    const std::string& state, const std::string& advice,
                                    CommandContext& ctx) {
  OpenArgs oa;
  oa.image = st.source.image;
  oa.header = st.source.header;
  oa.type = st.layout.type == volume::VolumeType::kLuks1 ? "luks1" : "luks2";
  oa.key_file = k.key_file;
  oa.keyfile_offset = k.keyfile_offset;
  oa.keyfile_size = k.keyfile_size;
  oa.key_slot = k.key_slot;
  oa.tries = k.tries;
  oa.tokens = k.tokens;
  std::optional<Request> req = unlock(oa, ctx);
  if (!req) return std::nullopt;
  const volume::VolumeLayout& was = st.layout;
  if (req->layout.uuid != was.uuid || req->layout.data_offset_bytes != was.data_offset_bytes ||
      req->layout.key_bytes != was.key_bytes) {
    say("The LUKS header of " + (oa.header.empty() ? oa.image : oa.header) +
        " no longer describes the " + state + " volume " + k.name + " (UUID " + req->layout.uuid +
        ", was " + was.uuid + "). " + advice);
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  return req;
}

// refresh NAME: cryptsetup re-activates with the key, so the header is unlocked again (any
// keyslot, as open), then the daemon swaps in the volume assembled with the new flags.
void run_refresh(const RefreshArgs& a, CommandContext& ctx) {
  configure_cli_logging(ctx);
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.key.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  std::optional<VolumeStatus> st = active_volume(paths, a.key.name, ctx);
  if (!st) return;
  const volume::VolumeType type = st->layout.type;
  if (type != volume::VolumeType::kLuks1 && type != volume::VolumeType::kLuks2) {
    say(std::string("Cannot refresh ") + a.key.name + ": cryptmap refreshes LUKS volumes only (" +
        volume::volume_type_name(type) + " is not). Close it and open it again with the flags.");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (!st->layout.integrity.empty()) {
    say("Cannot refresh " + a.key.name + ": volumes with integrity protection cannot be " +
        "refreshed by cryptmap yet. Close it and open it again with the flags.");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (st->suspended) {
    say("Cannot refresh " + a.key.name + ": it is suspended. Resume it first (luksResume " +
        a.key.name + ").");
    ctx.exit_code = kExitUsage;
    return;
  }
  if (a.persistent && type != volume::VolumeType::kLuks2) {
    say("Device " + (st->source.header.empty() ? st->source.image : st->source.header) +
        " is not a valid LUKS2 device.");
    ctx.exit_code = kExitUsage;
    return;
  }
  std::optional<Request> req = unlock_again(a.key, *st, "open", "Nothing was changed.", ctx);
  if (!req) return;
  req->open_flags = 0;
  apply_activation_flags(a.flags, *req);  // as at open
  req->verb = Verb::kRefresh;
  req->name = a.key.name;
  ctx.exit_code = report_reply(ask_running_daemon(paths, *req), "refresh");
  if (ctx.exit_code != kExitOk || !a.persistent) return;
  // --persistent: the flags this refresh asked for, as cryptsetup stores them after a successful
  // refresh (crypt_persistent_flags_set with the active flags the command line set).
  volume::LuksConfig c;
  c.flags.emplace();
  if (a.flags.allow_discards) c.flags->push_back("allow-discards");
  if (a.flags.perf_same_cpu_crypt) c.flags->push_back("same-cpu-crypt");
  if (a.flags.perf_submit_from_crypt_cpus) c.flags->push_back("submit-from-crypt-cpus");
  if (a.flags.perf_no_read_workqueue) c.flags->push_back("no-read-workqueue");
  if (a.flags.perf_no_write_workqueue) c.flags->push_back("no-write-workqueue");
  const std::string header = st->source.header.empty() ? st->source.image : st->source.header;
  auto lock = MetadataLock::take(header, true);
  auto store = volume::open_image_store(header, volume::metadata_store_options(false));
  Result<void> written = store ? volume::luks_config(**store, c) : Result<void>(store.error());
  if (!written) {
    say("Device activated but cannot make flags persistent. (" + written.error().message() + ")");
    ctx.exit_code = kExitUsage;
  }
}

// luksSuspend NAME: the daemon holds the file's I/O (it waits, nothing fails), flushes, and
// destroys the volume's cache and keys; luksResume brings them back.
void run_suspend(const SuspendArgs& a, CommandContext& ctx) {
  configure_cli_logging(ctx);
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  if (!active_luks_volume(paths, a.name, "This operation is supported only for LUKS device.", ctx))
    return;
  Request req;
  req.verb = Verb::kSuspend;
  req.name = a.name;
  ctx.exit_code = report_reply(ask_running_daemon(paths, req), "luksSuspend");
}

// luksResume NAME: unlocks the volume's header again (any keyslot, --key-file, --key-slot) in
// the foreground, as open does, and hands the key to the daemon, which lets the held I/O run.
void run_resume(const SuspendArgs& a, CommandContext& ctx) {
  configure_cli_logging(ctx);
  bool ok_paths = false;
  const ControlPaths paths = paths_or_exit(a.mount_dir, ctx, ok_paths);
  if (!ok_paths) return;
  std::optional<VolumeStatus> st = active_luks_volume(
      paths, a.name, a.name + " is not active LUKS device name or header is missing.", ctx);
  if (!st) return;
  if (!st->suspended) {
    say("Volume " + a.name + " is not suspended.");
    ctx.exit_code = kExitUsage;
    return;
  }
  std::optional<Request> req = unlock_again(
      a, *st, "suspended", "Restore its header (luksHeaderRestore), then resume.", ctx);
  if (!req) return;
  req->verb = Verb::kResume;
  req->name = a.name;
  ctx.exit_code = report_reply(ask_running_daemon(paths, *req), "luksResume");
}

// The spawned daemon: log where the CLI resolved (--log-target), detach from the terminal,
// take the first request from the handoff socket, serve.
void run_daemon(const DaemonArgs& a, CommandContext& ctx) {
  auto paths = control_paths(a.mount_dir);
  UniqueFd handoff(a.handoff_fd);
  if (!paths || a.handoff_fd < 0) {
    ctx.exit_code = kExitUsage;
    return;
  }
  // The CLI resolved the target (daemon_log_target); "file" when started by an older CLI.
  const std::string target = ctx.log_target.empty() ? "file" : daemon_log_target(ctx, false);
  auto log = make_daemon_logger(target, *paths, daemon_level_for(ctx));
  ::chdir("/");
  if (int null = ::open("/dev/null", O_RDWR | O_CLOEXEC); null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    if (target != "stderr") ::dup2(null, 2);  // --log-target stderr: keep the caller's stderr
    if (null > 2) ::close(null);
  }
  auto frame = recv_frame(handoff.get());
  if (!frame) {
    log->error("no request from the CLI: {}", frame.error().message());
    ctx.exit_code = kExitUsage;
    return;
  }
  auto req = decode_request(frame->span());
  frame = SecretBytes();  // wipe the raw frame (it held the key)
  if (!req) {
    log->error("bad request from the CLI: {}", req.error().message());
    ctx.exit_code = kExitUsage;
    return;
  }
  DaemonOptions opts;
  opts.paths = *paths;
  opts.fuse_debug = a.fuse_debug;
  opts.fuse_transport = transport_of(a.fuse_transport);
  opts.logger = log;
  ctx.exit_code = serve(opts, std::move(*req), [&](const Reply& r) {
    auto body = encode_reply(r);
    if (body) (void)send_frame(handoff.get(), body->span());
    handoff.reset();
  });
}

}  // namespace

std::optional<ServedImage> daemon_volume_of_image(const std::string& image,
                                                  const std::string& mount_dir) {
  auto paths = control_paths(mount_dir.empty() ? default_mount_dir() : mount_dir);
  if (!paths) return std::nullopt;
  Request req;
  req.verb = Verb::kStatus;
  auto reply = ask_running_daemon(*paths, req);
  if (!reply || reply->exit_code != kExitOk) return std::nullopt;
  // An rbd: argument names the same image whatever client settings open pinned into it.
  auto same_image = [&](const std::string& served) {
    auto a = volume::parse_rbd_spec(image), b = volume::parse_rbd_spec(served);
    if (a && b) return a->pool == b->pool && a->image == b->image && a->snap == b->snap;
    return absolute(served) == absolute(image);
  };
  for (const auto& v : reply->volumes)
    if (same_image(v.source.image))
      return ServedImage{paths->mount_dir + "/" + v.name, v.name, v.reencrypting, reply->daemon_pid,
                         v.source.header};
  return std::nullopt;
}

namespace {

// The options of `open` (and of its alias loopaesOpen) on `open`, into `oa`.
void add_open_options(CLI::App* open, const std::shared_ptr<OpenArgs>& oa) {
  open->add_option("image", oa->image, "Encrypted image (file or block device); not with --all");
  open->add_option("name", oa->name, "Name of the mapped file (not with --test-passphrase)");
  open->add_flag("--test-passphrase", oa->test_passphrase,
                 "Only check that the passphrase opens a keyslot; map nothing");
  open->add_option("--type,-M", oa->type,
                   "luks (auto-detect LUKS, BitLocker, FileVault 2), luks1, luks2, plain, bitlk, "
                   "fvault2, tcrypt, loopaes")
      ->capture_default_str();
  open->add_option("--key-file,-d", oa->key_files,
                   "Read the passphrase from this file (- = stdin); tcrypt: a keyfile (repeat "
                   "for several); loopaes: the key file (required)")
      ->allow_extra_args(false);  // one file per --key-file: the positionals stay positionals
  open->add_option("--keyfile-offset", oa->keyfile_offset, "Skip this many bytes of the key file");
  open->add_option("--keyfile-size,-l", oa->keyfile_size, "Read at most this many key-file bytes");
  open->add_option("--key-slot,-S", oa->key_slot, "Try only this key slot");
  open->add_option("--tries,-T", oa->tries, "Passphrase attempts at a terminal")
      ->capture_default_str();
  open->add_option("--header", oa->header, "Detached LUKS header file");
  open->add_flag("--readonly,-r", oa->read_only, "Serve the volume read-only");
  open->add_option("--mount-dir", oa->mount_dir,
                   "Mount directory (default /run/cryptmap as root, $XDG_RUNTIME_DIR/cryptmap)");
  open->add_flag("--foreground,-f", oa->foreground,
                 "If no daemon serves the mount directory, serve it from this process "
                 "(logs on stderr; Ctrl-C flushes, unmounts and exits)");
  open->add_flag("--fuse-debug", oa->fuse_debug, "Trace the FUSE protocol (libfuse -d)");
  open->add_option("--fuse-transport", oa->fuse_transport,
                   "How the daemon this open starts talks to the kernel: auto (io_uring when "
                   "/sys/module/fuse/parameters/enable_uring is Y), uring, dev (/dev/fuse); a "
                   "running daemon keeps its own (status shows it)")
      ->check(CLI::IsMember({"auto", "uring", "dev"}))
      ->capture_default_str();
  open->add_flag("--allow-other", oa->allow_other,
                 "Let other users reach the mapped file: FUSE allow_other, file mode 0660 "
                 "(owner and the owner's group). Non-root: needs user_allow_other in "
                 "/etc/fuse.conf");
  open->add_flag("--all", oa->all,
                 "Open every entry of the cryptmaptab without noauto (crypttab syntax)");
  open->add_option("--tab", oa->tab, "The table for --all")->capture_default_str();
  open->add_option("--cipher,-c", oa->plain.cipher,
                   "plain: cipher spec; loopaes: block cipher (default aes)")
      ->capture_default_str();
  open->add_option("--key-size,-s", oa->plain.key_bits,
                   "plain: key size in bits; loopaes: bits per key, 128, 192, 256 (default)")
      ->capture_default_str();
  open->add_option("--hash", oa->plain.hash,
                   "plain: passphrase hash; loopaes: key-line hash (default by key size)")
      ->capture_default_str();
  open->add_option("--offset,-o", oa->plain.offset_sectors,
                   "plain, loopaes: start of the data in 512-byte sectors");
  open->add_option("--skip,-p", oa->plain.skip_sectors,
                   "plain, loopaes: IV offset in 512-byte sectors (loopaes default: the offset)");
  open->add_option("--size,-b", oa->plain.size_sectors, "plain: size in 512-byte sectors");
  open->add_option("--sector-size", oa->plain.sector_size, "plain: encryption sector size");
  open->add_flag("--iv-large-sectors", oa->plain.iv_large_sectors,
                 "plain: IV in sector-size units");
  add_tcrypt_options(*open, oa->tcrypt, oa->disable_veracrypt, oa->veracrypt_pim);
  open->add_flag("--tcrypt-protect-hidden", oa->tcrypt_protect_hidden,
                 "tcrypt: also ask for the hidden volume's passphrase and refuse writes to the "
                 "outer volume that would land in the hidden one");
  open->add_flag("--tcrypt-whole-disk", oa->tcrypt.options.whole_disk,
                 "tcrypt --tcrypt-system: serve the whole disk image, its encrypted area "
                 "decrypted in place and the rest (partition table, boot track, other "
                 "partitions) passed through");
  open->add_option("--cache-size", oa->cache_size,
                   "Sector cache size (plaintext, locked in memory), e.g. 256M; default 64M; "
                   "0 = no cache: writes reach the image before they complete");
  open->add_flag("--integrity-no-journal", oa->integrity_no_journal,
                 "LUKS2 --integrity: write data and tags in place, without the dm-integrity "
                 "journal (no atomicity on a crash; the journal is replayed at open either "
                 "way)");
  add_token_flags(*open, oa->tokens);
  open->add_option("--volume-key-file", oa->volume_key_file,
                   "LUKS: use the volume key from this file instead of a passphrase");
  add_activation_flags(*open, oa->flags);
  open->add_flag("--debug-unordered-zone-writes", oa->debug_unordered_zone_writes)
      ->group("");  // hidden: tests prove the zoned ordering matters
}

}  // namespace

void add_daemon_commands(CLI::App& app, CommandContext& ctx) {
  // The argument structs must outlive parsing and the callbacks, which CLI11 runs from
  // app.parse(); the app owns them through these shared_ptrs captured by the callbacks.
  auto oa = std::make_shared<OpenArgs>();
  CLI::App* open = app.add_subcommand(
      "open", "Unlock IMAGE and serve its plaintext as the file NAME in the mount directory");
  add_open_options(open, oa);
  open->callback([oa, open, &ctx] { run_open(*oa, *open, ctx); });
  // cryptsetup's loopaesOpen = open --type loopaes.
  auto la = std::make_shared<OpenArgs>();
  la->type = "loopaes";
  CLI::App* loopaes_open =
      app.add_subcommand("loopaesOpen", "Open a loop-AES image (open --type loopaes)");
  add_open_options(loopaes_open, la);
  loopaes_open->callback([la, loopaes_open, &ctx] {
    if (la->type != "loopaes") {
      say("loopaesOpen opens loop-AES images only; use open --type " + la->type + ".");
      ctx.exit_code = kExitUsage;
      return;
    }
    run_open(*la, *loopaes_open, ctx);
  });

  auto ca = std::make_shared<CloseArgs>();
  CLI::App* close = app.add_subcommand("close", "Flush and remove the mapped file NAME");
  close->alias("remove");
  close->add_option("name", ca->name, "Name of the mapped file");
  close->add_flag("--all", ca->all, "Close every volume served in the mount directory");
  close->add_flag("--force", ca->force, "Remove it even while it is open (I/O then fails)");
  close->add_option("--mount-dir", ca->mount_dir, "Mount directory");
  close->callback([ca, &ctx] { run_close(*ca, ctx); });

  auto sa = std::make_shared<StatusArgs>();
  CLI::App* status = app.add_subcommand("status", "Show the open volumes (or NAME)");
  status->add_option("name", sa->name, "Name of the mapped file");
  status->add_option("--mount-dir", sa->mount_dir, "Mount directory");
  status->add_flag("--zones", sa->zones, "Also print the zone table of zoned volumes");
  status->add_flag("--json", sa->json, "Machine-readable output (fields: see README.md)");
  status->callback([sa, &ctx] { run_status(*sa, ctx); });

  auto su = std::make_shared<SuspendArgs>();
  CLI::App* suspend = app.add_subcommand(
      "luksSuspend",
      "Suspend the LUKS volume NAME: its I/O waits (nothing fails) and its key is wiped from "
      "memory until luksResume");
  suspend->add_option("name", su->name, "Name of the mapped file");
  suspend->add_option("--mount-dir", su->mount_dir, "Mount directory");
  suspend->callback([su, &ctx] { run_suspend(*su, ctx); });

  auto re = std::make_shared<SuspendArgs>();
  CLI::App* resume = app.add_subcommand(
      "luksResume", "Resume the suspended LUKS volume NAME with a passphrase of any keyslot");
  resume->add_option("name", re->name, "Name of the mapped file");
  resume->add_option("--key-file,-d", re->key_file,
                     "Read the passphrase from this file (- = stdin)");
  resume->add_option("--keyfile-offset", re->keyfile_offset,
                     "Skip this many bytes of the key file");
  resume->add_option("--keyfile-size,-l", re->keyfile_size,
                     "Read at most this many key-file bytes");
  resume->add_option("--key-slot,-S", re->key_slot, "Try only this key slot");
  resume->add_option("--tries,-T", re->tries, "Passphrase attempts at a terminal")
      ->capture_default_str();
  resume->add_option("--mount-dir", re->mount_dir, "Mount directory");
  add_token_flags(*resume, re->tokens);
  resume->callback([re, &ctx] { run_resume(*re, ctx); });

  auto rz = std::make_shared<ResizeArgs>();
  CLI::App* resize = app.add_subcommand(
      "resize",
      "Resize the open volume NAME while it is served: to all the image holds after the data "
      "offset (after the image grew), or to --size/--device-size");
  resize->add_option("name", rz->name, "Name of the mapped file");
  resize->add_option("--size,-b", rz->size_sectors, "New size in 512-byte sectors");
  resize->add_option("--device-size", rz->device_size, "New size in bytes (a multiple of 512)");
  resize->add_option("--mount-dir", rz->mount_dir, "Mount directory");
  resize->add_option("--key-file,-d", rz->key_file,
                     "Accepted as cryptsetup does; not needed (the daemon holds the key)");
  resize->callback([rz, &ctx] { run_resize(*rz, ctx); });

  auto rf = std::make_shared<RefreshArgs>();
  CLI::App* refresh = app.add_subcommand(
      "refresh",
      "Change the flags of the open LUKS volume NAME without closing it (asks for a passphrase "
      "of any keyslot, as cryptsetup does); flags not given are turned off");
  refresh->add_option("name", rf->key.name, "Name of the mapped file");
  add_activation_flags(*refresh, rf->flags);
  refresh->add_flag("--persistent", rf->persistent,
                    "LUKS2: also store the flags in the header (config.flags), as cryptsetup");
  refresh->add_option("--key-file,-d", rf->key.key_file,
                      "Read the passphrase from this file (- = stdin)");
  refresh->add_option("--keyfile-offset", rf->key.keyfile_offset,
                      "Skip this many bytes of the key file");
  refresh->add_option("--keyfile-size,-l", rf->key.keyfile_size,
                      "Read at most this many key-file bytes");
  refresh->add_option("--key-slot,-S", rf->key.key_slot, "Try only this key slot");
  refresh->add_option("--tries,-T", rf->key.tries, "Passphrase attempts at a terminal")
      ->capture_default_str();
  refresh->add_option("--mount-dir", rf->key.mount_dir, "Mount directory");
  add_token_flags(*refresh, rf->key.tokens);
  refresh->callback([rf, &ctx] { run_refresh(*rf, ctx); });

  auto da = std::make_shared<DaemonArgs>();
  CLI::App* daemon = app.add_subcommand("daemon", "Internal: the daemon process `open` starts");
  daemon->group("");  // hidden from --help
  daemon->add_option("--mount-dir", da->mount_dir)->required();
  daemon->add_option("--handoff-fd", da->handoff_fd)->required();
  daemon->add_flag("--fuse-debug", da->fuse_debug);
  daemon->add_option("--fuse-transport", da->fuse_transport)
      ->check(CLI::IsMember({"auto", "uring", "dev"}));
  daemon->callback([da, &ctx] { run_daemon(*da, ctx); });
}

}  // namespace cryptmap::cli

namespace cryptmap::cli {

std::vector<std::string> logging_args(const CommandContext& ctx) {
  std::vector<std::string> out;
  for (int i = 0; i < ctx.verbosity; ++i) out.emplace_back("-v");
  if (!ctx.log_level.empty()) out.insert(out.end(), {"--log-level", ctx.log_level});
  if (!ctx.log_target.empty()) out.insert(out.end(), {"--log-target", ctx.log_target});
  return out;
}

}  // namespace cryptmap::cli
