// The LUKS header verbs of the cryptmap CLI (cryptsetup names and flags): luksFormat, luksDump,
// isLuks, luksUUID, luksAddKey, luksRemoveKey, luksKillSlot, luksChangeKey, luksConvertKey,
// config, erase, convert, token, luksHeaderBackup, luksHeaderRestore, repair. The work is done
// by volume/format/luks_admin.h, luks_convert.h and luks_token.h; this file only
// turns flags into options, reads passphrases (cli/terminal/passphrase.h) and prints results.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/bytes.h"
#include "base/unique_fd.h"
#include "cli/commands.h"
#include "cli/luks_common.h"
#include "cli/terminal/passphrase.h"
#include "cli/terminal/progress.h"
#include "cli/token_flags.h"
#include "crypto/auth_cipher.h"
#include "volume/format/luks.h"
#include "volume/format/luks_admin.h"
#include "volume/format/luks_convert.h"
#include "volume/format/luks_token.h"
#include "volume/integrity/integrity_volume.h"
#include "volume/open.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"

namespace cryptmap::cli {
namespace {

using volume::BackingStore;
using volume::VolumeType;

// Flags shared by the verbs; one instance per subcommand, alive as long as the app.
struct LuksArgs : PbkdfArgs {
  std::string device;
  std::string
      positional_key_file;  // luksFormat/AddKey/ChangeKey: <new key file>; RemoveKey: <key file>
  int kill_slot = -1;       // luksKillSlot <slot>
  std::string type;
  std::string cipher = "aes-xts-plain64";
  std::uint32_t key_size_bits = 0;
  std::uint32_t sector_size = 0;
  std::string label, subsystem, uuid;
  std::string header;
  std::uint64_t offset = 0;
  bool offset_set = false;
  std::uint64_t align_payload = 0;  // --align-payload (512-byte sectors); 0 = not given
  std::string key_file;
  std::uint64_t keyfile_offset = 0, keyfile_size = 0;
  std::uint64_t new_keyfile_offset = 0, new_keyfile_size = 0;
  int key_slot = -1;
  bool dump_volume_key = false;
  bool wipe = false;      // luksFormat --wipe
  std::string integrity;  // luksFormat --integrity hmac-sha256|hmac-sha512|aead|poly1305
  bool integrity_no_journal = false;  // luksFormat --integrity-no-journal
  bool integrity_no_wipe = false;     // luksFormat --integrity-no-wipe
  bool json = false;
  std::string header_backup_file;
  std::string volume_key_file;
  bool label_set = false, subsystem_set = false;  // config: given at all (even empty)
  std::string priority;                           // config --priority prefer|normal|ignore
  TokenFlags tokens;                              // --token-id/--token-only/--token-type
  std::string token_action;                       // token add|remove|import|export
  bool token_replace = false;                     // token import/add --token-replace
  std::string json_file;                          // token import/export --json-file
  std::string key_description;                    // token add --key-description
};

std::optional<VolumeType> parse_type(const std::string& t, bool* bad) {
  *bad = false;
  if (t.empty() || t == "luks") return std::nullopt;
  if (t == "luks1") return VolumeType::kLuks1;
  if (t == "luks2") return VolumeType::kLuks2;
  *bad = true;
  return std::nullopt;
}

Result<std::unique_ptr<BackingStore>> open_store(const std::string& path, bool read_only) {
  // a path, or an NBD URI
  return volume::open_image_store(path, volume::metadata_store_options(read_only));
}

// The header store: --header if given, else the device.
Result<std::unique_ptr<BackingStore>> header_store(const LuksArgs& a, bool read_only) {
  return open_store(a.header.empty() ? a.device : a.header, read_only);
}
std::string header_path(const LuksArgs& a) { return a.header.empty() ? a.device : a.header; }

KeySource new_key(const LuksArgs& a) {
  KeySource s;
  if (!a.positional_key_file.empty()) s.key_file = a.positional_key_file;
  s.keyfile_offset = a.new_keyfile_offset;
  s.keyfile_size = a.new_keyfile_size;
  return s;
}

std::optional<int> slot_of(const LuksArgs& a) {
  if (a.key_slot < 0) return std::nullopt;
  return a.key_slot;
}

Result<std::uint64_t> file_size(const std::string& path) {
  if (volume::is_store_uri(path)) {  // the export's size, as the server reports it
    auto s = open_store(path, true);
    if (!s) return fail(s.error());
    return (*s)->size_bytes();
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail(make_sys_error(errno, "Cannot stat device"));
  if (S_ISBLK(st.st_mode)) {
    auto s = open_store(path, true);
    if (!s) return fail(s.error());
    return (*s)->size_bytes();
  }
  return static_cast<std::uint64_t>(st.st_size);
}

// ---------------------------------------------------------------------------------------------

// luksFormat --wipe: the whole data area is written with encrypted zeros through the engine
// (cache off: every piece is in the image when written), so the image no longer shows which
// blocks were ever used, and the volume reads back as zeros. Progress on a terminal.
Result<void> wipe_data_area(const LuksArgs& a, const volume::BackingStore& header,
                            const SecretBytes& volume_key, const CommandContext& ctx) {
  CRYPTMAP_TRY(hdr, volume::load_luks_header(header, std::nullopt));
  volume::VolumeLayout layout = hdr->layout();
  // An authenticated volume is wiped in dm-integrity's direct mode, as cryptsetup's
  // post-format wipe (docs/integrity.md §3): every block gets a valid tag.
  if (!layout.integrity.empty()) layout.integrity_no_journal = true;
  volume::VolumeOptions vo;
  vo.cache_bytes = 0;
  // The I/O-thread marking (PR_SET_IO_FLUSHER) matters for a daemon under a loop device, not
  // for this one-off writer: its warning would only be noise here. Errors still show.
  struct QuietWarnings {
    spdlog::level::level_enum old = spdlog::default_logger()->level();
    QuietWarnings() { spdlog::default_logger()->set_level(std::max(old, spdlog::level::err)); }
    ~QuietWarnings() { spdlog::default_logger()->set_level(old); }
  } quiet;
  CRYPTMAP_TRY(vol, volume::open_unlocked(a.device, layout, volume_key.span(), vo,
                                          spdlog::default_logger()));
  const std::uint64_t total = vol->size_bytes();
  std::vector<std::byte> zeros(std::min<std::uint64_t>(total, 4 << 20));
  Progress progress(Progress::wanted(ctx));
  for (std::uint64_t off = 0; off < total;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), total - off));
    CRYPTMAP_TRY(w, vol->write(ByteOffset{off}, std::span(zeros).first(n)));
    off += w;
    progress.percent("Wiping " + a.device, off, total);
  }
  return vol->flush();
}

