"""One statistical model fitted to many histories at once, on every CPU torch may use.

statsmodels fits one series at a time in Python, holding the interpreter lock, so threads do not
help; worker processes do. The forecaster's combination (``Settings.combine``) fits damped ETS to
every series at every validation origin and again when it forecasts, so on 2 cores this halves the
combination's share of a run (measured in results/forecasting_development.md).

The workers are forked, as PyTorch's DataLoader forks its workers on Linux: they inherit the
imported modules, so none re-imports statsmodels (1.5 s each). Where fork is not the platform's
safe default (macOS, Windows), without threadpoolctl, and for few histories, the fits run in this process.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import sys
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

# fewer fits than this run in this process: forking and the results' trip back cost more than they save
PARALLEL_FROM = 32


def _one_blas_thread() -> None:
    """Each worker's BLAS libraries (numpy's and scipy's OpenBLAS) to one thread: a forked worker
    keeps the parent's thread count, and two workers that each spin two BLAS threads on 2 cores ran
    the fits 2x slower than one process (measured on M1 yearly's 181 series: 3.8 s against 1.7 s)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _fit_chunk(job) -> List[np.ndarray]:
    method, histories, horizon, season = job
    return [method(history, horizon, season) for history in histories]


def forecast_each(
    method: Callable[[np.ndarray, int, int], np.ndarray],
    histories: Sequence[np.ndarray],
    horizon: int,
    season: int,
    workers: Optional[int] = None,
) -> np.ndarray:
    """``method(history, horizon, season)`` for every history: forecasts [len(histories), horizon],
    in order. ``method`` must be a module-level function (it is sent to the workers by name).
    ``workers`` None: ``torch.get_num_threads()``, which grukit sets from the CPUs the process may
    use (``grukit.cpu_quota``) unless the user chose a count."""
    workers = torch.get_num_threads() if workers is None else workers
    count = len(histories)
    out = np.empty((count, horizon))
    # without threadpoolctl (the forecast extra's) each worker's BLAS threads would fight: see _one_blas_thread
    limits_blas = importlib.util.find_spec("threadpoolctl") is not None
    if workers < 2 or count < PARALLEL_FROM or not sys.platform.startswith("linux") or not limits_blas:
        out[:] = _fit_chunk((method, histories, horizon, season))
        return out
    # the first fit runs here: it imports what ``method`` needs once, before the workers fork
    out[0] = method(histories[0], horizon, season)
    workers = min(workers, count - 1)
    # a few chunks per worker, so that one slow chunk (long seasonal series) does not leave the others idle
    chunks = np.array_split(np.arange(1, count), 4 * workers)
    jobs = [(method, [histories[i] for i in chunk], horizon, season) for chunk in chunks if len(chunk)]
    with multiprocessing.get_context("fork").Pool(workers, initializer=_one_blas_thread) as pool:
        results = pool.map(_fit_chunk, jobs)
    out[1:] = [forecast for result in results for forecast in result]  # pool.map keeps the chunks' order
    return out
