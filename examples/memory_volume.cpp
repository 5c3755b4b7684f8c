// memory_volume — the engine embedded in a program with no image at all: a volume over an
// in-memory store (MemBackingStore), keyed with a random AES-XTS key, written and read back.
// Shows the pieces volume/open.h assembles for an image (a layout, a sector cipher, a store,
// open_volume) and the synchronous Volume contract: every call has completed when it returns.
//
//   memory_volume            (no arguments; exit code 0 when the data read back is intact)
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/exit_code.h"
#include "base/secret.h"
#include "crypto/random.h"
#include "crypto/sector_cipher.h"
#include "volume/store/mem_backing_store.h"
#include "volume/volume.h"

namespace {

using namespace cryptmap;

int failed(const char* step, const Error& e) {
  std::fprintf(stderr, "memory_volume: %s failed: %s\n", step, e.message().c_str());
  return exit_code_for(e) == kExitOk ? kExitUsage : exit_code_for(e);
}

}  // namespace

int main() {
  // The engine warns when it cannot mark its I/O threads for a daemon under a loop device; a
  // one-off program has no such daemon, so only errors are worth showing.
  spdlog::set_level(spdlog::level::err);
  constexpr std::uint64_t kStoreBytes = 8ull << 20;  // 8 MiB image, all in memory
  constexpr std::uint64_t kDataOffset = 1ull << 20;  // where a LUKS2 header would end

  // The mapping a header would describe: cipher, sector size, where the ciphertext starts.
  volume::VolumeLayout layout;
  layout.type = volume::VolumeType::kPlain;
  auto spec = crypto::CipherSpec::parse("aes-xts-plain64");
  if (!spec) return failed("parse the cipher", spec.error());
  layout.cipher = *spec;
  layout.key_bytes = 64;  // AES-256 in XTS mode: two 256-bit keys
  layout.sector_size = 4096;
  layout.data_offset_bytes = kDataOffset;

  auto key = SecretBytes::allocate(layout.key_bytes);
  if (!key) return failed("allocate locked memory for the key", key.error());
  if (auto r = crypto::random_bytes(key->span()); !r) return failed("draw a random key", r.error());

  crypto::SectorCipherConfig cc;
  cc.spec = layout.cipher;
  cc.sector_size = layout.sector_size;
  auto cipher = crypto::make_sector_cipher(cc, key->span());
  if (!cipher) return failed("key the sector cipher", cipher.error());
  *key = SecretBytes();  // the cipher keeps its own copy

  // The store is owned by the volume; keep a pointer to look at the ciphertext afterwards.
  auto store = std::make_unique<volume::MemBackingStore>(kStoreBytes, "mem:example");
  volume::MemBackingStore* image = store.get();
  auto vol = volume::open_volume(layout, std::move(*cipher), std::move(store),
                                 volume::VolumeOptions{}, nullptr);
  if (!vol) return failed("open the volume", vol.error());
  std::printf("opened a %llu-byte volume (%s, %u-byte sectors) over an %llu-byte memory store\n",
              static_cast<unsigned long long>((*vol)->size_bytes()),
              layout.cipher.to_string().c_str(), layout.sector_size,
              static_cast<unsigned long long>(kStoreBytes));

  // An unaligned write across a sector boundary: the engine reads, modifies and writes back.
  const std::string text = "hello from an embedded cryptmap volume";
  const std::uint64_t at = 4096 - 10;
  std::vector<std::byte> in(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) in[i] = static_cast<std::byte>(text[i]);
  auto w = (*vol)->write(ByteOffset{at}, in);
  if (!w) return failed("write", w.error());
  if (auto f = (*vol)->flush(); !f) return failed("flush", f.error());
  std::printf("wrote %zu bytes at offset %llu and flushed\n", *w,
              static_cast<unsigned long long>(at));

  std::vector<std::byte> out(text.size());
  auto r = (*vol)->read(ByteOffset{at}, out);
  if (!r) return failed("read", r.error());
  if (*r != out.size() || out != in) {
    std::fprintf(stderr, "memory_volume: the bytes read back differ from those written\n");
    return kExitUsage;
  }
  std::printf("read them back: \"%.*s\"\n", static_cast<int>(out.size()),
              reinterpret_cast<const char*>(out.data()));

  // The store holds ciphertext: the plaintext must not appear where the volume put it.
  std::vector<std::byte> raw(in.size());
  if (auto s = image->read_at(ByteOffset{kDataOffset + at}, raw); !s)
    return failed("read the store", s.error());
  if (raw == in) {
    std::fprintf(stderr, "memory_volume: the store holds the plaintext\n");
    return kExitUsage;
  }
  std::printf("the store holds ciphertext at image offset %llu: OK\n",
              static_cast<unsigned long long>(kDataOffset + at));
  return kExitOk;
}
