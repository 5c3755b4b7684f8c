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
// Two views of the same runs, because this machine is shared: wall-clock throughput (what
// `-elapsed` reports) and throughput per CPU-second (bytes / process CPU time, which is what
// `openssl speed` reports without -elapsed). On a busy machine the wall numbers of both sides
// drop with the load; the per-CPU-second ratio stays meaningful.
//
// Usage: crypto_bench [--seconds=S] [--threads=N] [--no-openssl] [--others]
//   --others  also times other cipher specs (single thread) on the other engines.
// Output: Markdown tables on stdout.
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

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

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Rate {
  double wall = 0;       // MB/s over all threads (10^6 bytes per second)
  double per_cpu_s = 0;  // MB per CPU-second = per-core throughput
};

Rate measure(const SectorCipher& c, unsigned threads, double seconds, bool encrypt) {
  std::atomic<bool> stop{false};
  std::vector<std::uint64_t> bytes(threads, 0);
  std::vector<std::thread> ts;
  const std::uint32_t ss = c.sector_size();
  const auto start = Clock::now();
  const double cpu0 = process_cpu_seconds();
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
  const double cpu = process_cpu_seconds() - cpu0;
  std::uint64_t total = 0;
  for (auto b : bytes) total += b;
  return {static_cast<double>(total) / secs / 1e6, static_cast<double>(total) / cpu / 1e6};
}

// Runs `openssl speed` and returns MB/s (10^6 bytes/s), or a negative value if unavailable.
double openssl_speed(std::size_t bytes, unsigned multi, double seconds, bool elapsed) {
  std::string cmd = std::string("openssl speed ") + (elapsed ? "-elapsed " : "") +
                    "-evp aes-256-xts -bytes " + std::to_string(bytes) + " -seconds " +
                    std::to_string(static_cast<int>(seconds + 0.5));
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
    if (a.rfind("--seconds=", 0) == 0)
      o.seconds = std::atof(a.c_str() + 10);
    else if (a.rfind("--threads=", 0) == 0)
      o.threads = static_cast<unsigned>(std::atoi(a.c_str() + 10));
    else if (a == "--no-openssl")
      o.openssl = false;
    else if (a == "--others")
      o.others = true;
    else {
      std::fprintf(stderr, "usage: %s [--seconds=S] [--threads=N] [--no-openssl] [--others]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  if (o.threads == 0) o.threads = 1;
  return o;
}

std::string pct(double a, double b) {
  if (a <= 0 || b <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f %%", 100.0 * a / b);
  return buf;
}

std::string num(double v) {
  if (v <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::printf(
      "# cryptmap crypto_bench: aes-xts-plain64, 512-bit key (AES-256-XTS), %.1f s per cell\n\n",
      o.seconds);
  std::printf(
      "| sector | threads | engine | enc MB/s | dec MB/s | openssl -elapsed MB/s | enc/openssl "
      "| enc MB/s per CPU-s | openssl 1-proc MB/s per CPU-s | enc/openssl (CPU) |\n");
  std::printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::uint32_t ss : {4096u, 512u}) {
    auto c = make_cipher("aes-xts-plain64", 64, ss);
    // Per-core ceiling: one openssl process, bytes per CPU-second (openssl's default timing).
    // (With -multi and no -elapsed openssl's per-child CPU accounting is not comparable.)
    const double ossl_cpu = o.openssl ? openssl_speed(ss, 1, o.seconds, false) : -1;
    std::vector<unsigned> counts{1};
    if (o.threads > 1) counts.push_back(o.threads);
    for (unsigned n : counts) {
      const Rate enc = measure(*c, n, o.seconds, true);
      const Rate dec = measure(*c, n, o.seconds, false);
      const double ossl_wall = o.openssl ? openssl_speed(ss, n, o.seconds, true) : -1;
      std::printf("| %u | %u | %s | %.0f | %.0f | %s | %s | %.0f | %s | %s |\n", ss, n,
                  c->engine_name(), enc.wall, dec.wall, num(ossl_wall).c_str(),
                  pct(enc.wall, ossl_wall).c_str(), enc.per_cpu_s, num(ossl_cpu).c_str(),
                  pct(enc.per_cpu_s, ossl_cpu).c_str());
      std::fflush(stdout);
    }
  }
  if (o.others) {
    std::printf(
        "\n| spec | key bits | sector | engine | enc MB/s per CPU-s | dec MB/s per CPU-s |\n");
    std::printf("|---|---:|---:|---|---:|---:|\n");
    struct S {
      const char* spec;
      std::size_t key;
      std::uint32_t ss;
    } const specs[] = {{"aes-cbc-essiv:sha256", 32, 4096},
                       {"aes-cbc-essiv:sha256", 32, 512},
                       {"aes-xts-benbi", 64, 4096},
                       {"serpent-xts-plain64", 64, 4096},
                       {"twofish-xts-plain64", 64, 4096},
                       {"camellia-xts-plain64", 64, 4096},
                       {"serpent-cbc-essiv:sha256", 32, 4096},
                       {"aes:64-cbc-lmk", 64 * 32, 512},
                       {"aes-lrw-benbi", 48, 4096}};
    for (const auto& s : specs) {
      auto c = make_cipher(s.spec, s.key, s.ss);
      const double secs = o.seconds / 2;
      std::printf("| %s | %zu | %u | %s | %.0f | %.0f |\n", s.spec, s.key * 8, s.ss,
                  c->engine_name(), measure(*c, 1, secs, true).per_cpu_s,
                  measure(*c, 1, secs, false).per_cpu_s);
      std::fflush(stdout);
    }
  }
  return 0;
}
