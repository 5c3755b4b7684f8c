// FakeVolume — an in-memory volume::Volume built to the real contract, and hostile:
//  - the work of each call runs on its own worker threads (never on the caller's) unless
//    `inline_completions`, while the calling thread waits, as the engine's crypto fan-out does;
//  - write data is copied only on the worker, right before the call returns;
//  - errors can be injected per operation; delays can be added;
//  - it records contract violations (a range past the end reaching the volume, overlapping
//    buffer reuse, a resize while calls run) instead of silently accepting them.
// resize() changes the size (new bytes read as zeros) up to `image_bytes`, the "image".
// "durable" is the content as of the last completed flush(): what a crash would keep.
#pragma once

#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/inline_function.h"
#include "volume/volume.h"

namespace cryptmap::fs::testing {

class FakeVolume : public volume::Volume {
 public:
  enum class Op { kRead, kWrite, kFlush };
  struct Options {
    std::uint64_t size_bytes = 8u << 20;
    bool read_only = false;
    bool inline_completions = false;
    unsigned workers = 3;
    std::chrono::microseconds delay{0};
    std::atomic<int>* flush_counter = nullptr;  // outlives the volume (counts after its death)
    std::uint64_t image_bytes = 0;  // what resize(0) grows to, and its limit (0: size_bytes)
  };