int do_format(const LuksArgs& a, const CommandContext& ctx) {
  bool bad = false;
  auto t = parse_type(a.type, &bad);
  if (bad)
    return report(
        make_error_fmt(Errc::kInvalid, "Unknown --type", kNoObject, "'%s'", a.type.c_str()));
  volume::LuksFormatOptions o;
  o.type = t.value_or(VolumeType::kLuks2);
  o.cipher = a.cipher;
  o.key_bits = a.key_size_bits ? a.key_size_bits : 512;
  o.pbkdf = pbkdf_of(a);
  o.sector_size = a.sector_size;
  o.label = a.label;
  o.subsystem = a.subsystem;
  o.uuid = a.uuid;
  if (a.offset_set) o.offset_sectors = a.offset;
  if (a.offset_set && a.align_payload)
    return report(
        make_error(Errc::kInvalid, "Options --align-payload and --offset cannot be combined."));
  if (a.align_payload) o.align_payload_sectors = a.align_payload;
  o.detached_header = !a.header.empty();
  o.keyslot = slot_of(a);
  if (!a.integrity.empty()) {
    // cryptsetup's crypt_parse_integrity_mode: the CLI name -> the LUKS2 JSON name.
    static const std::pair<const char*, const char*> kModes[] = {{"hmac-sha256", "hmac(sha256)"},
                                                                 {"hmac-sha512", "hmac(sha512)"},
                                                                 {"aead", "aead"},
                                                                 {"poly1305", "poly1305"}};
    for (const auto& [cli, json] : kModes)
      if (a.integrity == cli) o.integrity = json;
    if (o.integrity.empty())
      return report(make_error_fmt(Errc::kUnsupported, "Unsupported integrity mode", kNoObject,
                                   "'%s' (cryptmap: hmac-sha256, hmac-sha512, aead, poly1305)",
                                   a.integrity.c_str()));
    auto comp = crypto::auth_composition(o.cipher, o.integrity);
    if (!comp) return report(comp.error());
    if (!a.key_size_bits) o.key_bits = static_cast<std::uint32_t>(comp->cipher_key_size * 8);
    o.integrity_no_journal = a.integrity_no_journal;
  } else if (a.integrity_no_journal || a.integrity_no_wipe) {
    return report(make_error(Errc::kInvalid,
                             "--integrity-no-journal and --integrity-no-wipe need --integrity"));
  }
  auto dsize = file_size(a.device);
  if (!dsize)
    return report(make_error_fmt(Errc::kNotFound, "Device does not exist or access denied.",
                                 kNoObject, "%s", a.device.c_str()));
  o.data_device_bytes = *dsize;
  if (!yes_dialog(ctx.batch_mode, "This will overwrite data on " +
                                      (a.header.empty() ? a.device : a.header) + " irrevocably."))
    return report(make_error(Errc::kInvalid, "Operation aborted."));
  if (o.detached_header) {
    auto need = volume::luks_header_bytes(o);
    if (!need) return report(need.error());
    if (auto r = prepare_header_file(a.header, *need); !r) return report(r.error());
  }
  KeySource ks = !a.positional_key_file.empty() ? new_key(a) : key_source_of(a);
  auto pass = read_passphrase(ks, "Enter passphrase for " + a.device + ": ", true);
  if (!pass) return report(pass.error());
  std::optional<SecretBytes> vk_file;
  if (!a.volume_key_file.empty()) {
    KeySource vs;
    vs.key_file = a.volume_key_file;
    // The whole volume key, as cryptsetup reads it: with --integrity the cipher key and the
    // MAC key after it (docs/integrity.md §2).
    vs.keyfile_size = o.key_bits / 8;
    if (!o.integrity.empty()) {
      auto comp = crypto::auth_composition(o.cipher, o.integrity);
      if (!comp) return report(comp.error());
      vs.keyfile_size += comp->mac_key_size;
    }
    auto vk = read_passphrase(vs, "", false);
    if (!vk) return report(vk.error());
    vk_file = std::move(*vk);
  }
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  auto r = volume::luks_format(**store, o, pass->span(),
                               vk_file ? vk_file->span() : std::span<const std::byte>{});
  if (!r) return report(r.error());
  if (ctx.verbosity) std::cerr << "Key slot " << r->keyslot << " created.\n";
  if (!o.integrity.empty()) {
    // The dm-integrity superblock and initial journal at the data offset of the data device,
    // then (unless --integrity-no-wipe) valid tags everywhere.
    auto hdr = volume::load_luks_header(**store, std::nullopt);
    if (!hdr) return report(hdr.error());
    auto comp = crypto::auth_composition(o.cipher, o.integrity);
    auto data = volume::open_image_store(a.device, volume::metadata_store_options(false));
    if (!data) return report(data.error());
    auto g = volume::format_integrity_area(**data, (*hdr)->layout(),
                                           static_cast<std::uint32_t>(comp->tag_size));
    if (!g) return report(g.error());
    if (auto sy = (*data)->sync(); !sy) return report(sy.error());
    data->reset();
    if (!a.integrity_no_wipe && !a.wipe) {
      if (auto w = wipe_data_area(a, **store, r->volume_key, ctx); !w) return report(w.error());
    }
  }
  if (a.wipe) {
    if (auto w = wipe_data_area(a, **store, r->volume_key, ctx); !w) return report(w.error());
  }
  return kExitOk;
}

