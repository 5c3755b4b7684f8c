// zone_table_text(): a zoned volume's zone layout as text (volume/volume.h).
#include <algorithm>
#include <cstdio>
#include <string>

#include "volume/volume.h"
#include "volume/zone/zone_map.h"

namespace cryptmap::volume {

std::string zone_table_text(const Volume& vol) {
  const ZoneMap* map = vol.zones();
  if (map == nullptr) return {};
  const std::uint64_t base = vol.layout().data_offset_bytes;
  const std::uint64_t end = base + vol.size_bytes();
  std::string rows;
  std::uint64_t count = 0;
  for (std::uint64_t i = 0; i < map->zone_count(); ++i) {
    const ZoneInfo z = map->zone(i);
    if (z.end().value <= base || z.start.value >= end) continue;
    const std::uint64_t lo = std::max(z.start.value, base);
    const std::uint64_t hi = std::min(z.end().value, end);
    const std::uint64_t cap_end = std::min(z.capacity_end().value, hi);
    const std::uint64_t wp = std::clamp(z.wp.value, lo, hi);
    char line[192];
    std::snprintf(
        line, sizeof(line), "%llu %llu %llu %llu %llu %s %s\n", static_cast<unsigned long long>(i),
        static_cast<unsigned long long>(lo - base), static_cast<unsigned long long>(hi - lo),
        static_cast<unsigned long long>(cap_end > lo ? cap_end - lo : 0),
        static_cast<unsigned long long>(wp - base), std::string(zone_type_name(z.type)).c_str(),
        std::string(zone_cond_name(z.cond)).c_str());
    rows += line;
    ++count;
  }
  return "zone_size " + std::to_string(map->zone_size_bytes()) + " zones " + std::to_string(count) +
         "\n" + rows;
}

}  // namespace cryptmap::volume
