#include "crypto/kdf.h"

#include <argon2.h>
#include <crypto++/pwdbased.h>
#include <crypto++/whrlpool.h>
#include <openssl/evp.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <climits>
#include <ctime>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/argon2_full.h"
#include "crypto/internal/hash_backend.h"
#include "crypto/internal/streebog.h"

namespace cryptmap::crypto {
namespace {

// cryptsetup's limits (lib/crypto_backend/pbkdf_check.c, crypt_pbkdf_get_limits).
constexpr std::uint32_t kPbkdf2MinIterations = 1000;  // NIST SP 800-132
constexpr std::uint32_t kArgon2MinTime = 4;
constexpr std::uint32_t kArgon2MinMemoryKib = 32;
constexpr std::uint32_t kArgon2MaxMemoryKib = 4U * 1024 * 1024;
constexpr std::uint32_t kArgon2MaxParallel = 4;

// Fixed benchmark inputs: the timing does not depend on them.
constexpr std::string_view kBenchPassword = "foobarfo";
constexpr std::string_view kBenchSalt = "0123456789abcdef0123456789abcdef";

const unsigned char* uc(std::span<const std::byte> s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

Result<void> pbkdf2_cryptopp(const internal::HashInfo& h, std::span<const std::byte> password,
                             std::span<const std::byte> salt, std::uint32_t iterations,
                             std::span<std::byte> out) {
  try {
    if (h.name == "whirlpool") {
      CryptoPP::PKCS5_PBKDF2_HMAC<CryptoPP::Whirlpool> kdf;
      kdf.DeriveKey(reinterpret_cast<CryptoPP::byte*>(out.data()), out.size(), 0, uc(password),
                    password.size(), uc(salt), salt.size(), iterations, 0.0);
      return ok();
    }
  } catch (const std::exception&) {
    return make_error(Errc::kIo, "PBKDF2: Crypto++ key derivation failed");
  }
  return make_error(Errc::kUnsupported, "PBKDF2: no implementation for this hash");
}

// PBKDF2-HMAC (RFC 8018 §5.2, RFC 2104) over our own Streebog: the keyed inner and outer states
// are computed once and copied for each HMAC, as OpenSSL does for its digests.
Result<void> pbkdf2_streebog(const internal::HashInfo& h, std::span<const std::byte> password,
                             std::span<const std::byte> salt, std::uint32_t iterations,
                             std::span<std::byte> out) {
  using internal::Streebog;
  const std::size_t hlen = h.digest_size;
  std::array<std::byte, Streebog::kBlockBytes> pad{};
  if (password.size() > pad.size()) {
    Streebog k(hlen);
    k.update(password);
    k.final(std::span<std::byte>(pad.data(), hlen));
  } else {
    std::copy(password.begin(), password.end(), pad.begin());
  }
  Streebog inner(hlen);
  Streebog outer(hlen);
  for (auto& b : pad) b ^= std::byte{0x36};
  inner.update(pad);
  for (auto& b : pad) b ^= std::byte{0x36 ^ 0x5c};
  outer.update(pad);
  secure_zero(pad.data(), pad.size());

  std::array<std::byte, 64> u{};
  std::array<std::byte, 64> t{};
  const std::span<std::byte> us(u.data(), hlen);
  auto hmac = [&](std::span<const std::byte> a, std::span<const std::byte> b) {
    Streebog c = inner;
    c.update(a);
    c.update(b);
    c.final(us);
    Streebog o = outer;
    o.update(us);
    o.final(us);
  };
  for (std::uint32_t block = 1; !out.empty(); ++block) {
    const std::array<std::byte, 4> index{
        static_cast<std::byte>(block >> 24), static_cast<std::byte>(block >> 16),
        static_cast<std::byte>(block >> 8), static_cast<std::byte>(block)};
    hmac(salt, index);
    std::copy_n(u.begin(), hlen, t.begin());
    for (std::uint32_t i = 1; i < iterations; ++i) {
      hmac(us, {});
      for (std::size_t k = 0; k < hlen; ++k) t[k] ^= u[k];
    }
    const std::size_t n = std::min(hlen, out.size());
    std::copy_n(t.begin(), n, out.begin());
    out = out.subspan(n);
  }
  secure_zero(u.data(), u.size());
  secure_zero(t.data(), t.size());
  return ok();
}

// CPU time (user + system), as cryptsetup measures PBKDF2. cryptsetup uses RUSAGE_SELF in a
// single-threaded process; a daemon has other busy threads, so count this thread only.
long cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000L;
}

long monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

}  // namespace

Result<void> pbkdf2(std::string_view hash, std::span<const std::byte> password,
                    std::span<const std::byte> salt, std::uint32_t iterations,
                    std::span<std::byte> out) {
  CRYPTMAP_TRY(h, internal::require_hash(hash, "PBKDF2"));
  if (iterations == 0) return make_error(Errc::kInvalid, "PBKDF2: iteration count is zero");
  if (out.empty()) return make_error(Errc::kInvalid, "PBKDF2: empty output");
  if (h->lib == internal::HashLib::kCryptopp)
    return pbkdf2_cryptopp(*h, password, salt, iterations, out);
  if (h->lib == internal::HashLib::kStreebog)
    return pbkdf2_streebog(*h, password, salt, iterations, out);
  const EVP_MD* md = EVP_get_digestbyname(h->openssl_name);
  if (md == nullptr)
    return make_error_fmt(Errc::kUnsupported, "PBKDF2", kNoObject,
                          "the OpenSSL build here does not provide '%s'", h->openssl_name);
  if (password.size() > static_cast<std::size_t>(INT_MAX) ||
      salt.size() > static_cast<std::size_t>(INT_MAX) ||
      out.size() > static_cast<std::size_t>(INT_MAX) ||
      iterations > static_cast<std::uint32_t>(INT_MAX))
    return make_error(Errc::kInvalid, "PBKDF2: input too large");
  // OpenSSL wants a non-null pointer even for an empty password.
  static const char kEmpty[1] = {0};
  const char* pw = password.empty() ? kEmpty : reinterpret_cast<const char*>(password.data());
  if (PKCS5_PBKDF2_HMAC(pw, static_cast<int>(password.size()), uc(salt),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), md,
                        static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1)
    return make_error(Errc::kIo, "PBKDF2: OpenSSL key derivation failed");
  return ok();
}

namespace internal {

Result<void> argon2_full(Argon2Type type, std::span<const std::byte> password,
                         std::span<const std::byte> salt, std::span<const std::byte> secret,
                         std::span<const std::byte> associated, std::uint32_t time_cost,
                         std::uint32_t memory_kib, std::uint32_t parallel,
                         std::span<std::byte> out) {
  // libargon2's context takes non-const pointers but only reads pwd/salt/secret/ad; we pass
  // copies-free casts and never set ARGON2_FLAG_CLEAR_PASSWORD (which would write to them).
  argon2_context ctx{};
  ctx.out = reinterpret_cast<uint8_t*>(out.data());
  ctx.outlen = static_cast<uint32_t>(out.size());
  ctx.pwd = const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(password.data()));
  ctx.pwdlen = static_cast<uint32_t>(password.size());
  ctx.salt = const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(salt.data()));
  ctx.saltlen = static_cast<uint32_t>(salt.size());
  ctx.secret = secret.empty()
                   ? nullptr
                   : const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(secret.data()));
  ctx.secretlen = static_cast<uint32_t>(secret.size());
  ctx.ad = associated.empty()
               ? nullptr
               : const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(associated.data()));
  ctx.adlen = static_cast<uint32_t>(associated.size());
  ctx.t_cost = time_cost;
  ctx.m_cost = memory_kib;
  ctx.lanes = parallel;
  ctx.threads = parallel;
  ctx.allocate_cbk = nullptr;
  ctx.free_cbk = nullptr;
  ctx.flags = ARGON2_DEFAULT_FLAGS;
  ctx.version = ARGON2_VERSION_13;
  const argon2_type t = type == Argon2Type::kArgon2i ? Argon2_i : Argon2_id;
  const int rc = argon2_ctx(&ctx, t);
  if (rc == ARGON2_OK) return ok();
  const Errc code = rc == ARGON2_MEMORY_ALLOCATION_ERROR ? Errc::kNoSpace : Errc::kInvalid;
  return make_error_fmt(code, "Argon2", kNoObject, "%s (t=%u m=%u KiB p=%u)",
                        argon2_error_message(rc), time_cost, memory_kib, parallel);
}

}  // namespace internal

