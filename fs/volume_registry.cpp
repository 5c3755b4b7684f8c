#include "fs/internal/volume_registry.h"

namespace cryptmap::fs::internal {

void VolumeRegistry::Ref::release() noexcept {
  if (e_ == nullptr) return;
  // After the decrement the entry may already be destroyed (a waiter saw 0): touch only the
  // registry from here on. Waking on every 1 -> 0 costs one uncontended lock.
  if (e_->inflight.fetch_sub(1) == 1) {
    MutexLock lock(r_->drain_mu_);
    r_->drain_cv_.notify_all();
  }
  e_ = nullptr;
}

VolumeRegistry::Ref VolumeRegistry::acquire(fuse_ino_t ino, bool for_open) {
  ReaderLock lock(mu_);
  auto it = by_ino_.find(ino);
  if (it == by_ino_.end()) return {};
  Entry* e = it->second.get();
  e->inflight.fetch_add(1);
  if (for_open) e->open_count.fetch_add(1);
  return Ref(this, e);
}

VolumeRegistry::Ref VolumeRegistry::acquire_active(fuse_ino_t ino) {
  // Fast path, no gate: a suspend that sets the flag after this check waits for this Ref to
  // go (inflight is incremented before the flag is read; both are sequentially consistent).
  Ref ref = acquire(ino);
  if (!ref || !ref->held.load()) return ref;
  ref = Ref();  // never wait holding a Ref: the suspend that drains would wait for us
  MutexLock gate(gate_mu_);
  for (;;) {
    if (gate_failing_) return {};
    {
      ReaderLock lock(mu_);
      auto it = by_ino_.find(ino);
      if (it == by_ino_.end()) return {};  // closed while held
      Entry* e = it->second.get();
      if (!e->held.load()) {
        e->inflight.fetch_add(1);
        return Ref(this, e);
      }
    }
    gate_cv_.wait(gate);
  }
}

void VolumeRegistry::set_held(Entry& e, bool held) {
  {
    MutexLock gate(gate_mu_);
    e.held.store(held);
  }
  gate_cv_.notify_all();
}

void VolumeRegistry::set_layout(Entry& e, volume::VolumeLayout layout) {
  WriterLock lock(mu_);
  e.layout = std::move(layout);
}

void VolumeRegistry::set_source(Entry& e, VolumeSource source) {
  WriterLock lock(mu_);
  e.source = std::move(source);
}

void VolumeRegistry::fail_held() {
  {
    MutexLock gate(gate_mu_);
    gate_failing_ = true;
  }
  gate_cv_.notify_all();
}

void VolumeRegistry::wake_gate() {
  { MutexLock gate(gate_mu_); }
  gate_cv_.notify_all();
}

void VolumeRegistry::wait_drained(Entry& e) {
  MutexLock lock(drain_mu_);
  while (e.inflight.load() != 0) drain_cv_.wait(lock);
}

Result<void> VolumeRegistry::insert(std::unique_ptr<Entry> e) {
  WriterLock lock(mu_);
  if (by_name_.count(e->name) != 0)
    return make_error_fmt(Errc::kBusy, "add volume", kNoObject, "Device %s already exists.",
                          e->name.c_str());
  e->ino = next_ino_++;
  by_name_[e->name] = e.get();
  by_ino_[e->ino] = std::move(e);
  return ok();
}

Result<std::unique_ptr<Entry>> VolumeRegistry::take(const std::string& name, bool force) {
  std::unique_ptr<Entry> taken;
  {
    WriterLock lock(mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end())
      return make_error_fmt(Errc::kNotFound, "remove volume", kNoObject, "%s is not active",
                            name.c_str());
    Entry* e = it->second;
    const std::uint32_t opens = e->open_count.load();
    if (opens > 0 && !force)
      return make_error_fmt(Errc::kBusy, "remove volume", opens, "Device %s is still in use.",
                            name.c_str());
    by_name_.erase(it);
    auto node = by_ino_.extract(e->ino);
    taken = std::move(node.mapped());
  }
  if (taken->held.load()) wake_gate();  // its held requests now fail (EIO)
  return taken;
}

std::map<fuse_ino_t, std::unique_ptr<Entry>> VolumeRegistry::take_all() {
  std::map<fuse_ino_t, std::unique_ptr<Entry>> entries;
  {
    WriterLock lock(mu_);
    by_name_.clear();
    entries.swap(by_ino_);
  }
  wake_gate();
  return entries;
}

std::vector<Entry*> VolumeRegistry::snapshot() const {
  ReaderLock lock(mu_);
  std::vector<Entry*> out;
  out.reserve(by_ino_.size());
  for (const auto& [ino, e] : by_ino_) out.push_back(e.get());
  return out;
}

std::size_t VolumeRegistry::size() const {
  ReaderLock lock(mu_);
  return by_ino_.size();
}

}  // namespace cryptmap::fs::internal
