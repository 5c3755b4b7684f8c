// RbdBackingStore — a BackingStore over a Ceph RBD image, through librbd (Debian: librbd-dev).
// The image is opened raw: cryptmap does LUKS itself, so an image formatted with
// `rbd encryption format IMAGE luks1|luks2 PASSFILE` opens as any LUKS image would.
//
// Image argument: rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=NAME] (QEMU's spelling). The cluster is
// found through conf=, else $CEPH_CONF, else /etc/ceph/ceph.conf; the client id through id=,
// else $CRYPTMAP_CEPH_ID, else librados's default (admin). The CLI's `--ceph-conf` and
// `--ceph-id` set those two variables. A snapshot is always read-only.
//
// Exclusive lock: a read-write open takes the image's exclusive lock (rbd_lock_acquire) and keeps
// it until the store is closed, refusing to hand it to any other client, so nothing else writes
// the image underneath the volume. While another client holds it the open fails with kBusy
// naming the image and the holder (after trying for `lock_wait`, when set). Images without the
// exclusive-lock feature are opened with a warning (there is no lock to take).
//
// Semantics: read_at/write_at/discard are one rbd_aio_* request each (a batch: one per piece, all
// queued before the first is waited for), sync is rbd_aio_flush; a durable write (write_fua) is
// one write flagged LIBRADOS_OP_FLAG_FADVISE_FUA where the image's librbd cache completes such a
// write only once the OSDs committed it (cache off, write-around, write-through), else a write and
// rbd_aio_flush (write-back cache, persistent write-log cache; docs/network-stores.md §6.3);
// completions arrive on librbd's threads and wake the caller, who waits on a per-call
// completion. librados's own timeouts (rados_osd_op_timeout, rados_mon_op_timeout,
// client_mount_timeout) are set to NbdStoreOptions-like `timeout`, so an unreachable cluster
// fails requests with an error instead of hanging. docs/network-stores.md §6.
//
// Thread-safety: every method may be called from any thread (the BackingStore contract).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

struct RbdStoreOptions {
  bool read_only = false;
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  // How long a read-write open keeps trying for the image's exclusive lock while another client
  // holds it (one that died keeps it until the cluster expires its watch: 30 s by default);
  // 0: fail at once.
  std::chrono::milliseconds lock_wait{0};
};

// True for "rbd:..." image arguments.
bool is_rbd_uri(std::string_view image) noexcept;

// An rbd: argument taken apart (pure; fuzzed by tests/fuzz: store_uri). kInvalid naming the
// expected form for anything else: no pool or image, an unknown option, a missing "rbd:".
struct RbdSpec {
  std::string pool, image, snap, conf, id;
};
Result<RbdSpec> parse_rbd_spec(const std::string& spec);

// The image argument with this process's client settings written into it, for a process whose
// environment may differ (the daemon serving an `open`): an rbd: argument without conf= gets
// conf=$CEPH_CONF (made absolute), one without id= gets id=$CRYPTMAP_CEPH_ID, each when set.
// Any other argument is returned unchanged.
std::string pin_rbd_client(const std::string& image);

// RbdStoreOptions with CRYPTMAP_RBD_TIMEOUT and CRYPTMAP_RBD_LOCK_WAIT (seconds) from the
// environment.
RbdStoreOptions rbd_options_from_env(bool read_only);

// Connects to the cluster and opens the image (read-only for a snapshot or when asked).
// kUnsupported when cryptmap was built without librbd; kInvalid for a malformed argument;
// kNotFound for a missing pool/image/snapshot; kIo naming the image for anything else.
Result<std::unique_ptr<BackingStore>> open_rbd_store(const std::string& spec,
                                                     const RbdStoreOptions& options);

}  // namespace cryptmap::volume
