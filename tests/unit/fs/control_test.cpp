// The control protocol: round trips, hostile bodies (every truncation, bad version/verb/bool,
// trailing bytes, oversized frames) and the socket helpers (framing over a socketpair,
// listen/connect, stale socket, peer check).
#include "fs/control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <gtest/gtest.h>

namespace cryptmap::fs {
namespace {

Request sample_add() {
  Request r;
  r.verb = Verb::kAdd;
  r.name = "data";
  r.source = {"/tmp/disk.img", "/tmp/disk.hdr", {}};
  r.layout.type = volume::VolumeType::kLuks1;
  r.layout.cipher.cipher = "aes";
  r.layout.cipher.chain_mode = "cbc";
  r.layout.cipher.iv_mode = "essiv";
  r.layout.cipher.iv_opts = "sha256";
  r.layout.cipher.keycount = 1;
  r.layout.key_bytes = 32;
  r.layout.sector_size = 4096;
  r.layout.iv_large_sectors = true;
  r.layout.iv_offset = 1ull << 40;
  r.layout.data_offset_bytes = 16ull << 20;
  r.layout.size_bytes = 123456789ull * 512;
  r.layout.uuid = "0b8e-uuid";
  r.layout.label = "lbl";
  r.layout.allow_discards = true;
  r.layout.auth_encryption = "aes-gcm-random";
  r.layout.integrity = "aead";
  r.layout.integrity_no_journal = true;
  r.layout.no_read_workqueue = true;
  r.layout.no_write_workqueue = false;
  // Two crypt segments with ciphers, sector sizes and key slices of their own (an image in
  // reencryption, docs/reencrypt.md §9), and a zero range.
  r.layout.segments = {
      {volume::SegmentKind::kCrypt, 0, 1 << 20, 16 << 20, 8, {"aes-cbc-essiv:sha256", 512, 16, 16}},
      {volume::SegmentKind::kCrypt,
       1 << 20,
       2 << 20,
       17 << 20,
       2056,
       {"aes-xts-plain64", 4096, 0, 16}},
      {volume::SegmentKind::kZero, 3 << 20, 4096, 0, 0, {}}};
  r.read_only = true;
  r.allow_other = true;
  r.volume_key = *SecretBytes::copy_of(std::string_view("0123456789abcdef0123456789abcdef"));
  r.open_flags = kOpenNoWriteWorkqueue | kOpenUnorderedZoneWrites;
  r.cache_bytes = (5ull << 30) + 4096;  // above 32 bits
  return r;
}

TEST(ControlProtocol, AddRequestRoundTripsEveryField) {
  const Request in = sample_add();
  auto body = encode_request(in);
  ASSERT_TRUE(body.has_value());
  auto out = decode_request(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->verb, Verb::kAdd);
  EXPECT_EQ(out->name, "data");
  EXPECT_EQ(out->source.image, "/tmp/disk.img");
  EXPECT_EQ(out->source.header, "/tmp/disk.hdr");
  EXPECT_EQ(out->layout.type, volume::VolumeType::kLuks1);
  EXPECT_EQ(out->layout.cipher.chain_mode, "cbc");
  EXPECT_EQ(out->layout.cipher.iv_mode, "essiv");
  EXPECT_EQ(out->layout.cipher.iv_opts, "sha256");
  EXPECT_EQ(out->layout.key_bytes, 32u);
  EXPECT_EQ(out->layout.sector_size, 4096u);
  EXPECT_TRUE(out->layout.iv_large_sectors);
  EXPECT_EQ(out->layout.iv_offset, 1ull << 40);
  EXPECT_EQ(out->layout.data_offset_bytes, 16ull << 20);
  EXPECT_EQ(out->layout.size_bytes, 123456789ull * 512);
  EXPECT_EQ(out->layout.uuid, "0b8e-uuid");
  EXPECT_EQ(out->layout.label, "lbl");
  EXPECT_TRUE(out->layout.allow_discards);
  EXPECT_EQ(out->layout.auth_encryption, "aes-gcm-random");
  EXPECT_EQ(out->layout.integrity, "aead");
  EXPECT_TRUE(out->layout.integrity_no_journal);
  EXPECT_TRUE(out->layout.no_read_workqueue);
  EXPECT_FALSE(out->layout.no_write_workqueue);
  EXPECT_EQ(out->layout.segments, in.layout.segments);
  EXPECT_EQ(out->layout.segments[0].cipher.encryption, "aes-cbc-essiv:sha256");
  EXPECT_EQ(out->layout.segments[1].cipher.key_bytes, 16u);
  EXPECT_TRUE(out->read_only);
  EXPECT_TRUE(out->allow_other);
  EXPECT_EQ(out->volume_key.as_chars(), in.volume_key.as_chars());
  EXPECT_EQ(out->open_flags, kOpenNoWriteWorkqueue | kOpenUnorderedZoneWrites);
  EXPECT_EQ(out->cache_bytes, (5ull << 30) + 4096);
  EXPECT_EQ(out->new_size, 0u);
}

TEST(ControlProtocol, ResizeAndRefreshRequestsRoundTrip) {
  Request rz;
  rz.verb = Verb::kResize;
  rz.name = "data";
  rz.new_size = (3ull << 40) + 4096;  // above 32 bits
  auto body = encode_request(rz);
  ASSERT_TRUE(body.has_value());
  auto out = decode_request(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->verb, Verb::kResize);
  EXPECT_EQ(out->name, "data");
  EXPECT_EQ(out->new_size, (3ull << 40) + 4096);
  Request rf = sample_add();
  rf.verb = Verb::kRefresh;
  rf.open_flags = kOpenNoReadWorkqueue;
  body = encode_request(rf);
  ASSERT_TRUE(body.has_value());
  out = decode_request(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->verb, Verb::kRefresh);
  EXPECT_EQ(out->open_flags, kOpenNoReadWorkqueue);
  EXPECT_TRUE(out->layout.allow_discards);
  EXPECT_EQ(out->volume_key.as_chars(), rf.volume_key.as_chars());
}

TEST(ControlProtocol, ReencryptRequestsAndProgressRepliesRoundTrip) {
  Request rq;
  rq.verb = Verb::kReencrypt;
  rq.name = "data";
  rq.hotzone_bytes = (5ull << 32) + 4096;  // above 32 bits
  rq.volume_key = *SecretBytes::copy_of(std::string_view("a passphrase"));
  auto body = encode_request(rq);
  ASSERT_TRUE(body.has_value());
  auto out = decode_request(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->verb, Verb::kReencrypt);
  EXPECT_EQ(out->hotzone_bytes, (5ull << 32) + 4096);
  EXPECT_EQ(out->volume_key.as_chars(), "a passphrase");
  EXPECT_TRUE(out->new_header.empty());
  // The start of a datashift decryption: NEW-FILE and the init's options.
  rq.new_header = "/tmp/new.hdr";
  rq.shift_init.resilience = "journal";
  rq.shift_init.hash = "sha512";
  rq.shift_init.pbkdf_type = "pbkdf2";
  rq.shift_init.pbkdf_hash = "sha1";
  rq.shift_init.iter_time_ms = 17;
  rq.shift_init.force_iterations = 1000;
  rq.shift_init.memory_kib = 32;
  rq.shift_init.parallel = 3;
  rq.shift_init.key_slot = -1;
  rq.shift_init.init_only = true;
  body = encode_request(rq);
  ASSERT_TRUE(body.has_value());
  out = decode_request(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->new_header, "/tmp/new.hdr");
  EXPECT_EQ(out->shift_init.resilience, "journal");
  EXPECT_EQ(out->shift_init.hash, "sha512");
  EXPECT_EQ(out->shift_init.pbkdf_type, "pbkdf2");
  EXPECT_EQ(out->shift_init.pbkdf_hash, "sha1");
  EXPECT_EQ(out->shift_init.iter_time_ms, 17u);
  EXPECT_EQ(out->shift_init.force_iterations, 1000u);
  EXPECT_EQ(out->shift_init.memory_kib, 32u);
  EXPECT_EQ(out->shift_init.parallel, 3u);
  EXPECT_EQ(out->shift_init.key_slot, -1);
  EXPECT_TRUE(out->shift_init.init_only);
  rq.shift_init.key_slot = 5;
  body = encode_request(rq);
  ASSERT_TRUE(body.has_value());
  out = decode_request(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->shift_init.key_slot, 5);
  Reply p;
  p.progress = true;
  p.done_bytes = 3ull << 33;
  p.total_bytes = 1ull << 40;
  auto rb = encode_reply(p);
  ASSERT_TRUE(rb.has_value());
  auto back = decode_reply(rb->span());
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_TRUE(back->progress);
  EXPECT_EQ(back->done_bytes, 3ull << 33);
  EXPECT_EQ(back->total_bytes, 1ull << 40);
}

// A CLI of another protocol version (an old client, or a daemon left running across an
// upgrade) gets a message that says what to do, not a garbled decode.
TEST(ControlProtocol, AnotherVersionIsRefusedWithWhatToDo) {
  auto body = encode_request(sample_add());
  ASSERT_TRUE(body.has_value());
  std::vector<std::byte> b(body->span().begin(), body->span().end());
  b[0] = static_cast<std::byte>(kProtocolVersion - 1);
  auto r = decode_request(b);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
  // The detail holds 95 characters: the advice must fit in it whole.
  EXPECT_NE(r.error().message().find("close all volumes, then open again"), std::string::npos)
      << r.error().message();
}

TEST(ControlProtocol, ReplyRoundTripsStatusEntries) {
  Reply in;
  in.exit_code = 5;
  in.message = "Device x already exists.";
  in.daemon_pid = 4242;
  for (int i = 0; i < 3; ++i) {
    VolumeStatus v;
    v.name = "v" + std::to_string(i);
    v.source.image = "/img" + std::to_string(i);
    v.layout.cipher.cipher = "serpent";
    v.size_bytes = 1000u * (i + 1);
    v.read_only = i == 1;
    v.open_count = static_cast<std::uint32_t>(i);
    v.file_mode = i == 2 ? 0660 : 0600;
    v.suspended = i == 0;
    v.reencrypting = i == 2;
    v.fuse_transport = i == 1 ? "uring" : "dev";
    v.open_flags = i == 2 ? kOpenNoReadWorkqueue | kOpenNoWriteWorkqueue : 0;
    v.source.store = {.volatile_writes = i != 0, .flush = i != 1, .fua = i == 2};
    in.volumes.push_back(v);
  }
  auto body = encode_reply(in);
  ASSERT_TRUE(body.has_value());
  auto out = decode_reply(body->span());
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->exit_code, 5);
  EXPECT_EQ(out->message, in.message);
  EXPECT_EQ(out->daemon_pid, 4242);
  ASSERT_EQ(out->volumes.size(), 3u);
  EXPECT_EQ(out->volumes[2].name, "v2");
  EXPECT_EQ(out->volumes[2].size_bytes, 3000u);
  EXPECT_TRUE(out->volumes[1].read_only);
  EXPECT_EQ(out->volumes[2].open_count, 2u);
  EXPECT_EQ(out->volumes[2].file_mode, 0660u);
  EXPECT_EQ(out->volumes[1].file_mode, 0600u);
  EXPECT_EQ(out->volumes[0].layout.cipher.cipher, "serpent");
  EXPECT_TRUE(out->volumes[0].suspended);
  EXPECT_FALSE(out->volumes[1].suspended);
  EXPECT_TRUE(out->volumes[2].reencrypting);
  EXPECT_FALSE(out->volumes[0].reencrypting);
  EXPECT_EQ(out->volumes[1].fuse_transport, "uring");
  EXPECT_EQ(out->volumes[2].fuse_transport, "dev");
  EXPECT_EQ(out->volumes[2].open_flags, kOpenNoReadWorkqueue | kOpenNoWriteWorkqueue);
  EXPECT_EQ(out->volumes[1].open_flags, 0u);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(out->volumes[i].source.store, in.volumes[i].source.store) << "volume " << i;
}

TEST(ControlProtocol, EveryTruncationIsRejectedAsCorrupt) {
  auto body = encode_request(sample_add());
  ASSERT_TRUE(body.has_value());
  for (std::size_t n = 0; n < body->size(); ++n) {
    auto r = decode_request(body->span().first(n));
    ASSERT_FALSE(r.has_value()) << "accepted a body truncated to " << n << " bytes";
    EXPECT_TRUE(r.error().code == Errc::kCorrupt || r.error().code == Errc::kUnsupported) << n;
  }
  Reply rep;
  rep.volumes.resize(2);
  auto rb = encode_reply(rep);
  ASSERT_TRUE(rb.has_value());
  for (std::size_t n = 0; n < rb->size(); ++n)
    EXPECT_FALSE(decode_reply(rb->span().first(n)).has_value()) << n;
}

TEST(ControlProtocol, HostileFieldsAreRejected) {
  auto body = encode_request(sample_add());
  ASSERT_TRUE(body.has_value());
  std::vector<std::byte> b(body->span().begin(), body->span().end());
  auto decode = [](std::vector<std::byte> v) { return decode_request(v).has_value(); };
  {
    auto v = b;
    v[0] = std::byte{99};  // version
    auto r = decode_request(v);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::kUnsupported);
  }
  {
    auto v = b;
    v[1] = std::byte{0};  // verb
    EXPECT_FALSE(decode(v));
    v[1] = std::byte{kLastVerb + 1};
    EXPECT_FALSE(decode(v));
    v[1] = std::byte{kLastVerb};  // kReencrypt
    EXPECT_TRUE(decode(v));
  }
  {
    auto v = b;
    v[2] = std::byte{0xff};  // name length far beyond the body
    v[3] = std::byte{0xff};
    EXPECT_FALSE(decode(v));
  }
  {
    auto v = b;
    v.push_back(std::byte{0});  // trailing garbage
    EXPECT_FALSE(decode(v));
  }
  {
    auto v = b;
    v[2 + 4 + 4] = std::byte{2};  // force: a bool that is neither 0 nor 1
    EXPECT_FALSE(decode(v));
  }
}

