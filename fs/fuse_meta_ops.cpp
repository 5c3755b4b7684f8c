// The FUSE operations on names and attributes: init, lookup, getattr, setattr, readdir, open,
// release, getxattr/listxattr (the zone table), statfs; and the operation table. They never
// throw and never block on the control plane.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "fs/internal/libfuse_compat.h"
#include "fs/internal/server_impl.h"

namespace cryptmap::fs::internal {
namespace {

using Impl = VolumeServer::Impl;

void op_init(void* userdata, struct fuse_conn_info* conn) {
  auto* s = static_cast<Impl*>(userdata);
  // The volume caches; the kernel must not cache a second copy or merge writes behind us.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Zoned mounts (fs/README.md "Zoned volumes: receive order"): over io_uring a write that waits
  // for its zone's write pointer holds one of the kernel's background slots (max_background,
  // 12 by default) until it is admitted; with every slot so held, a predecessor still in a
  // queue's background list could not move (fuse_uring_flush_bg) and the waiters fail after the
  // bound. With more slots than the mount has ring entries, waiting writes alone cannot fill
  // them. Harmless over /dev/fuse (requests only queue longer in the kernel).
  if (s->opts.ordered_receive) {
    conn->max_background = kZonedMaxBackground;
    conn->congestion_threshold = kZonedMaxBackground / 4 * 3;
  }
  s->log->debug("FUSE connection: protocol {}.{}, max_write {}, max_read {}, max_background {}",
                conn->proto_major, conn->proto_minor, conn->max_write, conn->max_read,
                conn->max_background);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  if (parent != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_entry_param e{};
  const bool found = s.registry.with_name(name, [&](const Entry& entry) {
    e.ino = entry.ino;
    e.generation = 1;
    s.fill_file_attr(entry, e.attr);
  });
  if (!found) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  e.attr_timeout = kFuseTimeout;
  e.entry_timeout = kFuseTimeout;
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  struct stat st {};
  if (!s.attr_of(ino, st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, kFuseTimeout);
}

// The size is the volume's; ownership and mode are fixed. Only no-op size changes and time
// updates (touch) are accepted, like a block device node that ignores them.
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  struct stat st {};
  if (!s.attr_of(ino, st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const bool size_change =
      (to_set & FUSE_SET_ATTR_SIZE) != 0 && (ino == FUSE_ROOT_ID || attr->st_size != st.st_size);
  if (size_change || (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    fuse_reply_err(req, EPERM);
    return;
  }
  fuse_reply_attr(req, &st, kFuseTimeout);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  // Directory offsets are stable under concurrent add/remove: "." = 1, ".." = 2, a volume's is
  // its (never reused) inode + 2; an entry is listed when its offset is above `off`.
  struct Item {
    std::string name;
    fuse_ino_t ino;
    off_t next;
  };
  std::vector<Item> items;
  if (off < 1) items.push_back({".", FUSE_ROOT_ID, 1});
  if (off < 2) items.push_back({"..", FUSE_ROOT_ID, 2});
  s.registry.for_each([&](const Entry& e) {
    const auto next = static_cast<off_t>(e.ino + 2);
    if (next > off) items.push_back({e.name, e.ino, next});
  });
  std::vector<char> buf(size);
  std::size_t used = 0;
  for (const Item& it : items) {
    struct stat st {};
    st.st_ino = it.ino;
    st.st_mode = it.ino == FUSE_ROOT_ID ? S_IFDIR : S_IFREG;
    const std::size_t need =
        fuse_add_direntry(req, buf.data() + used, size - used, it.name.c_str(), &st, it.next);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  if (ino == FUSE_ROOT_ID) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  const bool wants_write = (fi->flags & O_ACCMODE) != O_RDONLY;
  {
    VolumeRegistry::Ref probe = s.registry.acquire(ino);
    if (!probe) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    if (wants_write && probe->read_only) {
      fuse_reply_err(req, EROFS);
      return;
    }
  }
  VolumeRegistry::Ref ref = s.registry.acquire(ino, /*for_open=*/true);
  if (!ref) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  // O_TRUNC is ignored, as a block device ignores it.
  fi->direct_io = 1;  // FOPEN_DIRECT_IO: no page-cache copy of what the volume caches
  fi->keep_cache = 0;
  fi->fh = ino;
  // + FOPEN_PARALLEL_DIRECT_WRITES: writers are not serialised on the inode lock.
  const int rc = reply_open_with_parallel_direct_writes(req, fi);
  if (rc != 0) ref->open_count.fetch_sub(1);  // interrupted: the kernel will not release it
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  (void)s.registry.with_ino(ino, [](Entry& e) { e.open_count.fetch_sub(1); });
  fuse_reply_err(req, 0);
}

// ---- zone layout as an extended attribute ---------------------------------------------------
// user.cryptmap.zones on the mapped file of a zoned volume: a text table, offsets relative to
// the mapped file (zones before the data offset are left out, a zone cut by it starts at 0):
//   zone_size <bytes> zones <count>
//   <index> <start> <len> <capacity> <wp> <type> <cond>
// `cryptmap status --zones` prints it. Volumes on conventional storage have no such attribute.
constexpr char kZonesXattr[] = "user.cryptmap.zones";

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  // Other names (ls -l asks for ACLs) are answered without the volume, so they never wait on a
  // suspended one; the zone table itself needs it.
  if (std::strcmp(name, kZonesXattr) != 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  VolumeRegistry::Ref ref = s.registry.acquire_active(ino);
  if (!ref || !ref->zoned) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  std::string text;
  try {
    text = volume::zone_table_text(*ref->volume);
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  if (text.size() > 65536) {
    fuse_reply_err(req, E2BIG);  // XATTR_SIZE_MAX
  } else if (size == 0) {
    fuse_reply_xattr(req, text.size());
  } else if (size < text.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, text.data(), text.size());
  }
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  VolumeRegistry::Ref ref = s.registry.acquire(ino);  // never waits: `zoned` is the entry's
  const bool zoned = ref && ref->zoned;
  const std::size_t need = zoned ? sizeof(kZonesXattr) : 0;  // names are NUL-terminated
  if (size == 0) {
    fuse_reply_xattr(req, need);
  } else if (size < need) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, kZonesXattr, need);
  }
}

void op_statfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  Impl& s = Impl::of(req);
  s.enter_worker();
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  std::uint64_t bytes = 0;
  std::uint64_t files = 0;
  s.registry.for_each([&](const Entry& e) {
    bytes += e.size_bytes;
    ++files;
  });
  st.f_blocks = bytes / 4096;
  st.f_files = files + 1;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

}  // namespace

fuse_lowlevel_ops make_fuse_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.release = op_release;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.fsync = op_fsync;
  ops.fallocate = op_fallocate;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.statfs = op_statfs;
  return ops;
}

}  // namespace cryptmap::fs::internal

namespace cryptmap::fs {

bool VolumeServer::Impl::attr_of(fuse_ino_t ino, struct stat& st) const {
  if (ino == FUSE_ROOT_ID) {
    fill_dir_attr(st);
    return true;
  }
  return registry.with_ino(ino, [&](const internal::Entry& e) { fill_file_attr(e, st); });
}

void VolumeServer::Impl::fill_dir_attr(struct stat& st) const {
  st = {};
  st.st_ino = FUSE_ROOT_ID;
  st.st_mode = S_IFDIR | 0755;
  st.st_nlink = 2;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_atim = st.st_mtim = st.st_ctim = started;
}

void VolumeServer::Impl::fill_file_attr(const internal::Entry& e, struct stat& st) const {
  st = {};
  st.st_ino = e.ino;
  st.st_mode = S_IFREG | e.file_mode;
  st.st_nlink = 1;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_size = static_cast<off_t>(e.size_bytes);
  st.st_blocks = static_cast<blkcnt_t>(e.size_bytes / 512);
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = e.added;
}

}  // namespace cryptmap::fs