int do_dump(const LuksArgs& a, const CommandContext& ctx) {
  auto lock = MetadataLock::take(header_path(a), false);
  auto store = header_store(a, true);
  if (!store) return report(store.error());
  if (!a.dump_volume_key) {
    auto d = volume::luks_dump(**store, a.json);
    if (!d) return report(d.error());
    std::cout << *d;
    return kExitOk;
  }
  bool bad = false;
  auto t = parse_type(a.type, &bad);
  auto h = volume::load_luks_header(**store, t);
  if (!h) return report(h.error());
  if (!yes_dialog(ctx.batch_mode, kVolumeKeyDumpWarning))
    return report(make_error(Errc::kInvalid, "Operation aborted."));
  if (auto refused = refuse_tokens(a.tokens, **store, header_path(a))) return *refused;
  auto pass = read_passphrase(key_source_of(a), "Enter passphrase for " + a.device + ": ", false);
  if (!pass) return report(pass.error());
  auto k = (*h)->unlock(pass->span(), slot_of(a));
  if (!k) return report(k.error());
  const volume::VolumeLayout l = (*h)->layout();
  const std::string spec = l.cipher.to_string();
  const auto dash = spec.find('-');
  std::cout << "LUKS header information for " << a.device << "\n";
  std::cout << "Cipher name:   \t" << spec.substr(0, dash) << "\n";
  std::cout << "Cipher mode:   \t" << (dash == std::string::npos ? "" : spec.substr(dash + 1))
            << "\n";
  std::cout << "Payload offset:\t" << l.data_offset_bytes / 512 << "\n";
  std::cout << "UUID:          \t" << l.uuid << "\n";
  std::cout << "MK bits:       \t" << k->volume_key.size() * 8 << "\n";
  std::cout << "MK dump:\t" << to_hex_lines(k->volume_key.span(), "\t\t") << "\n";
  return kExitOk;
}

