// tcryptDump, and the TCRYPT unlock shared with `open --type tcrypt` (cli/tcrypt_unlock.h).
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/tcrypt_unlock.h"
#include "cli/terminal/passphrase.h"
#include "fs/daemon.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"

namespace cryptmap::cli {
namespace {

void say(const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); }

// cryptsetup's tcrypt_load: a decimal number, 1..UINT32_MAX, nothing else on the line.
Result<std::uint32_t> parse_pim(const SecretBytes& text) {
  const auto* p = reinterpret_cast<const char*>(text.span().data());
  const std::size_t n = text.span().size();
  if (n == 0 || n > 10 || !std::all_of(p, p + n, [](char c) { return c >= '0' && c <= '9'; }))
    return make_error(Errc::kInvalid, "Invalid PIM value: parse error.");
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = v * 10 + static_cast<std::uint64_t>(p[i] - '0');
  if (v == 0) return make_error(Errc::kInvalid, "Invalid PIM value: 0.");
  if (v > UINT32_MAX) return make_error(Errc::kInvalid, "Invalid PIM value: outside of range.");
  return static_cast<std::uint32_t>(v);
}

}  // namespace

bool finish_tcrypt_options(TcryptArgs& t, bool disable_veracrypt, std::uint32_t pim,
                           CommandContext& ctx) {
  if (pim != 0 && t.query_pim) {
    say("The options --veracrypt-pim and --veracrypt-query-pim are mutually exclusive.");
    ctx.exit_code = kExitUsage;
    return false;
  }
  if (disable_veracrypt && (pim != 0 || t.query_pim)) {
    say("Option --veracrypt-pim is supported only for VeraCrypt compatible devices (drop "
        "--disable-veracrypt).");
    ctx.exit_code = kExitUsage;
    return false;
  }
  t.options.veracrypt = !disable_veracrypt;
  if (pim != 0) t.options.pim = pim;
  return true;
}

std::optional<volume::TcryptMatch> unlock_tcrypt(const std::string& image, const TcryptArgs& a,
                                                 CommandContext& ctx) {
  // A path, an NBD URI or an rbd: argument (the same choice as every verb that takes an image).
  auto store = volume::open_image_store(image, volume::metadata_store_options(true));
  if (!store) {
    say(fs::user_message(store.error(), image));
    ctx.exit_code = exit_code_for(store.error());
    return std::nullopt;
  }
  std::vector<SecretBytes> files;
  for (const auto& f : a.key_files) {
    KeySource ks;
    ks.key_file = f;
    // Only the first 1 MiB of a keyfile counts (docs/tcrypt.md §3): read no more of a big one.
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > (1 << 20))
      ks.keyfile_size = 1 << 20;
    auto bytes = read_passphrase(ks, "", false);
    if (!bytes) {
      say("Cannot read keyfile " + f + ": " + bytes.error().message());
      ctx.exit_code = exit_code_for(bytes.error());
      return std::nullopt;
    }
    files.push_back(std::move(*bytes));
  }
  std::vector<std::span<const std::byte>> spans;
  for (const auto& f : files) spans.push_back(f.span());
  const KeySource prompt;  // the passphrase: terminal, or one line of stdin
  const std::uint32_t attempts = passphrase_is_interactive(prompt) ? std::max(1u, a.tries) : 1;
  for (std::uint32_t i = 0; i < attempts; ++i) {
    auto pass = read_passphrase(
        prompt, a.prompt.empty() ? "Enter passphrase for " + image + ": " : a.prompt, false);
    if (!pass) {
      say(pass.error().message());
      ctx.exit_code = exit_code_for(pass.error());
      return std::nullopt;
    }
    volume::TcryptOptions options = a.options;
    if (a.query_pim) {
      auto text = read_passphrase(prompt, "Enter VeraCrypt PIM: ", false);
      if (!text) {
        say(text.error().message());
        ctx.exit_code = exit_code_for(text.error());
        return std::nullopt;
      }
      auto pim = parse_pim(*text);
      if (!pim) {
        say(pim.error().message());
        ctx.exit_code = kExitUsage;
        return std::nullopt;
      }
      options.pim = *pim;
    }
    auto pool = volume::tcrypt_pool(pass->span(), spans, options.veracrypt);
    if (!pool) {
      say("Maximum TCRYPT passphrase length (" + std::to_string(a.options.veracrypt ? 128 : 64) +
          ") exceeded.");
      ctx.exit_code = kExitUsage;
      return std::nullopt;
    }
    auto m = volume::tcrypt_unlock(**store, options, pool->span());
    if (m) return std::move(*m);
    const Error& e = m.error();
    if (e.code == Errc::kBadKey) {
      say("No device header detected with this passphrase" +
          std::string(a.key_files.empty() ? "" : " and these keyfiles") + " in " + image +
          ". Check the passphrase, the keyfiles, --veracrypt-pim, --tcrypt-hidden or "
          "--tcrypt-system (and --disable-veracrypt is not given for a VeraCrypt volume).");
      ctx.exit_code = kExitPermission;
      continue;
    }
    if (e.code == Errc::kNoSpace)
      say("Device " + image + " is too small for the TCRYPT volume its header describes (" +
          e.message() + "). Give the whole image, or restore its full size.");
    else
      say("Cannot open the TCRYPT volume " + image + ": " + e.message());
    ctx.exit_code = exit_code_for(e);
    return std::nullopt;
  }
  return std::nullopt;
}

