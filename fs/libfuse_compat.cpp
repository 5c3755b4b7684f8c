#include "fs/internal/libfuse_compat.h"

#include <cstdint>

namespace cryptmap::fs::internal {
namespace {

constexpr std::uint32_t kFopenParallelDirectWrites = 1u << 6;  // include/uapi/linux/fuse.h
struct FuseOpenOutWire {                                       // struct fuse_open_out
  std::uint64_t fh;
  std::uint32_t open_flags;
  std::int32_t padding;
};

// Set only while this thread is inside fuse_reply_open(): the one writev it makes then is the
// open reply.
thread_local bool tls_patch_open_reply = false;

}  // namespace

int reply_open_with_parallel_direct_writes(fuse_req_t req, const fuse_file_info* fi) noexcept {
  tls_patch_open_reply = true;
  const int rc = fuse_reply_open(req, fi);
  tls_patch_open_reply = false;
  return rc;
}

// libfuse sends the open reply as iov[0] = fuse_out_header, iov[1] = struct fuse_open_out (a
// mutable struct on the replying thread's stack). Same trick as the bench's nullfuse.c.
void patch_open_reply(struct iovec* iov, int count) noexcept {
  if (tls_patch_open_reply && count == 2 && iov[1].iov_len == sizeof(FuseOpenOutWire)) {
    static_cast<FuseOpenOutWire*>(iov[1].iov_base)->open_flags |= kFopenParallelDirectWrites;
  }
}

}  // namespace cryptmap::fs::internal
