// benchmark: cryptsetup 2.6.1's `benchmark` (src/cryptsetup.c action_benchmark and
// action_benchmark_kdf), measured on cryptmap's own engines: the PBKDF lines (PBKDF2 iterations
// per second for each hash; Argon2 costs for --iter-time) and the cipher table, in cryptsetup's
// format. Differences, on purpose: a cipher is measured through the sector cipher cryptmap
// would use (crypto::make_sector_cipher, 4096-byte sectors, plain64 IVs), on every online core
// at once, each core encrypting its own 1 MiB buffer (cryptsetup measures one thread through
// the kernel crypto API, which this machine may not even offer); figures are in MiB/s of
// plaintext summed over the cores.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "crypto/cipher_spec.h"
#include "crypto/kdf.h"
#include "crypto/random.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::cli {
namespace {

struct BenchmarkArgs {
  std::string cipher;                // --cipher: one table line
  std::uint32_t key_size_bits = 0;   // --key-size (default 256, cryptsetup's plain default)
  std::string pbkdf;                 // --pbkdf: one PBKDF line
  std::string hash;                  // --hash: one PBKDF2 line
  std::uint32_t iter_time_ms = 0;    // --iter-time for Argon2 (default 2000)
  std::uint32_t pbkdf_memory = 0;    // --pbkdf-memory (default 1 GiB)
  std::uint32_t pbkdf_parallel = 0;  // --pbkdf-parallel (default 4, at most the online CPUs)
};

[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

std::uint32_t online_cpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<std::uint32_t>(n) : 1;
}

// One PBKDF line (action_benchmark_kdf). Returns false when it could not be measured.
bool kdf_line(const std::string& kdf, const std::string& hash, std::size_t key_bytes,
              const BenchmarkArgs& a) {
  if (kdf == "pbkdf2") {
    auto it = crypto::pbkdf2_iterations_for(hash, key_bytes, 1000);
    if (!it) {
      std::cout << format("PBKDF2-%-9s     N/A\n", hash.c_str());
      return false;
    }
    std::cout << format("PBKDF2-%-9s %7u iterations per second for %zu-bit key\n", hash.c_str(),
                        *it, key_bytes * 8);
    return true;
  }
  const auto type = kdf == "argon2i" ? crypto::Argon2Type::kArgon2i : crypto::Argon2Type::kArgon2id;
  const std::uint32_t ms = a.iter_time_ms ? a.iter_time_ms : 2000;
  const std::uint32_t mem = a.pbkdf_memory ? a.pbkdf_memory : 1048576;
  const std::uint32_t par = std::min(a.pbkdf_parallel ? a.pbkdf_parallel : 4u, online_cpus());
  auto c = crypto::argon2_cost_for(type, ms, mem, par);
  if (!c) {
    std::cout << format("%-10s N/A\n", kdf.c_str());
    return false;
  }
  std::cout << format(
      "%-10s %4u iterations, %5u memory, %1u parallel threads (CPUs) for %zu-bit key "
      "(requested %u ms time)\n",
      kdf.c_str(), c->time_cost, c->memory_kib, c->parallel, key_bytes * 8, ms);
  return true;
}

struct Speed {
  double encrypt_mibs = 0, decrypt_mibs = 0;
};

// MiB/s of one direction: every core runs the cipher over its own 1 MiB buffer until ~250 ms
// have passed; the bytes of all cores over the wall time.
Result<double> measure(const crypto::SectorCipher& c, bool encrypt) {
  constexpr std::size_t kBuffer = 1u << 20;
  const std::uint32_t threads = online_cpus();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (std::uint32_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::vector<std::byte> buf(kBuffer, std::byte{static_cast<unsigned char>(t)});
      std::uint64_t done = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const crypto::SectorRun run{buf, {}, SectorIndex{done / c.sector_size()}};
        if (!(encrypt ? c.encrypt(run) : c.decrypt(run))) {
          failed = true;
          break;
        }
        done += kBuffer;
      }
      bytes += done;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  stop = true;
  for (auto& th : pool) th.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failed) return fail(make_error(Errc::kUnsupported, "cipher failed during the benchmark"));
  return static_cast<double>(bytes.load()) / (1024.0 * 1024.0) / secs;
}

// crypt_benchmark for "<cipher>-<mode>" with a key of key_bytes, through cryptmap's engines.
Result<Speed> cipher_speed(const std::string& cipher, const std::string& mode,
                           std::size_t key_bytes) {
  auto spec = crypto::CipherSpec::parse(cipher + "-" + mode + "-plain64");
  if (!spec) return fail(spec.error());
  crypto::SectorCipherConfig cfg;
  cfg.spec = *spec;
  cfg.sector_size = 4096;
  std::vector<std::byte> key(key_bytes);
  CRYPTMAP_TRY_VOID(crypto::random_bytes(key));
  CRYPTMAP_TRY(c, crypto::make_sector_cipher(cfg, key));
  Speed s;
  CRYPTMAP_TRY(e, measure(*c, true));
  CRYPTMAP_TRY(d, measure(*c, false));
  s.encrypt_mibs = e;
  s.decrypt_mibs = d;
  return s;
}

