// The input projection computed alongside a recurrence that runs on one thread.
//
// When a step is too small to split over threads (batch 1 at H = 128: 49K multiply-adds; team.h),
// the recurrence runs on the calling thread alone and the whole call stays off OpenMP's threads
// (OneThreadCall). The projection GI = X W_ih^T of all steps is then the only work a second core
// could take: a plain helper thread computes it block by block (kStepsPerBlock steps), in the
// order the recurrence consumes the steps, while the calling thread runs the recurrence. Blocks
// are claimed one at a time by either thread: when the recurrence reaches a block nobody has
// started (the helper started late, or shares a busy core), it computes that block itself. When it
// reaches a block the helper is computing at that moment, it computes that step's rows itself
// into a scratch row buffer rather than wait: a helper that another process descheduled in the
// middle of a block would otherwise hold the recurrence for a whole time slice (B1 T1000 H128
// beside a busy neighbour: 7.8 ms where one thread took 3.9 ms; bench/inference_contention.py).
// The helper ends with its last block, leaving its core idle rather than spinning, and the call
// does not wait for a helper that has not been scheduled yet (beside a busy neighbour that wait
// cost B1 T1000 H128 float32 4 ms a call): it only waits for a block the helper is computing.
#pragma once

#include <ATen/ATen.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "gemm.h"
#include "problem.h"

namespace grukit {

// Tests: a pause of the helper after it claims each block (a helper another process descheduled),
// and how many steps the recurrence computed itself beside an unfinished block of the helper's.
inline std::atomic<int64_t>& projection_helper_delay_us() {
  static std::atomic<int64_t> delay{0};
  return delay;
}
inline std::atomic<int64_t>& projection_steps_beside_helper() {
  static std::atomic<int64_t> steps{0};
  return steps;
}

class ProjectionAhead {
 public:
  static constexpr int64_t kStepsPerBlock = 16;
  // below this many multiply-adds the projection is too short to be worth a thread (~40 us)
  static constexpr int64_t kMinMacs = int64_t(1) << 22;
  static constexpr int kSpinsBeforeOwnRows = 64;  // a block the helper is finishing: a short wait

  // Worth it, beside a one-thread recurrence that leaves a thread free (OneThreadCall::limited),
  // when the projection is long.
  static bool worth_it(int64_t rows, int64_t N, int64_t K) { return rows * N * K >= kMinMacs; }

  // Starts computing C[rows of p, N] = A[rows, K] @ B[K, N] (row-major, packed) by blocks of steps
  // in the order step_at(p, 0), step_at(p, 1), ...; step t's rows are p.off[t] .. p.off[t + 1].
  template <typename T>
  ProjectionAhead(const Problem& p, int64_t N, int64_t K, const T* A, const T* B, T* C)
      : p_(p), blocks_((p.T + kStepsPerBlock - 1) / kStepsPerBlock), done_(new std::atomic<bool>[blocks_]) {
    for (int64_t j = 0; j < blocks_; ++j) done_[j].store(false, std::memory_order_relaxed);
    compute_ = [this, N, K, A, B, C](int64_t j) {
      int64_t lo = 0, hi = 0;
      rows_of_block(j, &lo, &hi);
      mm<T>(Product::projection, hi - lo, N, K, A + lo * K, K, B, N, C + lo * N, N, false);
      done_[j].store(true, std::memory_order_release);
    };
    auto scratch = std::make_shared<std::vector<T>>(p.B * N);  // one step's rows at most
    compute_step_ = [N, K, A, B, C, scratch, &p](int64_t step) -> void* {
      const int64_t t = step_at(p, step), lo = p.off[t], rows = p.off[t + 1] - lo;
      mm<T>(Product::projection, rows, N, K, A + lo * K, K, B, N, scratch->data(), N, false);
      return scratch->data();
    };
    rows_of_step_ = [C, N, &p](int64_t step) -> void* { return C + p.off[step_at(p, step)] * N; };
    const int caller_cpu = current_cpu();
    // The helper is detached: a call never waits for it to be scheduled, only for a block it is
    // computing. What it touches after this object is gone (it started late) is `claims_`, shared.
    std::thread([this, claims = claims_, blocks = blocks_, caller_cpu] {
      keep_off_cpu(caller_cpu);
      claims->active.fetch_add(1);  // from here until the decrement, this object is alive (~ProjectionAhead)
      try {
        SequentialBlas one;
        for (int64_t j = claims->next.fetch_add(1); j < blocks; j = claims->next.fetch_add(1)) {
          if (const int64_t delay = projection_helper_delay_us().load(std::memory_order_relaxed))
            std::this_thread::sleep_for(std::chrono::microseconds(delay));
          compute_(j);
        }
      } catch (...) {
        error_ = std::current_exception();
        failed_.store(true, std::memory_order_release);
      }
      claims->active.fetch_sub(1);
    }).detach();
    if (projection_helper_delay_us().load(std::memory_order_relaxed) > 0)  // (tests) the helper holds a block
      while (claims_->next.load() == 0) std::this_thread::yield();
  }