int do_add_key(const LuksArgs& a, const CommandContext&) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  SecretBytes old;
  std::optional<SecretBytes> vk;
  if (!a.volume_key_file.empty()) {
    KeySource vs;
    vs.key_file = a.volume_key_file;
    auto v = read_passphrase(vs, "", false);
    if (!v) return report(v.error());
    vk = std::move(*v);
  } else {
    if (auto refused = refuse_tokens(a.tokens, **store, header_path(a))) return *refused;
    auto p = read_passphrase(key_source_of(a), "Enter any existing passphrase: ", false);
    if (!p) return report(p.error());
    old = std::move(*p);
  }
  auto nw = read_passphrase(new_key(a), "Enter new passphrase for key slot: ", true);
  if (!nw) return report(nw.error());
  auto r = volume::luks_add_key(**store, old.span(), std::nullopt, nw->span(), slot_of(a),
                                pbkdf_of(a), vk ? vk->span() : std::span<const std::byte>{});
  if (!r) return report(r.error());
  return kExitOk;
}

int do_remove_key(const LuksArgs& a, const CommandContext& ctx) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  KeySource ks = !a.positional_key_file.empty() ? new_key(a) : key_source_of(a);
  if (!a.positional_key_file.empty()) {
    ks.keyfile_offset = a.keyfile_offset;
    ks.keyfile_size = a.keyfile_size;
  }
  auto p = read_passphrase(ks, "Enter passphrase to be deleted: ", false);
  if (!p) return report(p.error());
  (void)ctx;
  auto r = volume::luks_remove_key(**store, p->span());
  if (!r) return report(r.error());
  return kExitOk;
}

int do_kill_slot(const LuksArgs& a, const CommandContext& ctx) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  if (!yes_dialog(ctx.batch_mode, "This will erase key slot " + std::to_string(a.kill_slot) +
                                      " of " + a.device + "."))
    return report(make_error(Errc::kInvalid, "Operation aborted."));
  auto r = volume::luks_kill_slot(**store, a.kill_slot);
  if (!r) return report(r.error());
  return kExitOk;
}

int do_change_key(const LuksArgs& a, const CommandContext&) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  auto old = read_passphrase(key_source_of(a), "Enter passphrase to be changed: ", false);
  if (!old) return report(old.error());
  auto nw = read_passphrase(new_key(a), "Enter new passphrase: ", true);
  if (!nw) return report(nw.error());
  auto r = volume::luks_change_key(**store, old->span(), slot_of(a), nw->span(), pbkdf_of(a));
  if (!r) return report(r.error());
  return kExitOk;
}

int do_is_luks(const LuksArgs& a, const CommandContext& ctx) {
  bool bad = false;
  auto t = parse_type(a.type, &bad);
  auto lock = MetadataLock::take(header_path(a), false);
  auto store = header_store(a, true);
  if (!store) return report(store.error());
  if (volume::is_luks(**store, t)) return kExitOk;
  if (ctx.verbosity) std::cerr << "Device " << a.device << " is not a valid LUKS device.\n";
  return kExitUsage;
}

int do_uuid(const LuksArgs& a, const CommandContext& ctx) {
  if (a.uuid.empty()) {
    auto store = header_store(a, true);
    if (!store) return report(store.error());
    auto u = volume::luks_uuid(**store);
    if (!u) return report(u.error());
    std::cout << *u << "\n";
    return kExitOk;
  }
  if (!yes_dialog(ctx.batch_mode, "Do you really want to change UUID of device?"))
    return report(make_error(Errc::kInvalid, "Operation aborted."));
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  auto r = volume::luks_set_uuid(**store, a.uuid);
  if (!r) return report(r.error());
  return kExitOk;
}

// erase / luksErase: every keyslot destroyed, after cryptsetup's confirmation.
int do_erase(const LuksArgs& a, const CommandContext& ctx) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  if (!volume::is_luks(**store)) {
    std::cerr << "Device " << header_path(a) << " is not a valid LUKS device.\n";
    return kExitUsage;
  }
  if (!yes_dialog(ctx.batch_mode, "This operation will erase all keyslots on device " +
                                      header_path(a) +
                                      ".\nDevice will become unusable after this operation."))
    return report(make_error(Errc::kInvalid, "Operation aborted, keyslots were NOT wiped."));
  auto r = volume::luks_erase(**store);
  if (!r) return report(r.error());
  if (ctx.verbosity > 0) std::cerr << *r << " keyslot(s) erased.\n";
  return kExitOk;
}

