// volume/online_reencrypt.h — the daemon's side of online reencryption (docs/reencrypt.md §10):
// a LUKS2 image in reencryption is converted hotzone by hotzone while the daemon serves it.
//
//   start()               opens the image for the run, unlocks both volume keys with the
//                         passphrase, verifies the reencryption digest, recovers an interrupted
//                         hotzone, and assembles the volume to serve during the run (its cipher
//                         follows the moving boundary: the converted side and the rest,
//                         either plaintext for a decryption or an encryption; with a data
//                         shift its store follows it too, each side at its own place);
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