Result<void> argon2(Argon2Type type, std::span<const std::byte> password,
                    std::span<const std::byte> salt, std::uint32_t time_cost,
                    std::uint32_t memory_kib, std::uint32_t parallel, std::span<std::byte> out) {
  return internal::argon2_full(type, password, salt, {}, {}, time_cost, memory_kib, parallel, out);
}

// Mirrors cryptsetup's crypt_pbkdf_check(): start at 2^15 iterations, grow until one run takes
// more than 500 ms of CPU time, then scale linearly to the target.
Result<std::uint32_t> pbkdf2_iterations_for(std::string_view hash, std::size_t out_len,
                                            std::uint32_t target_ms) {
  CRYPTMAP_TRY_VOID(internal::require_hash(hash, "PBKDF2 benchmark"));
  if (out_len == 0 || target_ms == 0)
    return make_error(Errc::kInvalid, "PBKDF2 benchmark: zero key length or target time");
  CRYPTMAP_TRY(key, SecretBytes::allocate(out_len));
  std::uint32_t iterations = 1U << 15;
  double per_target = 0;
  for (int step = 0;; ++step) {
    const long start = cpu_ms();
    CRYPTMAP_TRY_VOID(
        pbkdf2(hash, as_bytes(kBenchPassword), as_bytes(kBenchSalt), iterations, key.span()));
    const long ms = cpu_ms() - start;
    if (ms > 0) per_target = static_cast<double>(iterations) * target_ms / static_cast<double>(ms);
    if (ms > 500) break;
    if (ms <= 62)
      iterations <<= 4;
    else if (ms <= 125)
      iterations <<= 3;
    else if (ms <= 250)
      iterations <<= 2;
    else
      iterations <<= 1;
    if (step >= 10 || iterations == 0)
      return make_error_fmt(Errc::kInvalid, "PBKDF2 benchmark", kNoObject,
                            "no stable timing for %.20s (clock too coarse?)",
                            std::string(hash).c_str());
  }
  if (per_target > std::numeric_limits<std::uint32_t>::max())
    return make_error(Errc::kInvalid, "PBKDF2 benchmark: iteration count overflows 32 bits");
  const auto result = static_cast<std::uint32_t>(per_target);
  return result < kPbkdf2MinIterations ? kPbkdf2MinIterations : result;
}

