#include "fs/internal/fuse_uring.h"

#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "fs/internal/fuse_session.h"

namespace cryptmap::fs::internal {
namespace {

// ---- wire facts (include/uapi/linux/fuse.h; docs/fuse-io-uring.md) ---------------------------

constexpr std::uint32_t kFuseInit = 26;
constexpr std::uint32_t kFuseForget = 2;
constexpr std::uint32_t kFuseBatchForget = 42;
constexpr std::uint32_t kFuseInitExt = 1u << 30;       // flags: flags2 is valid
constexpr std::uint32_t kFuseMaxPages = 1u << 22;      // flags: max_pages is valid
constexpr std::uint32_t kFuseOverIoUringHi = 1u << 9;  // flags2: FUSE_OVER_IO_URING (1 << 41)
constexpr std::uint32_t kCmdRegister = 1;              // FUSE_IO_URING_CMD_REGISTER
constexpr std::uint32_t kCmdCommitAndFetch = 2;        // FUSE_IO_URING_CMD_COMMIT_AND_FETCH
constexpr std::size_t kInOutHeaderBytes = 128;         // FUSE_URING_IN_OUT_HEADER_SZ
constexpr std::size_t kOpInBytes = 128;                // FUSE_URING_OP_IN_OUT_SZ
constexpr std::size_t kMinReadBuffer = 8192;           // FUSE_MIN_READ_BUFFER
constexpr std::size_t kSqeBytes = 128;                 // IORING_SETUP_SQE128
constexpr std::size_t kSqeCmdOffset = 48;              // io_uring_sqe.cmd: 80 bytes with SQE128

struct InHeader {  // struct fuse_in_header
  std::uint32_t len, opcode;
  std::uint64_t unique, nodeid;
  std::uint32_t uid, gid, pid;
  std::uint16_t total_extlen, padding;
};
struct OutHeader {  // struct fuse_out_header
  std::uint32_t len;
  std::int32_t error;
  std::uint64_t unique;
};
struct EntInOut {  // struct fuse_uring_ent_in_out
  std::uint64_t flags, commit_id;
  std::uint32_t payload_sz, padding;
  std::uint64_t reserved;
};
struct ReqHeader {  // struct fuse_uring_req_header
  unsigned char in_out[kInOutHeaderBytes];
  unsigned char op_in[kOpInBytes];
  EntInOut ent;
};
struct CmdReq {  // struct fuse_uring_cmd_req, in the SQE's command area
  std::uint64_t flags, commit_id;
  std::uint16_t qid;
  std::uint8_t padding[6];
};
static_assert(sizeof(InHeader) == 40 && sizeof(OutHeader) == 16);
static_assert(sizeof(ReqHeader) == 288 && sizeof(CmdReq) == 24);
static_assert(sizeof(io_uring_sqe) == 64 && sizeof(CmdReq) <= kSqeBytes - kSqeCmdOffset);
// struct fuse_init_in / fuse_init_out field offsets (protocol 7.36+).
constexpr std::size_t kInitInFlags = 12, kInitInFlags2 = 16, kInitInMin = 20;
constexpr std::size_t kInitOutFlags = 12, kInitOutMaxWrite = 20, kInitOutMaxPages = 28,
                      kInitOutFlags2 = 32, kInitOutMin = 36;

template <class T>
T load(const void* p, std::size_t off) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(p) + off, sizeof(v));
  return v;
}
template <class T>
void store(void* p, std::size_t off, T v) {
  std::memcpy(static_cast<unsigned char*>(p) + off, &v, sizeof(v));
}

std::size_t page_size() noexcept { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// The kernel makes one queue per possible CPU (num_possible_cpus()) and sends a request to the
// queue of the CPU its task runs on; it serves none until every queue has an entry.
std::uint32_t possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string s;
  std::uint32_t n = 0;
  if (!(in >> s)) return static_cast<std::uint32_t>(std::max(1L, ::sysconf(_SC_NPROCESSORS_CONF)));
  std::size_t pos = 0;
  try {
    while (pos < s.size()) {
      const std::size_t comma = std::min(s.find(',', pos), s.size());
      const std::string part = s.substr(pos, comma - pos);
      const std::size_t dash = part.find('-');
      const unsigned long lo = std::stoul(part.substr(0, dash));
      const unsigned long hi = dash == std::string::npos ? lo : std::stoul(part.substr(dash + 1));
      n += static_cast<std::uint32_t>(hi - lo + 1);
      pos = comma + 1;
    }
  } catch (const std::exception&) {  // not a CPU list: count what sysconf sees
    n = static_cast<std::uint32_t>(std::max(1L, ::sysconf(_SC_NPROCESSORS_CONF)));
  }
  return std::max<std::uint32_t>(n, 1);
}

