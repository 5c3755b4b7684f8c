// BackingStore's defaults: batches one piece after another, in the batch's order; a durable
// write as a write and a sync.
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

Result<void> BackingStore::read_batch(std::span<ReadPiece> pieces) const {
  Result<void> first = ok();
  for (ReadPiece& p : pieces) {
    p.result = read_at(p.off, p.out);
    if (!p.result && first) first = p.result;
  }
  return first;
}

Result<void> BackingStore::write_batch(std::span<WritePiece> pieces) {
  Result<void> first = ok();
  for (WritePiece& p : pieces) {
    p.result = write_at(p.off, p.in);
    if (!p.result && first) first = p.result;
  }
  return first;
}

Result<void> BackingStore::write_fua(ByteOffset off, std::span<const std::byte> in) {
  CRYPTMAP_TRY_VOID(write_at(off, in));
  return sync();
}

}  // namespace cryptmap::volume