namespace {

struct DumpArgs {
  std::string image;
  TcryptArgs t;
  bool disable_veracrypt = false;
  std::uint32_t pim = 0;
  bool dump_volume_key = false;
};

void run_dump(DumpArgs& a, CommandContext& ctx) {
  if (!finish_tcrypt_options(a.t, a.disable_veracrypt, a.pim, ctx)) return;
  a.t.options.key_only = true;
  if (a.dump_volume_key && !yes_dialog(ctx.batch_mode, kVolumeKeyDumpWarning)) {
    say("Operation aborted: the volume key was not dumped (answer YES, or use --batch-mode).");
    ctx.exit_code = kExitUsage;
    return;
  }
  auto m = unlock_tcrypt(a.image, a.t, ctx);
  if (!m) return;
  std::string out = volume::tcrypt_dump(*m, a.image, a.dump_volume_key);
  std::fwrite(out.data(), 1, out.size(), stdout);
  secure_zero(out.data(), out.size());
  ctx.exit_code = kExitOk;
}

}  // namespace

void add_tcrypt_options(CLI::App& c, TcryptArgs& t, bool& disable_veracrypt, std::uint32_t& pim) {
  c.add_flag("--veracrypt")->description("Scan for VeraCrypt headers too (the default)");
  c.add_flag("--disable-veracrypt", disable_veracrypt, "Only TrueCrypt headers and KDFs");
  c.add_option("--veracrypt-pim", pim, "VeraCrypt Personal Iteration Multiplier");
  c.add_flag("--veracrypt-query-pim", t.query_pim,
             "Ask for the VeraCrypt Personal Iteration Multiplier (after the passphrase)");
  c.add_flag("--tcrypt-hidden", t.options.hidden, "Use the hidden volume's header");
  c.add_flag("--tcrypt-backup", t.options.backup, "Use the backup header at the end");
  c.add_flag("--tcrypt-system", t.options.system, "System encryption header (byte 31744)");
}

void add_tcrypt_commands(CLI::App& app, CommandContext& ctx) {
  auto da = std::make_shared<DumpArgs>();
  CLI::App* dump = app.add_subcommand("tcryptDump", "Show the TCRYPT (TrueCrypt/VeraCrypt) header");
  dump->set_help_flag("--help", "Print this help message and exit");  // -h is --hash
  dump->add_option("image", da->image, "Encrypted image")->required();
  dump->add_option("--key-file,-d", da->t.key_files, "Keyfile (repeat for several)");
  dump->add_option("--hash,-h", da->t.options.hash, "Only try KDFs with this hash");
  dump->add_option("--cipher,-c", da->t.options.cipher, "Only try chains with this cipher");
  dump->add_option("--tries,-T", da->t.tries, "Passphrase attempts at a terminal");
  dump->add_flag("--dump-volume-key,--dump-master-key", da->dump_volume_key,
                 "Also print the volume key (sensitive)");
  add_tcrypt_options(*dump, da->t, da->disable_veracrypt, da->pim);
  dump->callback([da, &ctx] { run_dump(*da, ctx); });
}

}  // namespace cryptmap::cli
