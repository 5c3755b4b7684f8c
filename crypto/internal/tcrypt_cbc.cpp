// crypto/tcrypt_cbc.h: TrueCrypt's outer and inner CBC over cipher cascades (docs/tcrypt.md §5).
#include "crypto/tcrypt_cbc.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "base/secret.h"
#include "crypto/internal/cipher_catalog.h"
#include "crypto/internal/context_pool.h"
#include "crypto/internal/iv_generator.h"

namespace cryptmap::crypto {
namespace {

using internal::BlockCipher;

constexpr std::size_t kUnit = 512;
constexpr std::size_t kWhiteningKeyBytes = 16;
constexpr std::size_t kHeaderWhiteningOffset = 8;  // the header's whitening: region [8, 16)

// The stages of a chain: one with every cipher when all have one block size (outer CBC, and a
// single cipher), else one per cipher (inner CBC). Indices into the chain, key order.
std::vector<std::vector<std::size_t>> stages_of(std::span<const internal::BlockCipherInfo*> info) {
  std::vector<std::vector<std::size_t>> out;
  const bool outer = std::all_of(info.begin(), info.end(), [&](const auto* i) {
    return i->block_size == info.front()->block_size;
  });
  if (outer) {
    out.emplace_back();
    for (std::size_t j = 0; j < info.size(); ++j) out.back().push_back(j);
  } else {
    for (std::size_t j = 0; j < info.size(); ++j) out.push_back({j});
  }
  return out;
}

// CBC over blocks that go through ciphers[idx...] in key order on encryption.
void cbc_encrypt(std::span<const std::unique_ptr<BlockCipher>> ciphers,
                 std::span<const std::size_t> idx, std::span<const std::byte> iv,
                 std::span<std::byte> data) {
  const std::size_t bs = iv.size();
  const std::byte* prev = iv.data();
  for (std::size_t off = 0; off + bs <= data.size(); off += bs) {
    std::byte* b = data.data() + off;
    for (std::size_t i = 0; i < bs; ++i) b[i] ^= prev[i];
    for (std::size_t j : idx) ciphers[j]->encrypt(b, nullptr, b, bs);
    prev = b;
  }
}

void cbc_decrypt(std::span<const std::unique_ptr<BlockCipher>> ciphers,
                 std::span<const std::size_t> idx, std::span<const std::byte> iv,
                 std::span<std::byte> data) {
  const std::size_t bs = iv.size();
  std::array<std::byte, 16> prev{}, ct{};
  std::memcpy(prev.data(), iv.data(), bs);
  for (std::size_t off = 0; off + bs <= data.size(); off += bs) {
    std::byte* b = data.data() + off;
    std::memcpy(ct.data(), b, bs);
    for (auto it = idx.rbegin(); it != idx.rend(); ++it) ciphers[*it]->decrypt(b, nullptr, b, bs);
    for (std::size_t i = 0; i < bs; ++i) b[i] ^= prev[i];
    prev = ct;
  }
  secure_zero(prev.data(), prev.size());
  secure_zero(ct.data(), ct.size());
}

struct Chain {
  std::vector<const internal::BlockCipherInfo*> info;
  std::vector<std::vector<std::size_t>> stages;
  std::size_t keys_bytes = 0;  // the ciphers' keys
  std::size_t max_block = 0;
};

Result<Chain> chain_of(std::span<const std::string> ciphers) {
  Chain c;
  if (ciphers.empty()) return make_error(Errc::kInvalid, "TrueCrypt CBC: no cipher given");
  for (const auto& name : ciphers) {
    const auto* i = internal::find_block_cipher(name);
    if (i == nullptr || tcrypt_cbc_key_bytes(name) == 0)
      return make_error_fmt(Errc::kUnsupported, "TrueCrypt CBC: cipher", kNoObject,
                            "'%.40s' is not supported", name.c_str());
    c.info.push_back(i);
    c.keys_bytes += tcrypt_cbc_key_bytes(name);
    c.max_block = std::max(c.max_block, i->block_size);
  }
  c.stages = stages_of(c.info);
  return c;
}

Result<std::vector<std::unique_ptr<BlockCipher>>> key_ciphers(std::span<const std::string> ciphers,
                                                              std::span<const std::byte> keys) {
  std::vector<std::unique_ptr<BlockCipher>> out;
  std::size_t off = 0;
  for (const auto& name : ciphers) {
    const std::size_t n = tcrypt_cbc_key_bytes(name);
    CRYPTMAP_TRY(b, internal::make_block_cipher(name, keys.subspan(off, n)));
    out.push_back(std::move(b));
    off += n;
  }
  return out;
}

// One thread's keyed ciphers and, per stage, its tcw IV generator.
struct Context {
  std::vector<std::unique_ptr<BlockCipher>> ciphers;
  std::vector<std::unique_ptr<internal::IvGenerator>> ivs;  // per stage
};

class TcryptCbcCascade final : public SectorCipher {
 public:
  TcryptCbcCascade(std::vector<std::string> names, Chain chain, std::uint64_t iv_offset,
                   SecretBytes key)
      : names_(std::move(names)),
        chain_(std::move(chain)),
        iv_offset_(iv_offset),
        key_(std::move(key)),
        pool_([this] { return make_context(); }) {}

