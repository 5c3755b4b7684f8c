// libFuzzer entry for cryptmap::fuzz::control_message (built with -DCRYPTMAP_FUZZ=ON and clang).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, unsigned long size) {
  return cryptmap::fuzz::control_message(data, size);
}
