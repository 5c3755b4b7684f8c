// zone-create: turn an image file into an emulated host-managed zoned drive (IMAGE.zones
// sidecar, volume/zone/README.md), so zoned volumes can be used and tested without zoned
// hardware. `open` detects the sidecar and serves the volume through the zoned write path.
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "volume/format/luks.h"
#include "volume/store/backing_store.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::cli {
namespace {

struct ZoneCreateArgs {
  std::string image;
  std::uint64_t zone_size = 1u << 20;
  std::uint64_t zone_count = 0;  // 0: enough zones to cover the image
  std::uint64_t conventional = 0;
  std::uint64_t capacity = 0;
  std::uint32_t logical_block = 4096;
  bool host_aware = false;
};

void say(const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); }

void run_zone_create(const ZoneCreateArgs& a, CommandContext& ctx) {
  volume::ZonedStoreOptions o;
  o.create = true;
  o.zone_size_bytes = a.zone_size;
  o.zone_count = a.zone_count;
  if (o.zone_count == 0) {
    struct stat st {};
    if (::stat(a.image.c_str(), &st) != 0 || st.st_size == 0 || a.zone_size == 0) {
      say("Give --zones for a new or empty image " + a.image + ".");
      ctx.exit_code = kExitUsage;
      return;
    }
    o.zone_count = (static_cast<std::uint64_t>(st.st_size) + a.zone_size - 1) / a.zone_size;
  }
  // Sequential zones start empty (their bytes read as zeros): a LUKS header there would be lost,
  // which is why cryptsetup wants the header in conventional zones of a zoned device.
  if (auto probe = volume::open_posix_store(a.image, volume::metadata_store_options(true))) {
    if (auto hdr = volume::load_luks_header(**probe, std::nullopt)) {
      const std::uint64_t data_off = (*hdr)->layout().data_offset_bytes;
      if (a.conventional * a.zone_size < data_off) {
        say("The LUKS header of " + a.image + " ends at byte " + std::to_string(data_off) +
            ": give at least " + std::to_string((data_off + a.zone_size - 1) / a.zone_size) +
            " --conventional-zones so it stays in conventional zones.");
        ctx.exit_code = kExitUsage;
        return;
      }
    }
  }
  o.conventional_zones = a.conventional;
  o.zone_capacity_bytes = a.capacity;
  o.logical_block_bytes = a.logical_block;
  o.sequential_type =
      a.host_aware ? volume::ZoneType::kSeqWritePreferred : volume::ZoneType::kSeqWriteRequired;
  auto store = volume::open_zoned_store(a.image, o);
  if (!store) {
    say("Cannot create the emulated zoned drive " + a.image + ": " + store.error().message());
    ctx.exit_code = store.error().code == Errc::kBusy ? kExitBusy : kExitUsage;
    return;
  }
  if (auto s = (*store)->sync(); !s) {
    say("Cannot write " + volume::zone_sidecar_path(a.image) + ": " + s.error().message());
    ctx.exit_code = kExitUsage;
    return;
  }
  std::printf("%s: %llu zones of %llu bytes (%llu conventional), sidecar %s\n", a.image.c_str(),
              static_cast<unsigned long long>(o.zone_count),
              static_cast<unsigned long long>(o.zone_size_bytes),
              static_cast<unsigned long long>(o.conventional_zones),
              volume::zone_sidecar_path(a.image).c_str());
}

}  // namespace

void add_zone_commands(CLI::App& app, CommandContext& ctx) {
  auto za = std::make_shared<ZoneCreateArgs>();
  CLI::App* c = app.add_subcommand(
      "zone-create",
      "Make IMAGE an emulated zoned drive (IMAGE.zones): the first zones conventional (keep "
      "the LUKS header there), the rest sequential-write-required (their data starts empty)");
  c->add_option("image", za->image, "Image file")->required();
  c->add_option("--zone-size", za->zone_size, "Zone size in bytes (power of two)")
      ->capture_default_str();
  c->add_option("--zones", za->zone_count, "Zone count (default: cover the image)");
  c->add_option("--conventional-zones", za->conventional, "Leading conventional zones")
      ->capture_default_str();
  c->add_option("--zone-capacity", za->capacity, "Writable bytes per sequential zone (ZNS)");
  c->add_option("--logical-block", za->logical_block, "Write unit of sequential zones (512/4096)")
      ->capture_default_str();
  c->add_flag("--host-aware", za->host_aware, "Sequential-write-preferred zones");
  c->callback([za, &ctx] { run_zone_create(*za, ctx); });
}

}  // namespace cryptmap::cli