// ---- one io_uring, used by one thread (raw syscalls; no liburing needed) ----------------------

class Ring {
 public:
  ~Ring() { close(); }
  int open(unsigned depth) noexcept {
    io_uring_params p{};
    p.flags = IORING_SETUP_SQE128;
    const long fd = ::syscall(__NR_io_uring_setup, depth, &p);
    if (fd < 0) return -errno;
    fd_ = static_cast<int>(fd);
    sq_len_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cq_len_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sq_len_ = cq_len_ = std::max(sq_len_, cq_len_);
    sq_ = ::mmap(nullptr, sq_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                 IORING_OFF_SQ_RING);
    if (sq_ == MAP_FAILED) return fail();
    cq_ = single ? sq_
                 : ::mmap(nullptr, cq_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                          IORING_OFF_CQ_RING);
    if (cq_ == MAP_FAILED) return fail();
    sqes_len_ = p.sq_entries * kSqeBytes;
    sqes_ = ::mmap(nullptr, sqes_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                   IORING_OFF_SQES);
    if (sqes_ == MAP_FAILED) return fail();
    auto* sq = static_cast<unsigned char*>(sq_);
    auto* cq = static_cast<unsigned char*>(cq_);
    sq_head_ = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
    sq_tail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sq_array_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
    cq_head_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cq_tail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
    tail_ = *sq_tail_;
    return 0;
  }

  // Queues one FUSE uring command (not yet submitted).
  void push_cmd(int fuse_fd, std::uint32_t cmd_op, const CmdReq& req, const iovec* iov) noexcept {
    const unsigned idx = tail_ & sq_mask_;
    auto* sqe = reinterpret_cast<io_uring_sqe*>(static_cast<unsigned char*>(sqes_) +
                                                static_cast<std::size_t>(idx) * kSqeBytes);
    std::memset(sqe, 0, kSqeBytes);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fuse_fd;
    sqe->cmd_op = cmd_op;
    if (iov != nullptr) {
      sqe->addr = reinterpret_cast<std::uintptr_t>(iov);
      sqe->len = 2;  // header, payload
    }
    sqe->user_data = cmd_op;
    std::memcpy(reinterpret_cast<unsigned char*>(sqe) + kSqeCmdOffset, &req, sizeof(req));
    sq_array_[idx] = idx;
    ++tail_;
    std::atomic_ref<unsigned>(*sq_tail_).store(tail_, std::memory_order_release);
  }

  // Submits what is queued; with `wait`, also waits for one completion. 0 or -errno.
  int enter(bool wait) noexcept {
    const unsigned pending =
        tail_ - std::atomic_ref<unsigned>(*sq_head_).load(std::memory_order_acquire);
    const unsigned flags = wait ? IORING_ENTER_GETEVENTS : 0;
    const long rc = ::syscall(__NR_io_uring_enter, fd_, pending, wait ? 1 : 0, flags, nullptr, 0);
    return rc < 0 ? -errno : 0;
  }

  bool submitted() const noexcept {
    return std::atomic_ref<unsigned>(*sq_head_).load(std::memory_order_acquire) == tail_;
  }

  // Takes one completion if there is one.
  bool pop(io_uring_cqe& out) noexcept {
    const unsigned head = std::atomic_ref<unsigned>(*cq_head_).load(std::memory_order_relaxed);
    const unsigned tail = std::atomic_ref<unsigned>(*cq_tail_).load(std::memory_order_acquire);
    if (head == tail) return false;
    out = cqes_[head & cq_mask_];
    std::atomic_ref<unsigned>(*cq_head_).store(head + 1, std::memory_order_release);
    return true;
  }

