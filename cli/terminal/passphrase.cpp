// Passphrase and key-file reading with cryptsetup's semantics (src/utils_password.c,
// lib/utils_keyring/crypt_keyfile_device_read): see passphrase.h.
#include "cli/terminal/passphrase.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>

#include "base/unique_fd.h"

namespace cryptmap::cli {
namespace {

// cryptsetup's DEFAULT_KEYFILE_SIZE_MAXKB: a key file larger than 8 MiB is refused unless
// --keyfile-size says how much to read.
constexpr std::uint64_t kMaxKeyfileBytes = 8192 * 1024;

// A growable secret buffer: every reallocation copies into fresh locked memory and the old
// buffer is wiped by SecretBytes' destructor.
class SecretBuilder {
 public:
  Result<void> push(const std::byte* p, std::size_t n) {
    if (size_ + n > buf_.size()) {
      std::size_t cap = buf_.size() ? buf_.size() : 256;
      while (cap < size_ + n) cap *= 2;
      CRYPTMAP_TRY(bigger, SecretBytes::allocate(cap));
      if (size_) std::memcpy(bigger.data(), buf_.data(), size_);
      buf_ = std::move(bigger);
    }
    std::memcpy(buf_.data() + size_, p, n);
    size_ += n;
    return ok();
  }
  std::size_t size() const { return size_; }
  Result<SecretBytes> take() {
    CRYPTMAP_TRY(out, SecretBytes::allocate(size_));
    if (size_) std::memcpy(out.data(), buf_.data(), size_);
    return out;
  }

 private:
  SecretBytes buf_;
  std::size_t size_ = 0;
};

Result<void> skip_bytes(int fd, std::uint64_t n, const char* what) {
  std::byte tmp[4096];
  while (n > 0) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof tmp));
    const ssize_t r = ::read(fd, tmp, want);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(make_sys_error(errno, what));
    if (r == 0)
      return fail(make_error(Errc::kInvalid, "Cannot seek to requested keyfile offset.", n));
    n -= static_cast<std::uint64_t>(r);
  }
  secure_zero(tmp, sizeof tmp);
  return ok();
}

// Reads from fd: at most `limit` bytes (0 = no limit but kMaxKeyfileBytes), stopping at the
// first newline when `stop_at_eol` (the newline is not part of the key).
Result<SecretBytes> read_fd(int fd, std::uint64_t offset, std::uint64_t limit, bool stop_at_eol,
                            const std::string& name) {
  if (offset) {
    if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
      CRYPTMAP_TRY_VOID(skip_bytes(fd, offset, "Cannot seek to requested keyfile offset."));
    }
  }
  SecretBuilder b;
  std::byte c[1];
  std::byte chunk[4096];
  const std::uint64_t cap = limit ? limit : kMaxKeyfileBytes + 1;
  while (b.size() < cap) {
    ssize_t r;
    if (stop_at_eol) {
      r = ::read(fd, c, 1);  // byte by byte so nothing after the newline is consumed
    } else {
      r = ::read(fd, chunk,
                 static_cast<std::size_t>(std::min<std::uint64_t>(sizeof chunk, cap - b.size())));
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(make_sys_error(errno, "Error reading passphrase"));
    if (r == 0) break;
    if (stop_at_eol) {
      if (c[0] == std::byte{'\n'}) break;
      CRYPTMAP_TRY_VOID(b.push(c, 1));
    } else {
      CRYPTMAP_TRY_VOID(b.push(chunk, static_cast<std::size_t>(r)));
    }
  }
  secure_zero(chunk, sizeof chunk);
  secure_zero(c, sizeof c);
  if (!limit && b.size() > kMaxKeyfileBytes)
    return fail(make_error_fmt(Errc::kInvalid, "Maximum keyfile size exceeded.", kNoObject,
                               "%s is larger than 8 MiB; use --keyfile-size", name.c_str()));
  if (limit && b.size() < limit && !stop_at_eol)
    return fail(make_error_fmt(Errc::kInvalid, "Cannot read requested amount of data.", limit,
                               "%s has fewer bytes than --keyfile-size", name.c_str()));
  return b.take();
}

// Restores the terminal on every path out of the prompt.
class EchoOff {
 public:
  explicit EchoOff(int fd) : fd_(fd) {
    if (tcgetattr(fd_, &saved_) == 0) {
      termios t = saved_;
      t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      t.c_lflag |= ICANON;
      active_ = tcsetattr(fd_, TCSAFLUSH, &t) == 0;
    }
  }
  ~EchoOff() {
    if (active_) tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

Result<SecretBytes> prompt_once(int tty, const std::string& prompt) {
  (void)!::write(tty, prompt.data(), prompt.size());
  Result<SecretBytes> r = [&]() -> Result<SecretBytes> {
    EchoOff guard(tty);
    return read_fd(tty, 0, 0, /*stop_at_eol=*/true, "terminal");
  }();
  (void)!::write(tty, "\n", 1);
  return r;
}

}  // namespace

bool passphrase_is_interactive(const KeySource& src) {
  return !src.key_file && ::isatty(STDIN_FILENO) == 1;
}

Result<SecretBytes> read_passphrase(const KeySource& src, const std::string& prompt, bool verify) {
  if (src.key_file && *src.key_file != "-") {
    UniqueFd fd(::open(src.key_file->c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
      return fail(make_error_fmt(errno == ENOENT ? Errc::kNotFound : Errc::kInvalid,
                                 "Failed to open key file.", kNoObject, "%s: %s",
                                 src.key_file->c_str(), std::strerror(errno)));
    return read_fd(fd.get(), src.keyfile_offset, src.keyfile_size, false, *src.key_file);
  }
  if (src.key_file)  // "-": all of stdin, no newline processing
    return read_fd(STDIN_FILENO, src.keyfile_offset, src.keyfile_size, false, "stdin");
  if (::isatty(STDIN_FILENO) != 1)  // piped passphrase: up to the first newline
    return read_fd(STDIN_FILENO, src.keyfile_offset, src.keyfile_size, true, "stdin");

  UniqueFd tty(::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
  if (!tty.valid())
    return fail(make_sys_error(errno, "Cannot open the terminal to ask for the passphrase"));
  CRYPTMAP_TRY(first, prompt_once(tty.get(), prompt));
  if (!verify) return first;
  CRYPTMAP_TRY(second, prompt_once(tty.get(), "Verify passphrase: "));
  if (!constant_time_equal(first.span(), second.span()))
    return fail(make_error(Errc::kInvalid, "Passphrases do not match."));
  return first;
}

bool yes_dialog(bool batch_mode, const std::string& question) {
  if (batch_mode || ::isatty(STDIN_FILENO) != 1) return true;
  std::cerr << "\nWARNING!\n========\n"
            << question << "\n\nAre you sure? (Type 'yes' in capital letters): ";
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "YES";
}

}  // namespace cryptmap::cli
