// reencrypt: cryptsetup's LUKS2 reencryption verb. `reencrypt IMAGE` puts the header in
// reencryption (new volume key, optionally --cipher/--key-size/--sector-size, --resilience) and
// runs it to the end; --init-only stops after the metadata, --resume-only continues an
// initialized or interrupted one (cryptmap's or cryptsetup's). A closed image is reencrypted
// here (offline, volume/format/luks2_reencrypt.h); an image the daemon serves is reencrypted by
// the daemon (online, docs/reencrypt.md §10): this process initializes the header under the
// metadata lock, hands the lock over (the daemon takes it for its run), sends the passphrase and
// shows the daemon's progress; SIGINT asks the daemon to stop at the next hotzone boundary.
// `--decrypt --header HDR DEVICE` decrypts a detached-header device in place, `--encrypt --header
// HDR DEVICE` encrypts a plain one under a new header, `--encrypt --reduce-device-size N DEVICE`
// with the header put inside it (the data shifted), `--decrypt --header NEW-FILE IMAGE` of an image
// whose header is inside it (the header exported, the data moved to the start: cryptsetup 2.6's
// datashift decryption), each started offline (docs/reencrypt.md §11-§13) and run online once the
// image is opened in reencryption; the datashift decryption is also started online, as
// cryptsetup 2.6 starts it on an active device (this process exports the header, the daemon
// moves the data's first part and switches to NEW-FILE: §10 item 10). This file turns flags
// into options, refuses what is not implemented, reads the passphrase and shows progress.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "base/exit_code.h"
#include "cli/commands.h"
#include "cli/luks_common.h"
#include "cli/terminal/passphrase.h"
#include "cli/terminal/progress.h"
#include "fs/control.h"
#include "volume/format/luks2_reencrypt.h"
#include "volume/format/luks_admin.h"
#include "volume/online_reencrypt.h"
#include "volume/open.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"

