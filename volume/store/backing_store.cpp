// BackingStore's defaults: batches one piece after another, in the batch's order (the _each
// variants: the work on a piece before or after the whole batch); a durable write as a write
// and a sync.
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

Result<void> BackingStore::read_batch_each(std::span<ReadPiece> pieces, PieceWork on_read) const {
  (void)read_batch(pieces);
  Result<void> first = ok();
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].result) pieces[i].result = on_read(i);
    if (!pieces[i].result && first) first = pieces[i].result;
  }
  return first;
}

Result<void> BackingStore::write_batch_each(std::span<WritePiece> pieces, PieceWork prepare) {
  std::size_t ready = 0;
  Result<void> failed = ok();
  for (; ready < pieces.size(); ++ready) {
    failed = prepare(ready);
    if (!failed) break;
  }
  Result<void> first = write_batch(pieces.first(ready));
  for (std::size_t i = ready; i < pieces.size(); ++i) pieces[i].result = failed;
  if (first && !failed) first = failed;
  return first;
}

Result<void> BackingStore::write_fua(ByteOffset off, std::span<const std::byte> in) {
  CRYPTMAP_TRY_VOID(write_at(off, in));
  return sync();
}

}  // namespace cryptmap::volume
