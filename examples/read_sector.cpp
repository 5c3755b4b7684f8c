// read_sector — open a LUKS1/LUKS2 (or plain) image with the cryptmap library and print one
// sector of its plaintext as a hex dump (the format of `hexdump -C -v`, offsets in bytes of the
// volume), without FUSE or a daemon: the smallest real use of volume/open.h.
//
//   read_sector [--plain] IMAGE KEYFILE [SECTOR]
//
// KEYFILE holds the passphrase (all of it, as `cryptsetup --key-file` reads it). SECTOR counts
// the volume's sectors (its LUKS sector size; 512 in plain mode), 0 by default. --plain: no
// header, cryptsetup 2.6's plain defaults (aes-cbc-essiv:sha256, 256-bit key), the key file used
// as the raw key. Exit codes: 0, 1 usage or a sector past the end, 2 wrong passphrase, 4 an
// image that cannot be opened (base/exit_code.h).
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/exit_code.h"
#include "base/secret.h"
#include "base/unique_fd.h"
#include "volume/open.h"

namespace {

using namespace cryptmap;

int usage(const char* why) {
  std::fprintf(stderr, "read_sector: %s\nusage: read_sector [--plain] IMAGE KEYFILE [SECTOR]\n",
               why);
  return kExitUsage;
}

// The passphrase: the whole key file, read straight into locked memory.
Result<SecretBytes> read_key_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0) return make_sys_error(errno, "open key file");
  if (st.st_size <= 0) return make_error(Errc::kInvalid, "key file is empty");
  CRYPTMAP_TRY(key, SecretBytes::allocate(static_cast<std::size_t>(st.st_size)));
  for (std::size_t got = 0; got < key.size();) {
    const ssize_t n = ::read(fd.get(), key.span().data() + got, key.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_sys_error(errno, "read key file");
    if (n == 0) return make_error(Errc::kIo, "key file shrank while being read");
    got += static_cast<std::size_t>(n);
  }
  return key;
}

// `hexdump -C -v`: offset, 16 bytes in two groups of 8, the printable ones between bars.
void hex_dump(std::uint64_t base, std::span<const std::byte> b) {
  for (std::size_t line = 0; line < b.size(); line += 16) {
    std::printf("%08llx ", static_cast<unsigned long long>(base + line));
    std::string ascii;
    for (std::size_t i = 0; i < 16; ++i) {
      if (i == 8) std::printf(" ");
      if (line + i < b.size()) {
        const auto c = static_cast<unsigned char>(b[line + i]);
        std::printf(" %02x", c);
        ascii += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
      } else {
        std::printf("   ");
      }
    }
    std::printf("  |%s|\n", ascii.c_str());
  }
  std::printf("%08llx\n", static_cast<unsigned long long>(base + b.size()));
}

}  // namespace

int main(int argc, char** argv) {
  // The engine warns when it cannot mark its I/O threads for a daemon under a loop device; a
  // one-off program has no such daemon, so only errors are worth showing.
  spdlog::set_level(spdlog::level::err);
  std::vector<std::string> args(argv + 1, argv + argc);
  volume::UnlockOptions uo;
  if (!args.empty() && args[0] == "--plain") {
    uo.type = volume::VolumeType::kPlain;
    uo.plain_key_from_file = true;
    args.erase(args.begin());
  }
  if (args.size() < 2 || args.size() > 3) return usage("give an image and a key file");
  std::uint64_t sector = 0;
  if (args.size() == 3) {
    char* end = nullptr;
    errno = 0;
    sector = std::strtoull(args[2].c_str(), &end, 10);
    if (args[2].empty() || *end != '\0' || errno != 0 || args[2][0] == '-')
      return usage(("SECTOR must be a sector number, not '" + args[2] + "'").c_str());
  }
  const volume::ImagePaths paths{.image = args[0], .header = {}};

  auto pass = read_key_file(args[1]);
  if (!pass) {
    std::fprintf(stderr, "read_sector: cannot read key file %s: %s\n", args[1].c_str(),
                 pass.error().message().c_str());
    return exit_code_for(pass.error());
  }
  volume::VolumeOptions vo;
  vo.read_only = true;
  vo.cache_bytes = 0;  // one read: nothing worth caching
  auto vol = volume::open_with_passphrase(paths, uo, pass->span(), vo, nullptr);
  pass = SecretBytes();  // wipe the passphrase as soon as it is used
  if (!vol) {
    const bool not_luks = vol.error().code == Errc::kInvalid && !uo.type;
    std::fprintf(stderr, "read_sector: cannot open %s: %s%s\n", paths.image.c_str(),
                 vol.error().message().c_str(),
                 not_luks ? " (a plain-mode image needs --plain)" : "");
    return exit_code_for(vol.error());
  }
  const std::uint32_t ss = (*vol)->layout().sector_size;
  const std::uint64_t sectors = (*vol)->size_bytes() / ss;
  if (sector >= sectors) {
    std::fprintf(stderr,
                 "read_sector: sector %llu is past the end of %s (%llu sectors of %u bytes)\n",
                 static_cast<unsigned long long>(sector), paths.image.c_str(),
                 static_cast<unsigned long long>(sectors), ss);
    return kExitUsage;
  }
  std::vector<std::byte> buf(ss);
  auto n = (*vol)->read(ByteOffset{sector * ss}, buf);
  if (!n) {
    std::fprintf(stderr, "read_sector: reading sector %llu of %s failed: %s\n",
                 static_cast<unsigned long long>(sector), paths.image.c_str(),
                 n.error().message().c_str());
    return exit_code_for(n.error());
  }
  hex_dump(sector * ss, std::span(buf).first(*n));
  return kExitOk;
}
