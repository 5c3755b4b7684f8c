// make_cascade_cipher (crypto/sector_cipher.h): several sector ciphers over the same sectors.
#include <memory>
#include <string>
#include <vector>

#include "crypto/sector_cipher.h"
#include "crypto/tcrypt_cbc.h"

namespace cryptmap::crypto {
namespace {

class CascadeCipher final : public SectorCipher {
 public:
  explicit CascadeCipher(std::vector<std::unique_ptr<SectorCipher>> stages)
      : stages_(std::move(stages)) {}

  Result<void> encrypt(const SectorRun& run) const override {
    for (const auto& s : stages_) CRYPTMAP_TRY_VOID(s->encrypt(run));
    return ok();
  }
  Result<void> decrypt(const SectorRun& run) const override {
    for (auto it = stages_.rbegin(); it != stages_.rend(); ++it)
      CRYPTMAP_TRY_VOID((*it)->decrypt(run));
    return ok();
  }
  std::uint32_t sector_size() const noexcept override { return stages_.front()->sector_size(); }
  const char* engine_name() const noexcept override { return "cascade"; }

 private:
  std::vector<std::unique_ptr<SectorCipher>> stages_;  // key order
};

}  // namespace

Result<std::unique_ptr<SectorCipher>> make_cascade_cipher(
    std::span<const SectorCipherConfig> configs, std::span<const std::byte> key) {
  if (configs.empty()) return make_error(Errc::kInvalid, "cipher cascade: no cipher given");
  if (configs.size() > 1 &&
      configs.front().spec.iv_mode == "tcw") {  // TrueCrypt CBC cascade: crypto/tcrypt_cbc.h
    std::vector<std::string> names;
    for (const auto& c : configs) {
      if (c.spec.chain_mode != "cbc" || c.spec.iv_mode != "tcw" || c.sector_size != 512)
        return make_error(Errc::kInvalid, "cipher cascade: cbc-tcw mixed with another mode");
      names.push_back(c.spec.cipher);
    }
    return make_tcrypt_cbc_cascade(names, configs.front().iv_offset, key);
  }
  if (key.size() % configs.size() != 0)
    return make_error_fmt(Errc::kInvalid, "cipher cascade: key length", key.size(),
                          "is not %zu equal shares", configs.size());
  if (configs.size() == 1) return make_sector_cipher(configs.front(), key);
  const std::size_t share = key.size() / configs.size();
  std::vector<std::unique_ptr<SectorCipher>> stages;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    if (configs[i].sector_size != configs.front().sector_size)
      return make_error(Errc::kInvalid, "cipher cascade: sector sizes differ", i);
    CRYPTMAP_TRY(c, make_sector_cipher(configs[i], key.subspan(i * share, share)));
    stages.push_back(std::move(c));
  }
  return std::unique_ptr<SectorCipher>(std::make_unique<CascadeCipher>(std::move(stages)));
}

}  // namespace cryptmap::crypto
