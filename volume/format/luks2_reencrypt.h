// LUKS2 reencryption, offline (the image closed), byte-compatible with cryptsetup 2.6.1's
// `reencrypt`, so that either tool resumes what the other started or left interrupted.
//
//   reencrypt_init()   adds a keyslot with a new volume key (same passphrase) and puts the header
//                      in reencryption: backup segments, reencrypt keyslot, reencryption digest,
//                      requirement online-reencrypt-v2 (cryptsetup reencrypt --init-only).
//   reencrypt_run()    unlocks both volume keys, verifies the reencryption digest, recovers an
//                      interrupted hotzone, then reencrypts hotzone by hotzone (forward) and
//                      finally drops the old keyslots and the reencryption metadata.
//   ReencryptSession   one run, hotzone by hotzone: the single implementation of the steps.
//                      reencrypt_run() loops over it offline; the daemon drives it while it
//                      serves the volume, holding each hotzone's I/O around step().
//   reencrypt_status() what a header says (for messages and tests).
//   reencrypt_open()   what `open` of an image in reencryption needs: both keys unlocked and the
//                      reencryption digest verified, an interrupted hotzone recovered (as
//                      cryptsetup does at activation), then the layout of the two segments
//                      either side of the boundary (docs/reencrypt.md §9).
//
// The on-disk rules are restated in docs/reencrypt.md. Implemented: mode "reencrypt" (direction
// "forward"), mode "decrypt" (direction "backward") and mode "encrypt" (direction "forward"; the
// header luksFormat has just written) -- the last two without a data shift, so under a detached
// header at data offset 0 (`data`: the data device) -- resilience checksum, journal and none;
// encryption with a data shift (backward, datashift) and cryptsetup 2.6's decryption with a
// data shift (forward, datashift-checksum/-journal, the header detached from the image).
// The rest (reencrypt backward, other data shifts) is refused with kUnsupported naming it.
// Thread-compatible; the store is borrowed for the call. The caller holds the metadata lock and
// makes sure no one else uses the image (the daemon does not have it open).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "volume/format/luks_admin.h"
#include "volume/format/unlock.h"
#include "volume/volume.h"

