"""Fewer threads when another process holds a core: measured on the training batches themselves.

The fused kernels split every time step's work over torch's threads and wait for all of them at
the step's end. When another process keeps one of the cores busy, the thread that shares it is
descheduled for whole time slices and every step waits for it. On a 2-core AMD EPYC with the other
core busy (``yes > /dev/null``), ``grukit train sentiment --epochs 2`` took 16.6 s on 2 threads and
5.9 s on 1; with this tuner, 5.6 s (and 5.2 s on the idle machine, where 2 threads took 5.1 s and
1 took 5.8 s). A training loop cannot know the load in advance, so it asks
the batches: :class:`ThreadTuner` runs a few of them on the full thread count and a few on half,
alternating, compares the median seconds per sample, keeps the faster, and asks again every
``recheck_seconds``. The batches it times are ordinary training batches of the full size: nothing
is run twice.
It stays out of the way where the user chose the count (``OMP_NUM_THREADS``), where there is one
thread, and in multi-process training.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

import torch

SLOWER = 1.25  # fewer threads are kept only when the full count is at least this much slower per sample


class ThreadTuner:
    """Chooses between ``full`` threads and ``full // 2`` from the timing of training batches.

    Use: ``with tuner.batch(samples): <forward, backward, step>`` around each batch, and
    :meth:`restore` when training ends. The fall-back is said once per process (``said``), however
    many networks a command trains.

    Args:
        full: the thread count to start from (torch's, by default).
        warmup: batches not timed at the start (the kernels' first calls).
        probe: batches timed at each count per probe, alternating the counts.
        recheck_seconds: training time between probes (the load can change).
        set_threads, clock, say: torch.set_num_threads, time.perf_counter and a line on stderr; tests
            replace them.
    """

    said = False

    def __init__(
        self,
        full: Optional[int] = None,
        warmup: int = 2,
        probe: int = 4,
        recheck_seconds: float = 30.0,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.perf_counter,
        say: Optional[Callable[[str], None]] = None,
    ):
        self.full = full or torch.get_num_threads()
        self.fewer = max(1, self.full // 2)
        self.warmup, self.probe, self.recheck_seconds = warmup, probe, recheck_seconds
        self._set, self._clock = set_threads, clock
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.threads = self.full  # the count in use
        self._seen = 0  # batches so far
        self._size = 0  # the largest batch so far: the size that is timed
        self._timings: Dict[int, List[float]] = {}  # threads -> seconds per sample, this probe
        self._next_probe = None  # clock time at which the next probe starts (None: at the warm-up's end)
        self.enabled = self.full > 1

    @classmethod
    def for_training(cls, world: int = 1, chosen: Optional[int] = None) -> "ThreadTuner":
        """The tuner for a training loop: off in multi-process runs (each process holds its share of
        the cores), when $OMP_NUM_THREADS names the count, and when the caller ``chosen`` one."""
        tuner = cls()
        tuner.enabled = tuner.enabled and world == 1 and not chosen and not os.environ.get("OMP_NUM_THREADS")
        return tuner

    def _probing(self) -> bool:
        return bool(self._timings) or (
            self._seen >= self.warmup and (self._next_probe is None or self._clock() >= self._next_probe)
        )

    @contextmanager
    def batch(self, samples: int):
        """Time one training batch of ``samples`` samples (run in the body of the ``with``). Only
        full-sized batches (the largest seen) are timed: an epoch's short last batch costs more per
        sample, and timed against full ones it would make its thread count look slow."""
        self._size = max(self._size, samples)
        if not self.enabled or not self._probing() or samples < self._size:
            self._seen += 1
            yield
            return
        done = sum(map(len, self._timings.values()))
        count = (self.fewer, self.full)[done % 2]  # alternate, so a change of load touches both
        self._use(count)
        started = self._clock()
        yield
        self._timings.setdefault(count, []).append((self._clock() - started) / max(samples, 1))
        self._seen += 1
        if done + 1 == 2 * self.probe:
            self._decide()

    def _decide(self) -> None:
        full, fewer = (statistics.median(self._timings[c]) for c in (self.full, self.fewer))
        self._timings = {}
        self._next_probe = self._clock() + self.recheck_seconds
        if full > SLOWER * fewer:
            self._use(self.fewer)
            if not ThreadTuner.said:
                ThreadTuner.said = True
                self._say(
                    f"grukit: {self.full} threads ran {full / fewer:.1f}x slower than {self.fewer} on these "
                    "training batches (another process busy on a core, or batches too small to share): training on "
                    f"{self.fewer} while that lasts "
                    "(set OMP_NUM_THREADS to choose the count)"
                )
        else:
            self._use(self.full)

    def _use(self, count: int) -> None:
        if count != self.threads:
            self._set(count)
            self.threads = count

    def restore(self) -> None:
        """Back to the thread count training started with."""
        if self.enabled:
            self._use(self.full)