int run_benchmark(const BenchmarkArgs& a) {
  const std::size_t key_bytes = (a.key_size_bits ? a.key_size_bits : 256) / 8;
  std::cout << "# Tests are approximate using memory only (no storage IO).\n";
  if (!a.pbkdf.empty() || !a.hash.empty()) {
    const std::string kdf = a.pbkdf.empty() ? "pbkdf2" : a.pbkdf;
    return kdf_line(kdf, a.hash.empty() ? "sha256" : a.hash, key_bytes, a) ? kExitOk : kExitUsage;
  }
  if (!a.cipher.empty()) {
    // crypt_parse_name_and_mode, then the mode without its IV generator ("xts-plain64" -> "xts").
    const auto dash = a.cipher.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == a.cipher.size()) {
      std::cerr << "No known cipher specification pattern detected.\n";
      return kExitUsage;
    }
    const std::string cipher = a.cipher.substr(0, dash);
    std::string mode = a.cipher.substr(dash + 1);
    mode = mode.substr(0, mode.find('-'));
    auto s = cipher_speed(cipher, mode, key_bytes);
    if (!s) {
      std::cerr << "Cipher " << a.cipher << " (with " << key_bytes * 8
                << " bits key) is not available. (" << s.error().message() << ")\n";
      return kExitUsage;
    }
    const int width = std::max<int>(11, static_cast<int>(cipher.size() + mode.size() + 1));
    std::cout << format("#%*s Algorithm |       Key |      Encryption |      Decryption\n",
                        width - 11, "");
    std::cout << format("%*s-%s  %9zub  %10.1f MiB/s  %10.1f MiB/s\n",
                        width - static_cast<int>(mode.size()) - 1, cipher.c_str(), mode.c_str(),
                        key_bytes * 8, s->encrypt_mibs, s->decrypt_mibs);
    return kExitOk;
  }
  static const char* const kHashes[] = {"sha1", "sha256", "sha512", "ripemd160", "whirlpool"};
  for (const char* h : kHashes) kdf_line("pbkdf2", h, key_bytes, a);
  kdf_line("argon2i", "", key_bytes, a);
  kdf_line("argon2id", "", key_bytes, a);
  static const struct {
    const char* cipher;
    const char* mode;
    std::size_t key_bytes;
  } kCiphers[] = {{"aes", "cbc", 16}, {"serpent", "cbc", 16}, {"twofish", "cbc", 16},
                  {"aes", "cbc", 32}, {"serpent", "cbc", 32}, {"twofish", "cbc", 32},
                  {"aes", "xts", 32}, {"serpent", "xts", 32}, {"twofish", "xts", 32},
                  {"aes", "xts", 64}, {"serpent", "xts", 64}, {"twofish", "xts", 64}};
  std::cout << "#     Algorithm |       Key |      Encryption |      Decryption\n";
  for (const auto& c : kCiphers) {
    auto s = cipher_speed(c.cipher, c.mode, c.key_bytes);
    if (!s)
      std::cout << format("%11s-%s  %9zub  %17s  %17s\n", c.cipher, c.mode, c.key_bytes * 8, "N/A",
                          "N/A");
    else
      std::cout << format("%11s-%s  %9zub  %10.1f MiB/s  %10.1f MiB/s\n", c.cipher, c.mode,
                          c.key_bytes * 8, s->encrypt_mibs, s->decrypt_mibs);
    std::cout << std::flush;
  }
  return kExitOk;
}

}  // namespace

void add_benchmark_commands(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<BenchmarkArgs>();
  auto* c = app.add_subcommand(
      "benchmark", "Benchmark cipher and PBKDF on cryptmap's engines (all cores, memory only)");
  c->add_option("-c,--cipher", a->cipher, "Only this cipher (e.g. aes-xts-plain64)");
  c->add_option("-s,--key-size", a->key_size_bits, "Key size in bits (default 256)")
      ->check(CLI::Range(8, 8192));
  c->add_option("--pbkdf", a->pbkdf, "Only this PBKDF: pbkdf2, argon2i, argon2id")
      ->check(CLI::IsMember({"pbkdf2", "argon2i", "argon2id"}));
  c->add_option("--hash", a->hash, "Only PBKDF2 with this hash");
  c->add_option("-i,--iter-time", a->iter_time_ms, "Argon2: target time in ms (default 2000)");
  c->add_option("--pbkdf-memory", a->pbkdf_memory, "Argon2: memory limit in KiB (default 1 GiB)");
  c->add_option("--pbkdf-parallel", a->pbkdf_parallel, "Argon2: threads (default 4)");
  c->callback([&ctx, a] { ctx.exit_code = run_benchmark(*a); });
}

}  // namespace cryptmap::cli