  Result<std::unique_ptr<Context>> make_context() const {
    auto ctx = std::make_unique<Context>();
    const auto k = key_.span();
    CRYPTMAP_TRY(ciphers, key_ciphers(names_, k.first(chain_.keys_bytes)));
    ctx->ciphers = std::move(ciphers);
    const auto region = k.subspan(chain_.keys_bytes);
    for (const auto& stage : chain_.stages) {
      const std::size_t bs = chain_.info[stage.front()]->block_size;
      CipherSpec spec;
      spec.cipher = names_[stage.front()];
      spec.chain_mode = "cbc";
      spec.iv_mode = "tcw";
      internal::KeyLayout l;
      l.cipher = chain_.info[stage.front()];
      l.iv_size = bs;
      internal::IvGeneratorArgs a{&spec, &l, region.first(bs + kWhiteningKeyBytes),
                                  {},    {}, static_cast<std::uint32_t>(kUnit)};
      CRYPTMAP_TRY(gen, internal::make_iv_generator(a));
      ctx->ivs.push_back(std::move(gen));
    }
    return ctx;
  }

  Result<void> encrypt(const SectorRun& run) const override { return crypt(run, true); }
  Result<void> decrypt(const SectorRun& run) const override { return crypt(run, false); }
  std::uint32_t sector_size() const noexcept override { return kUnit; }
  const char* engine_name() const noexcept override { return "tcrypt-cbc"; }

 private:
  Result<void> crypt(const SectorRun& run, bool enc) const {
    if (run.data.size() % kUnit != 0)
      return make_error(Errc::kInvalid, "TrueCrypt CBC: run is not whole sectors", run.data.size());
    const std::uint64_t count = run.data.size() / kUnit;
    const std::uint64_t first = run.first.value;
    if (first > ~std::uint64_t{0} - iv_offset_ || count > ~std::uint64_t{0} - iv_offset_ - first)
      return make_error(Errc::kInvalid, "TrueCrypt CBC: sector number out of range", first);
    CRYPTMAP_TRY(ctx, pool_.acquire());
    std::array<std::byte, 16> iv{};
    const std::size_t n = chain_.stages.size();
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint64_t s = iv_offset_ + first + k;
      auto unit = run.data.subspan(k * kUnit, kUnit);
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t st = enc ? i : n - 1 - i;
        const auto& stage = chain_.stages[st];
        auto ivs = std::span(iv).first(chain_.info[stage.front()]->block_size);
        ctx->ivs[st]->generate(s, ivs, unit, enc);  // decrypt: strips the whitening first
        if (enc) {
          cbc_encrypt(ctx->ciphers, stage, ivs, unit);
          ctx->ivs[st]->post(s, ivs, unit, true);  // whitens the ciphertext
        } else {
          cbc_decrypt(ctx->ciphers, stage, ivs, unit);
        }
      }
    }
    secure_zero(iv.data(), iv.size());
    return ok();
  }

  std::vector<std::string> names_;
  Chain chain_;
  std::uint64_t iv_offset_;
  SecretBytes key_;
  internal::ContextPool<Context> pool_;
};

}  // namespace

std::size_t tcrypt_cbc_key_bytes(std::string_view cipher) noexcept {
  // TrueCrypt keys every cipher with its largest key.
  for (std::string_view c : {"aes", "serpent", "twofish", "blowfish_le", "cast5", "des3_ede"})
    if (c == cipher) return internal::find_block_cipher(c)->max_key;
  return 0;
}

Result<std::unique_ptr<SectorCipher>> make_tcrypt_cbc_cascade(std::span<const std::string> ciphers,
                                                              std::uint64_t iv_offset,
                                                              std::span<const std::byte> key) {
  CRYPTMAP_TRY(chain, chain_of(ciphers));
  if (ciphers.size() < 2) return make_error(Errc::kInvalid, "TrueCrypt CBC cascade: one cipher");
  const std::size_t want = chain.keys_bytes + chain.max_block + kWhiteningKeyBytes;
  if (key.size() != want)
    return make_error_fmt(Errc::kInvalid, "TrueCrypt CBC cascade: key length", key.size(),
                          "expected %zu bytes", want);
  CRYPTMAP_TRY(copy, SecretBytes::copy_of(key));
  auto c =
      std::make_unique<TcryptCbcCascade>(std::vector<std::string>(ciphers.begin(), ciphers.end()),
                                         std::move(chain), iv_offset, std::move(copy));
  CRYPTMAP_TRY(probe, c->make_context());  // the keys are valid before anything is served
  (void)probe;
  return std::unique_ptr<SectorCipher>(std::move(c));
}

Result<void> tcrypt_cbc_decrypt_header(std::span<const std::string> ciphers,
                                       std::span<const std::byte> cipher_keys,
                                       std::span<const std::byte> iv_region,
                                       std::span<std::byte> buf) {
  CRYPTMAP_TRY(chain, chain_of(ciphers));
  if (cipher_keys.size() != chain.keys_bytes || iv_region.size() < kHeaderWhiteningOffset + 8 ||
      iv_region.size() < chain.max_block || buf.size() % 16 != 0)
    return make_error(Errc::kInvalid, "TrueCrypt CBC header: key or buffer size", buf.size());
  CRYPTMAP_TRY(keyed, key_ciphers(ciphers, cipher_keys));
  for (auto it = chain.stages.rbegin(); it != chain.stages.rend(); ++it) {
    for (std::size_t i = 0; i < buf.size(); ++i)
      buf[i] ^= iv_region[kHeaderWhiteningOffset + i % 8];
    cbc_decrypt(keyed, *it, iv_region.first(chain.info[it->front()]->block_size), buf);
  }
  return ok();
}

}  // namespace cryptmap::crypto