// config: LUKS2 label/subsystem and keyslot priority, with cryptsetup's checks and words.
int do_config(const LuksArgs& a, const CommandContext&) {
  auto usage = [](const char* sentence) {
    std::cerr << sentence << "\n";
    return kExitUsage;
  };
  if (a.priority.empty() && !a.label_set && !a.subsystem_set)
    return usage("Option --priority, --label or --subsystem is missing.");
  volume::LuksConfig c;
  if (!a.priority.empty()) {
    if (a.priority == "ignore")
      c.priority = 0;
    else if (a.priority == "normal")
      c.priority = 1;
    else if (a.priority == "prefer")
      c.priority = 2;
    else
      return usage("Option --priority can be only ignore/normal/prefer.");
    if (a.key_slot < 0) return usage("Keyslot specification is required.");
    c.priority_slot = a.key_slot;
  }
  if (a.label_set) c.label = a.label;
  if (a.subsystem_set) c.subsystem = a.subsystem;
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  if (!volume::is_luks(**store, VolumeType::kLuks2)) {
    std::cerr << "Device " << header_path(a) << " is not a valid LUKS2 device.\n";
    return kExitUsage;
  }
  auto r = volume::luks_config(**store, c);
  if (!r) return report(r.error());
  return kExitOk;
}

int do_backup(const LuksArgs& a, const CommandContext&) {
  if (a.header_backup_file.empty())
    return report(make_error(Errc::kInvalid, "Option --header-backup-file is required."));
  auto lock = MetadataLock::take(header_path(a), false);
  auto store = header_store(a, true);
  if (!store) return report(store.error());
  auto r = volume::luks_header_backup(**store, a.header_backup_file);
  if (!r) return report(r.error());
  return kExitOk;
}

int do_restore(const LuksArgs& a, const CommandContext& ctx) {
  if (a.header_backup_file.empty())
    return report(make_error(Errc::kInvalid, "Option --header-backup-file is required."));
  if (!yes_dialog(
          ctx.batch_mode,
          "Device " + a.device +
              " header will be replaced by the backup. This destroys the existing keyslots."))
    return report(make_error(Errc::kInvalid, "Operation aborted."));
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  auto r = volume::luks_header_restore(**store, a.header_backup_file);
  if (!r) return report(r.error());
  return kExitOk;
}

int do_repair(const LuksArgs& a, const CommandContext& ctx) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  auto r = volume::luks_repair(**store);
  if (!r) return report(r.error());
  if (ctx.verbosity || r->find("repaired") != std::string::npos) std::cerr << *r << "\n";
  return kExitOk;
}

// convert --type luks1|luks2 (cryptsetup's action_luksConvert: the type check, the
// confirmation, then crypt_convert's rules in volume/format/luks_convert.h).
int do_convert(const LuksArgs& a, const CommandContext& ctx) {
  const char* to_name = a.type == "luks2" ? "LUKS2" : a.type == "luks1" ? "LUKS1" : nullptr;
  if (!to_name) {
    std::cerr << "Invalid LUKS type, only luks1 and luks2 are supported.\n";
    return kExitUsage;
  }
  const VolumeType to = a.type == "luks2" ? VolumeType::kLuks2 : VolumeType::kLuks1;
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  if (!volume::is_luks(**store)) {
    std::cerr << "Device " << header_path(a) << " is not a valid LUKS device.\n";
    return kExitUsage;
  }
  if (volume::is_luks(**store, to)) {
    std::cerr << "Device is already " << to_name << " type.\n";
    return kExitUsage;
  }
  if (!yes_dialog(ctx.batch_mode, "This operation will convert " + header_path(a) + " to " +
                                      to_name + " format.\n"))
    return report(make_error(Errc::kInvalid, "Operation aborted, device was NOT converted."));
  auto r = volume::luks_convert(**store, to);
  if (!r) return report(r.error());
  return kExitOk;
}

