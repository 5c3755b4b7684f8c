// LUKS2 header editing shared by the keyslot verbs (luks_admin.cpp) and reencryption
// (luks2_reencrypt.cpp): keyslot store/kill and the KDF/digest parameter choices, over the
// editable state of one header and its commit (luks_admin_impl.h). INTERNAL to volume/format.
// Reentrant; stores are borrowed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "base/result.h"
#include "volume/format/internal/keyslot_crypt.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/internal/luks2_json_doc.h"
#include "volume/format/internal/luks_admin_impl.h"
#include "volume/format/luks_admin.h"

namespace cryptmap::volume::format {

class Luks2Header;

// The editing state and its commit are luks_admin_impl.h's (shared with the token verbs).
using admin::luks2_commit;
using admin::luks2_state;
using admin::Luks2State;

// Stores `vk` under `pass` in a new keyslot (`slot` or the first free one) bound to digest
// `digest_id` (default: the digest of segment 0), commits. `replace_id` rewrites that slot.
Result<int> luks2_store_keyslot(BackingStore& s, Luks2State& st, std::optional<int> slot,
                                std::span<const std::byte> vk, std::span<const std::byte> pass,
                                const PbkdfOptions& o, std::optional<int> replace_id = std::nullopt,
                                std::optional<int> digest_id = std::nullopt);
// Wipes keyslot `slot`'s area, drops it from digests and tokens, commits.
Result<void> luks2_kill(BackingStore& s, Luks2State& st, int slot);
// Volume-key digest iterations (LUKS_MKD_ITERATIONS_MS worth, at least 1000).
Result<std::uint32_t> digest_iterations(const PbkdfOptions& o, std::size_t vk_len);
// Random bytes over [off, off + len) of the store.
Result<void> write_random(BackingStore& s, std::uint64_t off, std::uint64_t len);

// Runs an nlohmann edit (which may throw) and turns exceptions into Errors. F returns Result<T>.
Error json_edit_error(const std::exception& e);
template <class F>
std::invoke_result_t<F> guarded(F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const std::bad_alloc&) {
    return fail(make_error(Errc::kNoSpace, "out of memory while editing the LUKS2 header"));
  } catch (const std::exception& e) {
    return fail(json_edit_error(e));
  }
}

}  // namespace cryptmap::volume::format