  void close() noexcept {
    if (sqes_ != MAP_FAILED) ::munmap(sqes_, sqes_len_);
    if (cq_ != MAP_FAILED && cq_ != sq_) ::munmap(cq_, cq_len_);
    if (sq_ != MAP_FAILED) ::munmap(sq_, sq_len_);
    sqes_ = cq_ = sq_ = MAP_FAILED;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fail() noexcept {
    const int e = -errno;
    close();
    return e;
  }
  int fd_ = -1;
  void* sq_ = MAP_FAILED;
  void* cq_ = MAP_FAILED;
  void* sqes_ = MAP_FAILED;
  std::size_t sq_len_ = 0, cq_len_ = 0, sqes_len_ = 0;
  unsigned *sq_head_ = nullptr, *sq_tail_ = nullptr, *sq_array_ = nullptr;
  unsigned *cq_head_ = nullptr, *cq_tail_ = nullptr;
  unsigned sq_mask_ = 0, cq_mask_ = 0, tail_ = 0;
  io_uring_cqe* cqes_ = nullptr;
};

thread_local UringTransport::Entry* tls_entry = nullptr;

}  // namespace

struct UringTransport::Entry {
  std::uint16_t qid = 0;
  ReqHeader* header = nullptr;   // start of the entry's header page
  std::byte* payload = nullptr;  // right after it
  iovec iov[2]{};
  Ring ring;
  std::thread thread;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> pending_unique{0};  // the request being processed, else 0
  Mutex mu;
  CondVar cv;
  bool replied GUARDED_BY(mu) = false;
};

bool serving_ring_request() noexcept { return tls_entry != nullptr; }

bool kernel_allows_fuse_uring(std::string& why) {
  std::ifstream in("/sys/module/fuse/parameters/enable_uring");
  std::string v;
  if (!(in >> v)) {
    why = "this kernel has no FUSE over io_uring (/sys/module/fuse/parameters/enable_uring)";
    return false;
  }
  if (v != "Y") {
    why = "/sys/module/fuse/parameters/enable_uring is " + v + " (root may write Y)";
    return false;
  }
  return true;
}

UringTransport::UringTransport(fuse_session* se, Options opts)
    : se_(se), fd_(fuse_session_fd(se)), opts_(std::move(opts)) {}

Result<std::unique_ptr<UringTransport>> UringTransport::prepare(fuse_session* se, Options opts) {
  std::unique_ptr<UringTransport> t(new UringTransport(se, std::move(opts)));
  const std::size_t page = page_size();
  t->queues_ = possible_cpus();
  // Tests of the fallback (the kernel here always offers io_uring when enable_uring is Y, and
  // io_uring_setup fails only where /proc/sys/kernel/io_uring_disabled, machine-wide, forbids it:
  // CRYPTMAP_TEST_FUSE_URING_FAIL_SETUP makes it fail as that does, with EPERM).
  t->refuse_for_test_ = std::getenv("CRYPTMAP_TEST_FUSE_URING_REFUSE_INIT") != nullptr;
  const bool fail_setup_for_test = std::getenv("CRYPTMAP_TEST_FUSE_URING_FAIL_SETUP") != nullptr;
  const std::uint32_t n = std::max(t->opts_.entries, t->queues_);
  // The largest request libfuse 3.14 negotiates (max_write = max_pages * page = 1 MiB); INIT
  // checks the kernel's rule against it before asking for io_uring.
  t->payload_bytes_ = receive_buffer_bytes() - page;
  t->stride_ = page + t->payload_bytes_;
  CRYPTMAP_TRY(buffers, LockedMemory::allocate(t->stride_ * n, MemoryLock::kBestEffort,
                                               "FUSE io_uring buffers"));
  t->buffers_ = std::move(buffers);
  install_wake_handler();
  t->entries_.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    auto e = std::make_unique<Entry>();
    e->qid = static_cast<std::uint16_t>(i % t->queues_);
    std::byte* base = t->buffers_.data() + i * t->stride_;
    e->header = reinterpret_cast<ReqHeader*>(base);
    e->payload = base + page;
    e->iov[0] = {e->header, sizeof(ReqHeader)};
    e->iov[1] = {e->payload, t->payload_bytes_};
    if (const int rc = fail_setup_for_test ? -EPERM : e->ring.open(2); rc != 0)
      return make_sys_error(-rc, "io_uring_setup");
    t->entries_.push_back(std::move(e));
  }
  for (auto& e : t->entries_) {
    Entry& ref = *e;
    try {
      e->thread = std::thread([self = t.get(), &ref] { self->serve(ref); });
    } catch (const std::system_error& ex) {
      t->request_stop();
      t->wait();
      return make_sys_error(ex.code().value(), "FUSE io_uring: start a thread");
    }
  }
  return t;
}