// luksConvertKey: the keyslot the passphrase opens (only --key-slot when given) is stored again
// with the PBKDF the flags ask for, under the same id (LUKS2 only, as cryptsetup).
int do_convert_key(const LuksArgs& a, const CommandContext& ctx) {
  auto lock = MetadataLock::take(header_path(a), true);
  auto store = header_store(a, false);
  if (!store) return report(store.error());
  if (!volume::is_luks(**store, VolumeType::kLuks2)) {
    std::cerr << "Device " << header_path(a) << " is not a valid LUKS2 device.\n";
    return kExitUsage;
  }
  if (a.key_slot >= 0 && !volume::luks_keyslot_active(**store, a.key_slot)) {
    std::cerr << "Keyslot " << a.key_slot << " is not active.\n";
    return kExitUsage;
  }
  auto pass =
      read_passphrase(key_source_of(a), "Enter passphrase for keyslot to be converted: ", false);
  if (!pass) return report(pass.error());
  auto r = volume::luks_change_key(**store, pass->span(), slot_of(a), pass->span(), pbkdf_of(a));
  if (!r) return report(r.error());
  if (ctx.verbosity > 0) std::cerr << "Key slot " << *r << " created.\n";
  return kExitOk;
}

// token add|remove|import|export (LUKS2), with cryptsetup 2.6.1's checks and words. `add` writes
// the built-in luks2-keyring token (--key-description) as cryptsetup does; cryptmap itself never
// unlocks with it (it does not read the kernel keyring), cryptsetup on the same image does.
int do_token(const LuksArgs& a, const CommandContext& ctx) {
  auto usage = [](const std::string& sentence) {
    std::cerr << sentence << "\n";
    return kExitUsage;
  };
  const std::string& act = a.token_action;
  if (act != "add" && act != "remove" && act != "import" && act != "export")
    return usage("Unknown token action '" + act + "' (add, remove, import or export).");
  if (act == "add" && a.key_description.empty())
    return usage("--key-description parameter is mandatory for token add action.");
  if ((act == "remove" || act == "export") && a.tokens.token_id < 0)
    return usage("Action requires specific token. Use --token-id parameter.");
  // import: the JSON from --json-file or stdin (cryptsetup's tools_read_json_file), at most the
  // largest JSON area a header can have; read before the header is locked, since it may come
  // from a pipe whose writer reads the same header (`token export ... | token import ...`).
  constexpr std::size_t kMaxJson = 4u << 20;
  std::string json;
  if (act == "import") {
    UniqueFd fd(a.json_file.empty() || a.json_file == "-"
                    ? ::dup(STDIN_FILENO)
                    : ::open(a.json_file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
      return usage("Cannot open JSON file " + a.json_file + ": " + std::strerror(errno) + ".");
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return usage(std::string("Cannot read the token JSON: ") + std::strerror(errno));
      if (n == 0) break;
      json.append(buf, static_cast<std::size_t>(n));
      if (json.size() > kMaxJson) return usage("The token JSON is larger than 4 MiB.");
    }
  }
  const bool writes = act != "export";
  auto lock = MetadataLock::take(header_path(a), writes);
  auto store = header_store(a, !writes);
  if (!store) return report(store.error());
  if (!volume::is_luks(**store, VolumeType::kLuks2))
    return usage("Device " + header_path(a) + " is not a valid LUKS2 device.");
  const std::optional<int> id =
      a.tokens.token_id >= 0 ? std::optional<int>(a.tokens.token_id) : std::nullopt;
  if (act == "export") {
    auto out = volume::luks_token_export(**store, *id);
    if (!out) return report(out.error());
    if (a.json_file.empty() || a.json_file == "-") {
      std::cout << *out << std::flush;
      return kExitOk;
    }
    UniqueFd fd(::open(a.json_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid() ||
        ::write(fd.get(), out->data(), out->size()) != static_cast<ssize_t>(out->size()))
      return usage("Cannot write JSON file " + a.json_file + ": " + std::strerror(errno) + ".");
    return kExitOk;
  }
  if (act == "remove") {
    if (auto r = volume::luks_token_remove(**store, *id); !r) return report(r.error());
    if (ctx.verbosity > 0) std::cerr << "Token " << *id << " removed.\n";
    return kExitOk;
  }
  volume::TokenImport o;
  o.token_id = id;
  o.replace = a.token_replace;
  o.keyslot = slot_of(a);
  o.all_keyslots = act == "add";  // cryptsetup assigns an added token to every keyslot
  auto r = act == "add" ? volume::luks_token_add_keyring(**store, a.key_description, o)
                        : volume::luks_token_import(**store, json, o);
  if (!r) return report(r.error());
  if (ctx.verbosity > 0) std::cerr << "Token " << *r << " created.\n";
  return kExitOk;
}

// --- flag registration ------------------------------------------------------------------------

void add_common(CLI::App* c, LuksArgs& a) {
  c->add_option("--header", a.header, "Device or file with a separated LUKS header");
  c->add_option("--type", a.type, "Type of device metadata: luks, luks1, luks2");
  c->add_option("-d,--key-file", a.key_file, "Read the key from a file (- = stdin)");
  c->add_option("--keyfile-offset", a.keyfile_offset, "Number of bytes to skip in keyfile");
  c->add_option("-l,--keyfile-size", a.keyfile_size, "Limits the read from keyfile");
  c->add_option("-S,--key-slot", a.key_slot, "Slot number for new key (default is first free)")
      ->check(CLI::Range(0, 31));
}

void add_pbkdf(CLI::App* c, LuksArgs& a) {
  add_pbkdf_options(c, a, "The hash used to create the encryption key from the passphrase",
                    "PBKDF algorithm (for LUKS2): argon2i, argon2id, pbkdf2");
}

template <class F>
void on_run(CLI::App* c, CommandContext& ctx, std::shared_ptr<LuksArgs> a, F f) {
  c->callback([&ctx, a, f] { ctx.exit_code = f(*a, ctx); });
}

struct DeviceVerb {
  CLI::App* cmd;
  std::shared_ptr<LuksArgs> args;
};
// A verb on one LUKS device: the subcommand, its DEVICE positional and the options every LUKS
// verb takes. Further positionals added by the caller follow DEVICE.
DeviceVerb device_verb(CLI::App& app, const char* name, const char* description) {
  auto a = std::make_shared<LuksArgs>();
  auto* c = app.add_subcommand(name, description);
  c->add_option("device", a->device, "Image or block device")->required();
  add_common(c, *a);
  return {c, std::move(a)};
}

}  // namespace

void add_luks_commands(CLI::App& app, CommandContext& ctx) {
  {
    auto [c, a] = device_verb(app, "luksFormat", "Formats a LUKS device");
    c->add_option("new_key_file", a->positional_key_file, "Key file with the new passphrase");
    add_pbkdf(c, *a);
    c->add_option("-c,--cipher", a->cipher, "The cipher used to encrypt the disk");
    c->add_option("-s,--key-size", a->key_size_bits, "The size of the encryption key (bits)");
    c->add_option("--sector-size", a->sector_size, "Encryption sector size (LUKS2)");
    c->add_option("--label", a->label, "Set label for the LUKS2 device");
    c->add_option("--subsystem", a->subsystem, "Set subsystem label for the LUKS2 device");
    c->add_option("--uuid", a->uuid, "UUID for device to use");
    c->add_option("-o,--offset", a->offset,
                  "The start offset in the backend device (512-byte sectors)")
        ->each([args = a](const std::string&) { args->offset_set = true; });
    c->add_option("--align-payload", a->align_payload,
                  "Align payload at <n> sector boundaries; with --header: the data offset "
                  "(default: 1 MiB, or the device's optimal I/O size, e.g. an RBD object)");
    c->add_option("--volume-key-file", a->volume_key_file, "Use the volume key from file");
    c->add_option(
        "--integrity", a->integrity,
        "Data integrity algorithm (LUKS2 only): hmac-sha256, hmac-sha512, aead, poly1305");
    c->add_flag("--integrity-no-journal", a->integrity_no_journal,
                "Wipe without the dm-integrity journal (as cryptsetup: nothing is stored; open "
                "--integrity-no-journal for direct mode)");
    c->add_flag("--integrity-no-wipe", a->integrity_no_wipe,
                "Do not wipe the device after format (never-written blocks fail to read)");
    c->add_flag("--wipe", a->wipe,
                "Then write encrypted zeros over the whole data area (hides which blocks are "
                "used; takes as long as writing the image; progress on a terminal)");
    on_run(c, ctx, a, do_format);
  }
  {
    auto [c, a] = device_verb(app, "luksDump", "Dump LUKS partition information");
    c->add_flag("--dump-volume-key,--dump-master-key", a->dump_volume_key,
                "Dump volume key instead of keyslots info");
    add_token_flags(*c, a->tokens);
    c->add_flag("--dump-json-metadata,--json", a->json, "Dump LUKS2 metadata as JSON");
    on_run(c, ctx, a, do_dump);
  }
  {
    auto [c, a] = device_verb(app, "luksAddKey", "Add key to LUKS device");
    c->add_option("new_key_file", a->positional_key_file, "Key file with the new passphrase");
    add_pbkdf(c, *a);
    c->add_option("--new-keyfile-offset", a->new_keyfile_offset,
                  "Number of bytes to skip in newly added keyfile");
    c->add_option("--new-keyfile-size", a->new_keyfile_size,
                  "Limits the read from newly added keyfile");
    c->add_option("--volume-key-file", a->volume_key_file, "Use the volume key from file");
    add_token_flags(*c, a->tokens);
    on_run(c, ctx, a, do_add_key);
  }
  {
    auto [c, a] =
        device_verb(app, "luksRemoveKey", "Removes supplied key or key file from LUKS device");
    c->add_option("key_file", a->positional_key_file, "Key file with the passphrase to remove");
    on_run(c, ctx, a, do_remove_key);
  }
  {
    auto [c, a] =
        device_verb(app, "luksKillSlot", "Wipes key with number <key slot> from LUKS device");
    c->add_option("key_slot", a->kill_slot, "Keyslot to wipe")
        ->required()
        ->check(CLI::Range(0, 31));
    on_run(c, ctx, a, do_kill_slot);
  }
  {
    auto [c, a] =
        device_verb(app, "luksChangeKey", "Changes supplied key or key file of LUKS device");
    c->add_option("new_key_file", a->positional_key_file, "Key file with the new passphrase");
    add_pbkdf(c, *a);
    c->add_option("--new-keyfile-offset", a->new_keyfile_offset,
                  "Number of bytes to skip in newly added keyfile");
    c->add_option("--new-keyfile-size", a->new_keyfile_size,
                  "Limits the read from newly added keyfile");
    on_run(c, ctx, a, do_change_key);
  }
  {
    auto [c, a] = device_verb(app, "isLuks", "Tests <device> for LUKS partition header");
    on_run(c, ctx, a, do_is_luks);
  }
  {
    auto [c, a] =
        device_verb(app, "luksUUID", "Print (or set with --uuid) the UUID of a LUKS device");
    c->add_option("--uuid", a->uuid, "UUID for device to use");
    on_run(c, ctx, a, do_uuid);
  }
  {
    auto [c, a] = device_verb(app, "erase", "Erase all keyslots (remove encryption key)");
    c->alias("luksErase");
    on_run(c, ctx, a, do_erase);
  }
  {
    auto [c, a] = device_verb(app, "config", "Set permanent configuration options for LUKS2");
    c->add_option("--label", a->label, "Set label for the LUKS2 device")
        ->each([args = a](const std::string&) { args->label_set = true; });
    c->add_option("--subsystem", a->subsystem, "Set subsystem label for the LUKS2 device")
        ->each([args = a](const std::string&) { args->subsystem_set = true; });
    c->add_option("--priority", a->priority,
                  "Keyslot priority: ignore, normal, prefer (with --key-slot)");
    on_run(c, ctx, a, do_config);
  }
  {
    auto [c, a] = device_verb(app, "luksHeaderBackup", "Backup LUKS device header and keyslots");
    c->add_option("--header-backup-file", a->header_backup_file,
                  "File with LUKS header and keyslots backup");
    on_run(c, ctx, a, do_backup);
  }
  {
    auto [c, a] = device_verb(app, "luksHeaderRestore", "Restore LUKS device header and keyslots");
    c->add_option("--header-backup-file", a->header_backup_file,
                  "File with LUKS header and keyslots backup");
    on_run(c, ctx, a, do_restore);
  }
  {
    auto a = std::make_shared<LuksArgs>();
    auto* c = app.add_subcommand("token", "Manage LUKS2 tokens: add|remove|import|export");
    c->add_option("action", a->token_action, "add, remove, import or export")
        ->required()
        ->check(CLI::IsMember({"add", "remove", "import", "export"}));
    c->add_option("device", a->device, "Image or block device")->required();
    c->add_option("--header", a->header, "Device or file with a separated LUKS header");
    c->add_option("-S,--key-slot", a->key_slot, "import: also assign the token to this keyslot")
        ->check(CLI::Range(0, 31));
    c->add_option("--token-id", a->tokens.token_id, "Token number (remove, export: required)");
    c->add_flag("--token-replace", a->token_replace,
                "import: replace the token in use at --token-id");
    c->add_option("--json-file", a->json_file, "import: read, export: write the token JSON here");
    c->add_option("--key-description", a->key_description,
                  "add: kernel keyring key (luks2-keyring tokens: refused, no keyring here)");
    on_run(c, ctx, a, do_token);
  }
  {
    auto [c, a] = device_verb(app, "convert", "Converts a LUKS header to --type luks1 or luks2");
    on_run(c, ctx, a, do_convert);
  }
  {
    auto [c, a] =
        device_verb(app, "luksConvertKey", "Converts a key to new pbkdf parameters (LUKS2)");
    add_pbkdf(c, *a);
    on_run(c, ctx, a, do_convert_key);
  }
  {
    auto [c, a] = device_verb(app, "repair", "Try to repair on-disk metadata");
    on_run(c, ctx, a, do_repair);
  }
}

}  // namespace cryptmap::cli
