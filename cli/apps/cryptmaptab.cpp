// crypttab-syntax parsing (see cryptmaptab.h).
#include "cli/apps/cryptmaptab.h"

#include <map>
#include <set>
#include <sstream>

namespace cryptmap::cli::apps {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 127 || n == "." || n == "..") return false;
  for (char c : n)
    if (c == '/' || static_cast<unsigned char>(c) < 0x21) return false;
  return true;
}

}  // namespace

bool parse_cryptmaptab(const std::string& text, std::vector<TabEntry>& out, std::string& error) {
  static const std::map<std::string, std::string> kNumeric{{"keyfile-offset", "--keyfile-offset"},
                                                           {"keyfile-size", "--keyfile-size"},
                                                           {"key-slot", "--key-slot"},
                                                           {"tries", "--tries"},
                                                           {"size", "--key-size"},
                                                           {"offset", "--offset"},
                                                           {"skip", "--skip"},
                                                           {"sector-size", "--sector-size"}};
  static const std::map<std::string, std::string> kText{
      {"header", "--header"}, {"cipher", "--cipher"}, {"hash", "--hash"}};
  static const std::set<std::string> kPlainOnly{"cipher", "size", "hash",
                                                "offset", "skip", "sector-size"};
  // crypttab(5)'s dm-crypt performance flags: the open flags of the same names.
  static const std::map<std::string, std::string> kFlags{
      {"no-read-workqueue", "--perf-no_read_workqueue"},
      {"no-write-workqueue", "--perf-no_write_workqueue"},
      {"same-cpu-crypt", "--perf-same_cpu_crypt"},
      {"submit-from-crypt-cpus", "--perf-submit_from_crypt_cpus"}};
  // crypttab(5)'s TrueCrypt options; each implies `tcrypt`.
  static const std::map<std::string, std::string> kTcryptFlags{
      {"tcrypt-hidden", "--tcrypt-hidden"}, {"tcrypt-system", "--tcrypt-system"}};
  std::istringstream in(text);
  std::string raw;
  std::set<std::string> names;
  std::vector<TabEntry> entries;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    auto hash = raw.find('#');
    std::string line = hash == std::string::npos ? raw : raw.substr(0, hash);
    std::istringstream f(line);
    std::vector<std::string> fields;
    for (std::string w; f >> w;) fields.push_back(w);
    if (fields.empty()) continue;
    auto fail = [&](const std::string& why) {
      error = "line " + std::to_string(lineno) + ": " + why;
      return false;
    };
    if (fields.size() < 2) return fail("expected `name image [keyfile [options]]`");
    if (fields.size() > 4) return fail("too many fields (options are one comma-separated field)");
    TabEntry e;
    e.line = lineno;
    e.name = fields[0];
    e.image = fields[1];
    if (!valid_name(e.name)) return fail("invalid volume name '" + e.name + "'");
    if (!names.insert(e.name).second) return fail("volume name '" + e.name + "' appears twice");
    if (e.image.rfind("UUID=", 0) == 0 || e.image.rfind("LABEL=", 0) == 0 ||
        e.image.rfind("PARTUUID=", 0) == 0)
      return fail("'" + e.image + "': cryptmap needs an image path, not a UUID=/LABEL= tag");
    if (e.image.empty() || e.image[0] != '/')
      return fail("image '" + e.image + "' must be an absolute path");
    if (fields.size() >= 3 && fields[2] != "-" && fields[2] != "none") e.key_file = fields[2];
    std::string type = "luks";
    bool read_only = false;
    std::vector<std::string> args;
    std::vector<std::string> plain_used;
    std::vector<std::string> tcrypt_keyfiles;
    bool veracrypt = false;
    std::string pim;
    if (fields.size() == 4) {
      std::istringstream opts(fields[3]);
      for (std::string o; std::getline(opts, o, ',');) {
        if (o.empty()) return fail("empty option");
        auto eq = o.find('=');
        std::string key = eq == std::string::npos ? o : o.substr(0, eq);
        std::string val = eq == std::string::npos ? std::string() : o.substr(eq + 1);
        if (o == "luks" || o == "plain" || o == "tcrypt" || o == "bitlk") {
          type = o;
        } else if (kFlags.count(o)) {
          args.push_back(kFlags.at(o));
        } else if (kTcryptFlags.count(o)) {
          type = "tcrypt";
          args.push_back(kTcryptFlags.at(o));
        } else if (o == "tcrypt-veracrypt") {
          type = "tcrypt";
          veracrypt = true;
        } else if (key == "tcrypt-keyfile" && eq != std::string::npos) {
          if (val.empty() || val[0] != '/')
            return fail("option 'tcrypt-keyfile' needs an absolute path, got '" + val + "'");
          type = "tcrypt";
          tcrypt_keyfiles.push_back(val);
        } else if (key == "veracrypt-pim" && eq != std::string::npos) {
          if (!all_digits(val) || std::stoull(val) > 2147468)
            return fail("option 'veracrypt-pim' needs a number from 0 to 2147468, got '" + val +
                        "'");
          pim = val;
        } else if (o == "readonly" || o == "read-only") {
          read_only = true;
        } else if (o == "noauto") {
          e.noauto = true;
        } else if (o == "nofail") {
          e.nofail = true;
        } else if (o == "discard") {
          e.discard = true;
        } else if (o.rfind("x-systemd.", 0) == 0) {
          // accepted for crypttab compatibility; nothing to do for a mapped file
        } else if (kNumeric.count(key) && eq != std::string::npos) {
          if (!all_digits(val))
            return fail("option '" + key + "' needs a number, got '" + val + "'");
          args.insert(args.end(), {kNumeric.at(key), val});
          if (kPlainOnly.count(key)) plain_used.push_back(key);
        } else if (kText.count(key) && eq != std::string::npos) {
          if (val.empty()) return fail("option '" + key + "' needs a value");
          args.insert(args.end(), {kText.at(key), val});
          if (kPlainOnly.count(key)) plain_used.push_back(key);
        } else {
          return fail("unsupported option '" + o + "'");
        }
      }
    }
    if (type != "plain" && !plain_used.empty())
      return fail("option '" + plain_used.front() + "' is for plain mode; add 'plain'");
    if (!pim.empty() && !veracrypt)
      return fail("option 'veracrypt-pim' needs 'tcrypt-veracrypt' (as in crypttab(5))");
    e.open_args = {"--type", type};
    if (type == "tcrypt") {
      // crypttab(5): a TrueCrypt volume's KEYFILE field holds the passphrase (its first line);
      // tcrypt-keyfile= names the TrueCrypt/VeraCrypt keyfiles; without tcrypt-veracrypt only
      // TrueCrypt headers are tried.
      e.passphrase_file = e.key_file;
      for (const auto& k : tcrypt_keyfiles)
        e.open_args.insert(e.open_args.end(), {"--key-file", k});
      if (!veracrypt) e.open_args.push_back("--disable-veracrypt");
      if (!pim.empty() && pim != "0")
        e.open_args.insert(e.open_args.end(), {"--veracrypt-pim", pim});
    } else if (!e.key_file.empty()) {
      e.open_args.insert(e.open_args.end(), {"--key-file", e.key_file});
    }
    if (read_only) e.open_args.push_back("--readonly");
    e.open_args.insert(e.open_args.end(), args.begin(), args.end());
    entries.push_back(std::move(e));
  }
  out = std::move(entries);
  return true;
}

}  // namespace cryptmap::cli::apps
