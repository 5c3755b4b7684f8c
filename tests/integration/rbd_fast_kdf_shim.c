// Test-only LD_PRELOAD library for `rbd encryption format` (rbd_faults.sh): before librbd's
// crypt_format() it sets libcryptsetup's PBKDF to PBKDF2-SHA256 with 1000 iterations and no
// benchmark, the settings of librbd's own tests (Header::format's insecure_fast_mode, which
// librbd's public API does not offer). Without it libcryptsetup benchmarks PBKDF2 and gives the
// keyslot 2 s of CPU time, and every later unlock of it another 2 s: on this loaded 2-core
// machine half of the test's wall time. The header is otherwise librbd's (cipher, payload
// alignment, AF stripes, digest), made by librbd's format code. libcryptsetup's ABI
// (libcryptsetup.h, soname 12), declared here because its headers are not installed.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

struct crypt_device;
struct crypt_pbkdf_type {
  const char* type;
  const char* hash;
  uint32_t time_ms;
  uint32_t iterations;
  uint32_t max_memory_kb;
  uint32_t parallel_threads;
  uint32_t flags;
};
enum { kPbkdfNoBenchmark = 1u << 1 };  // CRYPT_PBKDF_NO_BENCHMARK

typedef int (*SetPbkdf)(struct crypt_device*, const struct crypt_pbkdf_type*);
typedef int (*Format)(struct crypt_device*, const char*, const char*, const char*, const char*,
                      const char*, size_t, void*);

int crypt_format(struct crypt_device* cd, const char* type, const char* cipher,
                 const char* cipher_mode, const char* uuid, const char* volume_key,
                 size_t volume_key_size, void* params) {
  const SetPbkdf set_pbkdf = (SetPbkdf)dlsym(RTLD_NEXT, "crypt_set_pbkdf_type");
  const Format real = (Format)dlsym(RTLD_NEXT, "crypt_format");
  if (real == NULL) return -38;  // -ENOSYS: no libcryptsetup behind the shim
  if (set_pbkdf != NULL) {
    const struct crypt_pbkdf_type fast = {.type = "pbkdf2",
                                          .hash = "sha256",
                                          .time_ms = 1,
                                          .iterations = 1000,
                                          .flags = kPbkdfNoBenchmark};
    const int r = set_pbkdf(cd, &fast);
    if (r != 0) return r;
  }
  return real(cd, type, cipher, cipher_mode, uuid, volume_key, volume_key_size, params);
}
