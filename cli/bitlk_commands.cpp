// bitlkDump: BitLocker metadata as cryptsetup prints it (volume/format/bitlk.h), and with
// --dump-volume-key the FVEK after unlocking with a passphrase, recovery password, .BEK file
// (--key-file) or the clear key. fvault2Dump: the same for FileVault 2 (volume/format/fvault2.h).
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <variant>

#include <CLI/CLI.hpp>

#include "base/bytes.h"
#include "cli/commands.h"
#include "cli/terminal/passphrase.h"
#include "volume/format/bitlk.h"
#include "volume/format/fvault2.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"

namespace cryptmap::cli {
namespace {

struct BitlkArgs {
  std::string device;
  bool dump_volume_key = false;
  std::string key_file;
  std::uint64_t keyfile_offset = 0;
  std::uint64_t keyfile_size = 0;
};

int fail(const std::string& msg, const Error& e) {
  std::cerr << msg << "\n";
  return exit_code_for(e);
}

// The parsed header of a dump, or the exit status after cryptsetup's message for `kind` (BITLK,
// FVAULT2): the image is read through a read-only, buffered store.
template <class Header>
std::variant<std::unique_ptr<Header>, int> load_for_dump(const BitlkArgs& a, const char* kind) {
  const volume::PosixStoreOptions ro = volume::metadata_store_options(true);
  // A path, an NBD URI or an rbd: argument (the same choice as every verb that takes an image).
  auto store = volume::open_image_store(a.device, ro);
  if (!store) {
    if (volume::is_store_uri(a.device)) return fail(store.error().message(), store.error());
    std::cerr << "Device " << a.device << " does not exist or access denied.\n";
    return kExitBadDevice;
  }
  auto h = Header::load(**store);
  if (!h)
    return fail(
        "Device " + a.device + " is not a valid " + kind + " device. (" + h.error().message() + ")",
        h.error());
  return std::move(*h);
}

// --dump-volume-key: cryptsetup's confirmation, then the passphrase (--key-file or a prompt);
// `ask` false when the volume has a clear key and no key file was given.
Result<SecretBytes> confirmed_passphrase(const BitlkArgs& a, const CommandContext& ctx, bool ask) {
  if (!yes_dialog(ctx.batch_mode, kVolumeKeyDumpWarning))
    return make_error(Errc::kCancelled, "Operation aborted.");
  if (!ask) return SecretBytes{};
  return read_passphrase(key_source_of(a), "Enter passphrase for " + a.device + ": ", false);
}

int unlock_failed(const BitlkArgs& a, const Error& e) {
  if (e.code == Errc::kBadKey) return fail("No key available with this passphrase.", e);
  return fail("Cannot unlock " + a.device + ": " + e.message(), e);
}

int do_bitlk_dump(const BitlkArgs& a, const CommandContext& ctx) {
  auto loaded = load_for_dump<volume::BitlkHeader>(a, "BITLK");
  if (auto* rc = std::get_if<int>(&loaded)) return *rc;
  const auto& h = std::get<0>(loaded);
  if (!a.dump_volume_key) {
    std::cout << h->dump(a.device);
    return kExitOk;
  }
  auto pass = confirmed_passphrase(a, ctx, !h->has_clear_key() || !a.key_file.empty());
  if (!pass) return fail(pass.error().message(), pass.error());
  auto vk = h->unlock(pass->span());
  if (!vk) return unlock_failed(a, vk.error());
  const volume::VolumeLayout& l = h->layout();
  std::string mode = l.cipher.chain_mode;
  mode.append("-").append(l.cipher.iv_mode);
  std::cout << "BITLK header information for " << a.device << "\n";
  std::cout << "Cipher name:   \t" << l.cipher.cipher << "\n";
  std::cout << "Cipher mode:   \t" << mode << "\n";
  std::cout << "UUID:          \t" << l.uuid << "\n";
  std::cout << "MK bits:       \t" << vk->size() * 8 << "\n";
  std::cout << "MK dump:\t" << to_hex_lines(vk->span(), "\t\t") << "\n";
  return kExitOk;
}

int do_fvault2_dump(const BitlkArgs& a, const CommandContext& ctx) {
  auto loaded = load_for_dump<volume::Fvault2Header>(a, "FVAULT2");
  if (auto* rc = std::get_if<int>(&loaded)) return *rc;
  const auto& h = std::get<0>(loaded);
  const std::string dump = h->dump(a.device);
  if (!a.dump_volume_key) {
    std::cout << dump;
    return kExitOk;
  }
  auto pass = confirmed_passphrase(a, ctx, true);
  if (!pass) return fail(pass.error().message(), pass.error());
  auto vk = h->unlock(pass->span());
  if (!vk) return unlock_failed(a, vk.error());
  std::cout << dump << "Volume key:       \t" << to_hex_lines(vk->span(), "") << "\n";
  return kExitOk;
}

}  // namespace

void add_bitlk_commands(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<BitlkArgs>();
  auto* c = app.add_subcommand("bitlkDump", "Dump BITLK device information");
  c->add_option("device", a->device, "Image or block device")->required();
  c->add_flag("--dump-volume-key,--dump-master-key", a->dump_volume_key,
              "Dump volume key instead of keyslots info");
  c->add_option("-d,--key-file", a->key_file,
                "Read the key (passphrase, recovery password or .BEK startup key) from a file");
  c->add_option("--keyfile-offset", a->keyfile_offset, "Number of bytes to skip in keyfile");
  c->add_option("-l,--keyfile-size", a->keyfile_size, "Limits the read from keyfile");
  c->callback([a, &ctx] { ctx.exit_code = do_bitlk_dump(*a, ctx); });

  auto f = std::make_shared<BitlkArgs>();
  auto* d = app.add_subcommand("fvault2Dump", "Dump FVAULT2 device information");
  d->add_option("device", f->device, "Image or block device")->required();
  d->add_flag("--dump-volume-key,--dump-master-key", f->dump_volume_key,
              "Dump volume key instead of header info");
  d->add_option("-d,--key-file", f->key_file, "Read the passphrase from a file");
  d->add_option("--keyfile-offset", f->keyfile_offset, "Number of bytes to skip in keyfile");
  d->add_option("-l,--keyfile-size", f->keyfile_size, "Limits the read from keyfile");
  d->callback([f, &ctx] { ctx.exit_code = do_fvault2_dump(*f, ctx); });
}

}  // namespace cryptmap::cli
