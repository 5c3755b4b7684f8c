// volume/online_reencrypt.h — the daemon's side of online reencryption (docs/reencrypt.md §10):
// a LUKS2 image in reencryption is converted hotzone by hotzone while the daemon serves it.
//
//   start()               opens the image for the run, unlocks both volume keys with the
//                         passphrase, verifies the reencryption digest, recovers an interrupted
//                         hotzone, and assembles the volume to serve during the run (its cipher
//                         follows the moving boundary: the converted side and the rest,
//                         either plaintext for a decryption or an encryption; with a data
//                         shift its store follows it too, each side at its own place);
//   start_decrypt_shift() the start of cryptsetup 2.6's datashift decryption of a served image
//                         whose header is inside it (docs/reencrypt.md §10 item 10): the same,
//                         from the header the CLI exported to NEW-FILE, before anything is
//                         written; the header in reencryption exists only in memory until
//   switch_header()       moves the data's first part over the image's header and commits the
//                         header in reencryption into NEW-FILE: the caller runs it while the
//                         served file's I/O is held and the old volume flushed, and swaps the
//                         new volume in right after it (VolumeServer::replace_volume's
//                         `between`); when it fails the image is as before and the old volume
//                         serves on;
//   take_served_volume()  that volume, once: the caller swaps it in for the served one;
//   step()                one hotzone, held in the served volume (Volume::hold_range) while the
//                         shared step of volume/format/luks2_reencrypt.h converts it and the
//                         boundary moves past it; I/O elsewhere goes on;
//   stop()                the header written as it must be left (paused, or finished: old
//                         keyslots and the reencryption metadata gone).
// After stop(), layout() is what the image now unlocks to (the paused two-segment layout, or
// the plain LUKS2 layout under the new key): what a later luksResume or refresh assembles.
//
// Thread-compatible: one thread drives it (the daemon's control thread). The served volume must
// outlive the run (the caller keeps it served until stop() returned). The caller holds the
// header's metadata lock for the run (the daemon's run thread does, docs/reencrypt.md §10).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "volume/volume.h"
#include "volume/volume_layout.h"

namespace spdlog {
class logger;
}

namespace cryptmap::volume {

class OnlineReencryption {
 public:
  // `header`: the detached header of `image` (empty: the header is in the image); the run
  // writes the metadata and the resilience data there, the data into `image`.
  // Errors: kNotFound (not in reencryption), kBadKey, kCorrupt (invalid metadata), kUnsupported
  // (a mode only offline reencryption or cryptsetup handles), the stores' and open_volume's.
  static Result<std::unique_ptr<OnlineReencryption>> start(const std::string& image,
                                                           const std::string& header,
                                                           std::span<const std::byte> passphrase,
                                                           std::uint64_t max_hotzone_bytes,
                                                           const VolumeOptions& options,
                                                           std::shared_ptr<spdlog::logger> logger);
  // The options of the datashift decryption's init (the reencryption digest's KDF, the
  // resilience of the moved part).
  struct DecryptShiftInit {
    std::string resilience = "checksum";  // checksum | journal
    std::string hash = "sha256";
    std::string pbkdf_type, pbkdf_hash = "sha256";  // "" = the default (argon2id)
    std::uint32_t iter_time_ms = 2000;
    std::uint32_t force_iterations = 0;  // 0: benchmarked
    std::uint32_t memory_kib = 1048576, parallel = 4;
    int key_slot = -1;       // -1: any
    bool init_only = false;  // reencrypt --init-only: the caller stops the run after the switch
  };
  // `new_header`: NEW-FILE, holding the export of `image`'s header (the CLI wrote it). Errors:
  // start's; kBusy when NEW-FILE no longer matches the image's header.
  static Result<std::unique_ptr<OnlineReencryption>> start_decrypt_shift(
      const std::string& image, const std::string& new_header,
      std::span<const std::byte> passphrase, const DecryptShiftInit& init,
      std::uint64_t max_hotzone_bytes, const VolumeOptions& options,
      std::shared_ptr<spdlog::logger> logger);
  // See the top. Only after start_decrypt_shift (kInvalid otherwise); once.
  Result<void> switch_header();
  // Whether the header is in NEW-FILE now (start_decrypt_shift: after switch_header succeeded).
  bool header_switched() const noexcept;
  ~OnlineReencryption();
  OnlineReencryption(const OnlineReencryption&) = delete;
  OnlineReencryption& operator=(const OnlineReencryption&) = delete;

  std::unique_ptr<Volume> take_served_volume();
  // Converts the next hotzone in `served` (the volume take_served_volume() gave). False when
  // nothing was left to convert. A failed step recovers its hotzone in place or fences it
  // (ReencryptSession::step); the caller ends the run then, without stop().
  Result<bool> step(Volume& served);
  // After a failed step: true when its hotzone could not be recovered and fails with EIO until
  // the volume is opened again.
  bool hotzone_fenced() const noexcept;
  struct Stopped {
    bool finished = false;
    std::uint64_t bytes = 0;  // converted by this run
  };
  Result<Stopped> stop();
  std::uint64_t done_bytes() const noexcept;
  std::uint64_t total_bytes() const noexcept;
  // After stop(): the layout the image unlocks to now (see the top).
  Result<VolumeLayout> layout() const;

  struct Impl;

 private:
  explicit OnlineReencryption(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cryptmap::volume
