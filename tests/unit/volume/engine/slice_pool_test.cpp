// SlicePool: every slice runs exactly once; the slices of one fan-out run on several threads at
// once; a joiner finishes its fan-out even when every worker is held elsewhere; idle workers
// sleep instead of spinning (issue #13: TBB's idle workers spun in sched_yield).
#include "volume/engine/slice_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace cryptmap::volume {
namespace {

using std::chrono::milliseconds;

double cpu_seconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

template <class F>
void fan_out(SlicePool& pool, std::size_t n, F& f) {
  SlicePool::FanOut fan;
  fan.set(
      n, [](void* c, std::size_t i) { (*static_cast<F*>(c))(i); }, &f);
  pool.run(fan);
}

TEST(SlicePool, RunsEverySliceExactlyOnce) {
  SlicePool pool(3);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{37}}) {
    std::array<std::atomic<int>, 64> runs{};
    auto f = [&](std::size_t i) { runs[i].fetch_add(1); };
    fan_out(pool, n, f);
    for (std::size_t i = 0; i < runs.size(); ++i)
      ASSERT_EQ(runs[i].load(), i < n ? 1 : 0) << "slice " << i << " of " << n;
  }
}

// Slice 0 waits until slice 1 has begun: only possible when two threads run them at once.
TEST(SlicePool, RunsTheSlicesOfOneFanOutInParallel) {
  SlicePool pool(1);
  std::mutex mu;
  std::condition_variable cv;
  bool second_began = false;
  bool met = false;
  auto f = [&](std::size_t i) {
    std::unique_lock lock(mu);
    if (i == 1) {
      second_began = true;
      cv.notify_all();
      return;
    }
    met = cv.wait_for(lock, std::chrono::seconds(5), [&] { return second_began; });
  };
  fan_out(pool, 2, f);
  EXPECT_TRUE(met) << "the two slices did not run at the same time";
}

// Both workers are stuck in a slice of a posted fan-out; another thread's fan-out still
// completes, because its joiner runs the slices itself.
TEST(SlicePool, AJoinerFinishesItsFanOutWhileEveryWorkerIsBusy) {
  SlicePool pool(2);
  std::mutex mu;
  std::condition_variable cv;
  int stuck = 0;
  bool release = false;
  auto hold = [&](std::size_t) {
    std::unique_lock lock(mu);
    ++stuck;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  SlicePool::FanOut held;
  held.set(
      2, [](void* c, std::size_t i) { (*static_cast<decltype(hold)*>(c))(i); }, &hold);
  pool.post(held);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return stuck == 2; }));
  }
  std::atomic<int> ran{0};
  auto count = [&](std::size_t) { ran.fetch_add(1); };
  fan_out(pool, 8, count);
  EXPECT_EQ(ran.load(), 8);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  pool.join(held);
}

// Between small fan-outs spaced 2 ms apart the workers have nothing to do. Workers that spin
// (or yield in a loop) while idle burn CPU for the whole gap; sleeping ones use next to none.
// The workers' CPU time is the process's minus the calling thread's (nothing else runs).
TEST(SlicePool, IdleWorkersSleep) {
  SlicePool pool(3);
  std::atomic<int> ran{0};
  auto f = [&](std::size_t) { ran.fetch_add(1); };
  fan_out(pool, 4, f);  // every worker has started
  const double self0 = cpu_seconds(RUSAGE_SELF);
  const double caller0 = cpu_seconds(RUSAGE_THREAD);
  const auto t0 = std::chrono::steady_clock::now();
  for (int k = 0; k < 100; ++k) {
    fan_out(pool, 4, f);
    std::this_thread::sleep_for(milliseconds(2));
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double workers =
      (cpu_seconds(RUSAGE_SELF) - self0) - (cpu_seconds(RUSAGE_THREAD) - caller0);
  EXPECT_EQ(ran.load(), 404);
  // Three spinning workers would use up to 3 x wall; sleeping ones only their wake-ups.
  EXPECT_LT(workers, 0.25 * wall) << "workers used " << workers << " s of CPU in " << wall
                                  << " s of mostly idle time";
}

}  // namespace
}  // namespace cryptmap::volume