UringTransport::~UringTransport() {
  request_stop();
  wait();
}

// ---- negotiation ------------------------------------------------------------------------------

void UringTransport::on_request(const void* buf, std::size_t len) noexcept {
  if (len < sizeof(InHeader) + kInitInMin) return;
  if (load<std::uint32_t>(buf, offsetof(InHeader, opcode)) != kFuseInit) return;
  const auto* arg = static_cast<const unsigned char*>(buf) + sizeof(InHeader);
  const std::uint32_t flags = load<std::uint32_t>(arg, kInitInFlags);
  const std::uint32_t flags2 = load<std::uint32_t>(arg, kInitInFlags2);
  kernel_offers_.store((flags & kFuseInitExt) != 0 && (flags2 & kFuseOverIoUringHi) != 0);
  init_unique_.store(load<std::uint64_t>(buf, offsetof(InHeader, unique)));
}

void UringTransport::patch_reply(struct iovec* iov, int count) noexcept {
  if (count < 2 || iov[0].iov_len < sizeof(OutHeader) || state_.load() != State::kPrepared) return;
  const auto* out = static_cast<const OutHeader*>(iov[0].iov_base);
  if (out->unique == 0 || out->unique != init_unique_.load() || out->error != 0) return;
  void* init = iov[1].iov_base;
  std::string why;
  if (iov[1].iov_len < kInitOutMin) {
    why = "the INIT reply predates protocol 7.36 (no flags2)";
  } else if (!kernel_offers_.load()) {
    why = "the kernel did not offer FUSE_OVER_IO_URING in INIT";
  } else if (refuse_for_test_) {
    why = "refused for a test (CRYPTMAP_TEST_FUSE_URING_REFUSE_INIT)";
  } else {
    const std::uint32_t flags = load<std::uint32_t>(init, kInitOutFlags);
    std::size_t need =
        std::max<std::size_t>(kMinReadBuffer, load<std::uint32_t>(init, kInitOutMaxWrite));
    if ((flags & kFuseMaxPages) != 0)
      need = std::max(need, load<std::uint16_t>(init, kInitOutMaxPages) * page_size());
    if (need > payload_bytes_) {
      why = "the negotiated request size (" + std::to_string(need) +
            " bytes) exceeds the ring buffers (" + std::to_string(payload_bytes_) + ")";
    } else {
      store<std::uint32_t>(init, kInitOutFlags, flags | kFuseInitExt);
      store<std::uint32_t>(init, kInitOutFlags2,
                           load<std::uint32_t>(init, kInitOutFlags2) | kFuseOverIoUringHi);
      state_.store(State::kNegotiated);
      return;
    }
  }
  state_.store(State::kFailed);
  if (opts_.on_outcome) opts_.on_outcome(false, why);
  request_stop();  // the ring threads end; wait() joins them
}

void UringTransport::after_reply(const struct iovec* iov, int count, ssize_t written) noexcept {
  if (count < 1 || iov[0].iov_len < sizeof(OutHeader) || state_.load() != State::kNegotiated)
    return;
  const auto* out = static_cast<const OutHeader*>(iov[0].iov_base);
  if (out->unique != init_unique_.load()) return;
  if (written < 0) {
    state_.store(State::kFailed);
    if (opts_.on_outcome) opts_.on_outcome(false, "the INIT reply could not be written");
    request_stop();
    return;
  }
  {
    MutexLock lock(mu_);
    if (go_) return;
    go_ = true;
  }
  cv_.notify_all();
}

void UringTransport::registered(bool ok, int err) {
  if (!ok) {
    failed_.fetch_add(1);
    int expected = 0;
    first_error_.compare_exchange_strong(expected, err);
  }
  if (reported_.fetch_add(1) + 1 != entries_.size()) return;
  if (failed_.load() == 0) {
    state_.store(State::kServing);
    if (opts_.on_outcome)
      opts_.on_outcome(true, std::to_string(entries_.size()) + " ring entries on " +
                                 std::to_string(queues_) + " queues");
  } else {
    state_.store(State::kFailed);
    if (opts_.on_outcome)
      opts_.on_outcome(false, std::string("registering the ring entries failed: ") +
                                  std::strerror(-first_error_.load()));
  }
}

