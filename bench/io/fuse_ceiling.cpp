// fuse_ceiling — the two ceilings cryptmap's I/O benchmark measures against, in one program.
//
//   fuse_ceiling null SIZE MOUNTDIR                 "vol" served from RAM: no crypto, no I/O —
//                                                   the ceiling of any FUSE design here.
//   fuse_ceiling passthrough [--buffered] IMAGE OFFSET MOUNTDIR
//                                                   "vol" = IMAGE[OFFSET..] by pread/pwrite, no
//                                                   crypto — the ceiling of cryptmap's design
//                                                   on this storage.
// The passthrough does the store I/O cryptmap's daemon does: an O_DIRECT fd on the image (a
// buffered fd only for requests that miss the alignment), reads into a private aligned buffer
// (where decryption would happen) and writes from a private aligned buffer (where encryption
// would put the ciphertext). `--buffered` uses the host page cache instead, as the peers do.
// Both use what cryptmap's own front end uses: the low-level API, a multithreaded loop, and
// open replies with FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES (the latter patched into the
// reply because libfuse 3.14.0 has no field for it). Runs in the foreground until unmounted.
#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr fuse_ino_t kVolIno = 2;
constexpr char kVolName[] = "vol";
constexpr std::uint32_t kParallelDirectWrites = 1u << 6;  // FOPEN_PARALLEL_DIRECT_WRITES

struct OpenOut {  // mirror of the kernel's struct fuse_open_out
  std::uint64_t fh;
  std::uint32_t open_flags;
  std::int32_t padding;
};

struct Ceiling {
  bool null_mode = true;
  std::uint64_t size = 0;
  char* ram = nullptr;
  int fd = -1;         // buffered
  int direct_fd = -1;  // O_DIRECT, or -1 (--buffered)
  std::uint64_t offset = 0;
};

constexpr std::size_t kAlign = 4096;
constexpr std::size_t kMaxRequest = 1u << 20;  // the kernel's largest FUSE request (256 pages)

// One aligned 1 MiB buffer per worker thread, allocated at its first request.
char* thread_buffer() {
  thread_local char* buf = static_cast<char*>(std::aligned_alloc(kAlign, kMaxRequest));
  return buf;
}

bool aligned(std::uint64_t pos, std::size_t size) {
  return pos % kAlign == 0 && size % kAlign == 0;
}

Ceiling g_state;  // one per process; the FUSE callbacks reach it through fuse_req_userdata
thread_local bool t_open_reply = false;

Ceiling& state(fuse_req_t req) { return *static_cast<Ceiling*>(fuse_req_userdata(req)); }

ssize_t io_writev(int fd, struct iovec* iov, int count, void*) {
  if (t_open_reply && count == 2 && iov[1].iov_len == sizeof(OpenOut))
    static_cast<OpenOut*>(iov[1].iov_base)->open_flags |= kParallelDirectWrites;
  return writev(fd, iov, count);
}
ssize_t io_read(int fd, void* buf, size_t len, void*) { return read(fd, buf, len); }