namespace cryptmap::cli {
namespace {

struct ReencryptArgs : PbkdfArgs {
  std::string device;
  std::string header;
  std::string key_file;
  std::uint64_t keyfile_offset = 0, keyfile_size = 0;
  int key_slot = -1;
  std::string cipher;
  std::uint32_t key_size_bits = 0;
  std::uint32_t sector_size = 0;
  std::string resilience = "checksum";
  std::string resilience_hash = "sha256";
  std::string hotzone_size;  // bytes, with an optional K/M/G (cryptsetup units)
  bool init_only = false, resume_only = false;
  bool encrypt = false, decrypt = false;
  std::string reduce_device_size;
  std::uint64_t offset_sectors = 0;  // --offset with --reduce-device-size
  std::string direction;
  bool force_offline = false;
  std::string mount_dir;
};

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted.store(true); }

// Catches SIGINT/SIGTERM/SIGHUP while alive, so an interrupt stops after the current hotzone
// with a header either tool resumes (cryptsetup does the same).
class InterruptGuard {
 public:
  InterruptGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~InterruptGuard() {
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3]{};
};

Result<std::uint64_t> parse_size(const std::string& text, const char* what) {
  std::uint64_t v = 0;
  std::size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') v = v * 10 + (text[i++] - '0');
  std::uint64_t mult = 1;
  if (i < text.size()) {
    switch (text[i] | 0x20) {
      case 'k':
        mult = 1ull << 10;
        break;
      case 'm':
        mult = 1ull << 20;
        break;
      case 'g':
        mult = 1ull << 30;
        break;
      default:
        mult = 0;
    }
    ++i;
    if (i < text.size() && (text[i] == 'i' || text[i] == 'I')) ++i;
    if (i < text.size() && (text[i] == 'b' || text[i] == 'B')) ++i;
  }
  if (i == 0 || i != text.size() || mult == 0)
    return fail(
        make_error_fmt(Errc::kInvalid, what, kNoObject, "'%s' is not a size", text.c_str()));
  return v * mult;
}

int refuse(const char* message) { return report(make_error(Errc::kUnsupported, message)); }

// Refuses to reencrypt `device` the way asked while the daemon serves it: "Device DEVICE is open
// in cryptmap's daemon as FILE", then `rest` (why, and what works instead), on stderr; returns
// `code`.
int refuse_served(const std::string& device, const ServedImage& served, const std::string& rest,
                  int code) {
  std::cerr << "Device " << device << " is open in cryptmap's daemon as " << served.file << rest
            << "\n";
  return code;
}

// The online run: the daemon serving `mount_dir` runs the reencryption of volume `name`; its
// progress replies are shown until the final one. On SIGINT (g_interrupted) our side of the
// connection is shut, which the daemon takes as "stop after this hotzone".
// `new_header` (absolute) and `init`: the start of a datashift decryption first (the header
// exported there already).
int reencrypt_online(const std::string& mount_dir, const std::string& name,
                     const std::string& device, const SecretBytes& passphrase,
                     std::uint64_t hotzone, const CommandContext& ctx,
                     const std::string& new_header = {},
                     const volume::OnlineReencryption::DecryptShiftInit* init = nullptr) {
  auto paths = fs::control_paths(mount_dir.empty() ? fs::default_mount_dir() : mount_dir);
  if (!paths) return report(paths.error());
  auto fd = fs::connect_control(paths->socket);
  if (!fd) return report(fd.error());
  fs::Request req;
  req.verb = fs::Verb::kReencrypt;
  req.name = name;
  req.hotzone_bytes = hotzone;
  req.new_header = new_header;
  if (init) req.shift_init = *init;
  auto key = SecretBytes::copy_of(passphrase.span());
  if (!key) return report(key.error());
  req.volume_key = std::move(*key);
  auto body = fs::encode_request(req);
  if (!body) return report(body.error());
  if (auto sent = fs::send_frame(fd->get(), body->span()); !sent) return report(sent.error());
  Progress progress(Progress::wanted(ctx));
  InterruptGuard guard;
  g_interrupted.store(false);
  bool shut = false;
  const std::string what = "Reencrypting " + device + " (online)";
  for (;;) {
    if (g_interrupted.load() && !shut) {
      ::shutdown(fd->get(), SHUT_WR);
      shut = true;
    }
    pollfd p{fd->get(), POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    auto frame = fs::recv_frame(fd->get());
    if (!frame) return report(frame.error());
    auto reply = fs::decode_reply(frame->span());
    if (!reply) return report(reply.error());
    if (reply->progress) {
      progress.percent(what, reply->done_bytes, reply->total_bytes);
      continue;
    }
    if (reply->exit_code != kExitOk) {
      std::cerr << "\n" << reply->message << "\n";
      return reply->exit_code;
    }
    progress.percent(what, reply->total_bytes, reply->total_bytes);
    return kExitOk;
  }
}

// Whether `path` holds a LUKS header: nullopt when it does not; true when it is a LUKS2 header
// in encryption (a run --encrypt resumes), false for any other LUKS header (--encrypt refuses).
Result<std::optional<bool>> luks_in_encryption(const std::string& path) {
  auto existing = volume::open_image_store(path, volume::metadata_store_options(true));
  if (!existing) return fail(existing.error());
  if (!volume::is_luks(**existing)) return std::optional<bool>{};
  auto st = volume::reencrypt_status(**existing);
  return std::optional<bool>{st && st->in_reencryption && st->mode == "encrypt"};
}

// reencrypt --encrypt --header HDR DEVICE: writes a fresh LUKS2 header into HDR for DEVICE's
// data at offset 0 with luksFormat's options (cryptsetup's encrypt_luks2_init: sector size 512
// unless --sector-size), and reports true; false when HDR already holds a LUKS2 header in
// encryption (resume). A LUKS header not in reencryption is refused (nothing written).
Result<bool> encrypt_header(const ReencryptArgs& a, const CommandContext& ctx) {
  if (::access(a.header.c_str(), F_OK) == 0) {
    CRYPTMAP_TRY(encrypting, luks_in_encryption(a.header));
    if (encrypting) {
      if (*encrypting) return false;
      return fail(make_error_fmt(Errc::kInvalid, "LUKS header already present", kNoObject,
                                 "%s already holds a LUKS header; --encrypt writes a new one "
                                 "(remove it first, or --resume-only a started encryption)",
                                 a.header.c_str()));
    }
  }
  auto data = volume::open_image_store(a.device, volume::metadata_store_options(true));
  if (!data) return fail(data.error());
  volume::LuksFormatOptions o;
  o.type = volume::VolumeType::kLuks2;
  o.cipher = a.cipher.empty() ? "aes-xts-plain64" : a.cipher;
  o.key_bits = a.key_size_bits ? a.key_size_bits : 512;
  o.pbkdf = pbkdf_of(a);
  o.sector_size = a.sector_size ? a.sector_size : 512;
  o.offset_sectors = 0;
  o.detached_header = true;
  o.data_device_bytes = (*data)->size_bytes();
  CRYPTMAP_TRY(need, volume::luks_header_bytes(o));
  CRYPTMAP_TRY(pass, read_passphrase(key_source_of(a), "Enter passphrase for " + a.header + ": ",
                                     !ctx.batch_mode && a.key_file.empty()));
  CRYPTMAP_TRY_VOID(prepare_header_file(a.header, need));
  auto lock = MetadataLock::take(a.header, true);
  auto hdr = volume::open_image_store(a.header, volume::metadata_store_options(false));
  if (!hdr) return fail(hdr.error());
  CRYPTMAP_TRY(formatted, volume::luks_format(**hdr, o, pass.span()));
  (void)formatted;
  CRYPTMAP_TRY_VOID((*hdr)->sync());
  return true;
}

// reencrypt --encrypt --reduce-device-size N IMAGE: puts a new LUKS2 header (luksFormat's
// options, sector size 512 unless --sector-size) into the plain image, its data shifted by N/2
// (volume::reencrypt_encrypt_shift_init; docs/reencrypt.md §13), and reports true; false when
// the image holds a header in encryption already (resume). Any other LUKS header is refused
// with cryptsetup's words, nothing written.
Result<bool> encrypt_shift_init(const ReencryptArgs& a, const CommandContext& ctx) {
  CRYPTMAP_TRY(reduce, parse_size(a.reduce_device_size, "--reduce-device-size"));
  CRYPTMAP_TRY(encrypting, luks_in_encryption(a.device));
  if (encrypting) {
    if (*encrypting) return false;
    return fail(make_error_fmt(Errc::kInvalid, "LUKS header already present", kNoObject,
                               "Device %s is already LUKS device. Aborting operation.",
                               a.device.c_str()));
  }
  volume::EncryptShiftOptions o;
  o.reduce_bytes = reduce;
  o.format.cipher = a.cipher.empty() ? "aes-xts-plain64" : a.cipher;
  o.format.key_bits = a.key_size_bits ? a.key_size_bits : 512;
  o.format.pbkdf = pbkdf_of(a);
  o.format.sector_size = a.sector_size ? a.sector_size : 512;
  if (a.offset_sectors) o.format.offset_sectors = a.offset_sectors;
  if (a.offset_sectors && reduce % 512 == 0 && a.offset_sectors * 512 < reduce / 1024 * 512)
    std::cout << "Adjusting --reduce-device-size value to twice the --offset "
              << a.offset_sectors * 2 << " (sectors).\n";
  CRYPTMAP_TRY(pass, read_passphrase(key_source_of(a), "Enter passphrase for " + a.device + ": ",
                                     !ctx.batch_mode && a.key_file.empty()));
  auto lock = MetadataLock::take(a.device, true);
  auto image = volume::open_image_store(a.device, volume::metadata_store_options(false));
  if (!image) return fail(image.error());
  CRYPTMAP_TRY_VOID(volume::reencrypt_encrypt_shift_init(**image, pass.span(), o));
  return true;
}

// reencrypt --decrypt --header NEW-FILE IMAGE, NEW-FILE missing and IMAGE holding a LUKS2
// header: cryptsetup 2.6's datashift decryption (volume::reencrypt_decrypt_shift_init;
// docs/reencrypt.md §11.1). NEW-FILE is created (0600) only after the passphrase is checked.
Result<void> decrypt_shift_init(const ReencryptArgs& a, const CommandContext& ctx) {
  if (!a.hotzone_size.empty())
    return fail(make_error(Errc::kUnsupported,
                           "cryptmap reencrypt --decrypt --header NEW-FILE --hotzone-size (a "
                           "moved first part smaller than the data offset) is not implemented "
                           "yet; leave --hotzone-size out"));
  volume::DecryptShiftOptions o;
  o.resilience = a.resilience;
  o.hash = a.resilience_hash;
  o.pbkdf = pbkdf_of(a);
  if (a.key_slot >= 0) o.key_slot = a.key_slot;
  CRYPTMAP_TRY(pass, read_passphrase(key_source_of(a), "Enter passphrase for " + a.device + ": ",
                                     !ctx.batch_mode && a.key_file.empty()));
  auto lock = MetadataLock::take(a.device, true);
  auto image = volume::open_image_store(a.device, volume::metadata_store_options(false));
  if (!image) return fail(image.error());
  auto make_header = [&](std::uint64_t bytes) -> Result<std::unique_ptr<volume::BackingStore>> {
    CRYPTMAP_TRY_VOID(prepare_header_file(a.header, bytes));
    return volume::open_image_store(a.header, volume::metadata_store_options(false));
  };
  return volume::reencrypt_decrypt_shift_init(**image, pass.span(), o, make_header);
}

// reencrypt --decrypt --header NEW-FILE IMAGE of an image the daemon serves with its header
// inside it (docs/reencrypt.md §10 item 10), in cryptsetup 2.6's steps: here, under the
// image's metadata lock, the passphrase is checked and the header exported to NEW-FILE
// (decrypt_luks2_datashift_init's crypt_header_backup); the daemon then moves the data's first
// part and commits the header in reencryption into NEW-FILE while the served file's I/O is held,
// serves the volume through NEW-FILE from then on and runs the decryption (--init-only: stops
// there). NEW-FILE is removed again when the daemon did not switch to it.
int decrypt_shift_online(const ReencryptArgs& a, const ServedImage& served,
                         const CommandContext& ctx) {
  if (!a.hotzone_size.empty())
    return refuse(
        "cryptmap reencrypt --decrypt --header NEW-FILE --hotzone-size (a moved first part "
        "smaller than the data offset) is not implemented yet; leave --hotzone-size out");
  volume::DecryptShiftOptions o;
  o.resilience = a.resilience;
  o.hash = a.resilience_hash;
  o.pbkdf = pbkdf_of(a);
  if (a.key_slot >= 0) o.key_slot = a.key_slot;
  auto pass = read_passphrase(key_source_of(a), "Enter passphrase for " + a.device + ": ",
                              !ctx.batch_mode && a.key_file.empty());
  if (!pass) return report(pass.error());
  // NEW-FILE does not exist yet: its directory resolved, as the daemon records header paths.
  const std::string new_header = [&] {
    const auto slash = a.header.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : a.header.substr(0, slash);
    const std::string base = slash == std::string::npos ? a.header : a.header.substr(slash + 1);
    const std::string d = absolute(dir);
    return d + (d.back() == '/' ? "" : "/") + base;
  }();
  bool created = false, create_failed = false;
  {
    auto lock = MetadataLock::take(a.device, true);
    auto image = volume::open_image_store(a.device, volume::metadata_store_options(true));
    if (!image) return report(image.error());
    auto make_header = [&](std::uint64_t bytes) -> Result<std::unique_ptr<volume::BackingStore>> {
      UniqueFd fd(::open(new_header.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd.valid()) {
        create_failed = true;
        return fail(make_sys_error(errno, "Cannot create header file"));
      }
      created = true;
      if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
        return fail(make_sys_error(errno, "Cannot extend header file"));
      fd.reset();
      return volume::open_image_store(new_header, volume::metadata_store_options(false));
    };
    auto exported = volume::reencrypt_decrypt_shift_export(**image, pass->span(), o, make_header);
    if (!exported) {
      if (created) ::unlink(new_header.c_str());
      const Error& e = exported.error();
      if (!create_failed) return report(e);
      std::cerr << "Cannot create the header file " << new_header << " for the decryption of "
                << a.device << ": " << e.message()
                << ". Nothing was changed; it is still served as " << served.file << ".\n";
      return exit_code_for(e) == kExitOk ? kExitUsage : exit_code_for(e);
    }
  }
  volume::OnlineReencryption::DecryptShiftInit init;
  init.resilience = o.resilience;
  init.hash = o.hash;
  init.pbkdf_type = o.pbkdf.type;
  init.pbkdf_hash = o.pbkdf.hash;
  init.iter_time_ms = o.pbkdf.iter_time_ms;
  init.force_iterations = o.pbkdf.force_iterations.value_or(0);
  init.memory_kib = o.pbkdf.memory_kib;
  init.parallel = o.pbkdf.parallel;
  init.key_slot = a.key_slot;
  init.init_only = a.init_only;
  const int rc =
      reencrypt_online(a.mount_dir, served.name, a.device, *pass, 0, ctx, new_header, &init);
  if (rc != kExitOk) {
    // NEW-FILE goes unless it is the header now: the image still holds its own, and NEW-FILE
    // is no header in reencryption (the daemon did not switch).
    auto image = volume::open_image_store(a.device, volume::metadata_store_options(true));
    auto hdr = volume::open_image_store(new_header, volume::metadata_store_options(true));
    const bool image_luks = image && volume::is_luks(**image);
    auto st = hdr ? volume::reencrypt_status(**hdr, image ? image->get() : nullptr)
                  : Result<volume::ReencryptStatus>(fail(hdr.error()));
    if (image_luks && st && !st->in_reencryption) {
      ::unlink(new_header.c_str());
      std::cerr << "Removed " << new_header << " (nothing was switched to it).\n";
    }
  }
  return rc;
}

int do_reencrypt(const ReencryptArgs& a, const CommandContext& ctx) {
  if (a.init_only && a.resume_only)
    return report(make_error(Errc::kInvalid, "--init-only and --resume-only cannot be combined."));
  const bool shift = a.encrypt && !a.reduce_device_size.empty();
  if (shift && !a.header.empty())
    return refuse(
        "cryptmap reencrypt --encrypt --header HDR --reduce-device-size (a detached header with "
        "a data shift) is not implemented yet; use --reduce-device-size without --header (the "
        "header goes into the device), or --header without it");
  if (a.encrypt && a.header.empty() && !shift)
    return report(make_error(Errc::kInvalid,
                             "Encryption without detached header (--header) is not possible "
                             "without data device size reduction (--reduce-device-size)."));
  if (a.decrypt && a.header.empty())
    return report(make_error(Errc::kInvalid, "LUKS2 decryption requires --header option."));
  // --header naming a file that does not exist: cryptsetup 2.6's datashift decryption.
  const bool decrypt_shift = a.decrypt && ::access(a.header.c_str(), F_OK) != 0 && errno == ENOENT;
  if (!a.reduce_device_size.empty() && !a.encrypt)
    return refuse(
        "cryptmap reencrypt --reduce-device-size without --encrypt (a data shift of a "
        "reencryption or decryption) is not implemented yet; use cryptsetup reencrypt");
  if (a.offset_sectors && !shift)
    return refuse(
        "cryptmap reencrypt --offset is implemented with --encrypt "
        "--reduce-device-size only");
  // Decryption goes backward whatever --direction says (cryptsetup's decrypt_luks2_init).
  if (!a.decrypt && !a.direction.empty() && a.direction != "forward")
    return refuse("cryptmap reencrypt --direction backward is not implemented yet");
  if (a.resilience == "datashift" && !shift && !decrypt_shift)
    return refuse(
        "cryptmap reencrypt --resilience datashift is implemented with --encrypt "
        "--reduce-device-size only (which implies it)");
  // Served by the daemon: the daemon runs the reencryption (online).
  const auto open_as = daemon_volume_of_image(a.device, a.mount_dir);
  const std::string header = a.header.empty() ? a.device : a.header;
  // A data shift's init moves data before anything else. cryptsetup 2.6.1 starts it online
  // only for a decryption (it suspends the active device around the move); an encryption it
  // starts on a device nothing uses (opened exclusively), then activates it and runs online.
  // cryptmap does the same (docs/reencrypt.md §10 item 10): a served device is refused here
  // for an encryption, before anything is written, naming the steps that work.
  if (open_as && shift) {
    // A served image in encryption with a data shift already: this resumes it, online.
    auto encrypting = luks_in_encryption(a.device);
    if (!encrypting) return report(encrypting.error());
    if (!*encrypting || !**encrypting) {
      return refuse_served(
          a.device, *open_as,
          "; encryption with a data shift (reencrypt --encrypt --reduce-device-size) moves the "
          "data before the header exists, which cryptsetup too does only on a device nothing "
          "uses. Close it (cryptmap close " +
              open_as->name + "), start it with cryptmap reencrypt --encrypt " +
              "--reduce-device-size " + a.reduce_device_size + " --init-only " + a.device +
              ", open it with cryptmap open " + a.device + " " + open_as->name +
              ", then cryptmap reencrypt --resume-only " + a.device + " runs it online.",
          kExitBusy);
    }
  }
  if (open_as && a.force_offline) {
    return refuse_served(a.device, *open_as,
                         "; --force-offline-reencrypt cannot reencrypt it under the daemon. Close "
                         "it first (cryptmap close " +
                             open_as->name +
                             "), or run reencrypt without --force-offline-reencrypt (online).",
                         kExitBusy);
  }
  // Asked before the metadata lock, which the running reencryption holds.
  if (open_as && open_as->reencrypting) {
    std::cerr << "Reencryption of " << a.device << " (" << open_as->file
              << ") is already running in the cryptmap daemon (pid " << open_as->daemon_pid
              << "); wait for it, or stop it with Ctrl-C (SIGINT) of its cryptmap reencrypt.\n";
    return kExitBusy;
  }
  // A datashift decryption of an image served with its header inside it: started online, as
  // cryptsetup 2.6 starts it on an active device (the header exported, then the daemon switches).
  if (open_as && decrypt_shift && open_as->header.empty())
    return decrypt_shift_online(a, *open_as, ctx);
  // NEW-FILE must not exist for that (crypt_header_backup refuses an existing file).
  if (open_as && a.decrypt && open_as->header.empty()) {
    std::cerr << "Requested header backup file " << a.header << " already exists. "
              << "Decryption of " << a.device << " (open in cryptmap's daemon as " << open_as->file
              << " with its header inside it) exports the header to a new file: name a file "
                 "that does not exist. Nothing was changed.\n";
    return kExitUsage;
  }
  // The daemon runs the reencryption of the header it serves the image with.
  if (open_as && !a.force_offline &&
      (a.header.empty() ? std::string() : absolute(a.header)) != open_as->header) {
    const bool inside = open_as->header.empty();
    return refuse_served(
        a.device, *open_as,
        (inside ? " with its header inside it" : " with the header " + open_as->header) +
            "; reencrypt it with " + (inside ? "no --header" : "--header " + open_as->header) +
            "." +
            (a.encrypt ? " Online encryption serves the device through its new header: "
                         "reencrypt --encrypt --init-only --header HDR DEVICE, open "
                         "--header HDR DEVICE NAME, then reencrypt --resume-only --header "
                         "HDR DEVICE."
                       : ""),
        kExitUsage);
  }
  std::uint64_t hotzone = 0;
  if (!a.hotzone_size.empty()) {
    auto h = parse_size(a.hotzone_size, "--hotzone-size");
    if (!h) return report(h.error());
    hotzone = *h;
  }
  // --encrypt: a new detached header (luksFormat's options) over the plain device, unless the
  // header is already one in encryption (then this resumes it).
  bool formatted = false;
  if (a.encrypt) {
    auto r = shift ? encrypt_shift_init(a, ctx) : encrypt_header(a, ctx);
    if (!r) return report(r.error());
    formatted = *r;
    if (shift && formatted && a.init_only) return kExitOk;
  }
  if (decrypt_shift) {
    if (auto r = decrypt_shift_init(a, ctx); !r) return report(r.error());
    if (a.init_only) return kExitOk;
  }
  auto lock = MetadataLock::take(header, true);
  auto store = volume::open_image_store(header, volume::metadata_store_options(false));
  if (!store) return report(store.error());
  // A detached header: the data device is a store of its own.
  std::unique_ptr<volume::BackingStore> data_store;
  if (!a.header.empty()) {
    auto d = volume::open_image_store(a.device, volume::metadata_store_options(false));
    if (!d) return report(d.error());
    data_store = std::move(*d);
  }
  auto status = volume::reencrypt_status(**store, data_store.get());
  if (!status) return report(status.error());
  // cryptsetup's reencryption lock, held for the whole offline run (online, the daemon serving
  // the image holds it shared and runs the reencryption itself): a cryptsetup reencrypt or a
  // daemon serving the image from another mount directory refuses, or is refused, at once.
  volume::ReencryptLock reenc_lock;
  if (!open_as) {
    auto uuid = volume::luks_uuid(**store);
    if (!uuid) return report(uuid.error());
    auto l = volume::ReencryptLock::try_take(*uuid, true);
    if (!l) {
      std::cerr << "Reencryption process is already running (" << l.error().message()
                << "). Wait for it to finish, or close the volume in the cryptmap daemon that "
                   "serves "
                << a.device << ".\n";
      return kExitBusy;
    }
    reenc_lock = std::move(*l);
  }
  const bool decrypting =
      a.decrypt || status->mode == "decrypt" || a.encrypt || status->mode == "encrypt";
  if (status->in_reencryption && a.init_only)
    return report(make_error(Errc::kBusy, "LUKS2 reencryption already initialized in metadata."));
  if (!status->in_reencryption && a.resume_only)
    return report(make_error_fmt(Errc::kInvalid, "not in reencryption", kNoObject,
                                 "Device %s is not in reencryption.", a.device.c_str()));

  auto pass = read_passphrase(key_source_of(a), "Enter passphrase for " + a.device + ": ", false);
  if (!pass) return report(pass.error());

  if (!status->in_reencryption) {
    // Online too: the header goes into reencryption here (no data is touched; the served
    // volume goes on under the old key until the daemon's run moves the boundary).
    volume::ReencryptInitOptions o;
    if (a.decrypt) o.mode = "decrypt";
    if (formatted) o.mode = "encrypt";  // the header's key and cipher are the new ones already
    o.data = data_store.get();
    o.cipher = formatted ? std::string() : a.cipher;
    o.key_bits = a.key_size_bits;
    o.sector_size = a.sector_size;
    o.resilience = a.resilience;
    o.hash = a.resilience_hash;
    o.pbkdf = pbkdf_of(a);
    if (a.key_slot >= 0) o.key_slot = a.key_slot;
    if (auto r = volume::reencrypt_init(**store, pass->span(), o); !r) return report(r.error());
    if (a.init_only) return kExitOk;
  }

  if (open_as) {
    // The daemon opens the image itself and takes the metadata lock for its run (as
    // cryptsetup's reencrypt process holds it), so that it keeps it until the run has stopped
    // at a hotzone boundary, even if this process dies first.
    store->reset();
    lock.release();
    return reencrypt_online(a.mount_dir, open_as->name, a.device, *pass, hotzone, ctx);
  }
  Progress progress(Progress::wanted(ctx));
  InterruptGuard guard;
  g_interrupted.store(false);
  volume::ReencryptRunOptions ro;
  ro.max_hotzone_bytes = hotzone;
  ro.data = data_store.get();
  const std::string what = (decrypting ? "Converting " : "Reencrypting ") + a.device;
  ro.progress = [&](std::uint64_t done, std::uint64_t total) {
    progress.percent(what, done, total);
    return !g_interrupted.load();
  };
  auto r = volume::reencrypt_run(**store, pass->span(), ro);
  if (!r) return report(r.error());
  if (!r->finished) {
    std::cerr << "\nReencryption of " << a.device
              << " was interrupted; resume it with cryptmap reencrypt --resume-only " << a.device
              << " (or cryptsetup reencrypt --resume-only).\n";
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

void add_reencrypt_commands(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<ReencryptArgs>();
  auto* c = app.add_subcommand(
      "reencrypt",
      "Reencrypt a LUKS2 image (new volume key, optionally new cipher), closed or served");
  c->add_option("device", a->device, "Image")->required();
  c->add_option("--header", a->header, "Device or file with a separated LUKS header");
  c->add_option("-d,--key-file", a->key_file, "Read the key from a file (- = stdin)");
  c->add_option("--keyfile-offset", a->keyfile_offset, "Number of bytes to skip in keyfile");
  c->add_option("-l,--keyfile-size", a->keyfile_size, "Limits the read from keyfile");
  c->add_option("-S,--key-slot", a->key_slot, "Keyslot to unlock and re-key (default: all)")
      ->check(CLI::Range(0, 31));
  c->add_option("-c,--cipher", a->cipher, "The new cipher (default: keep the current one)");
  c->add_option("-s,--key-size", a->key_size_bits, "The size of the new key (bits)");
  c->add_option("--sector-size", a->sector_size, "The new encryption sector size");
  c->add_option("--resilience", a->resilience,
                "Hotzone protection: checksum (default), journal, none (datashift: implied by "
                "--encrypt --reduce-device-size)")
      ->check(CLI::IsMember({"checksum", "journal", "none", "datashift"}));
  c->add_option("--resilience-hash", a->resilience_hash, "Hash for checksum resilience");
  c->add_option("--hotzone-size", a->hotzone_size, "Maximal hotzone size (bytes, K/M/G)");
  add_pbkdf_options(c, *a, "The hash of the new keyslot's PBKDF and AF",
                    "PBKDF of the new keyslot: argon2i, argon2id, pbkdf2");
  c->add_flag("--init-only", a->init_only, "Initialize the reencryption metadata only");
  c->add_flag("--resume-only", a->resume_only, "Resume an initialized reencryption only");
  c->add_flag("--encrypt,--new", a->encrypt,
              "Encrypt a plain device in place (--header: a new detached header; "
              "--reduce-device-size: the header inside the device)");
  c->add_flag("--decrypt", a->decrypt,
              "Decrypt the data in place (--header HDR: a detached header, data offset 0; "
              "--header NEW-FILE: the header exported, the data moved to the image's start, "
              "closed or served)");
  c->add_option("--reduce-device-size", a->reduce_device_size,
                "With --encrypt: room for the header inside the device (bytes, K/M/G; the data "
                "moves by half of it, resilience datashift). Started on a closed device; open "
                "it, and --resume-only runs it online");
  c->add_option("-o,--offset", a->offset_sectors,
                "With --reduce-device-size: the data offset (512-byte sectors, at most half "
                "the reduction)");
  c->add_option("--direction", a->direction,
                "forward (backward: not implemented yet; --decrypt always goes backward)");
  c->add_flag("--force-offline-reencrypt", a->force_offline,
              "Never online: refuse while the daemon serves the image");
  c->add_option("--mount-dir", a->mount_dir, "The daemon's mount directory to check");
  c->callback([a, &ctx] { ctx.exit_code = do_reencrypt(*a, ctx); });
}

}  // namespace cryptmap::cli
