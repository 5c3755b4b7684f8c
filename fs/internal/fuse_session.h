// RAII wrappers for the libfuse3 low-level C resources (fs-internal: libfuse types appear here
// and nowhere outside fs/). Each type owns exactly one resource and undoes it in its
// destructor, so a failure at any step of mount unwinds without a goto ladder:
//   FuseArgs    — struct fuse_args (fuse_opt_free_args)
//   LoopConfig  — struct fuse_loop_config (fuse_loop_cfg_destroy)
//   FuseSession — struct fuse_session: new -> mount -> custom io; ~ = unmount (if mounted) +
//                 destroy (which closes /dev/fuse and so aborts whatever the kernel still queues).
// Thread-safety: FuseSession::exit() and unmount() may be called from any thread; the rest is
// owned by one thread (the server's). Non-copyable, non-movable (libfuse keeps pointers).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryptmap::fs::internal {

class FuseArgs {
 public:
  // argv[0] is a program name, the rest are FUSE options ("-o", "default_permissions", "-d").
  explicit FuseArgs(const std::vector<std::string>& argv);
  ~FuseArgs();
  FuseArgs(const FuseArgs&) = delete;
  FuseArgs& operator=(const FuseArgs&) = delete;
  fuse_args* get() noexcept { return &args_; }
  bool ok() const noexcept { return ok_; }

 private:
  fuse_args args_ = FUSE_ARGS_INIT(0, nullptr);
  bool ok_ = true;
};

class LoopConfig {
 public:
  LoopConfig(std::uint32_t max_threads, bool clone_fd);
  ~LoopConfig();
  LoopConfig(const LoopConfig&) = delete;
  LoopConfig& operator=(const LoopConfig&) = delete;
  fuse_loop_config* get() noexcept { return cfg_; }

 private:
  fuse_loop_config* cfg_;
};

class FuseSession {
 public:
  // `io` may be null (libfuse's default read/writev); it is copied by libfuse.
  static Result<std::unique_ptr<FuseSession>> create(FuseArgs& args, const fuse_lowlevel_ops& ops,
                                                     void* userdata);
  ~FuseSession();
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;

  // Mounts at `mountpoint` and then routes the device I/O through `io` (same fd).
  Result<void> mount(const std::string& mountpoint, const fuse_custom_io* io);
  // Blocks serving requests until exit() (plus a wake-up of the calling thread) or unmount.
  int loop_mt(LoopConfig& cfg);
  void exit() noexcept;
  // Detaches the mount (lazy: MNT_DETACH / fusermount3 -u -z). Idempotent.
  void unmount() noexcept;
  fuse_session* get() noexcept { return se_; }

 private:
  explicit FuseSession(fuse_session* se) : se_(se) {}
  fuse_session* se_;
  bool mounted_ = false;
};

}  // namespace cryptmap::fs::internal
