// mark_io_thread() — marks the calling thread as one that performs I/O on behalf of the kernel's
// writeback (a FUSE worker, a TBB worker of the I/O engine).
//
// Why: a FUSE daemon serving a loop device or a mounted file system is part of the kernel's
// writeback path. If one of its threads allocates memory under memory pressure, the kernel may
// try to write dirty pages back... through the very daemon that is now blocked: a deadlock.
// prctl(PR_SET_IO_FLUSHER) gives the thread PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE, as the kernel
// does for its own block-layer workers (loop, nbd, dm-crypt's kcryptd). It needs
// CAP_SYS_RESOURCE; without it the failure is logged once per process and the thread continues
// unmarked.
//
// Thread-safety: call from the thread to be marked; idempotent and cheap after the first call.
#pragma once

namespace cryptmap {

// Returns true when the calling thread is (now) marked as an I/O flusher.
bool mark_io_thread() noexcept;

// mark_io_thread() without the warning, for a thread that must be marked before its logger
// exists: the foreground `open`, which becomes the daemon after it unlocked the volume, and whose
// unlock may start threads that live on in the daemon (TBB workers, a store library's threads);
// they inherit the mark from it. A refusal is left for the thread's next mark_io_thread() to log.
bool mark_io_thread_quietly() noexcept;

}  // namespace cryptmap