namespace {

// One (or a few) timed Argon2 runs in wall-clock time (Argon2 uses several threads).
Result<long> measure_argon2(Argon2Type type, std::span<std::byte> key, std::uint32_t t,
                            std::uint32_t m, std::uint32_t p, int samples, long ms_atleast) {
  long best = LONG_MAX;
  for (int i = 0; i < samples; ++i) {
    const long start = monotonic_ms();
    CRYPTMAP_TRY_VOID(argon2(type, as_bytes(kBenchPassword), as_bytes(kBenchSalt), t, m, p, key));
    const long ms = monotonic_ms() - start;
    if (ms < ms_atleast) return ms;  // early exit, as cryptsetup does
    if (ms < best) best = ms;
  }
  return best;
}

// cryptsetup's next_argon2_params(): returns true when the search is final.
bool next_argon2_params(std::uint32_t& t_cost, std::uint32_t& m_cost, std::uint32_t min_t,
                        std::uint32_t min_m, std::uint32_t max_m, long ms, std::uint32_t target) {
  const std::uint32_t old_t = t_cost, old_m = m_cost;
  const auto ums = static_cast<std::uint64_t>(ms > 0 ? ms : 1);
  if (static_cast<std::uint64_t>(ms) > target) {  // too slow: lower time first, then memory
    const auto new_t = static_cast<std::uint32_t>(std::uint64_t{t_cost} * target / ums);
    if (new_t < min_t) {
      m_cost = static_cast<std::uint32_t>(std::uint64_t{t_cost} * m_cost * target /
                                          (std::uint64_t{min_t} * ums));
      t_cost = min_t;
      if (m_cost < min_m) {
        m_cost = min_m;
        return true;
      }
    } else {
      t_cost = new_t;
    }
  } else {  // too fast: raise memory first, then time
    const auto new_m = static_cast<std::uint32_t>(std::uint64_t{m_cost} * target / ums);
    if (new_m > max_m) {
      t_cost = static_cast<std::uint32_t>(std::uint64_t{t_cost} * m_cost * target /
                                          (std::uint64_t{max_m} * ums));
      m_cost = max_m;
      if (t_cost <= min_t) {
        t_cost = min_t;
        return true;
      }
    } else if (new_m < min_m) {
      m_cost = min_m;
      return true;
    } else {
      m_cost = new_m;
    }
  }
  return old_t == t_cost && old_m == m_cost;
}

}  // namespace

