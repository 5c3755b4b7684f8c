#include "fs/internal/fuse_session.h"


namespace cryptmap::fs::internal {

FuseArgs::FuseArgs(const std::vector<std::string>& argv) {
  for (const std::string& a : argv) {
    if (fuse_opt_add_arg(&args_, a.c_str()) != 0) ok_ = false;
  }
}

FuseArgs::~FuseArgs() { fuse_opt_free_args(&args_); }

LoopConfig::LoopConfig(std::uint32_t max_threads, bool clone_fd) : cfg_(fuse_loop_cfg_create()) {
  if (cfg_ != nullptr) {
    fuse_loop_cfg_set_max_threads(cfg_, max_threads);
    fuse_loop_cfg_set_clone_fd(cfg_, clone_fd ? 1 : 0);
    // Idle workers: libfuse's default (-1, never destroyed): thread churn costs more than stacks.
  }
}

LoopConfig::~LoopConfig() {
  if (cfg_ != nullptr) fuse_loop_cfg_destroy(cfg_);
}

Result<std::unique_ptr<FuseSession>> FuseSession::create(FuseArgs& args,
                                                         const fuse_lowlevel_ops& ops,
                                                         void* userdata) {
  if (!args.ok()) return make_error(Errc::kNoSpace, "FUSE: build the mount options");
  fuse_session* se = fuse_session_new(args.get(), &ops, sizeof(ops), userdata);
  if (se == nullptr)
    return make_error(Errc::kInvalid, "FUSE: create the session (bad mount options?)");
  return std::unique_ptr<FuseSession>(new FuseSession(se));
}

FuseSession::~FuseSession() {
  unmount();
  fuse_session_destroy(se_);
}

Result<void> FuseSession::mount(const std::string& mountpoint, const fuse_custom_io* io) {
  if (fuse_session_mount(se_, mountpoint.c_str()) != 0)
    return make_error_fmt(Errc::kIo, "FUSE: mount", kNoObject, "%s", mountpoint.c_str());
  mounted_ = true;
  if (io != nullptr) {
    const int rc = fuse_session_custom_io(se_, io, fuse_session_fd(se_));
    if (rc != 0) return make_sys_error(-rc, "FUSE: install the custom device I/O");
  }
  return ok();
}

int FuseSession::loop_mt(LoopConfig& cfg) { return fuse_session_loop_mt(se_, cfg.get()); }

void FuseSession::exit() noexcept { fuse_session_exit(se_); }

void FuseSession::unmount() noexcept {
  if (mounted_) {
    fuse_session_unmount(se_);
    mounted_ = false;
  }
}

}  // namespace cryptmap::fs::internal