TEST(ControlSocket, FramesCrossASocketPairIntact) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::vector<std::byte> big(300000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  std::thread t([&] { ASSERT_TRUE(send_frame(a.get(), big).has_value()); });
  auto got = recv_frame(b.get());
  t.join();
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), big.size());
  EXPECT_EQ(0, std::memcmp(got->data(), big.data(), big.size()));
}

TEST(ControlSocket, OversizedOrShortFramesFail) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  const unsigned char huge[4] = {0xff, 0xff, 0xff, 0x7f};
  ASSERT_EQ(write(a.get(), huge, 4), 4);
  auto r = recv_frame(b.get());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kCorrupt);
  const unsigned char len10[4] = {10, 0, 0, 0};
  ASSERT_EQ(write(a.get(), len10, 4), 4);
  ASSERT_EQ(write(a.get(), "abc", 3), 3);
  a.reset();  // peer goes away mid-frame
  EXPECT_FALSE(recv_frame(b.get()).has_value());
}

TEST(ControlSocket, ListenConnectCallAndStaleSocket) {
  char tmpl[] = "/tmp/cryptmap-ctl-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto paths = control_paths(dir + "/mnt");
  ASSERT_TRUE(paths.has_value());
  EXPECT_EQ(paths->socket, dir + "/mnt.sock");
  // No daemon: kNotFound (what makes `open` start one).
  auto none = connect_control(paths->socket);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, Errc::kNotFound);
  {
    auto l = listen_control(paths->socket);
    ASSERT_TRUE(l.has_value()) << l.error().message();
    struct stat st {};
    ASSERT_EQ(stat(paths->socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    std::thread server([&] {
      UniqueFd c(accept(l->get(), nullptr, nullptr));
      ASSERT_TRUE(check_peer(c.get()).has_value());
      auto f = recv_frame(c.get());
      ASSERT_TRUE(f.has_value());
      auto req = decode_request(f->span());
      ASSERT_TRUE(req.has_value());
      Reply rep;
      rep.message = "hello " + req->name;
      auto body = encode_reply(rep);
      ASSERT_TRUE(send_frame(c.get(), body->span()).has_value());
    });
    auto c = connect_control(paths->socket);
    ASSERT_TRUE(c.has_value());
    Request q;
    q.name = "there";
    auto rep = call_daemon(c->get(), q);
    server.join();
    ASSERT_TRUE(rep.has_value()) << rep.error().message();
    EXPECT_EQ(rep->message, "hello there");
  }
  // The listener is closed but the socket file remains (a killed daemon): still kNotFound,
  // and a new daemon can bind over it.
  auto stale = connect_control(paths->socket);
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code, Errc::kNotFound);
  EXPECT_TRUE(listen_control(paths->socket).has_value());
  unlink(paths->socket.c_str());
  rmdir(dir.c_str());
}

TEST(ControlPaths, RelativeMountDirsBecomeAbsoluteAndRootIsRefused) {
  auto p = control_paths("rel/dir/");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->mount_dir[0], '/');
  EXPECT_EQ(p->mount_dir.substr(p->mount_dir.size() - 8), "/rel/dir");
  EXPECT_EQ(p->lock, p->mount_dir + ".lock");
  EXPECT_FALSE(control_paths("/").has_value());
  EXPECT_FALSE(control_paths("").has_value());
  std::string long_dir = "/tmp/" + std::string(200, 'x');
  auto lp = control_paths(long_dir);
  ASSERT_TRUE(lp.has_value());
  EXPECT_FALSE(listen_control(lp->socket).has_value());  // sun_path limit, clear error
}

}  // namespace
}  // namespace cryptmap::fs