void fill_attr(const Ceiling& c, fuse_ino_t ino, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_uid = getuid();
  st->st_gid = getgid();
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(c.size);
    st->st_blksize = 4096;
  }
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, kVolName) != 0)
    return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = kVolIno;
  e.attr_timeout = e.entry_timeout = 3600;
  fill_attr(state(req), kVolIno, &e.attr);
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (ino != FUSE_ROOT_ID && ino != kVolIno) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  fill_attr(state(req), ino, &st);
  fuse_reply_attr(req, &st, 3600);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  if (ino != FUSE_ROOT_ID) return (void)fuse_reply_err(req, ENOTDIR);
  char buf[512];
  size_t used = 0;
  struct stat st {};
  const char* names[] = {".", "..", kVolName};
  const fuse_ino_t inos[] = {FUSE_ROOT_ID, FUSE_ROOT_ID, kVolIno};
  for (off_t i = off; i < 3; ++i) {
    st.st_ino = inos[i];
    st.st_mode = i == 2 ? S_IFREG : S_IFDIR;
    size_t n =
        fuse_add_direntry(req, buf + used, std::min(sizeof buf, size) - used, names[i], &st, i + 1);
    if (used + n > std::min(sizeof buf, size)) break;
    used += n;
  }
  fuse_reply_buf(req, buf, used);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kVolIno) return (void)fuse_reply_err(req, EISDIR);
  fi->direct_io = 1;
  t_open_reply = true;
  fuse_reply_open(req, fi);
  t_open_reply = false;
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  Ceiling& c = state(req);
  if (static_cast<std::uint64_t>(off) >= c.size) return (void)fuse_reply_buf(req, nullptr, 0);
  size = std::min<std::uint64_t>(size, c.size - off);
  if (c.null_mode) return (void)fuse_reply_buf(req, c.ram + off, size);
  if (size > kMaxRequest) size = kMaxRequest;
  // Like cryptmap: read into a private buffer (where decryption would happen), then reply.
  char* buf = thread_buffer();
  if (buf == nullptr) return (void)fuse_reply_err(req, ENOMEM);
  const std::uint64_t pos = c.offset + static_cast<std::uint64_t>(off);
  const int fd = c.direct_fd >= 0 && aligned(pos, size) ? c.direct_fd : c.fd;
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, buf + done, size - done, static_cast<off_t>(pos + done));
    if (n < 0) return (void)fuse_reply_err(req, errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  fuse_reply_buf(req, buf, done);
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info*) {
  Ceiling& c = state(req);
  if (static_cast<std::uint64_t>(off) + size > c.size) return (void)fuse_reply_err(req, ENOSPC);
  if (c.null_mode) {
    std::memcpy(c.ram + off, buf, size);
  } else {
    if (size > kMaxRequest) size = kMaxRequest;
    // Like cryptmap: the data goes to the store from a private buffer (where encryption would
    // write the ciphertext), never from libfuse's receive buffer.
    char* priv = thread_buffer();
    if (priv == nullptr) return (void)fuse_reply_err(req, ENOMEM);
    std::memcpy(priv, buf, size);
    const std::uint64_t pos = c.offset + static_cast<std::uint64_t>(off);
    const int fd = c.direct_fd >= 0 && aligned(pos, size) ? c.direct_fd : c.fd;
    size_t done = 0;
    while (done < size) {
      ssize_t n = pwrite(fd, priv + done, size - done, static_cast<off_t>(pos + done));
      if (n < 0) return (void)fuse_reply_err(req, errno);
      done += static_cast<size_t>(n);
    }
  }
  fuse_reply_write(req, size);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Ceiling& c = state(req);
  fuse_reply_err(req, c.null_mode || fdatasync(c.fd) == 0 ? 0 : errno);
}

int usage() {
  std::fprintf(stderr,
               "usage: fuse_ceiling null SIZE_MIB MOUNTDIR\n"
               "       fuse_ceiling passthrough [--buffered] IMAGE OFFSET_BYTES MOUNTDIR\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string mode = argv[1];
  const char* mountdir = nullptr;
  Ceiling& c = g_state;
  if (mode == "null" && argc == 4) {
    c.size = std::strtoull(argv[2], nullptr, 10) << 20;
    void* p = mmap(nullptr, c.size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) return std::perror("mmap"), 1;
    c.ram = static_cast<char*>(p);
    std::memset(c.ram, 0xa5, c.size);  // real pages, not the shared zero page
    mountdir = argv[3];
  } else if (mode == "passthrough" &&
             (argc == 5 || (argc == 6 && std::strcmp(argv[2], "--buffered") == 0))) {
    const bool buffered = argc == 6;
    char** a = argv + (buffered ? 3 : 2);
    c.null_mode = false;
    c.fd = open(a[0], O_RDWR | O_CLOEXEC);
    if (c.fd < 0) return std::perror(a[0]), 1;
    if (!buffered) {
      c.direct_fd = open(a[0], O_RDWR | O_CLOEXEC | O_DIRECT);
      if (c.direct_fd < 0) return std::perror("O_DIRECT open"), 1;
    }
    c.offset = std::strtoull(a[1], nullptr, 10);
    struct stat st;
    if (fstat(c.fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) <= c.offset) {
      std::fprintf(stderr, "%s: smaller than the offset %s\n", a[0], a[1]);
      return 1;
    }
    c.size = static_cast<std::uint64_t>(st.st_size) - c.offset;
    mountdir = a[2];
  } else {
    return usage();
  }

  fuse_lowlevel_ops ops{};
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.fsync = op_fsync;
  std::vector<char*> fargv = {argv[0], const_cast<char*>("-o"),
                              const_cast<char*>("default_permissions")};
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fargv.size()), fargv.data());
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &c);
  if (se == nullptr) return 1;
  fuse_custom_io io{};
  io.writev = io_writev;
  io.read = io_read;
  int rc = 1;
  if (fuse_session_mount(se, mountdir) == 0 &&
      fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0) {
    fuse_set_signal_handlers(se);
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, 16);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
  }
  fuse_session_destroy(se);
  return rc == 0 ? 0 : 1;
}
