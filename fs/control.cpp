#include "fs/control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

namespace cryptmap::fs {
namespace {

// Serialisation runs twice over the same field list: once with a counting sink to size the
// SecretBytes, once to fill it. So the message never exists in unlocked memory.
class Sink {
 public:
  explicit Sink(std::byte* out = nullptr) : out_(out) {}
  void u8(std::uint8_t v) { raw(&v, 1); }
  void u32(std::uint32_t v) {
    std::byte b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<std::byte>(v >> (8 * i));
    raw(b, 4);
  }
  void u64(std::uint64_t v) {
    std::byte b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<std::byte>(v >> (8 * i));
    raw(b, 8);
  }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    raw(s.data(), s.size());
  }
  void bytes(std::span<const std::byte> b) {
    u32(static_cast<std::uint32_t>(b.size()));
    raw(b.data(), b.size());
  }
  std::size_t size() const { return pos_; }

 private:
  void raw(const void* p, std::size_t n) {
    if (out_ != nullptr && n != 0) std::memcpy(out_ + pos_, p, n);
    pos_ += n;
  }
  std::byte* out_;
  std::size_t pos_ = 0;
};

class Source {
 public:
  explicit Source(std::span<const std::byte> in) : in_(in) {}
  Result<std::uint8_t> u8(const char* field) {
    CRYPTMAP_TRY(p, take(1, field));
    return static_cast<std::uint8_t>(p[0]);
  }
  Result<std::uint32_t> u32(const char* field) {
    CRYPTMAP_TRY(p, take(4, field));
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
    return v;
  }
  Result<std::uint64_t> u64(const char* field) {
    CRYPTMAP_TRY(p, take(8, field));
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
    return v;
  }
  Result<bool> boolean(const char* field) {
    CRYPTMAP_TRY(v, u8(field));
    if (v > 1) return make_error(Errc::kCorrupt, field);
    return v == 1;
  }
  Result<std::string> str(const char* field) {
    CRYPTMAP_TRY(n, u32(field));
    CRYPTMAP_TRY(p, take(n, field));
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  Result<SecretBytes> secret(const char* field) {
    CRYPTMAP_TRY(n, u32(field));
    CRYPTMAP_TRY(p, take(n, field));
    return SecretBytes::copy_of(std::span<const std::byte>(p, n));
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  Result<const std::byte*> take(std::size_t n, const char* field) {
    if (n > in_.size() - pos_)
      return make_error_fmt(Errc::kCorrupt, "control message", pos_, "truncated at %s", field);
    const std::byte* p = in_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

void put_layout(Sink& s, const volume::VolumeLayout& l) {
  s.u8(static_cast<std::uint8_t>(l.type));
  s.str(l.cipher.cipher);
  s.u32(l.cipher.keycount);
  s.str(l.cipher.chain_mode);
  s.str(l.cipher.iv_mode);
  s.str(l.cipher.iv_opts);
  s.boolean(l.cipher.capi);
  s.u32(l.key_bytes);
  s.u32(l.sector_size);
  s.boolean(l.iv_large_sectors);
  s.u64(l.iv_offset);
  s.u64(l.data_offset_bytes);
  s.u64(l.size_bytes);
  s.str(l.uuid);
  s.str(l.label);
  s.boolean(l.allow_discards);
  s.u32(static_cast<std::uint32_t>(l.segments.size()));
  for (const volume::Segment& g : l.segments) {
    s.u8(static_cast<std::uint8_t>(g.kind));
    s.u64(g.offset_bytes);
    s.u64(g.length_bytes);
    s.u64(g.image_offset_bytes);
    s.u64(g.iv_offset);
    s.str(g.cipher.encryption);
    s.u32(g.cipher.sector_size);
    s.u32(g.cipher.key_offset);
    s.u32(g.cipher.key_bytes);
  }
  s.u32(static_cast<std::uint32_t>(l.cascade.size()));
  for (const auto& c : l.cascade) s.str(c);
  s.u64(l.guard_offset_bytes);
  s.u64(l.guard_size_bytes);
  s.str(l.auth_encryption);
  s.str(l.integrity);
  s.boolean(l.integrity_no_journal);
  s.boolean(l.no_read_workqueue);
  s.boolean(l.no_write_workqueue);
}

Result<volume::VolumeLayout> get_layout(Source& s) {
  volume::VolumeLayout l;
  CRYPTMAP_TRY(type, s.u8("layout.type"));
  if (type > static_cast<std::uint8_t>(volume::VolumeType::kLoopaes))
    return make_error(Errc::kCorrupt, "control message: layout.type");
  l.type = static_cast<volume::VolumeType>(type);
  CRYPTMAP_TRY(cipher, s.str("layout.cipher"));
  CRYPTMAP_TRY(keycount, s.u32("layout.keycount"));
  CRYPTMAP_TRY(chain, s.str("layout.chain_mode"));
  CRYPTMAP_TRY(iv_mode, s.str("layout.iv_mode"));
  CRYPTMAP_TRY(iv_opts, s.str("layout.iv_opts"));
  CRYPTMAP_TRY(capi, s.boolean("layout.capi"));
  l.cipher.cipher = std::move(cipher);
  l.cipher.keycount = keycount;
  l.cipher.chain_mode = std::move(chain);
  l.cipher.iv_mode = std::move(iv_mode);
  l.cipher.iv_opts = std::move(iv_opts);
  l.cipher.capi = capi;
  CRYPTMAP_TRY(key_bytes, s.u32("layout.key_bytes"));
  CRYPTMAP_TRY(sector_size, s.u32("layout.sector_size"));
  CRYPTMAP_TRY(large, s.boolean("layout.iv_large_sectors"));
  CRYPTMAP_TRY(iv_offset, s.u64("layout.iv_offset"));
  CRYPTMAP_TRY(data_offset, s.u64("layout.data_offset_bytes"));
  CRYPTMAP_TRY(size, s.u64("layout.size_bytes"));
  CRYPTMAP_TRY(uuid, s.str("layout.uuid"));
  CRYPTMAP_TRY(label, s.str("layout.label"));
  CRYPTMAP_TRY(discards, s.boolean("layout.allow_discards"));
  l.key_bytes = key_bytes;
  l.sector_size = sector_size;
  l.iv_large_sectors = large;
  l.iv_offset = iv_offset;
  l.data_offset_bytes = data_offset;
  l.size_bytes = size;
  l.uuid = std::move(uuid);
  l.label = std::move(label);
  l.allow_discards = discards;
  CRYPTMAP_TRY(nseg, s.u32("layout.segments"));
  if (nseg > kMaxSegments) return make_error(Errc::kCorrupt, "control message: layout.segments");
  l.segments.reserve(nseg);
  for (std::uint32_t i = 0; i < nseg; ++i) {
    volume::Segment g;
    CRYPTMAP_TRY(kind, s.u8("layout.segment.kind"));
    if (kind > static_cast<std::uint8_t>(volume::SegmentKind::kLinear))
      return make_error(Errc::kCorrupt, "control message: layout.segment.kind");
    g.kind = static_cast<volume::SegmentKind>(kind);
    CRYPTMAP_TRY(off, s.u64("layout.segment.offset"));
    CRYPTMAP_TRY(len, s.u64("layout.segment.length"));
    CRYPTMAP_TRY(img, s.u64("layout.segment.image_offset"));
    CRYPTMAP_TRY(ivo, s.u64("layout.segment.iv_offset"));
    g.offset_bytes = off;
    g.length_bytes = len;
    g.image_offset_bytes = img;
    g.iv_offset = ivo;
    CRYPTMAP_TRY(enc, s.str("layout.segment.encryption"));
    CRYPTMAP_TRY(seg_ss, s.u32("layout.segment.sector_size"));
    CRYPTMAP_TRY(key_off, s.u32("layout.segment.key_offset"));
    CRYPTMAP_TRY(key_len, s.u32("layout.segment.key_bytes"));
    g.cipher.encryption = std::move(enc);
    g.cipher.sector_size = seg_ss;
    g.cipher.key_offset = key_off;
    g.cipher.key_bytes = key_len;
    l.segments.push_back(std::move(g));
  }
  CRYPTMAP_TRY(cascade, s.u32("layout.cascade"));
  if (cascade > 8) return make_error(Errc::kCorrupt, "control message: layout.cascade", cascade);
  for (std::uint32_t i = 0; i < cascade; ++i) {
    CRYPTMAP_TRY(c, s.str("layout.cascade"));
    l.cascade.push_back(std::move(c));
  }
  CRYPTMAP_TRY(guard_offset, s.u64("layout.guard_offset_bytes"));
  CRYPTMAP_TRY(guard_size, s.u64("layout.guard_size_bytes"));
  l.guard_offset_bytes = guard_offset;
  l.guard_size_bytes = guard_size;
  CRYPTMAP_TRY(auth_enc, s.str("layout.auth_encryption"));
  CRYPTMAP_TRY(integrity, s.str("layout.integrity"));
  CRYPTMAP_TRY(no_journal, s.boolean("layout.integrity_no_journal"));
  l.auth_encryption = std::move(auth_enc);
  l.integrity = std::move(integrity);
  l.integrity_no_journal = no_journal;
  CRYPTMAP_TRY(no_read_wq, s.boolean("layout.no_read_workqueue"));
  CRYPTMAP_TRY(no_write_wq, s.boolean("layout.no_write_workqueue"));
  l.no_read_workqueue = no_read_wq;
  l.no_write_workqueue = no_write_wq;
  return l;
}

void put_request(Sink& s, const Request& r) {
  s.u8(kProtocolVersion);
  s.u8(static_cast<std::uint8_t>(r.verb));
  s.str(r.name);
  s.boolean(r.force);
  s.str(r.source.image);
  s.str(r.source.header);
  put_layout(s, r.layout);
  s.boolean(r.read_only);
  s.boolean(r.allow_other);
  s.bytes(r.volume_key.span());
  s.u32(r.open_flags);
  s.u64(r.cache_bytes);
  s.u64(r.new_size);
  s.u64(r.hotzone_bytes);
  s.str(r.new_header);
  const auto& i = r.shift_init;
  s.str(i.resilience);
  s.str(i.hash);
  s.str(i.pbkdf_type);
  s.str(i.pbkdf_hash);
  s.u32(i.iter_time_ms);
  s.u32(i.force_iterations);
  s.u32(i.memory_kib);
  s.u32(i.parallel);
  s.u32(static_cast<std::uint32_t>(i.key_slot));
  s.boolean(i.init_only);
}

void put_reply(Sink& s, const Reply& r) {
  s.u8(kProtocolVersion);
  s.u32(static_cast<std::uint32_t>(r.exit_code));
  s.str(r.message);
  s.u64(static_cast<std::uint64_t>(r.daemon_pid));
  s.u32(static_cast<std::uint32_t>(r.volumes.size()));
  for (const VolumeStatus& v : r.volumes) {
    s.str(v.name);
    s.str(v.source.image);
    s.str(v.source.header);
    put_layout(s, v.layout);
    s.u64(v.size_bytes);
    s.boolean(v.read_only);
    s.u32(v.open_count);
    s.u32(v.file_mode);
    s.boolean(v.suspended);
    s.str(v.fuse_transport);
    s.u32(v.open_flags);
    s.boolean(v.reencrypting);
    s.boolean(v.source.store.volatile_writes);
    s.boolean(v.source.store.flush);
    s.boolean(v.source.store.fua);
  }
  s.boolean(r.progress);
  s.u64(r.done_bytes);
  s.u64(r.total_bytes);
}

template <class T, class Put>
Result<SecretBytes> encode(const T& msg, Put put) {
  Sink count;
  put(count, msg);
  if (count.size() > kMaxFrameBytes)
    return make_error(Errc::kInvalid, "control message: too large");
  CRYPTMAP_TRY(buf, SecretBytes::allocate(count.size()));
  Sink fill(buf.data());
  put(fill, msg);
  return buf;
}

Result<void> check_version(Source& s) {
  CRYPTMAP_TRY(v, s.u8("version"));
  if (v != kProtocolVersion)
    return make_error_fmt(Errc::kUnsupported, "control message", v,
                          "protocol %u, expected %u: CLI and daemon differ; close all "
                          "volumes, then open again",
                          static_cast<unsigned>(v), static_cast<unsigned>(kProtocolVersion));
  return ok();
}

Result<void> write_all(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return make_sys_error(errno, "control socket: send");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return ok();
}

Result<void> read_all(int fd, std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return make_sys_error(errno, "control socket: receive");
    }
    if (r == 0) return make_error(Errc::kIo, "control socket: the peer closed the connection");
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return ok();
}

Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return make_error_fmt(Errc::kInvalid, "control socket path", kNoObject,
                          "'%s' is longer than %zu bytes: use a shorter --mount-dir", path.c_str(),
                          sizeof(addr.sun_path) - 1);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

std::string default_mount_dir() {
  if (geteuid() == 0) return "/run/cryptmap";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && xdg[0] == '/')
    return std::string(xdg) + "/cryptmap";
  return "/tmp/cryptmap-" + std::to_string(geteuid());
}

Result<ControlPaths> control_paths(const std::string& mount_dir) {
  if (mount_dir.empty()) return make_error(Errc::kInvalid, "--mount-dir: empty path");
  std::string abs = mount_dir;
  if (abs[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == nullptr) return make_sys_error(errno, "getcwd");
    abs = std::string(cwd) + "/" + abs;
  }
  while (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  if (abs == "/") return make_error(Errc::kInvalid, "--mount-dir: cannot be /");
  return ControlPaths{abs, abs + ".sock", abs + ".lock"};
}

Result<SecretBytes> encode_request(const Request& r) { return encode(r, put_request); }
Result<SecretBytes> encode_reply(const Reply& r) { return encode(r, put_reply); }

Result<Request> decode_request(std::span<const std::byte> body) {
  Source s(body);
  CRYPTMAP_TRY_VOID(check_version(s));
  Request r;
  CRYPTMAP_TRY(verb, s.u8("verb"));
  if (verb < 1 || verb > kLastVerb)
    return make_error(Errc::kCorrupt, "control message: verb", verb);
  r.verb = static_cast<Verb>(verb);
  CRYPTMAP_TRY(name, s.str("name"));
  CRYPTMAP_TRY(force, s.boolean("force"));
  CRYPTMAP_TRY(image, s.str("image"));
  CRYPTMAP_TRY(header, s.str("header"));
  CRYPTMAP_TRY(layout, get_layout(s));
  CRYPTMAP_TRY(ro, s.boolean("read_only"));
  CRYPTMAP_TRY(allow_other, s.boolean("allow_other"));
  CRYPTMAP_TRY(key, s.secret("volume_key"));
  CRYPTMAP_TRY(open_flags, s.u32("open_flags"));
  r.open_flags = open_flags;
  CRYPTMAP_TRY(cache_bytes, s.u64("cache_bytes"));
  r.cache_bytes = cache_bytes;
  CRYPTMAP_TRY(new_size, s.u64("new_size"));
  r.new_size = new_size;
  CRYPTMAP_TRY(hotzone, s.u64("hotzone_bytes"));
  r.hotzone_bytes = hotzone;
  CRYPTMAP_TRY(new_header, s.str("new_header"));
  r.new_header = std::move(new_header);
  auto& i = r.shift_init;
  CRYPTMAP_TRY(resilience, s.str("shift_init.resilience"));
  CRYPTMAP_TRY(hash, s.str("shift_init.hash"));
  CRYPTMAP_TRY(pbkdf_type, s.str("shift_init.pbkdf_type"));
  CRYPTMAP_TRY(pbkdf_hash, s.str("shift_init.pbkdf_hash"));
  CRYPTMAP_TRY(iter_time, s.u32("shift_init.iter_time_ms"));
  CRYPTMAP_TRY(force_iter, s.u32("shift_init.force_iterations"));
  CRYPTMAP_TRY(memory, s.u32("shift_init.memory_kib"));
  CRYPTMAP_TRY(parallel, s.u32("shift_init.parallel"));
  CRYPTMAP_TRY(key_slot, s.u32("shift_init.key_slot"));
  CRYPTMAP_TRY(init_only, s.boolean("shift_init.init_only"));
  i.init_only = init_only;
  i.resilience = std::move(resilience);
  i.hash = std::move(hash);
  i.pbkdf_type = std::move(pbkdf_type);
  i.pbkdf_hash = std::move(pbkdf_hash);
  i.iter_time_ms = iter_time;
  i.force_iterations = force_iter;
  i.memory_kib = memory;
  i.parallel = parallel;
  i.key_slot = static_cast<std::int32_t>(key_slot);
  if (!s.done()) return make_error(Errc::kCorrupt, "control message: trailing bytes");
  r.name = std::move(name);
  r.force = force;
  r.source = {std::move(image), std::move(header), {}};
  r.layout = std::move(layout);
  r.read_only = ro;
  r.allow_other = allow_other;
  r.volume_key = std::move(key);
  return r;
}

Result<Reply> decode_reply(std::span<const std::byte> body) {
  Source s(body);
  CRYPTMAP_TRY_VOID(check_version(s));
  Reply r;
  CRYPTMAP_TRY(code, s.u32("exit_code"));
  CRYPTMAP_TRY(msg, s.str("message"));
  CRYPTMAP_TRY(pid, s.u64("daemon_pid"));
  CRYPTMAP_TRY(count, s.u32("volume count"));
  r.exit_code = static_cast<int>(code);
  r.message = std::move(msg);
  r.daemon_pid = static_cast<std::int64_t>(pid);
  for (std::uint32_t i = 0; i < count; ++i) {
    VolumeStatus v;
    CRYPTMAP_TRY(name, s.str("volume.name"));
    CRYPTMAP_TRY(image, s.str("volume.image"));
    CRYPTMAP_TRY(header, s.str("volume.header"));
    CRYPTMAP_TRY(layout, get_layout(s));
    CRYPTMAP_TRY(size, s.u64("volume.size_bytes"));
    CRYPTMAP_TRY(ro, s.boolean("volume.read_only"));
    CRYPTMAP_TRY(opens, s.u32("volume.open_count"));
    CRYPTMAP_TRY(mode, s.u32("volume.file_mode"));
    CRYPTMAP_TRY(suspended, s.boolean("volume.suspended"));
    CRYPTMAP_TRY(transport, s.str("volume.fuse_transport"));
    CRYPTMAP_TRY(open_flags, s.u32("volume.open_flags"));
    CRYPTMAP_TRY(reencrypting, s.boolean("volume.reencrypting"));
    CRYPTMAP_TRY(store_volatile, s.boolean("volume.store.volatile_writes"));
    CRYPTMAP_TRY(store_flush, s.boolean("volume.store.flush"));
    CRYPTMAP_TRY(store_fua, s.boolean("volume.store.fua"));
    v.name = std::move(name);
    v.source = {std::move(image),
                std::move(header),
                {.volatile_writes = store_volatile, .flush = store_flush, .fua = store_fua}};
    v.layout = std::move(layout);
    v.size_bytes = size;
    v.read_only = ro;
    v.open_count = opens;
    v.file_mode = mode;
    v.suspended = suspended;
    v.fuse_transport = std::move(transport);
    v.open_flags = open_flags;
    v.reencrypting = reencrypting;
    r.volumes.push_back(std::move(v));
  }
  CRYPTMAP_TRY(progress, s.boolean("progress"));
  CRYPTMAP_TRY(done, s.u64("done_bytes"));
  CRYPTMAP_TRY(total, s.u64("total_bytes"));
  r.progress = progress;
  r.done_bytes = done;
  r.total_bytes = total;
  if (!s.done()) return make_error(Errc::kCorrupt, "control message: trailing bytes");
  return r;
}

Result<void> send_frame(int fd, std::span<const std::byte> body) {
  if (body.size() > kMaxFrameBytes) return make_error(Errc::kInvalid, "control message too large");
  std::byte len[4];
  for (int i = 0; i < 4; ++i) len[i] = static_cast<std::byte>(body.size() >> (8 * i));
  CRYPTMAP_TRY_VOID(write_all(fd, len, 4));
  return write_all(fd, body.data(), body.size());
}

Result<SecretBytes> recv_frame(int fd) {
  std::byte len[4];
  CRYPTMAP_TRY_VOID(read_all(fd, len, 4));
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<std::uint32_t>(len[i]) << (8 * i);
  if (n > kMaxFrameBytes) return make_error(Errc::kCorrupt, "control message: frame length", n);
  CRYPTMAP_TRY(buf, SecretBytes::allocate(n));
  CRYPTMAP_TRY_VOID(read_all(fd, buf.data(), n));
  return buf;
}

Result<UniqueFd> connect_control(const std::string& socket_path) {
  CRYPTMAP_TRY(addr, socket_address(socket_path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_sys_error(errno, "control socket: socket()");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      Error e = make_sys_error(err, "no daemon serves this mount directory");
      e.code = Errc::kNotFound;
      return e;
    }
    return make_error_fmt(Errc::kIo, "connect to the daemon", kNoObject, "%s: %s",
                          socket_path.c_str(), std::strerror(err));
  }
  return fd;
}

Result<Reply> call_daemon(int fd, const Request& req) {
  CRYPTMAP_TRY(body, encode_request(req));
  CRYPTMAP_TRY_VOID(send_frame(fd, body.span()));
  CRYPTMAP_TRY(reply, recv_frame(fd));
  return decode_reply(reply.span());
}

Result<UniqueFd> listen_control(const std::string& socket_path) {
  CRYPTMAP_TRY(addr, socket_address(socket_path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_sys_error(errno, "control socket: socket()");
  // Callers hold the mount dir's lock and found no live daemon: a socket file is stale.
  ::unlink(socket_path.c_str());
  const mode_t old = ::umask(0177);  // the socket file is created 0600
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  ::umask(old);
  if (rc != 0)
    return make_error_fmt(Errc::kIo, "bind the control socket", kNoObject, "%s: %s",
                          socket_path.c_str(), std::strerror(err));
  if (::listen(fd.get(), 16) != 0) return make_sys_error(errno, "control socket: listen()");
  return fd;
}

Result<void> check_peer(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return make_sys_error(errno, "control socket: SO_PEERCRED");
  if (cred.uid != 0 && cred.uid != geteuid())
    return make_error_fmt(Errc::kBadKey, "control socket", cred.uid,
                          "uid %u may not control this daemon", static_cast<unsigned>(cred.uid));
  return ok();
}

}  // namespace cryptmap::fs
