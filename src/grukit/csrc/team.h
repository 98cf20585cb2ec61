// Thread teams for the recurrence.
//
// The recurrence is sequential in t, so the threads split each step: by batch rows, which
// are independent through the whole sequence and need no synchronisation at all, or, for
// small batches with large H, by hidden units: thread k owns units [a_k, b_k), computes the
// recurrent-GEMM columns of those units and their element-wise math, and one team barrier
// per step (two for reset-before) hands the new state to everyone. The whole sequence runs
// inside one OpenMP parallel region with BLAS single-threaded inside it; small problems run
// on one thread. A team whose cores another process takes steps aside to one thread for a while
// (contention.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "contention.h"
#include "gemm.h"

namespace grukit {

using at::Tensor;

constexpr int64_t kMinMacsPerThread = 1 << 17;  // per step: less than this is not worth a thread
constexpr int64_t kMinRowsPerThread = 8;        // fewer rows per thread: split hidden units instead
constexpr int64_t kRowPartsPerThread = 2;       // parts of a split by rows, claimed as threads free up
constexpr int64_t kMinRowsPerPart = 16;         // ... each of at least this many rows

// Part k of a team's work is batch rows [row_lo(k), row_hi(k)) and hidden units
// [unit_lo(k), unit_hi(k)). Batch rows are independent through the whole recurrence, so a split
// by rows needs no synchronisation at all until the sequence ends; a split by units (small
// batches, large H) needs a barrier per step, which can cost as much as a small step's arithmetic.
// A split by units has one part per thread. A split by rows has up to kRowPartsPerThread parts per
// thread, each run over the whole sequence by whichever thread claims it next: when another
// process takes one thread's core, the other thread takes the parts it has not started instead
// of waiting for a fixed share (B128 T50 H512 beside a busy neighbour; bench/inference_contention.py).
struct Team {
  int n = 1;        // parts (by units: one per thread)
  int threads = 1;  // threads that run them
  bool by_rows = true;
  int64_t B = 0, H = 0, row_chunk = 0, unit_chunk = 0;
  // the step times each part saw (a split by rows: one per part), or thread 0 saw (by units: one);
  // null when the team has one thread or GRUKIT_CONTENTION=off
  std::shared_ptr<std::vector<StepWatch>> watches;
  // part k's batch rows [row_lo(k), row_hi(k)) and hidden units [unit_lo(k), unit_hi(k))
  int64_t row_lo(int k) const { return by_rows ? std::min(B, k * row_chunk) : 0; }
  int64_t row_hi(int k) const { return by_rows ? std::min(B, (k + 1) * row_chunk) : B; }
  int64_t unit_lo(int k) const { return by_rows ? 0 : std::min(H, k * unit_chunk); }
  int64_t unit_hi(int k) const { return by_rows ? H : std::min(H, (k + 1) * unit_chunk); }
};

inline Team make_team(int64_t B, int64_t H, int64_t macs_per_row_unit) {
  Team team;
  team.B = B;
  team.H = H;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t work = B * H * macs_per_row_unit;
  int64_t n = std::min<int64_t>(threads, std::max<int64_t>(1, work / kMinMacsPerThread));
  team.by_rows = B >= kMinRowsPerThread * n;
  if (!team.by_rows) n = std::min<int64_t>(n, (H + 15) / 16);
  const bool adapts = n > 1 && contention_adapts().load();
  if (adapts && !contention_policy().full_team_for_call()) n = 1;  // a recent call lost time to another process
  team.n = team.threads = (int)std::max<int64_t>(1, n);
  if (team.n == 1) team.by_rows = true;
  if (team.by_rows && team.threads > 1)
    team.n = (int)std::max<int64_t>(team.threads, std::min(kRowPartsPerThread * team.threads, B / kMinRowsPerPart));
  if (adapts && team.threads > 1) team.watches = std::make_shared<std::vector<StepWatch>>(team.by_rows ? team.n : 1);
  team.row_chunk = (B + team.n - 1) / team.n;
  team.unit_chunk = ((H + team.n - 1) / team.n + 15) / 16 * 16;  // multiples of 16 units
  return team;
}

// While in scope, and when the team has one thread, the calling thread does everything: torch's
// own operations (the weights' copies) and mm_parallel run without OpenMP's threads. A
// parallel region leaves OpenMP's other thread spinning on its core for a while afterwards; with
// another process keeping the other core busy, that spin held the one-thread recurrence on the
// busy core at half speed (B1 T1000 H128 inference: 5.7 ms against 2.3 ms; bench/contention.py).
struct OneThreadCall {
  const int allowed;   // the threads the caller allows (torch.set_num_threads)
  const bool limited;  // a one-thread team while the caller allows more: a thread is left free
  explicit OneThreadCall(const Team& team) : allowed(omp_get_max_threads()), limited(team.n == 1 && allowed > 1) {
    if (limited) omp_set_num_threads(1);  // this thread's OpenMP setting: at::get_num_threads() is 1
  }
  ~OneThreadCall() {
    if (limited) omp_set_num_threads(allowed);
  }
  OneThreadCall(const OneThreadCall&) = delete;
  OneThreadCall& operator=(const OneThreadCall&) = delete;
};

// A whole module call that steps aside: torch's own operations around the layers (the zero
// initial state, stacking the final states, a check of the output) run on one thread too. Without
// it they wake OpenMP's other thread, which then spins for about 8 ms on a core the one-thread
// layers and the neighbour share: B128 T50 H512 int8 stepping aside beside a 2-thread neighbour
// took 104 ms a call where the same call with torch.set_num_threads(1) took 85 ms
// (bench/inference_contention.py). Returns the caller's thread count to give back to
// end_call_aside, or 0 when the call keeps its full team; the layer calls inside a stepped-aside
// call see one thread and are not counted again.
inline int begin_call_aside() {
  const int allowed = omp_get_max_threads();
  if (allowed <= 1 || !contention_adapts().load() || contention_policy().full_team_for_call()) return 0;
  omp_set_num_threads(1);
  return allowed;
}
inline void end_call_aside(int allowed) {
  if (allowed > 0) omp_set_num_threads(allowed);
}

template <typename F>
void run_team(const Team& team, const F& body) {
  if (team.n == 1) {
    SequentialBlas one;
    body(0);
    return;
  }
  std::vector<StepWatch>* watches = team.watches.get();
  if (team.by_rows) {  // parts claimed one at a time, waits that yield (gemm.h run_blocks)
    run_blocks(team.threads, team.n, [&](int64_t k) {
      if (watches) (*watches)[k].start(steady_now_ns());
      body(static_cast<int>(k));
    });
  } else {
    if (watches) (*watches)[0].start(steady_now_ns());
#pragma omp parallel num_threads(team.n)
    {
      SequentialBlas one;
      body(omp_get_thread_num());
    }
  }
  if (watches) contention_policy().record(StepWatch::most_stalled(*watches));
}

inline void team_barrier(const Team& team) {
  if (!team.by_rows) {
#pragma omp barrier
  }
}

// The barrier that ends a time step (none between the parts of a split by rows); a watched team
// notes the step's time: each part its own, or thread 0 for a split by units.
inline void step_barrier(const Team& team, int k) {
  team_barrier(team);
  if (team.watches && (team.by_rows || k == 0)) (*team.watches)[team.by_rows ? k : 0].step_ended(steady_now_ns());
}

// The recurrent weights as the B operand of thread k's product h @ W_k^T: W_k holds the
// rows of thread k's units for each of `gates` gates (r, z[, n]), stored transposed as
// [H, gates * Hc_k], the blocks one after another (block k starts at gates * unit_lo(k) * H).
inline Tensor pack_by_team(const Tensor& w_hh, const Team& team, int64_t gates) {
  const int64_t H = w_hh.size(1);
  std::vector<Tensor> blocks;
  const int blocks_n = team.by_rows ? 1 : team.n;  // split by rows: every thread uses all units
  for (int k = 0; k < blocks_n; ++k) {
    std::vector<Tensor> rows;
    for (int64_t g = 0; g < gates; ++g)
      rows.push_back(w_hh.narrow(0, g * H + team.unit_lo(k), team.unit_hi(k) - team.unit_lo(k)));
    blocks.push_back(at::cat(rows, 0).t().contiguous().view({-1}));
  }
  return at::cat(blocks, 0);
}

// A team that splits batch rows only (one thread if the rows are too few): layer norm's, which
// needs every unit of a row in one thread (layer.h).
inline Team rows_only_team(int64_t B, int64_t H) {
  Team team = make_team(B, H, 3 * H);
  if (!team.by_rows) {
    team.n = team.threads = 1;
    team.by_rows = true;
    team.row_chunk = B;
    team.watches.reset();
  }
  return team;
}

}  // namespace grukit
