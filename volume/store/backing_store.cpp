// BackingStore's default batches: one piece after another, in the batch's order.
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

}  // namespace cryptmap::volume