namespace cryptmap::volume {

class BackingStore;

struct ReencryptInitOptions {
  std::string mode = "reencrypt";       // reencrypt | decrypt (backward) | encrypt (a fresh header)
  std::string cipher;                   // "" = keep the current segment's cipher
  std::uint32_t key_bits = 0;           // 0 = the current volume key's size
  std::uint32_t sector_size = 0;        // 0 = keep the current encryption sector size
  std::string resilience = "checksum";  // checksum | journal | none
  std::string hash = "sha256";          // checksum resilience hash
  PbkdfOptions pbkdf;                   // the new keyslot's KDF
  std::optional<int> key_slot;          // unlock (and re-key) only this keyslot
  BackingStore* data = nullptr;         // the data device of a detached header (null: `image`)
};

// Errors: kBadKey (wrong passphrase, nothing written), kBusy (already in reencryption),
// kUnsupported (LUKS1, integrity, a cipher cryptmap has not), kInvalid (bad sector size, image
// not aligned to it), kNoSpace (no free keyslot or keyslots area room).
Result<void> reencrypt_init(BackingStore& image, std::span<const std::byte> passphrase,
                            const ReencryptInitOptions& opts);

// cryptsetup's `reencrypt --encrypt --reduce-device-size N` (encrypt_luks2_init with a moved
// first segment; docs/reencrypt.md §13): the plain data of `image` gets a LUKS2 header inside
// the image. The data offset and the shift are N/2 (or --offset, format.offset_sectors, when
// smaller); the data's first min(shift, size) bytes are copied to the image's end, then the
// header (luksFormat's, in reencryption: mode encrypt, direction backward, resilience
// datashift, requirement online-reencrypt-v2) is written over the image's first `shift` bytes.
// reencrypt_run() then moves the data by `shift` while encrypting it. The data size after
// encryption is image size - N. Errors: kInvalid (N not a multiple of 512, --offset above N/2,
// data not aligned to the sector size), kNoSpace (image too small, no keyslots area room);
// nothing is written then. The caller checks the image holds no LUKS header.
struct EncryptShiftOptions {
  LuksFormatOptions format;        // luksFormat's options; offset_sectors: --offset (0: N/2)
  std::uint64_t reduce_bytes = 0;  // --reduce-device-size
};
Result<void> reencrypt_encrypt_shift_init(BackingStore& image,
                                          std::span<const std::byte> passphrase,
                                          const EncryptShiftOptions& o);

// cryptsetup 2.6's `reencrypt --decrypt --header NEW-FILE IMAGE` of an image whose LUKS2 header
// is inside it (decrypt_luks2_datashift_init; docs/reencrypt.md §11.1). Once the passphrase is
// checked, the header and its keyslots area are copied into the store `make_header(bytes)`
// creates; the data's first min(data offset, 20 MiB) bytes are copied over the image's header;
// then the header in that store is committed in reencryption (mode decrypt, direction forward,
// resilience datashift-checksum or datashift-journal, requirement online-reencrypt-v3).
// reencrypt_run(that store, data = image) then moves the data to the image's start while it
// decrypts it. Errors: kBadKey (nothing written or created), kInvalid (resilience none or
// datashift: cryptsetup's sentence; data not aligned), kBusy (in reencryption already),
// kUnsupported (a fixed-size segment, data smaller than the data offset), kNoSpace (no keyslots
// area room for the moved part's checksums or journal).
struct DecryptShiftOptions {
  std::string resilience = "checksum";  // checksum | journal (or their datashift- forms)
  std::string hash = "sha256";          // checksum resilience hash
  PbkdfOptions pbkdf;                   // the reencryption digest's KDF
  std::optional<int> key_slot;          // unlock only this keyslot
};
using HeaderFactory = std::function<Result<std::unique_ptr<BackingStore>>(std::uint64_t bytes)>;
Result<void> reencrypt_decrypt_shift_init(BackingStore& image,
                                          std::span<const std::byte> passphrase,
                                          const DecryptShiftOptions& o,
                                          const HeaderFactory& make_header);

class ReencryptSession;

// The same start of an image the daemon serves (docs/reencrypt.md §10 item 10), in cryptsetup's
// steps (decrypt_luks2_datashift_init, then reencrypt_decrypt_with_datashift_init with an active
// device), split where the served volume must be held:
//   reencrypt_decrypt_shift_export()  the CLI's part: the checks and the passphrase as above,
//       then the header and its keyslots area copied into make_header's store (crypt_header_
//       backup: NEW-FILE then holds a detached copy of the header, not in reencryption). Nothing
//       of the image is written. Returns the bytes exported.
//   DecryptShiftStart::prepare()  the daemon's, while the image is served as before: the export
//       checked against the image's header, the reencryption metadata built, and a session
//       started on the header as the switch will leave it (in memory: keys unlocked, digest
//       verified), so that its served volume can be assembled before anything is written;
//   DecryptShiftStart::switch_header()  while the served volume's I/O is held and flushed (as
//       cryptsetup suspends the device): the data's first part moved over the image's header,
//       then the header in reencryption committed into `header` (NEW-FILE), after which the
//       session writes there. When it fails the image's own header is written back from the
//       export and the image is as before (the error is returned); the old volume may serve on.
// A crash at any point leaves an image that either its own header (before the move) or
// `header` (the export, then the header in reencryption) opens.
Result<std::uint64_t> reencrypt_decrypt_shift_export(BackingStore& image,
                                                     std::span<const std::byte> passphrase,
                                                     const DecryptShiftOptions& o,
                                                     const HeaderFactory& make_header);
class DecryptShiftStart {
 public:
  // `header`: NEW-FILE holding reencrypt_decrypt_shift_export's copy; `image` the data. Both
  // borrowed, outliving this and the session. Errors: the export's; kBusy when the export is
  // no longer the image's header.
  static Result<std::unique_ptr<DecryptShiftStart>> prepare(BackingStore& header,
                                                            BackingStore& image,
                                                            std::span<const std::byte> passphrase,
                                                            const DecryptShiftOptions& o,
                                                            std::uint64_t max_hotzone_bytes);
  ~DecryptShiftStart();
  DecryptShiftStart(const DecryptShiftStart&) = delete;
  DecryptShiftStart& operator=(const DecryptShiftStart&) = delete;

