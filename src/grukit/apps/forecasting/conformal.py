"""Conformalized quantile regression (Romano, Patterson and Candes 2019): the model's interval
[lower, upper] is widened (or narrowed) by the calibration scores' quantile, so that the stated
coverage holds on exchangeable held-out data whatever the model learned.

For calibration samples i with actual y_i and interval [lo_i, hi_i], at each horizon step h,

    E_i,h  = max(lo_i,h - y_i,h,  y_i,h - hi_i,h) / s_i        s_i: the series' scale (pooling series)
    c_h    = the ceil((n + 1)(1 - alpha)) / n empirical quantile of E_.,h
    interval -> [lo - c_h s,  hi + c_h s]

On exchangeable data the calibrated interval covers at least 1 - alpha of new values, and at most
1 - alpha + 1/(n + 1) (continuous scores). A backtest's windows are not exchangeable with the
validation windows (later years, a changed regime), so its coverage can differ: RESULTS.md says by
how much on each dataset.
"""

from __future__ import annotations

import numpy as np


def calibrate(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, scale: np.ndarray, alpha: float) -> np.ndarray:
    """Corrections c [H] from calibration samples: actual, lower, upper [N, H]; scale [N];
    ``alpha``: the interval's miscoverage (0.2 for an 80 % interval)."""
    scores = np.maximum(lower - actual, actual - upper) / scale[:, None]
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * (1 - alpha)) / n)
    return np.quantile(scores, level, axis=0, method="higher")


def apply(lower: np.ndarray, upper: np.ndarray, middle: np.ndarray, scale: np.ndarray, correction: np.ndarray):
    """(lower, upper) [N, H] moved by correction [H] times scale [N], kept on either side of ``middle``."""
    shift = correction[None, :] * scale[:, None]
    return np.minimum(lower - shift, middle), np.maximum(upper + shift, middle)
