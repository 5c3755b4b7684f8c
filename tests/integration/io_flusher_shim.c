// Test-only LD_PRELOAD library for io_flusher_check (lib.sh) where the kernel refuses
// PR_SET_IO_FLUSHER (no CAP_SYS_RESOURCE, as in containers and this project's sandbox). What the
// check proves is that every thread of the daemon descends from a marked thread, since the flag
// (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE) is copied to every thread a marked thread creates. Here
// a refused prctl(PR_SET_IO_FLUSHER, 1) instead sets the calling thread's nice value to
// kShimNice, which the kernel copies to new threads in the same way and /proc shows per thread
// (stat field 19), and reports success. Any other prctl goes to the C library's unchanged.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { kSetIoFlusher = 57, kShimNice = 7 };

int prctl(int option, ...) {
  va_list ap;
  va_start(ap, option);
  const unsigned long a2 = va_arg(ap, unsigned long);
  const unsigned long a3 = va_arg(ap, unsigned long);
  const unsigned long a4 = va_arg(ap, unsigned long);
  const unsigned long a5 = va_arg(ap, unsigned long);
  va_end(ap);
  const long r = syscall(SYS_prctl, option, a2, a3, a4, a5);
  if (r == 0 || option != kSetIoFlusher || a2 != 1) return (int)r;
  const id_t tid = (id_t)syscall(SYS_gettid);
  return setpriority(PRIO_PROCESS, tid, kShimNice);
}
