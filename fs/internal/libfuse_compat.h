// What libfuse 3.14.0 (Debian 12) lacks and we need: FOPEN_PARALLEL_DIRECT_WRITES on open
// replies. fs-internal.
//
// Why: without the flag the kernel takes the inode lock exclusively for every direct write,
// so concurrent writers to one mapped file are serialised before they reach us (measured on
// this machine: 18.8k vs 113k IOPS, docs/benchmarks.md §2; fs/README.md "The kernel's
// caches"). libfuse 3.14.1 added fi->parallel_direct_writes; 3.14.0 has no fuse_file_info bit
// for it. So the session's custom io writev (patch_open_reply) ORs the flag into the open
// reply that the current thread is sending, marked by a thread-local that
// reply_open_with_parallel_direct_writes() sets around fuse_reply_open(). Once the distribution
// ships libfuse >= 3.14.1, set fi->parallel_direct_writes instead and delete this file.
// VolumeServerTest.ConcurrentWritersReachTheVolumeInParallel fails if the flag is lost.
//
// Thread-safety: both functions act on the calling thread's state only.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/uio.h>

namespace cryptmap::fs::internal {

// fuse_reply_open(req, fi), with FOPEN_PARALLEL_DIRECT_WRITES added to the reply on the wire.
int reply_open_with_parallel_direct_writes(fuse_req_t req, const fuse_file_info* fi) noexcept;

// Called by the session's custom io writev with the reply about to be written: adds the flag
// when it is the open reply reply_open_with_parallel_direct_writes() is sending.
void patch_open_reply(struct iovec* iov, int count) noexcept;

}  // namespace cryptmap::fs::internal