// ---- replies ----------------------------------------------------------------------------------

ssize_t UringTransport::take_reply(const struct iovec* iov, int count) noexcept {
  if (count < 1 || iov[0].iov_len < sizeof(OutHeader)) return -1;
  OutHeader out;
  std::memcpy(&out, iov[0].iov_base, sizeof(out));
  if (out.unique == 0) return -1;  // a notification: /dev/fuse only
  Entry* e = tls_entry;
  if (e == nullptr || e->pending_unique.load() != out.unique) {
    e = nullptr;
    for (auto& c : entries_) {
      if (c->pending_unique.load() == out.unique) {
        e = c.get();
        break;
      }
    }
    if (e == nullptr) return -1;
  }
  std::size_t total = 0;
  std::size_t payload = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  if (total - iov[0].iov_len > payload_bytes_) {
    out.error = -EIO;  // cannot happen with the sizes negotiated at INIT
  } else {
    for (int i = 1; i < count; ++i) {
      // A read handler replies from the entry's payload itself (serving_reply_buffer): the
      // data is already where the kernel takes it from.
      if (iov[i].iov_base != e->payload + payload)
        std::memcpy(e->payload + payload, iov[i].iov_base, iov[i].iov_len);
      payload += iov[i].iov_len;
    }
  }
  out.len = static_cast<std::uint32_t>(sizeof(OutHeader) + payload);
  std::memcpy(e->header->in_out, &out, sizeof(out));
  e->header->ent.payload_sz = static_cast<std::uint32_t>(payload);
  e->pending_unique.store(0);
  {
    MutexLock lock(e->mu);
    e->replied = true;
  }
  e->cv.notify_all();
  return static_cast<ssize_t>(total);
}

// ---- ring threads -----------------------------------------------------------------------------

bool UringTransport::wait_for_go() {
  MutexLock lock(mu_);
  while (!go_ && !stop_) cv_.wait(lock);
  return go_ && !stop_;
}

