// The daemon's control channel: where it lives, and the messages the CLI and the daemon
// exchange over it.
//
// Transport: a Unix stream socket next to the mount directory (<mount-dir>.sock, mode 0600;
// the daemon also checks SO_PEERCRED: same uid or root). One request and one reply per
// connection. Framing: u32 little-endian body length (at most kMaxFrameBytes), then the body.
// Every frame buffer is a SecretBytes (an add request carries the volume key), so it is locked,
// kept out of core dumps and wiped when freed. Bodies are a version byte, a verb, then fields in
// a fixed order: integers little-endian, strings and byte strings as u32 length + bytes.
// Decoding checks every length against the frame and fails with kCorrupt naming the field.
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/secret.h"
#include "base/unique_fd.h"
#include "fs/volume_server.h"
#include "volume/online_reencrypt.h"
#include "volume/volume_layout.h"

namespace cryptmap::fs {

inline constexpr std::uint32_t kMaxFrameBytes = 1u << 20;
// 2: allow_other, file_mode; 3: suspend, layout.segments, layout.cascade, guard;
// 4: layout.auth_encryption, layout.integrity, layout.integrity_no_journal; 5: open_flags,
// cache_bytes, fuse_transport; 6: resize (new_size), refresh, volume.open_flags in status,
// layout.no_read_workqueue, layout.no_write_workqueue; 7: per-segment encryption, sector_size,
// key_offset, key_bytes (a LUKS2 image in reencryption), reencryption in status; 8: reencrypt
// (hotzone_bytes; progress replies: progress, done_bytes, total_bytes); 9: volume.reencrypting
// in status (an online reencryption runs on the daemon's thread); 10: reencrypt new_header and
// shift_init (the start of a datashift decryption of a served image); 11: volume.store (the
// image store's durability semantics) in status. A CLI and a
// daemon of different versions refuse each other's messages with what to do (check_version in
// control.cpp).
inline constexpr std::uint8_t kProtocolVersion = 11;
inline constexpr std::uint32_t kMaxSegments = 4096;  // layout.segments on the wire

struct ControlPaths {
  std::string mount_dir;  // absolute
  std::string socket;     // <mount-dir>.sock
  std::string lock;       // <mount-dir>.lock: serialises "is a daemon running? else start one"
};
// /run/cryptmap as root, $XDG_RUNTIME_DIR/cryptmap otherwise (/tmp/cryptmap-<uid> without it).
std::string default_mount_dir();
// Makes `mount_dir` absolute (relative to the cwd) and derives the other two paths.
Result<ControlPaths> control_paths(const std::string& mount_dir);

// kSuspend (luksSuspend): hold the volume's I/O and wipe its key; kResume (luksResume): serve it
// again with the volume key the CLI unlocked (volume_key; the daemon reuses the add's layout).
// kResize: change the volume's size to new_size (0: all the image holds now). kRefresh: serve
// the volume again with the flags of layout.allow_discards and open_flags, assembled with the
// volume key the CLI unlocked (cryptsetup's refresh re-activates with the key). kReencrypt:
// run the reencryption of the served LUKS2 volume (its header already in reencryption) in the
// daemon, with the passphrase in volume_key (both keys are unlocked there) and hotzone_bytes;
// the daemon sends a progress reply after every hotzone, then the final one, and stops at a
// hotzone boundary when the CLI shuts its side of the connection (SIGINT) or goes away. The run
// has a thread of its own; other requests are served meanwhile (status shows the run). With
// new_header it first starts cryptsetup 2.6's datashift decryption of the volume, served with
// its header inside the image: new_header (absolute) holds the header the CLI exported; the
// daemon moves the data's first part and commits the header in reencryption there while the
// file's I/O is held, and serves the volume through it from then on (docs/reencrypt.md §10).
enum class Verb : std::uint8_t {
  kAdd = 1,
  kRemove = 2,
  kStatus = 3,
  kSuspend = 4,
  kResume = 5,
  kResize = 6,
  kRefresh = 7,
  kReencrypt = 8,
};
inline constexpr std::uint8_t kLastVerb = 8;

struct Request {
  Verb verb = Verb::kStatus;
  std::string name;              // every verb but kStatus (there: empty = all)
  bool force = false;            // kRemove
  VolumeSource source;           // kAdd
  volume::VolumeLayout layout;   // kAdd; kRefresh: allow_discards
  bool read_only = false;        // kAdd
  bool allow_other = false;      // kAdd: mount with allow_other (first volume), file mode 0660
  SecretBytes volume_key;        // kAdd, kResume, kRefresh; kReencrypt: the passphrase
  std::uint32_t open_flags = 0;  // kAdd, kRefresh: OpenFlag bits
  std::uint64_t cache_bytes = volume::VolumeOptions{}.cache_bytes;  // kAdd: --cache-size
  std::uint64_t new_size = 0;       // kResize: bytes, 0 = all the image holds after the data offset
  std::uint64_t hotzone_bytes = 0;  // kReencrypt: --hotzone-size, 0 = the resilience's default
  std::string new_header;           // kReencrypt: NEW-FILE of a datashift decryption to start
  volume::OnlineReencryption::DecryptShiftInit shift_init;  // kReencrypt with new_header
};

// kAdd options beyond the layout (cryptsetup --perf-* flags, debug switches).
enum OpenFlag : std::uint32_t {
  kOpenNoReadWorkqueue = 1u << 0,      // --perf-no_read_workqueue
  kOpenNoWriteWorkqueue = 1u << 1,     // --perf-no_write_workqueue
  kOpenUnorderedZoneWrites = 1u << 2,  // hidden debug: sequential-zone writes not ordered
  kOpenSameCpuCrypt = 1u << 3,         // --perf-same_cpu_crypt: recorded for status only
  kOpenSubmitFromCryptCpus = 1u << 4,  // --perf-submit_from_crypt_cpus: recorded for status only
};

struct Reply {
  int exit_code = 0;    // base/exit_code.h ExitCode
  std::string message;  // for the user when exit_code != 0
  std::int64_t daemon_pid = 0;
  std::vector<VolumeStatus> volumes;  // kStatus
  // kReencrypt: true for the replies sent after each hotzone (more follow); the final reply
  // has it false. done/total: bytes under the new key, bytes of data.
  bool progress = false;
  std::uint64_t done_bytes = 0, total_bytes = 0;
};

Result<SecretBytes> encode_request(const Request& r);
Result<Request> decode_request(std::span<const std::byte> body);
Result<SecretBytes> encode_reply(const Reply& r);
Result<Reply> decode_reply(std::span<const std::byte> body);

// One frame on a connected stream socket. recv_frame fails with kCorrupt past kMaxFrameBytes,
// kIo on a short read or a timeout (SO_RCVTIMEO).
Result<void> send_frame(int fd, std::span<const std::byte> body);
Result<SecretBytes> recv_frame(int fd);

// Client: connects to a running daemon. kNotFound when no daemon listens there (no socket, or
// a stale one left by a killed daemon).
Result<UniqueFd> connect_control(const std::string& socket_path);
// Sends `req` and waits for the reply.
Result<Reply> call_daemon(int fd, const Request& req);

// Server: binds and listens (mode 0600), replacing a stale socket file.
Result<UniqueFd> listen_control(const std::string& socket_path);
// SO_PEERCRED: the peer runs as our uid, or as root.
Result<void> check_peer(int fd);

}  // namespace cryptmap::fs
