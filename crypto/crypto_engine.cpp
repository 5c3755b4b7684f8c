#include "crypto/crypto_engine.h"

namespace cryptmap::crypto {
namespace {

// Runs every request inline on the submitting thread; never queues, never calls on_done.
class SyncEngine final : public CryptoEngine {
 public:
  explicit SyncEngine(const SectorCipher& cipher) : cipher_(cipher) {}
  SubmitStatus submit(CryptoRequest* req) override {
    if (req->src.empty()) {
      req->status =
          req->dir == CryptoDir::kEncrypt ? cipher_.encrypt(req->run) : cipher_.decrypt(req->run);
    } else if (req->dir == CryptoDir::kEncrypt) {
      req->status = cipher_.encrypt_from(req->src, req->run);
    } else {
      req->status = make_error(Errc::kInvalid, "crypto engine: decryption out of place",
                               req->run.first.value);
    }
    return SubmitStatus::kDone;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "sync"; }
  bool reads_source() const noexcept override { return true; }

 private:
  const SectorCipher& cipher_;
};

}  // namespace

std::unique_ptr<CryptoEngine> make_sync_engine(const SectorCipher& cipher) {
  return std::make_unique<SyncEngine>(cipher);
}

}  // namespace cryptmap::crypto
