// cryptmap::Error — the one error value of the code base (docs/architecture.md §5).
//
// An Error says what failed (`what`, a static string naming the operation or field), on which
// object (`object`: a sector, a keyslot, a byte offset; kNoObject when none applies), the class of
// failure (`code`) and, where the OS gave one, `sys_errno`. `detail` holds a short formatted
// context (a file name, an unsupported cipher name) without touching the heap, so an Error can be
// made on the I/O path under memory pressure. Errors are values: cheap to copy, never thrown.
// `detail` holds kDetailBytes - 1 characters: every fixed message shape with a path or a nested
// message of ~100 characters fits (tests/unit/base/error_test.cpp has the longest); a longer text
// is cut visibly, ending in "..." (kTruncationMark), never silently.
#pragma once

#include <array>
#include <cstddef>
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
inline constexpr std::size_t kDetailBytes = 256;
inline constexpr std::string_view kTruncationMark = "...";

struct Error {
  Errc code = Errc::kIo;
  int sys_errno = 0;                 // errno from the failing syscall, 0 if none
  const char* what = "";             // static: what failed ("LUKS2 JSON: keyslot area offset")
  std::uint64_t object = kNoObject;  // sector / keyslot / offset the failure is about
  std::array<char, kDetailBytes> detail{};  // NUL-terminated context, may be empty

  std::string_view detail_view() const noexcept { return detail.data(); }
  // "what [object N]: detail (strerror)" — for logs and the CLI.
  std::string message() const;
};

// Builders. `make_error_fmt`'s detail is printf-style; set_detail copies a text. Both end a text
// longer than the buffer with kTruncationMark.
Error make_error(Errc code, const char* what, std::uint64_t object = kNoObject);
Error make_sys_error(int sys_errno, const char* what, std::uint64_t object = kNoObject);
[[gnu::format(printf, 4, 5)]] Error make_error_fmt(Errc code, const char* what,
                                                   std::uint64_t object, const char* fmt, ...);
void set_detail(Error& e, std::string_view text) noexcept;

// The one errno mapping used at the FUSE edge (tested against a table).
int to_errno(const Error& e) noexcept;
std::string_view errc_name(Errc code) noexcept;

}  // namespace cryptmap