void UringTransport::serve(Entry& e) {
  enter_serving_thread(opts_.stack_prefault_bytes);
  if (opts_.on_start) opts_.on_start();
  // A READ carries no payload (its headers sit in the header page's tail), so its reply can be
  // put into the payload buffer directly.
  set_serving_reply_buffer(std::span<std::byte>(e.payload, payload_bytes_));
  auto stopping = [this] {
    MutexLock lock(mu_);
    return stop_;
  };
  bool fallback = false;  // this thread serves /dev/fuse instead (below)
  if (!wait_for_go()) {
    fallback = state_.load() == State::kFailed;
  } else {
    CmdReq req{};
    req.qid = e.qid;
    // The last command sent, resent when its completion says EINTR or EAGAIN (not done).
    std::uint32_t last_op = kCmdRegister;
    CmdReq last = req;
    e.ring.push_cmd(fd_, kCmdRegister, req, e.iov);
    int rc = e.ring.enter(false);
    io_uring_cqe cqe{};
    bool have = rc == 0 && e.ring.pop(cqe);
    // FUSE's uring_cmd runs inline at submission: an error completes at once, success stays
    // queued until a request arrives (which may be at once too).
    if (rc != 0 || (have && cqe.res < 0)) {
      registered(false, rc != 0 ? rc : cqe.res);
      fallback = true;
    } else {
      registered(true, 0);
      for (;;) {
        if (!have) {
          if (stopping()) break;
          rc = e.ring.enter(true);
          if (rc == -EINTR || rc == -EAGAIN) continue;
          if (rc != 0) break;
          have = e.ring.pop(cqe);
          if (!have) continue;
        }
        have = false;
        if (cqe.res == -EINTR || cqe.res == -EAGAIN) {
          e.ring.push_cmd(fd_, last_op, last, last_op == kCmdRegister ? e.iov : nullptr);
          if (e.ring.enter(false) != 0) break;
          continue;
        }
        if (cqe.res != 0) {  // -ENOTCONN: the connection is gone or the ring closes
          if (cqe.res != -ENOTCONN && cqe.res != -ECONNABORTED && cqe.res != -ECANCELED &&
              !stopping() && opts_.on_warning)
            opts_.on_warning("a ring entry of queue " + std::to_string(e.qid) +
                             " stopped: " + std::strerror(-cqe.res));
          break;
        }
        const std::uint64_t unique = e.header->ent.commit_id;
        InHeader in;
        std::memcpy(&in, e.header->in_out, sizeof(in));
        const std::size_t payload = e.header->ent.payload_sz;
        const bool sane = in.len >= sizeof(InHeader) + payload && payload <= payload_bytes_ &&
                          in.len - sizeof(InHeader) - payload <= kOpInBytes && in.unique == unique;
        if (sane) {
          // libfuse wants header, op header and payload in one buffer: copy the two headers
          // in front of the payload (they fit in the header page's tail).
          const std::size_t op_len = in.len - sizeof(InHeader) - payload;
          std::byte* start = e.payload - sizeof(InHeader) - op_len;
          std::memcpy(start, &in, sizeof(in));
          std::memcpy(start + sizeof(InHeader), e.header->op_in, op_len);
          {
            MutexLock lock(e.mu);
            e.replied = false;
          }
          e.pending_unique.store(unique);
          fuse_buf fbuf{};
          fbuf.mem = start;
          fbuf.size = in.len;
          tls_entry = &e;
          fuse_session_process_buf(se_, &fbuf);
          tls_entry = nullptr;
          requests_.fetch_add(1, std::memory_order_relaxed);
          if (in.opcode != kFuseForget && in.opcode != kFuseBatchForget) {
            MutexLock lock(e.mu);  // a reply from another thread (a volume's completion)
            while (!e.replied) e.cv.wait(lock);
          } else {
            e.pending_unique.store(0);
          }
        }
        if (!sane || in.opcode == kFuseForget || in.opcode == kFuseBatchForget) {
          const OutHeader out{sizeof(OutHeader), sane ? 0 : -EIO, unique};
          std::memcpy(e.header->in_out, &out, sizeof(out));
          e.header->ent.payload_sz = 0;
        }
        CmdReq commit{};
        commit.qid = e.qid;
        commit.commit_id = unique;
        last_op = kCmdCommitAndFetch;
        last = commit;
        e.ring.push_cmd(fd_, kCmdCommitAndFetch, commit, nullptr);
        do {
          rc = e.ring.enter(false);
        } while (rc == -EINTR || (rc == 0 && !e.ring.submitted()));
        if (rc != 0) break;
        have = e.ring.pop(cqe);
      }
    }
  }
  if (fallback) {
    // The rings do not carry the requests (INIT did not ask for them, or this entry's
    // registration failed): serve /dev/fuse with the entry's buffer, which is as large as a
    // worker's receive buffer. The mount starts only a few /dev/fuse workers of its own next to
    // the rings, so this keeps the fallback at full depth without a second set of buffers.
    const int err =
        serve_dev_fuse(se_, reinterpret_cast<std::byte*>(e.header), stride_, dev_requests_);
    if (err != 0 && opts_.on_warning)
      opts_.on_warning(std::string("reading /dev/fuse failed: ") + std::strerror(-err));
  }
  set_serving_reply_buffer({});
  e.done.store(true);
  cv_.notify_all();
}

void UringTransport::request_stop() noexcept {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void UringTransport::wait() noexcept {
  if (joined_) return;
  request_stop();
  // Threads serving /dev/fuse after a fallback leave their loop only when the session ends.
  if (state_.load() == State::kFailed) fuse_session_exit(se_);
  for (;;) {
    bool all = true;
    for (auto& e : entries_) {
      if (e->thread.joinable() && !e->done.load()) {
        all = false;
        wake_serving_thread(e->thread.native_handle());
      }
    }
    if (all) break;
    MutexLock lock(mu_);
    (void)cv_.wait_for(lock, std::chrono::milliseconds(10));
  }
  for (auto& e : entries_) {
    if (e->thread.joinable()) e->thread.join();
  }
  joined_ = true;
  if (state_.load() != State::kFailed) state_.store(State::kStopped);
}

}  // namespace cryptmap::fs::internal
