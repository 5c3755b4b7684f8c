// NbdBackingStore — a BackingStore whose bytes live on an NBD server (nbd://host[:port]/export,
// nbd+unix:///export?socket=PATH, and every other URI form libnbd parses), through libnbd's
// asynchronous API. Only ciphertext crosses the connection: the volume encrypts above the store.
//
// Semantics (docs/network-stores.md has the whole contract):
//   - I/O: each read_at/write_at is cut into requests no larger than the server's maximum block
//     size (at most 4 MiB) spread over the store's connections and issued together (nbd_aio_*);
//     the caller waits for all of them. A batch queues every piece's requests before it waits.
//     Requests not aligned to the server's minimum block size are widened (reads) or
//     read-modify-written (writes, serialised against all other writes).
//   - connections: 4 when the server advertises multi-conn (flush effects are then visible
//     across connections, NBD protocol), else 1. One poller thread per connection drives
//     libnbd's state machine; callers never block in libnbd.
//   - sync(): NBD_CMD_FLUSH, success only when the server acknowledged it; a server without
//     flush support acknowledges writes only once stable (reported at open, sync is then a no-op).
//   - discard(): NBD_CMD_TRIM when the server can trim, else kUnsupported.
//   - failures: a request the server fails is kIo (server's errno). A server that does not answer
//     within the timeout gets its connection dropped, and the requests on it fail with kIo; a
//     server that went away fails its requests at once. Nothing waits forever.
//   - reconnection: when every connection is dead, the next request reconnects (one attempt at a
//     time, at most one a second, each bounded by min(timeout, 10 s)); the export must have the
//     same size and block size. Requests that failed are not retried (their callers saw EIO).
//     If a connection was lost while writes were not yet covered by an acknowledged flush, the
//     next sync() fails once (kIo): the server may have lost them, so no fsync reports success
//     for data the server never made stable.
//
// Thread-safety: every method may be called from any thread (the BackingStore contract).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

struct NbdStoreOptions {
  bool read_only = false;
  // Connections when the server advertises multi-conn (otherwise always 1).
  unsigned connections = 4;
  // Longest wait for the handshake and for any one request's reply.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

// True for the URI schemes libnbd connects to (nbd, nbds, nbd+unix, nbds+unix, nbd+vsock, ...).
bool is_nbd_uri(std::string_view image) noexcept;

// NbdStoreOptions with the environment's overrides: CRYPTMAP_NBD_TIMEOUT (seconds) and
// CRYPTMAP_NBD_CONNECTIONS (1..16). Values that do not parse are ignored.
NbdStoreOptions nbd_options_from_env(bool read_only);

// Connects (bounded by options.timeout) and negotiates. kUnsupported when cryptmap was built
// without libnbd; kIo naming the URI when the server cannot be reached; kReadOnly when a
// read-write store was asked of a read-only export.
Result<std::unique_ptr<BackingStore>> open_nbd_store(const std::string& uri,
                                                     const NbdStoreOptions& options);

// Which store an image argument names, and opening it: an NBD URI opens the NBD store (with
// nbd_options_from_env), an rbd: argument the RBD store (volume/store/rbd_backing_store.h),
// anything else is a path for open_posix_store. Every place that takes an image argument opens
// it through this. is_store_uri: the argument names a network store, not a path.
bool is_store_uri(std::string_view image) noexcept;
Result<std::unique_ptr<BackingStore>> open_image_store(const std::string& image,
                                                       const PosixStoreOptions& options);

}  // namespace cryptmap::volume
