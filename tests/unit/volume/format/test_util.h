// Helpers for the format tests: a scratch directory, running cryptsetup, hex.
#pragma once

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace cryptmap::test {

inline bool have_cryptsetup() { return std::system("cryptsetup --version >/dev/null 2>&1") == 0; }

// Runs a shell command; returns {exit status, stdout}.
inline std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>/tmp/cryptmap-format-test.err").c_str(), "r");
  if (!f) return {-1, ""};
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const int st = pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cryptmap-fmt-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }

 private:
  std::string path_;
};

inline std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  for (std::size_t i = 0; i < c.size(); ++i) out[i] = std::byte(static_cast<unsigned char>(c[i]));
  return out;
}

inline void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Hex of the volume key as `cryptsetup luksDump --dump-volume-key` prints it ("MK dump:").
inline std::string dumped_volume_key(const std::string& img, const std::string& keyfile,
                                     const std::string& extra = "") {
  auto [rc, out] = run("cryptsetup luksDump --dump-volume-key --batch-mode --key-file " + keyfile +
                       " " + extra + " " + img);
  if (rc != 0) return "";
  std::istringstream in(out);
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
        if (std::isxdigit(static_cast<unsigned char>(c))) hex += c;
  }
  return hex;
}

inline std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace cryptmap::test