  ProjectionAhead(const ProjectionAhead&) = delete;
  ProjectionAhead& operator=(const ProjectionAhead&) = delete;
  // Stops new claims and waits only for a block the helper is computing (it writes into C). A
  // helper that has not started yet finds nothing left to claim and ends without touching C.
  ~ProjectionAhead() { close(); }

  // The rows of the step-th step (in recurrence order), computed: C's (the step's block computed
  // here if nobody has started it), or, while the helper is computing that block, this step's rows
  // computed here into a scratch buffer, valid until the next call (T* of the constructor's type).
  // Rethrows the helper's failure.
  void* rows_for_step(int64_t step) {
    const int64_t block = step / kStepsPerBlock;
    for (int spins = 0; !done_[block].load(std::memory_order_acquire); ++spins) {
      if (failed_.load(std::memory_order_acquire)) {
        close();
        std::rethrow_exception(error_);
      }
      int64_t unclaimed = claims_->next.load();
      if (unclaimed == block && claims_->next.compare_exchange_strong(unclaimed, block + 1)) {
        compute_(block);  // (every earlier block is done: this thread computed or passed each in turn)
        break;
      }
      if (unclaimed > block && spins >= kSpinsBeforeOwnRows) {  // the helper's block, unfinished
        projection_steps_beside_helper().fetch_add(1, std::memory_order_relaxed);
        return compute_step_(step);
      }
    }
    return rows_of_step_(step);
  }

 private:
  void close() {
    claims_->next.store(blocks_);  // nothing more to start (every block is claimed, or this call ends)
    while (claims_->active.load() > 0) std::this_thread::yield();
  }

  // A new thread starts on its creator's CPU and would take turns with the recurrence there until
  // the scheduler moves it: allow it every CPU the process may use but the caller's.
  static void keep_off_cpu(int cpu) {
#if defined(__linux__)
    cpu_set_t allowed;
    if (cpu < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
    CPU_CLR(cpu, &allowed);
    if (CPU_COUNT(&allowed) > 0) sched_setaffinity(0, sizeof allowed, &allowed);  // this thread only
#else
    (void)cpu;  // elsewhere the scheduler places the helper
#endif
  }
  static int current_cpu() {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
  }

  // rows [lo, hi) of the steps of block j (the steps run forward or backward in t)
  void rows_of_block(int64_t j, int64_t* lo, int64_t* hi) const {
    const int64_t first = j * kStepsPerBlock, last = std::min(p_.T, first + kStepsPerBlock) - 1;
    const int64_t t0 = step_at(p_, first), t1 = step_at(p_, last);
    *lo = p_.off[std::min(t0, t1)];
    *hi = p_.off[std::max(t0, t1) + 1];
  }

  const Problem& p_;
  const int64_t blocks_;
  std::unique_ptr<std::atomic<bool>[]> done_;
  struct Claims {
    std::atomic<int64_t> next{0};    // the first block nobody has started
    std::atomic<int64_t> active{0};  // 1 while the helper may claim or compute a block
  };
  std::shared_ptr<Claims> claims_ = std::make_shared<Claims>();
  std::function<void(int64_t)> compute_;
  std::function<void*(int64_t)> compute_step_, rows_of_step_;
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

}  // namespace grukit
