// Teams that step aside when another process takes a core.
//
// A team that splits hidden units (team.h: small batches, large H) meets at a barrier at the end
// of every time step. When another process at the same priority keeps one of the team's cores
// busy, the team's thread on that core is descheduled for whole time slices (milliseconds) and
// every step waits for it: B1 T1000 H512 float32 inference on a 2-core AMD EPYC took 38 ms quiet
// and 174 ms on 2 threads beside a process running torch products on both cores, where one thread
// took 80 ms (bench/inference_contention.py, the "full team" row). A team that splits batch rows
// meets only when the call ends, but its parts are few (each runs the whole sequence), so the
// parts on the shared core finish late: B128 T50 H512 int8 slowed down more on 2 threads than on one.
//
// So each part of a split by rows, or thread 0 of a split by units, times its steps (one
// steady_clock read per step, about 20 ns beside steps of tens of microseconds or more) and, when
// the call ends, the process-wide ContentionPolicy is told what share of its most stalled part
// went to stalls: steps more than kStallFactor times the fastest step of their part and longer by
// more than kStallFloorNs (a time slice, not a cache miss). Two full-team calls in a row that each
// lost at least kStalledShare of their time to stalls make the next kFirstBackOffCalls calls use a
// one-thread team; the first full-team call after them looks again. One stalled call is not enough:
// a process that also runs another runtime (onnxruntime, OpenVINO) finds that runtime's threads
// still spinning for a few milliseconds after its last call, and the first grukit call after it
// stalls once on an otherwise quiet machine (bench/inference_contention.py interleaves them). The
// back-off doubles while the contention lasts (up to kLongestBackOffCalls) and returns to
// kFirstBackOffCalls after a clean call, so a quiet machine keeps its full team and a busy one
// spends one call in 65 finding out whether it is still busy.
// It counts calls, not seconds, so what a probe costs does not depend on how often the program
// calls. The decision is per process, from what actually ran; GRUKIT_CONTENTION=off turns it off.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

namespace grukit {

inline int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One call's steps as one part of its team saw them (a split by units: thread 0).
struct StepWatch {
  static constexpr int64_t kStallFactor = 4;
  static constexpr int64_t kStallFloorNs = 200'000;  // 0.2 ms
  int64_t last = 0;                                  // when the previous step ended (0: not started)
  int64_t fastest = std::numeric_limits<int64_t>::max();
  int64_t stalled = 0;  // nanoseconds lost in stalled steps, beyond the fastest step
  int64_t total = 0;
  int64_t steps = 0;

  void start(int64_t now) { last = now; }
  // a step of `step_ns` nanoseconds ended
  void add(int64_t step_ns) {
    ++steps;
    total += step_ns;
    fastest = std::min(fastest, step_ns);
    if (step_ns > kStallFactor * fastest && step_ns - fastest > kStallFloorNs) stalled += step_ns - fastest;
  }
  void step_ended(int64_t now) {
    add(now - last);
    last = now;
  }
  // of several watches (the parts of a team), the one that lost the largest share of its time to
  // stalls: the part on a shared core, which the call waits for (the parts on a free core do not
  // dilute it)
  static const StepWatch& most_stalled(const std::vector<StepWatch>& watches) {
    const StepWatch* worst = &watches[0];
    for (const StepWatch& w : watches)
      if (w.steps >= 1 && w.stalled * std::max<int64_t>(1, worst->total) > worst->stalled * std::max<int64_t>(1, w.total))
        worst = &w;
    return *worst;
  }
};

// Whether calls use their full team, decided from what earlier calls saw.
class ContentionPolicy {
 public:
  static constexpr double kStalledShare = 0.2;
  static constexpr int64_t kMinSteps = 16;           // shorter calls say too little
  static constexpr int64_t kStalledCallsToStepAside = 2;  // stalled full-team calls in a row
  static constexpr int64_t kFirstBackOffCalls = 4;   // calls on one thread after the stalled calls ...
  static constexpr int64_t kLongestBackOffCalls = 64;  // ... doubling up to this while it lasts

  // whether the next call uses its full team (a call that does not is counted)
  bool full_team_for_call() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (calls_left_aside_ == 0) return true;
    --calls_left_aside_;
    ++calls_aside_;
    return false;
  }
  // a full-team call ended; its steps as `watch` saw them
  void record(const StepWatch& watch) {
    if (watch.steps < kMinSteps) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (watch.stalled >= kStalledShare * watch.total) {
      if (++stalled_in_a_row_ < kStalledCallsToStepAside) return;
      calls_left_aside_ = back_off_;
      back_off_ = std::min(2 * back_off_, kLongestBackOffCalls);
    } else {
      stalled_in_a_row_ = 0;
      back_off_ = kFirstBackOffCalls;
    }
  }
  // the next `calls` calls use one thread (tests: the step-aside path without a busy machine)
  void step_aside(int64_t calls) {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_left_aside_ = calls;
  }
  int64_t calls_aside() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_aside_;
  }

 private:
  mutable std::mutex mutex_;
  int64_t calls_left_aside_ = 0;
  int64_t back_off_ = kFirstBackOffCalls;
  int64_t stalled_in_a_row_ = 0;  // full-team calls; the calls aside between them do not count
  int64_t calls_aside_ = 0;  // since the process started
};

// The process's policy, and whether it is on (GRUKIT_CONTENTION, set when the kernels load).
inline ContentionPolicy& contention_policy() {
  static ContentionPolicy policy;
  return policy;
}
inline std::atomic<bool>& contention_adapts() {
  static std::atomic<bool> on{true};
  return on;
}

}  // namespace grukit
