// libFuzzer entry for cryptmap::fuzz::store_uri (built with -DCRYPTMAP_FUZZ=ON and clang).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, unsigned long size) {
  return cryptmap::fuzz::store_uri(data, size);
}
