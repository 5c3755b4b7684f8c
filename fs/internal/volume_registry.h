// VolumeRegistry — the volumes a VolumeServer serves, by name and by inode, and the
// reference count that keeps an entry alive while a FUSE request uses it. fs-internal.
//
// Inodes are never reused, so a stale inode can never alias a newer volume. A request pins an
// entry with a Ref (acquire); remove and stop take the entry out of the maps first (new requests
// get ENOENT/EIO) and then wait_drained() until every Ref on it is gone, before flushing and
// destroying the volume.
//
// Holding (luksSuspend, resize, refresh): while an entry is held it keeps its name and inode,
// but the I/O operations, which pin it through acquire_active(), wait at the registry's gate,
// holding no Ref, until it is released or removed. A suspended entry is held and has no volume
// (null); resize and refresh hold an entry only while they change its volume.
//
// Thread-safety: every method may be called from any thread. Lock order: the registry's own
// lock (shared for lookups) is taken after the server's admin lock and never held across
// volume I/O or a callback that could block; the drain lock is a leaf.
// Ownership: the registry owns the entries; a Ref borrows one.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "fs/volume_server.h"
#include "volume/volume.h"

namespace cryptmap::fs::internal {

struct Entry {
  std::string name;
  fuse_ino_t ino = 0;
  // Null while suspended. Replaced or resized only while the entry is held and no Ref from
  // acquire_active() exists (held, then drained; released after the change).
  std::unique_ptr<volume::Volume> volume;
  // What status shows, also while suspended; written under the registry's lock (set_layout).
  volume::VolumeLayout layout;
  bool zoned = false;                        // has a zone table (the user.cryptmap.zones xattr)
  std::atomic<bool> held{false};             // the gate holds its I/O (set_held)
  std::atomic<bool> suspended{false};        // luksSuspend: held, no volume, no key (status)
  VolumeSource source;                       // written under the registry's lock (set_source)
  std::atomic<std::uint64_t> size_bytes{0};  // the file's size; changes only while held
  bool read_only = false;
  std::uint32_t file_mode = 0600;
  struct timespec added {};
  std::atomic<std::uint32_t> open_count{0};
  std::atomic<std::uint64_t> inflight{0};  // admitted requests not yet completed
};

class VolumeRegistry {
 public:
  // An admitted request on one entry. While any Ref exists the entry is not destroyed
  // (remove and stop wait for inflight == 0). Move-only; released on destruction.
  class Ref {
   public:
    Ref() = default;
    Ref(VolumeRegistry* r, Entry* e) noexcept : r_(r), e_(e) {}
    Ref(Ref&& o) noexcept : r_(o.r_), e_(std::exchange(o.e_, nullptr)) {}
    Ref& operator=(Ref&& o) noexcept {
      if (this != &o) {
        release();
        r_ = o.r_;
        e_ = std::exchange(o.e_, nullptr);
      }
      return *this;
    }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    ~Ref() { release(); }
    Entry* operator->() const noexcept { return e_; }
    Entry& entry() const noexcept { return *e_; }
    explicit operator bool() const noexcept { return e_ != nullptr; }

   private:
    void release() noexcept;
    VolumeRegistry* r_ = nullptr;
    Entry* e_ = nullptr;
  };

  // Pins the entry of `ino` (and counts an open file handle when `for_open`); empty when there
  // is none (any more).
  Ref acquire(fuse_ino_t ino, bool for_open = false) EXCLUDES(mu_);
  // For the operations that use the volume: like acquire(), but while the entry is held
  // waits (holding no Ref) until it is released (then pins it) or removed (then empty).
  Ref acquire_active(fuse_ino_t ino) EXCLUDES(mu_, gate_mu_);
  // Holds `e`'s I/O at the gate (suspend, resize, refresh) or releases it and wakes the
  // requests held there.
  void set_held(Entry& e, bool held) EXCLUDES(mu_, gate_mu_);
  // Replaces what status shows of `e` (refresh changes its flags).
  void set_layout(Entry& e, volume::VolumeLayout layout) EXCLUDES(mu_);
  // Replaces where status says `e` comes from (an online datashift decryption moved its header).
  void set_source(Entry& e, VolumeSource source) EXCLUDES(mu_);
  // Shutdown: requests held at the gate, and any that arrive later, get an empty Ref (EIO).
  void fail_held() EXCLUDES(gate_mu_);
  // Waits until no Ref on `e` is left: `e` is out of the maps, or held (then only
  // the Refs of operations that do not touch the volume come and go meanwhile).
  void wait_drained(Entry& e) EXCLUDES(drain_mu_);

  // Assigns the next inode and publishes `e`. kBusy "Device NAME already exists." on a
  // duplicate name.
  Result<void> insert(std::unique_ptr<Entry> e) EXCLUDES(mu_);
  // Takes `name` out of the maps. kNotFound when absent; kBusy while open unless `force`.
  Result<std::unique_ptr<Entry>> take(const std::string& name, bool force) EXCLUDES(mu_);
  // Takes every entry out (stop).
  std::map<fuse_ino_t, std::unique_ptr<Entry>> take_all() EXCLUDES(mu_);

  // Every entry right now (for flushing; the pointers stay valid while the caller holds the
  // server's admin lock, which every remove takes).
  std::vector<Entry*> snapshot() const EXCLUDES(mu_);
  std::size_t size() const EXCLUDES(mu_);

  // Calls fn(Entry&) under the shared lock (fn must not block); false when there is no such
  // entry.
  template <class F>
  bool with_ino(fuse_ino_t ino, F&& fn) const EXCLUDES(mu_) {
    ReaderLock lock(mu_);
    auto it = by_ino_.find(ino);
    if (it == by_ino_.end()) return false;
    fn(*it->second);
    return true;
  }
  template <class F>
  bool with_name(const std::string& name, F&& fn) const EXCLUDES(mu_) {
    ReaderLock lock(mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return false;
    fn(*it->second);
    return true;
  }
  // fn(Entry&) for every entry in inode order, under the shared lock.
  template <class F>
  void for_each(F&& fn) const EXCLUDES(mu_) {
    ReaderLock lock(mu_);
    for (const auto& [ino, e] : by_ino_) fn(*e);
  }

 private:
  mutable SharedMutex mu_;  // the maps and next_ino_
  std::map<std::string, Entry*> by_name_ GUARDED_BY(mu_);
  std::map<fuse_ino_t, std::unique_ptr<Entry>> by_ino_ GUARDED_BY(mu_);
  // Never reused: a stale inode can never alias.
  fuse_ino_t next_ino_ GUARDED_BY(mu_) = FUSE_ROOT_ID + 1;
  void wake_gate() EXCLUDES(gate_mu_);
  // The gate: taken before mu_. Guards no data (`held` is atomic); it is held while a request
  // checks the flag and while set_held changes it, so no wake-up is missed.
  Mutex gate_mu_ ACQUIRED_BEFORE(mu_);
  CondVar gate_cv_;
  bool gate_failing_ GUARDED_BY(gate_mu_) = false;  // fail_held()
  Mutex drain_mu_;  // guards nothing (inflight is atomic): taken so a drain wake-up is not missed
  CondVar drain_cv_;
};

}  // namespace cryptmap::fs::internal
