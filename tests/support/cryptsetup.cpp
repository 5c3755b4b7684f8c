#include "tests/support/cryptsetup.h"

#include <cctype>
#include <sstream>

#include "tests/support/tools.h"

namespace cryptmap::test {

std::string volume_key_hex_from_dump(std::string_view luks_dump_output) {
  std::istringstream in{std::string(luks_dump_output)};
  std::string line, hex;
  bool in_dump = false;
  while (std::getline(in, line)) {
    if (line.rfind("MK dump:", 0) == 0) {
      in_dump = true;
      line = line.substr(8);
    } else if (in_dump && (line.empty() || line[0] != '\t')) {
      break;
    }
    if (in_dump)
      for (char c : line)
        if (std::isxdigit(static_cast<unsigned char>(c)))
          hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return hex;
}

std::string dumped_volume_key(const std::string& image, const std::string& keyfile,
                              const std::string& extra) {
  const RunResult r = run("cryptsetup luksDump --dump-volume-key --batch-mode --key-file " +
                          keyfile + " " + extra + " " + image);
  if (r.status != 0) return "";
  return volume_key_hex_from_dump(r.out);
}

}  // namespace cryptmap::test
