// crypto_bench — AES-256-XTS throughput of cryptmap's SectorCipher beside `openssl speed` on the
// same machine in the same run, for 4096- and 512-byte sectors, one thread and all cores.
//
// cryptmap is measured the way the I/O path uses it: one shared const SectorCipher, each thread
// encrypting (and then decrypting) runs of whole sectors in place in its own 256 KiB buffer
// (L2-resident, so this is a compute ceiling), with a fresh IV per sector (plain64).
// `openssl speed -elapsed -evp aes-256-xts -bytes N` processes N-byte buffers with one IV per
// call, so for 4096 bytes it is the same work; for 512 bytes it is the same work per byte but
// is a ceiling without dm-crypt's per-sector IV setup (the interesting number is how close we
// get anyway). `-multi <cores>` gives the all-core figure.
//
// Usage: crypto_bench [--seconds=S] [--threads=N] [--no-openssl] [--others]
//   --others  also times other cipher specs (single thread) on the generic engine.
// Output: a Markdown table on stdout.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "crypto/random.h"
#include "crypto/sector_cipher.h"

namespace {

using Clock = std::chrono::steady_clock;
using cryptmap::SectorIndex;
using cryptmap::crypto::CipherSpec;
using cryptmap::crypto::SectorCipher;
using cryptmap::crypto::SectorCipherConfig;
using cryptmap::crypto::SectorRun;

constexpr std::size_t kBufBytes = 256 * 1024;

struct Options {
  double seconds = 2.0;
  unsigned threads = std::thread::hardware_concurrency();
  bool openssl = true;
  bool others = false;
};

std::unique_ptr<SectorCipher> make_cipher(const char* spec, std::size_t key_bytes,
                                          std::uint32_t sector_size) {
  SectorCipherConfig cfg;
  auto s = CipherSpec::parse(spec);
  if (!s) {
    std::fprintf(stderr, "bad spec %s: %s\n", spec, s.error().message().c_str());
    std::exit(2);
  }
  cfg.spec = *s;
  cfg.sector_size = sector_size;
  std::vector<std::byte> key(key_bytes);
  if (!cryptmap::crypto::random_bytes(key)) std::exit(2);
  auto c = cryptmap::crypto::make_sector_cipher(cfg, key);
  if (!c) {
    std::fprintf(stderr, "cannot make %s: %s\n", spec, c.error().message().c_str());
    std::exit(2);
  }
  return std::move(*c);
}

// MB/s (10^6 bytes) over all threads, for encrypt or decrypt.
double measure(const SectorCipher& c, unsigned threads, double seconds, bool encrypt) {
  std::atomic<bool> stop{false};
  std::vector<std::uint64_t> bytes(threads, 0);
  std::vector<std::thread> ts;
  const std::uint32_t ss = c.sector_size();
  const auto start = Clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<std::byte> buf(kBufBytes, std::byte{0x5a});
      std::uint64_t sector = std::uint64_t{t} << 40;
      std::uint64_t done = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const SectorRun run{buf, {}, SectorIndex{sector}};
        auto r = encrypt ? c.encrypt(run) : c.decrypt(run);
        if (!r) {
          std::fprintf(stderr, "crypt failed: %s\n", r.error().message().c_str());
          std::exit(2);
        }
        done += buf.size();
        sector += buf.size() / ss;
      }
      bytes[t] = done;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : ts) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::uint64_t total = 0;
  for (auto b : bytes) total += b;
  return static_cast<double>(total) / secs / 1e6;
}

// Runs `openssl speed` and returns MB/s (10^6 bytes/s), or a negative value if unavailable.
double openssl_speed(std::size_t bytes, unsigned multi, double seconds) {
  std::string cmd = "openssl speed -elapsed -evp aes-256-xts -bytes " + std::to_string(bytes) +
                    " -seconds " + std::to_string(static_cast<int>(seconds + 0.5));
  if (multi > 1) cmd += " -multi " + std::to_string(multi);
  cmd += " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char line[512];
  double kbs = -1;
  while (std::fgets(line, sizeof line, p) != nullptr) {
    // Result line: "AES-256-XTS    1644747.78k" (the multi summary uses the same shape).
    if (std::strncmp(line, "AES-256-XTS", 11) == 0 || std::strncmp(line, "evp", 3) == 0) {
      const char* v = line + std::strcspn(line, " \t");
      kbs = std::strtod(v, nullptr);
    }
  }
  const int st = pclose(p);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
  return kbs > 0 ? kbs / 1000.0 : -1;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--seconds=", 0) == 0) o.seconds = std::atof(a.c_str() + 10);
    else if (a.rfind("--threads=", 0) == 0) o.threads = static_cast<unsigned>(std::atoi(a.c_str() + 10));
    else if (a == "--no-openssl") o.openssl = false;
    else if (a == "--others") o.others = true;
    else {
      std::fprintf(stderr, "usage: %s [--seconds=S] [--threads=N] [--no-openssl] [--others]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  if (o.threads == 0) o.threads = 1;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::printf("# cryptmap crypto_bench: aes-xts-plain64, 512-bit key (AES-256-XTS), %.1f s per cell\n\n",
              o.seconds);
  std::printf("| sector | threads | engine | cryptmap enc MB/s | cryptmap dec MB/s | per core enc | "
              "openssl speed MB/s | enc / openssl |\n");
  std::printf("|---:|---:|---|---:|---:|---:|---:|---:|\n");
  for (std::uint32_t ss : {4096u, 512u}) {
    auto c = make_cipher("aes-xts-plain64", 64, ss);
    std::vector<unsigned> counts{1};
    if (o.threads > 1) counts.push_back(o.threads);
    for (unsigned n : counts) {
      const double enc = measure(*c, n, o.seconds, true);
      const double dec = measure(*c, n, o.seconds, false);
      const double ossl = o.openssl ? openssl_speed(ss, n, o.seconds) : -1;
      char ratio[32] = "n/a";
      char ossl_s[32] = "n/a";
      if (ossl > 0) {
        std::snprintf(ratio, sizeof ratio, "%.0f %%", 100.0 * enc / ossl);
        std::snprintf(ossl_s, sizeof ossl_s, "%.0f", ossl);
      }
      std::printf("| %u | %u | %s | %.0f | %.0f | %.0f | %s | %s |\n", ss, n, c->engine_name(),
                  enc, dec, enc / n, ossl_s, ratio);
      std::fflush(stdout);
    }
  }
  if (o.others) {
    std::printf("\n| spec | key bits | sector | engine | enc MB/s (1 thread) | dec MB/s |\n");
    std::printf("|---|---:|---:|---|---:|---:|\n");
    struct S {
      const char* spec;
      std::size_t key;
      std::uint32_t ss;
    } const specs[] = {{"aes-xts-plain64", 64, 512},       {"aes-cbc-essiv:sha256", 32, 4096},
                       {"aes-cbc-essiv:sha256", 32, 512},  {"serpent-xts-plain64", 64, 4096},
                       {"twofish-xts-plain64", 64, 4096},  {"camellia-xts-plain64", 64, 4096},
                       {"aes:64-cbc-lmk", 64 * 32, 512},   {"aes-lrw-benbi", 48, 4096}};
    for (const auto& s : specs) {
      auto c = make_cipher(s.spec, s.key, s.ss);
      const double secs = o.seconds / 2;
      std::printf("| %s | %zu | %u | %s | %.0f | %.0f |\n", s.spec, s.key * 8, s.ss,
                  c->engine_name(), measure(*c, 1, secs, true), measure(*c, 1, secs, false));
      std::fflush(stdout);
    }
  }
  return 0;
}
