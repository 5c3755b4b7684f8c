// libFuzzer entry for cryptmap::fuzz::luks2_token (built with -DCRYPTMAP_FUZZ=ON and clang).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, unsigned long size) {
  return cryptmap::fuzz::luks2_token(data, size);
}
