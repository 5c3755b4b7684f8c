#include "crypto/crypto_engine.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/support/data.h"

namespace cryptmap::crypto {
namespace {

TEST(SyncEngine, RunsInlineAndReportsStatus) {
  SectorCipherConfig cfg;
  cfg.spec = *CipherSpec::parse("aes-xts-plain64");
  auto key = test::iota_bytes(64);
  auto cipher = make_sector_cipher(cfg, key);
  ASSERT_TRUE(cipher);
  auto engine = make_sync_engine(**cipher);
  EXPECT_STREQ(engine->name(), "sync");
  std::vector<std::byte> data(1024);
  bool called = false;
  CryptoRequest req;
  req.dir = CryptoDir::kEncrypt;
  req.run = SectorRun{data, {}, SectorIndex{0}};
  req.on_done = [&called](CryptoRequest*) { called = true; };
  EXPECT_EQ(engine->submit(&req), SubmitStatus::kDone);
  EXPECT_TRUE(req.status);
  EXPECT_FALSE(called);  // kDone never calls on_done
  EXPECT_EQ(test::hex_of(std::span(data).first(16)), "cd6b103236fbd87dba93e9001e29bc3d");
  req.dir = CryptoDir::kDecrypt;
  EXPECT_EQ(engine->submit(&req), SubmitStatus::kDone);
  EXPECT_EQ(data, std::vector<std::byte>(1024));
  engine->wait_for_drain();  // nothing backlogged: returns at once

  std::vector<std::byte> ragged(1000);  // not whole sectors: the error is in status
  req.run = SectorRun{ragged, {}, SectorIndex{0}};
  EXPECT_EQ(engine->submit(&req), SubmitStatus::kDone);
  ASSERT_FALSE(req.status);
  EXPECT_EQ(req.status.error().code, Errc::kInvalid);
}

}  // namespace
}  // namespace cryptmap::crypto
