// libFuzzer entry for cryptmap::fuzz::loopaes_keyfile (built with -DCRYPTMAP_FUZZ=ON and clang).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, unsigned long size) {
  return cryptmap::fuzz::loopaes_keyfile(data, size);
}
