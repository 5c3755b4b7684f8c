// cryptmap::Error — the one error value of the code base (docs/architecture.md §5).
//
// An Error says what failed (`what`, a static string naming the operation or field), on which
// object (`object`: a sector, a keyslot, a byte offset; kNoObject when none applies), the class of
// failure (`code`) and, where the OS gave one, `sys_errno`. `detail` holds a short formatted
// context (a file name, an unsupported cipher name) without touching the heap, so an Error can be
// made on the I/O path under memory pressure. Errors are values: cheap to copy, never thrown.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cryptmap {

enum class Errc : std::uint8_t {
  kIo,           // the backing store failed a read/write/sync
  kNoSpace,      // out of room (image full, pool exhausted where waiting is impossible)
  kReadOnly,     // write to a read-only volume or image
  kAuth,         // integrity tag mismatch (authenticated mode); never returns plaintext
  kCorrupt,      // on-disk data malformed: header, JSON, checksum
  kBadKey,       // no keyslot matched the passphrase / key file
  kUnsupported,  // valid but not implemented here (cipher, flag, requirement)
  kInvalid,      // caller or user input out of range / malformed (CLI, FUSE args)
  kZoneOrder,    // write not at a sequential zone's write pointer
  kBusy,         // resource busy (volume in use, engine refused)
  kCancelled,    // the operation was abandoned (shutdown)
  kNotFound,     // named object does not exist (file, volume name, keyslot)
};

inline constexpr std::uint64_t kNoObject = ~std::uint64_t{0};

struct Error {
  Errc code = Errc::kIo;
  int sys_errno = 0;                 // errno from the failing syscall, 0 if none
  const char* what = "";             // static: what failed ("LUKS2 JSON: keyslot area offset")
  std::uint64_t object = kNoObject;  // sector / keyslot / offset the failure is about
  std::array<char, 96> detail{};     // NUL-terminated short context, may be empty

  std::string_view detail_view() const noexcept { return detail.data(); }
  // "what [object N]: detail (strerror)" — for logs and the CLI.
  std::string message() const;
};

// Builders. `fmt_detail` is printf-style and truncates silently at 95 characters.
Error make_error(Errc code, const char* what, std::uint64_t object = kNoObject);
Error make_sys_error(int sys_errno, const char* what, std::uint64_t object = kNoObject);
[[gnu::format(printf, 4, 5)]] Error make_error_fmt(Errc code, const char* what,
                                                   std::uint64_t object, const char* fmt, ...);

// The one errno mapping used at the FUSE edge (tested against a table).
int to_errno(const Error& e) noexcept;
std::string_view errc_name(Errc code) noexcept;

}  // namespace cryptmap
