// The editing state behind LUKS header management, shared by the .cpp files of volume/format
// that rewrite headers (luks_admin.cpp, luks_token.cpp, luks2_reencrypt.cpp via luks2_edit.h).
// INTERNAL to volume/format. Value types; thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "base/result.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/internal/luks2_json_doc.h"
#include "volume/format/internal/luks_impl.h"

namespace cryptmap::volume::admin {

// A LUKS2 header being edited: the binary header, both salts and the JSON document.
struct Luks2State {
  luks2::BinHeader bin;
  std::array<std::byte, 64> salt1{}, salt2{};
  luks2::JsonDoc doc;
  std::uint64_t json_area = 0;
};

// The editing state of a loaded header (salts kept, missing ones made random).
Result<Luks2State> luks2_state(const format::Luks2Header& h);
// Writes both copies (seqid + 1), as LUKS2_hdr_write.
Result<void> luks2_commit(BackingStore& s, Luks2State& st);

// Loads a LUKS1 or LUKS2 header: exactly one of the pair is set. `inspection` as
// Luks2Header::load (luksDump, isLuks: unknown requirements do not refuse).
using AnyHeader =
    std::pair<std::unique_ptr<format::Luks1Header>, std::unique_ptr<format::Luks2Header>>;
Result<AnyHeader> load_any(const BackingStore& s, bool inspection = false);

// LUKS2_find_area_gap: the first gap of `len` bytes in the keyslots area of `m`, around its
// keyslots' areas and the `extra` ones (offset, size). kNoSpace when there is none.
Result<std::uint64_t> luks2_find_gap(
    const luks2::Metadata& m, std::uint64_t len,
    std::span<const std::pair<std::uint64_t, std::uint64_t>> extra = {});

}  // namespace cryptmap::volume::admin