  ReencryptSession& session() noexcept;  // its open_served_volume() before the switch
  Result<void> switch_header();
  bool switched() const noexcept;

 private:
  struct State;
  explicit DecryptShiftStart(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

struct ReencryptStatus {
  bool in_reencryption = false;
  bool crashed = false;  // a hotzone segment is flagged in-reencryption (needs recovery)
  std::string mode, direction, resilience;
  std::uint64_t done_bytes = 0, total_bytes = 0;
};
// `data`: the data device when `image` is a detached header (null: the image holds the data).
Result<ReencryptStatus> reencrypt_status(const BackingStore& image,
                                         const BackingStore* data = nullptr);

struct ReencryptRunOptions {
  std::uint64_t max_hotzone_bytes = 0;  // --hotzone-size; 0 = the resilience mode's default
  // Called after every hotzone (and once before the first); returning false stops cleanly
  // after the current hotzone, leaving a header either tool resumes.
  std::function<bool(std::uint64_t done, std::uint64_t total)> progress;
  BackingStore* data = nullptr;  // the data device when `image` is a detached header
};
struct ReencryptRunResult {
  bool finished = false;  // false: stopped by `progress` (resumable)
  std::uint64_t bytes = 0;
};
// Errors: kNotFound "Device is not in reencryption." (exit 1 as cryptsetup), kBadKey,
// kCorrupt "Reencryption metadata is invalid.", kUnsupported for unimplemented modes, kIo.
Result<ReencryptRunResult> reencrypt_run(BackingStore& image, std::span<const std::byte> passphrase,
                                         const ReencryptRunOptions& opts);

// One reencryption run (reencrypt_run's loop, and the daemon's online run, are built on it):
//   start()  unlocks both volume keys with the passphrase, verifies the reencryption digest and
//            recovers a hotzone left flagged in-reencryption (the header is written then);
//   step()   converts next_hotzone(): hot segments, resilience data and header (the metadata
//            commit point), read/decrypt/encrypt/write, sync, post segments (docs/reencrypt.md
//            §1 step 2). Offline nothing else touches the image; online the caller holds every
//            other access to the hotzone's data from before step() until the served volume's
//            boundary has moved past it;
//   stop()   writes what resilience "none" kept in memory and, when nothing is left, finishes
//            (old keyslots, backups, reencrypt keyslot, digests, requirement). Call it once, last.
// Destroying a session without stop() leaves the header as the last step wrote it (resumable
// except after a step with resilience none). Thread-compatible; `image` is borrowed and must
// outlive the session; the caller holds the metadata lock.
class ReencryptSession {
 public:
  struct Hotzone {
    std::uint64_t offset = 0;  // bytes of data, from the data offset
    std::uint64_t length = 0;  // 0: nothing left to convert
  };
  // Errors: reencrypt_run's; kInvalid for a hotzone size below 512 bytes.
  // `data`: the data device when `image` is a detached header (null: the image); borrowed.
  static Result<std::unique_ptr<ReencryptSession>> start(BackingStore& image,
                                                         std::span<const std::byte> passphrase,
                                                         std::uint64_t max_hotzone_bytes,
                                                         BackingStore* data = nullptr);
  ~ReencryptSession();
  ReencryptSession(const ReencryptSession&) = delete;
  ReencryptSession& operator=(const ReencryptSession&) = delete;

  Hotzone next_hotzone() const noexcept;
  // Converts next_hotzone() (nothing when its length is 0). On an error the header names the
  // last committed state; a crash inside it is recovered by the next start() or open.
  // Online, `served` is the volume open_served_volume() made: the hotzone is held in it
  // (Volume::hold_range) for the whole step, and its boundary moves past the hotzone before
  // the hold ends; requests elsewhere go on. When an online step fails after the header named
  // the hotzone (or, with resilience none, while its data was written), the hotzone is
  // recovered under the same hold as open recovers it (the boundary then moves past it and
  // done_bytes() with it); when that fails too, or with resilience none, the hotzone is fenced:
  // its I/O fails with kIo until the volume is opened again (fenced_hotzone()). Either way the
  // step's error is returned; the caller ends the run there (no stop()).
  Result<void> step(Volume* served = nullptr);
  // The hotzone a failed online step left fenced (length 0: none).
  Hotzone fenced_hotzone() const noexcept;
  // The volume to serve while this session runs online: the data of `store` (the image,
  // opened for serving) through a cipher whose boundary follows the run: forward [0, done)
  // under the new key and the rest under the old one, backward (decryption) the old key below
  // the boundary; a linear side (decryption's new, encryption's old) is plaintext. Its layout
  // is flat (data offset, the larger sector size, the data size). With a data shift the two
  // sides also lie at different places of the image: the store follows the boundary too
  // (make_boundary_store; a datashift decryption's moved first part stays on the old side until
  // its hotzone, the last). Errors: open_volume's; kUnsupported for a reencryption backward.
  Result<std::unique_ptr<Volume>> open_served_volume(std::unique_ptr<BackingStore> store,
                                                     const VolumeOptions& options,
                                                     std::shared_ptr<spdlog::logger> logger);
  Result<ReencryptRunResult> stop();
  // From now on the header (metadata and resilience data) is written into `header`, which holds
  // what the session's header store held (DecryptShiftStart::switch_header). Borrowed.
  void move_header(BackingStore& header) noexcept;
  // What the image unlocks to now: while in reencryption reencrypt_open()'s layout (two
  // segments), after a finishing stop() the plain LUKS2 layout under the new key.
  Result<VolumeLayout> layout_now() const;
  std::uint64_t done_bytes() const noexcept;       // data converted (forward: the boundary)
  std::uint64_t total_bytes() const noexcept;      // data size
  std::uint64_t converted_bytes() const noexcept;  // by this session's steps

 private:
  struct State;
  Result<void> convert_hotzone();  // the step itself (docs/reencrypt.md §1 step 2)
  // recover_if_crashed of a failed step's hotzone [at, at + len)
  bool recover_failed_step(std::uint64_t at, std::uint64_t len);
  // Online: the served volume's boundary (and pending moved part) to where the run stands.
  void settle_boundary();
  explicit ReencryptSession(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// The volume of an image in reencryption, served while the reencryption is paused. The layout
// has up to two segments (volume/segment/segment_map.h): forward [0, boundary) under the new
// key, cipher and sector size, [boundary, end) under the old ones (backward, a decryption, the
// other way round); a linear side (decryption's new, encryption's old) is a linear segment, and
// the layout's cipher is then the new one, cipher_null for a decryption. Its sector_size is the
// larger of the crypt sides', and volume_key is the old key followed by the new one (either may
// be empty; each crypt segment names its slice). With a data shift the segments are the header's
// regular ones as they stand, each at its own image offset (the moved one too).
// A hotzone left flagged in-reencryption is recovered first and the header written (the caller
// holds the metadata lock and nobody serves the image). Errors: reencrypt_run's, before anything
// is written for a wrong passphrase or invalid metadata. `data`: the data device when `image` is
// a detached header (null: the image holds the data); the layout's offsets are the data's.
Result<UnlockedVolume> reencrypt_open(BackingStore& image, std::span<const std::byte> passphrase,
                                      BackingStore* data = nullptr);

}  // namespace cryptmap::volume
