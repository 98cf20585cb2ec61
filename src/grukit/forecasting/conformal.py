"""Conformalized quantile regression (Romano, Patterson and Candes 2019): the model's interval
[lower, upper] is widened (or narrowed) by the calibration scores' quantile, so that the stated
coverage holds on exchangeable held-out data whatever the model learned.

For calibration samples i with actual y_i and interval [lo_i, hi_i], at each horizon step h,

    E_i,h  = max(lo_i,h - y_i,h,  y_i,h - hi_i,h) / u_i,h      u: the score's unit
    c_h    = the ceil((n + 1)(1 - alpha)) / n empirical quantile of E_.,h
    interval -> [lo - c_h u,  hi + c_h u]

The unit is the model's own interval width, u = hi - lo (the scaled scores of Kivaranovic, Johnson
and Leeb 2020; "CQR-r" in Sesia and Candes 2020): the correction grows where the quantile heads say
a window is uncertain, and the scores pool across series of any magnitude. Model files saved
before this rule used each series' mean absolute step, u = s_i, and still load with it (``UNITS``).

On exchangeable data the calibrated interval covers at least 1 - alpha of new values, and at most
1 - alpha + 1/(n + 1) (continuous scores). A backtest's windows are not exchangeable with the
validation windows (later years, a changed regime), so its coverage can differ: RESULTS.md says by
how much on each dataset.
"""

from __future__ import annotations

import numpy as np

WIDTH, SERIES_STEP = "interval width", "series step"  # the score units: u = hi - lo, or u = s_i
UNITS = (WIDTH, SERIES_STEP)


def unit(lower: np.ndarray, upper: np.ndarray, scale: np.ndarray, kind: str = WIDTH) -> np.ndarray:
    """The scores' unit u [N, H] for intervals lower, upper [N, H] of series with mean absolute step
    ``scale`` [N]. A width is floored at 1e-3 of the series' step, so an interval that collapsed to
    a point still gets a unit."""
    if kind not in UNITS:
        raise ValueError(f"kind must be one of {UNITS}, got {kind!r}")
    step = np.broadcast_to(scale[:, None], lower.shape)
    return np.maximum(upper - lower, 1e-3 * step) if kind == WIDTH else step


def calibrate(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, unit: np.ndarray, alpha: float) -> np.ndarray:
    """Corrections c [H] from calibration samples: actual, lower, upper, unit [N, H];
    ``alpha``: the interval's miscoverage (0.2 for an 80 % interval)."""
    scores = np.maximum(lower - actual, actual - upper) / unit
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * (1 - alpha)) / n)
    return np.quantile(scores, level, axis=0, method="higher")


def apply(lower: np.ndarray, upper: np.ndarray, middle: np.ndarray, unit: np.ndarray, correction: np.ndarray):
    """(lower, upper) [N, H] moved by correction [H] times unit [N, H], kept on either side of ``middle``."""
    shift = correction[None, :] * unit
    return np.minimum(lower - shift, middle), np.maximum(upper + shift, middle)
