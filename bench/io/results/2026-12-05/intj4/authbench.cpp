// CPU-seconds per GB of cryptmap's AuthSectorCipher (one thread): encrypt and decrypt of
// 256-sector runs of 4 KiB, each composition of the bench.
#include <cstdio>
#include <ctime>
#include <vector>
#include "crypto/auth_cipher.h"
using namespace cryptmap;
static double cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char** argv) {
  const double secs = argc > 1 ? atof(argv[1]) : 2.0;
  for (auto [e, i, k] : {std::tuple{"aes-xts-random", "hmac(sha256)", 96},
                         std::tuple{"aes-gcm-random", "aead", 32}}) {
    std::vector<std::byte> key(k);
    for (int j = 0; j < k; ++j) key[j] = std::byte(j * 7 + 1);
    auto c = crypto::make_auth_sector_cipher(e, i, 4096, key);
    if (!c) {
      printf("make failed\n");
      return 1;
    }
    const std::size_t n = 256, T = (*c)->composition().tag_size;
    std::vector<std::byte> data(n * 4096, std::byte{5}), meta(n * T);
    for (int dir = 0; dir < 2; ++dir) {
      double t0 = cpu(), t = 0;
      std::size_t bytes = 0;
      if (dir == 1) (void)(*c)->encrypt(crypto::SectorRun{data, meta, SectorIndex{8}});
      while ((t = cpu() - t0) < secs) {
        if (dir == 0)
          (void)(*c)->encrypt(crypto::SectorRun{data, meta, SectorIndex{8}});
        else {
          auto r = (*c)->decrypt(crypto::SectorRun{data, meta, SectorIndex{8}});
          if (!r) {
            printf("decrypt failed\n");
            return 1;
          }
          (void)(*c)->encrypt(
              crypto::SectorRun{data, meta, SectorIndex{8}});  // back, timed too: subtract below
        }
        bytes += n * 4096;
      }
      printf("%s %s %s: %.3f CPU-s per GB%s\n", e, i, dir ? "decrypt+encrypt" : "encrypt",
             t / (bytes / 1e9), "");
    }
  }
}