// Mirrors cryptsetup's crypt_argon2_check(): find small parameters taking >= 250 ms, estimate
// the target from them, then re-measure until within -5 %/+10 % of the target.
Result<Argon2Cost> argon2_cost_for(Argon2Type type, std::uint32_t target_ms,
                                   std::uint32_t max_memory_kib, std::uint32_t parallel) {
  constexpr long kMinMs = 250, kMinMsFast = 10;
  if (target_ms == 0) return make_error(Errc::kInvalid, "Argon2 benchmark: zero target time");
  if (parallel == 0 || parallel > kArgon2MaxParallel)
    return make_error_fmt(Errc::kInvalid, "Argon2 benchmark: parallel threads", kNoObject,
                          "%u is outside 1..%u", parallel, kArgon2MaxParallel);
  if (max_memory_kib > kArgon2MaxMemoryKib) max_memory_kib = kArgon2MaxMemoryKib;
  std::uint32_t min_m = kArgon2MinMemoryKib;
  if (min_m < parallel * 8) min_m = parallel * 8;
  if (max_memory_kib < min_m)
    return make_error_fmt(Errc::kInvalid, "Argon2 benchmark: memory limit", kNoObject,
                          "%u KiB is below the minimum %u KiB", max_memory_kib, min_m);
  const long ms_atleast = static_cast<long>(target_ms) * 95 / 100;
  const long ms_atmost = static_cast<long>(target_ms) * 110 / 100;
  CRYPTMAP_TRY(key, SecretBytes::allocate(32));
  std::uint32_t t = kArgon2MinTime, m = min_m;
  Argon2Cost out{t, m, parallel};
  long ms = 0;
  // 1. Small parameters that take at least kMinMs.
  for (;;) {
    CRYPTMAP_TRY(measured, measure_argon2(type, key.span(), t, m, parallel, 3, kMinMs));
    ms = measured;
    out = {t, m, parallel};
    if (ms >= kMinMs) break;
    if (m == max_memory_kib) {
      if (ms < kMinMsFast) {
        t *= 16;
      } else {
        const auto nt = static_cast<std::uint32_t>(t * kMinMs / ms);
        if (nt == t) break;
        t = nt;
      }
    } else {
      if (ms < kMinMsFast) {
        m *= 16;
      } else {
        const auto nm = static_cast<std::uint32_t>(std::uint64_t{m} * kMinMs / ms);
        if (nm == m) break;
        m = nm;
      }
      if (m > max_memory_kib) m = max_memory_kib;
    }
  }
  // 2./3. Estimate, re-measure until within the acceptance window.
  do {
    if (next_argon2_params(t, m, kArgon2MinTime, min_m, max_memory_kib, ms, target_ms)) {
      out = {t, m, parallel};
      break;
    }
    CRYPTMAP_TRY(measured, measure_argon2(type, key.span(), t, m, parallel, 1, ms_atleast));
    ms = measured;
    out = {t, m, parallel};
  } while (ms < ms_atleast || ms > ms_atmost);
  return out;
}

}  // namespace cryptmap::crypto