  explicit FakeVolume(Options o)
      : opts_(o), size_(o.size_bytes), data_(o.size_bytes), durable_(o.size_bytes) {
    if (opts_.image_bytes == 0) opts_.image_bytes = o.size_bytes;
    layout_.type = volume::VolumeType::kLuks2;
    layout_.cipher.cipher = "aes";
    layout_.cipher.chain_mode = "xts";
    layout_.cipher.iv_mode = "plain64";
    layout_.key_bytes = 64;
    layout_.sector_size = 512;
    layout_.data_offset_bytes = 16u << 20;
    layout_.size_bytes = o.size_bytes;
    for (unsigned i = 0; i < o.workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~FakeVolume() override {
    {
      std::lock_guard l(qmu_);
      quit_ = true;
    }
    qcv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  Result<std::size_t> read(ByteOffset off, std::span<std::byte> out) override {
    note_call();
    Calling calling(calls_);
    return run([this, off, out](Slot* d) {
      if (auto e = take_failure(Op::kRead)) return finish(d, *e);
      if (off.value > data_.size()) return finish(d, violation("read past end"));
      const std::size_t n = std::min<std::uint64_t>(out.size(), data_.size() - off.value);
      {
        std::lock_guard l(dmu_);
        std::memcpy(out.data(), data_.data() + off.value, n);
      }
      reads_.fetch_add(1);
      raise_to(largest_read_, out.size());
      finish(d, n);
    });
  }

  Result<std::size_t> write(ByteOffset off, std::span<const std::byte> in) override {
    note_call();
    Calling calling(calls_);
    const int now = in_flight_writes_.fetch_add(1) + 1;
    int seen = max_parallel_writes_.load();
    while (now > seen && !max_parallel_writes_.compare_exchange_weak(seen, now)) {
    }
    return run([this, off, in](Slot* d) {
      std::function<void()> gate;
      {
        std::lock_guard l(gmu_);
        gate = write_gate_;
      }
      if (gate) gate();  // called unlocked: a gate may block until other writes arrive
      in_flight_writes_.fetch_sub(1);
      if (auto e = take_failure(Op::kWrite)) return finish(d, *e);
      if (opts_.read_only) return finish(d, make_error(Errc::kReadOnly, "fake write"));
      if (off.value + in.size() > data_.size()) {
        return finish(d, off.value >= data_.size() ? make_error(Errc::kNoSpace, "fake write")
                                                   : violation("write crossing the end"));
      }
      {
        std::lock_guard l(dmu_);
        std::memcpy(data_.data() + off.value, in.data(), in.size());
      }
      writes_.fetch_add(1);
      raise_to(largest_write_, in.size());
      finish(d, in.size());
    });
  }

  Result<void> flush() override {
    note_call();
    Calling calling(calls_);
    Result<std::size_t> r = run([this](Slot* d) {
      if (auto e = take_failure(Op::kFlush)) return finish(d, *e);
      {
        std::lock_guard l(dmu_);
        durable_ = data_;
      }
      flushes_.fetch_add(1);
      if (opts_.flush_counter != nullptr) opts_.flush_counter->fetch_add(1);
      finish(d, std::size_t{0});
    });
    if (!r) return r.error();
    return ok();
  }

  // Volume::resize's contract: no other call runs (else a violation).
  Result<std::uint64_t> resize(std::uint64_t n) override {
    if (calls_.load() != 0) return violation("resize while calls run");
    if (opts_.read_only) return make_error(Errc::kReadOnly, "fake resize");
    if (n == 0) n = opts_.image_bytes;
    if (n % 512 != 0) return make_error(Errc::kInvalid, "fake resize: not whole sectors", n);
    if (n > opts_.image_bytes) return make_error(Errc::kNoSpace, "fake resize: too small", n);
    {
      std::lock_guard l(dmu_);
      data_.resize(n);
      durable_.resize(n);
    }
    size_.store(n);
    resizes_.fetch_add(1);
    return n;
  }

  std::uint64_t size_bytes() const noexcept override { return size_.load(); }
  const volume::VolumeLayout& layout() const noexcept override { return layout_; }
  bool read_only() const noexcept override { return opts_.read_only; }

  // ---- test hooks ----
  void fail_next(Op op, Errc code, int times = 1) {
    std::lock_guard l(fmu_);
    for (int i = 0; i < times; ++i) failures_.push_back({op, code});
  }
  void fill(std::uint32_t seed) {
    std::lock_guard l(dmu_);
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& b : data_) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      b = static_cast<std::byte>(x);
    }
    durable_ = data_;
  }
  std::vector<std::byte> data() const {
    std::lock_guard l(dmu_);
    return data_;
  }
  std::vector<std::byte> durable() const {
    std::lock_guard l(dmu_);
    return durable_;
  }
  // Runs on the worker before each write is applied (e.g. to hold writes until N are in flight).
  // The test's thread sets it while the fake's workers may run writes (the FUSE request that
  // reaches them crosses the kernel, which TSan cannot see as synchronisation): hence gmu_.
  void set_write_gate(std::function<void()> g) {
    std::lock_guard l(gmu_);
    write_gate_ = std::move(g);
  }
  int in_flight_writes() const { return in_flight_writes_.load(); }
  int max_parallel_writes() const { return max_parallel_writes_.load(); }
  int flushes() const { return flushes_.load(); }
  int reads() const { return reads_.load(); }
  // The largest read / write request the volume was handed, in bytes.
  std::size_t largest_read() const { return largest_read_.load(); }
  std::size_t largest_write() const { return largest_write_.load(); }
  int writes() const { return writes_.load(); }
  int violations() const { return violations_.load(); }
  int resizes() const { return resizes_.load(); }
  // PR_GET_IO_FLUSHER of the last thread that called into the volume (a FUSE worker).
  int caller_io_flusher() const { return caller_io_flusher_.load(); }

 private:
  void note_call() { caller_io_flusher_.store(prctl(58 /*PR_GET_IO_FLUSHER*/, 0, 0, 0, 0)); }
  // Counts a call from entry to return (resize checks that none runs).
  struct Calling {
    explicit Calling(std::atomic<int>& c) : c_(c) { c_.fetch_add(1); }
    ~Calling() { c_.fetch_sub(1); }
    std::atomic<int>& c_;
  };
  Error violation(const char* what) {
    violations_.fetch_add(1);
    return make_error(Errc::kInvalid, what);
  }
  std::optional<Errc> take_failure(Op op) {
    std::lock_guard l(fmu_);
    auto it = std::find_if(failures_.begin(), failures_.end(),
                           [&](const auto& f) { return f.first == op; });
    if (it == failures_.end()) return std::nullopt;
    Errc c = it->second;
    failures_.erase(it);
    return c;
  }
  // Where a worker leaves a call's result; lives on the calling thread's stack.
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<std::size_t>> result;
  };
  static void finish(Slot* d, Result<std::size_t> r) {
    std::lock_guard l(d->mu);
    d->result.emplace(std::move(r));
    d->cv.notify_all();  // under the lock: the caller cannot return (and destroy d) before this
  }
  static void finish(Slot* d, Errc c) { finish(d, make_error(c, "injected failure")); }
  using Job = InlineFunction<void(), 192>;
  // Runs `body(slot)` on a worker (or inline) and waits for its result.
  template <class Body>
  Result<std::size_t> run(Body body) {
    Slot slot;
    submit([body = std::move(body), d = &slot]() mutable { body(d); });
    std::unique_lock l(slot.mu);
    slot.cv.wait(l, [&] { return slot.result.has_value(); });
    return std::move(*slot.result);
  }
  void submit(Job job) {
    if (opts_.inline_completions) {
      if (opts_.delay.count() != 0) std::this_thread::sleep_for(opts_.delay);
      job();
      return;
    }
    {
      std::lock_guard l(qmu_);
      q_.push_back(std::move(job));
    }
    qcv_.notify_one();
  }
  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock l(qmu_);
        qcv_.wait(l, [this] { return quit_ || !q_.empty(); });
        if (q_.empty()) return;
        job = std::move(q_.front());
        q_.pop_front();
      }
      if (opts_.delay.count() != 0) std::this_thread::sleep_for(opts_.delay);
      job();
    }
  }

  Options opts_;
  std::atomic<std::uint64_t> size_;
  std::atomic<int> calls_{0}, resizes_{0};
  volume::VolumeLayout layout_;
  mutable std::mutex dmu_;
  std::vector<std::byte> data_;
  std::vector<std::byte> durable_;
  std::mutex fmu_;
  std::deque<std::pair<Op, Errc>> failures_;
  std::mutex gmu_;
  std::function<void()> write_gate_;  // guarded by gmu_
  std::atomic<int> in_flight_writes_{0}, max_parallel_writes_{0};
  std::atomic<int> flushes_{0}, reads_{0}, writes_{0}, violations_{0};
  std::atomic<std::size_t> largest_read_{0}, largest_write_{0};
  static void raise_to(std::atomic<std::size_t>& max, std::size_t n) {
    std::size_t cur = max.load();
    while (n > cur && !max.compare_exchange_weak(cur, n)) {
    }
  }
  std::atomic<int> caller_io_flusher_{-1};
  std::mutex qmu_;
  std::condition_variable qcv_;
  std::deque<Job> q_;
  bool quit_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace cryptmap::fs::testing
