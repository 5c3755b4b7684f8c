#define OPENSSL_SUPPRESS_DEPRECATED
#include <cryptopp/sha.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>
#include "sha256_ni_proto.h"
static double cpu() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char** argv) {
  std::vector<unsigned char> d(4096, 7), aad(24, 3), key(32, 9);
  unsigned char out[64];
  size_t len;
  const int N = argc > 1 ? atoi(argv[1]) : 200000;
  // EVP_MAC
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* mc = EVP_MAC_CTX_new(mac);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char*)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  EVP_MAC_init(mc, key.data(), key.size(), params);
  double t0 = cpu();
  for (int i = 0; i < N; ++i) {
    EVP_MAC_init(mc, nullptr, 0, nullptr);
    EVP_MAC_update(mc, aad.data(), 24);
    EVP_MAC_update(mc, d.data(), 4096);
    EVP_MAC_final(mc, out, &len, 64);
  }
  double t1 = cpu();
  printf("EVP_MAC hmac-sha256: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
  // SHA256_CTX copies
  unsigned char ipad[64], opad[64];
  for (int i = 0; i < 64; ++i) {
    unsigned char k = i < 32 ? key[i] : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  SHA256_CTX ki, ko;
  SHA256_Init(&ki);
  SHA256_Update(&ki, ipad, 64);
  SHA256_Init(&ko);
  SHA256_Update(&ko, opad, 64);
  t0 = cpu();
  for (int i = 0; i < N; ++i) {
    SHA256_CTX c = ki;
    SHA256_Update(&c, aad.data(), 24);
    SHA256_Update(&c, d.data(), 4096);
    unsigned char in[32];
    SHA256_Final(in, &c);
    SHA256_CTX o = ko;
    SHA256_Update(&o, in, 32);
    SHA256_Final(out, &o);
  }
  t1 = cpu();
  printf("SHA256_CTX hmac-sha256: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
  {
    CryptoPP::SHA256 ci, co;
    ci.Update(ipad, 64);
    co.Update(opad, 64);
    t0 = cpu();
    for (int i = 0; i < N; ++i) {
      CryptoPP::SHA256 c(ci);
      c.Update(aad.data(), 24);
      c.Update(d.data(), 4096);
      unsigned char in[32];
      c.Final(in);
      CryptoPP::SHA256 o(co);
      o.Update(in, 32);
      o.Final(out);
    }
    t1 = cpu();
    printf("CryptoPP hmac-sha256: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
  }
  {
    // correctness: blocks1 vs OpenSSL SHA256 of 64 blocks
    std::uint32_t st[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::uint32_t st2[8];
    memcpy(st2, st, 32);
    std::vector<unsigned char> m(4096);
    for (int i = 0; i < 4096; ++i) m[i] = i * 7 + 3;
    proto::blocks1(st, m.data(), 64);
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, m.data(), 4096);
    printf("blocks1 %s\n", memcmp(st, c.h, 32) == 0 ? "OK" : "MISMATCH");
    std::vector<unsigned char> m2(4096);
    for (int i = 0; i < 4096; ++i) m2[i] = i * 13 + 1;
    std::uint32_t sb[8];
    memcpy(sb, st2, 32);
    proto::blocks2(st2, m.data(), sb, m2.data(), 64);
    SHA256_CTX c2;
    SHA256_Init(&c2);
    SHA256_Update(&c2, m2.data(), 4096);
    printf("blocks2 %s %s\n", memcmp(st2, c.h, 32) == 0 ? "OK" : "MISMATCH",
           memcmp(sb, c2.h, 32) == 0 ? "OK" : "MISMATCH");
    t0 = cpu();
    for (int i = 0; i < N; ++i) proto::blocks1(st, m.data(), 64);
    t1 = cpu();
    printf("sha-ni x1: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
    t0 = cpu();
    for (int i = 0; i < N / 2; ++i) proto::blocks2(st2, m.data(), sb, m2.data(), 64);
    t1 = cpu();
    printf("sha-ni x2: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
    t0 = cpu();
    for (int i = 0; i < N; ++i) {
      SHA256_CTX cc;
      SHA256_Init(&cc);
      SHA256_Update(&cc, m.data(), 4096);
    }
    t1 = cpu();
    printf("openssl sha256 4K: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
  }
  // XTS for reference
  EVP_CIPHER_CTX* x = EVP_CIPHER_CTX_new();
  unsigned char k2[64] = {1};
  k2[40] = 5;
  unsigned char iv[16] = {0};
  EVP_CipherInit_ex(x, EVP_aes_256_xts(), nullptr, k2, iv, 0);
  int l;
  t0 = cpu();
  for (int i = 0; i < N; ++i) {
    iv[0] = i;
    EVP_CipherInit_ex(x, nullptr, nullptr, nullptr, iv, 0);
    EVP_CipherUpdate(x, d.data(), &l, d.data(), 4096);
  }
  t1 = cpu();
  printf("EVP xts-256 dec: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
  {
    EVP_CIPHER_CTX* g = EVP_CIPHER_CTX_new();
    unsigned char gk[32] = {3};
    unsigned char giv[12] = {0};
    EVP_CipherInit_ex(g, EVP_aes_256_gcm(), nullptr, gk, giv, 1);
    unsigned char tag[16];
    t0 = cpu();
    for (int i = 0; i < N; ++i) {
      giv[0] = i;
      EVP_CipherInit_ex(g, nullptr, nullptr, nullptr, giv, 1);
      EVP_CipherUpdate(g, nullptr, &l, aad.data(), 20);
      EVP_CipherUpdate(g, d.data(), &l, d.data(), 4096);
      EVP_CipherFinal_ex(g, tag, &l);
      EVP_CIPHER_CTX_ctrl(g, EVP_CTRL_AEAD_GET_TAG, 16, tag);
    }
    t1 = cpu();
    printf("EVP gcm-256 enc: %.0f MB/s per CPU-s\n", N * 4096.0 / (t1 - t0) / 1e6);
  }
}
