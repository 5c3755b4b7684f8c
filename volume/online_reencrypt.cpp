#include "volume/online_reencrypt.h"

#include "volume/format/luks2_reencrypt.h"
#include "volume/open.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"
#include "volume/store/rbd_backing_store.h"

namespace cryptmap::volume {

// The run's own handles on the header and the data (buffered, as the offline run's; one store
// when the header is in the image) and the session on them; the served volume has its own
// (O_DIRECT, probe_store) until it is taken.
struct OnlineReencryption::Impl {
  std::unique_ptr<BackingStore> image;
  std::unique_ptr<BackingStore> data;         // the data device under a detached header (else null)
  std::unique_ptr<ReencryptSession> session;  // null with `shift_start` (its own session)
  std::unique_ptr<DecryptShiftStart> shift_start;
  std::unique_ptr<Volume> served;
  ReencryptSession& run() { return shift_start ? shift_start->session() : *session; }
};

namespace {

// What the daemon's served store must be for a run: not RBD (the session's header store would
// be a second librbd client, which the served store's exclusive lock refuses:
// docs/network-stores.md §6.3), not zoned, read-write.
Result<std::unique_ptr<BackingStore>> served_store_for_run(const std::string& image,
                                                           const VolumeOptions& options) {
  if (options.read_only)
    return make_error_fmt(Errc::kReadOnly, "online reencryption", kNoObject,
                          "%s is served read-only: close it and open it read-write first",
                          image.c_str());
  if (is_rbd_uri(image))
    return make_error_fmt(
        Errc::kUnsupported,
        "online reencryption of an RBD image (not implemented: the served "
        "volume holds the image's exclusive lock; close it and reencrypt offline)",
        kNoObject, "%s", image.c_str());
  CRYPTMAP_TRY(served_store, probe_store(image, {.read_only = false}));
  if (served_store->zones() != nullptr)
    return make_error_fmt(Errc::kUnsupported, "online reencryption", kNoObject,
                          "%s is zoned: online reencryption of zoned images is not implemented",
                          image.c_str());
  return served_store;
}

}  // namespace

OnlineReencryption::OnlineReencryption(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnlineReencryption::~OnlineReencryption() = default;

Result<std::unique_ptr<OnlineReencryption>> OnlineReencryption::start(
    const std::string& image, const std::string& header, std::span<const std::byte> passphrase,
    std::uint64_t max_hotzone_bytes, const VolumeOptions& options,
    std::shared_ptr<spdlog::logger> logger) {
  // The served store first: a zoned image is refused before the session writes anything (the
  // recovery of an interrupted hotzone).
  CRYPTMAP_TRY(served_store, served_store_for_run(image, options));
  auto impl = std::make_unique<Impl>();
  // The session's header and hotzone I/O, one piece at a time from the control thread: the
  // metadata options (no io_uring rings) as the offline run's.
  CRYPTMAP_TRY(store,
               open_image_store(header.empty() ? image : header, metadata_store_options(false)));
  impl->image = std::move(store);
  if (!header.empty()) {
    CRYPTMAP_TRY(data, open_image_store(image, metadata_store_options(false)));
    impl->data = std::move(data);
  }
  CRYPTMAP_TRY(session, ReencryptSession::start(*impl->image, passphrase, max_hotzone_bytes,
                                                impl->data.get()));
  impl->session = std::move(session);
  CRYPTMAP_TRY(served, impl->session->open_served_volume(std::move(served_store), options,
                                                         std::move(logger)));
  impl->served = std::move(served);
  return std::unique_ptr<OnlineReencryption>(new OnlineReencryption(std::move(impl)));
}

Result<std::unique_ptr<OnlineReencryption>> OnlineReencryption::start_decrypt_shift(
    const std::string& image, const std::string& new_header, std::span<const std::byte> passphrase,
    const DecryptShiftInit& init, std::uint64_t max_hotzone_bytes, const VolumeOptions& options,
    std::shared_ptr<spdlog::logger> logger) {
  CRYPTMAP_TRY(served_store, served_store_for_run(image, options));
  auto impl = std::make_unique<Impl>();
  CRYPTMAP_TRY(hdr, open_image_store(new_header, metadata_store_options(false)));
  impl->image = std::move(hdr);
  CRYPTMAP_TRY(data, open_image_store(image, metadata_store_options(false)));
  impl->data = std::move(data);
  DecryptShiftOptions o;
  o.resilience = init.resilience;
  o.hash = init.hash;
  o.pbkdf.type = init.pbkdf_type;
  o.pbkdf.hash = init.pbkdf_hash;
  o.pbkdf.iter_time_ms = init.iter_time_ms;
  if (init.force_iterations) o.pbkdf.force_iterations = init.force_iterations;
  o.pbkdf.memory_kib = init.memory_kib;
  o.pbkdf.parallel = init.parallel;
  if (init.key_slot >= 0) o.key_slot = init.key_slot;
  CRYPTMAP_TRY(start, DecryptShiftStart::prepare(*impl->image, *impl->data, passphrase, o,
                                                 max_hotzone_bytes));
  impl->shift_start = std::move(start);
  CRYPTMAP_TRY(served, impl->shift_start->session().open_served_volume(std::move(served_store),
                                                                       options, std::move(logger)));
  impl->served = std::move(served);
  return std::unique_ptr<OnlineReencryption>(new OnlineReencryption(std::move(impl)));
}

Result<void> OnlineReencryption::switch_header() {
  if (!impl_->shift_start)
    return make_error(Errc::kInvalid, "online reencryption: no header to switch to");
  return impl_->shift_start->switch_header();
}

bool OnlineReencryption::header_switched() const noexcept {
  return impl_->shift_start && impl_->shift_start->switched();
}

std::unique_ptr<Volume> OnlineReencryption::take_served_volume() {
  return std::move(impl_->served);
}

Result<bool> OnlineReencryption::step(Volume& served) {
  if (impl_->run().next_hotzone().length == 0) return false;
  CRYPTMAP_TRY_VOID(impl_->run().step(&served));
  return true;
}

Result<OnlineReencryption::Stopped> OnlineReencryption::stop() {
  CRYPTMAP_TRY(r, impl_->run().stop());
  return Stopped{r.finished, r.bytes};
}

bool OnlineReencryption::hotzone_fenced() const noexcept {
  return impl_->run().fenced_hotzone().length > 0;
}

std::uint64_t OnlineReencryption::done_bytes() const noexcept { return impl_->run().done_bytes(); }
std::uint64_t OnlineReencryption::total_bytes() const noexcept {
  return impl_->run().total_bytes();
}
Result<VolumeLayout> OnlineReencryption::layout() const { return impl_->run().layout_now(); }

}  // namespace cryptmap::volume
