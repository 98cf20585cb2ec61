"""Training and forecasting windows cut from a panel, with the target transform.

A sample is a forecast origin e of a series y [n]: the model reads the ``window`` steps before e and
forecasts the ``horizon`` values y[e : e + horizon]. Its arrays:

    steps   [L, 2 + P + F]  per input step: the transformed target, an observed flag (0 where the
                            window reaches before the series' start and is left-padded), the past and
                            the known-future covariates
    head    [H * F + S + 1] the known-future covariates over the horizon, the static covariates,
                            and log of the series' scale (so a global model knows magnitudes)
    target  [H]             the transformed future values

Target transforms (``TRANSFORMS``), computed per series from the history the model is given, and
inverted on output (``inverse``):

    level     z = (y - mean) / std                        per-series standardisation
    diff      z = (y - y_last) / d,   d = mean |y_t - y_{t-1}|      anchored on the window's last value and
                                                          scaled by the series' MASE scale: the model
                                                          forecasts changes, so a trend can leave the
                                                          training range (differencing, in effect)
    log-diff  the same on log y (positive series only): relative changes
    trend     z_t = (y_t - y_last - b t) / d              deviations from the window's trend line, t
              b = (y_last - y_{last-m}) / m               steps from the origin (negative inside the
                                                          window): the model forecasts how the series
                                                          leaves a straight continuation of its recent
                                                          growth (m: the whole seasons in the window,
                                                          so a seasonal pattern cancels from b)
    mean      z = y / mean |y over the window|            DeepAR's mean scaling (Salinas et al. 2020)

Covariates are standardised with statistics of the training panel (``CovariateScaling``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .panel import Panel, Series

TRANSFORMS = ("diff", "log-diff", "trend", "level", "mean")


def applicable(transform: str, panel: Panel) -> bool:
    """log-diff needs every value positive."""
    return transform != "log-diff" or all((s.values > 0).all() for s in panel.series)


@dataclass
class CovariateScaling:
    """Means and stds of the past, known-future and static covariates and of the log-scale feature."""

    past: np.ndarray
    future: np.ndarray
    static: np.ndarray
    log_scale: np.ndarray  # [2]: mean, std

    @staticmethod
    def fit(panel: Panel) -> "CovariateScaling":
        def stats(blocks, width):
            if width == 0 or not blocks:
                return np.zeros((2, width))
            stacked = np.concatenate(blocks, 0)
            std = stacked.std(0)
            return np.stack([stacked.mean(0), np.where(std > 0, std, 1.0)])

        series = panel.series
        scales = np.concatenate([log_magnitude(s.values[None]) for s in series])
        return CovariateScaling(
            stats([s.past for s in series], series[0].past.shape[1]),
            stats([s.future[: len(s)] for s in series], series[0].future.shape[1]),
            stats([s.static[None] for s in series], series[0].static.shape[0]),
            np.array([scales.mean(), max(scales.std(), 1e-6)]),
        )

    def as_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("past", "future", "static", "log_scale")}

    @staticmethod
    def from_dict(saved: dict) -> "CovariateScaling":
        return CovariateScaling(*(np.asarray(saved[k], np.float64) for k in ("past", "future", "static", "log_scale")))


def statistics_before(values: np.ndarray, origins: np.ndarray, transform: str):
    """(location [N], scale [N]) of the series ``values`` [n] from y[:e], for each origin e, by
    cumulative sums (the diff forms' location is set per window, from its last value)."""
    y = np.log(values) if transform == "log-diff" else np.asarray(values, np.float64)
    e = np.asarray(origins, np.int64)
    if transform == "mean":
        return np.zeros(len(e)), np.ones(len(e))
    if transform == "level":
        total, squares = np.concatenate([[0.0], np.cumsum(y)]), np.concatenate([[0.0], np.cumsum(y * y)])
        mean = total[e] / e
        std = np.sqrt(np.maximum(squares[e] / e - mean**2, 0.0))
        return mean, np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, np.maximum(np.abs(mean), 1.0))
    steps = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(y)))])
    step = steps[np.maximum(e - 1, 0)] / np.maximum(e - 1, 1)
    fallback = np.maximum(np.abs(y[e - 1]), 1.0) * (0.01 if transform == "log-diff" else 1.0)
    return np.zeros(len(e)), np.where(step > 0, step, fallback)


def window_slope(y: np.ndarray, origins: np.ndarray, window: int, season: int) -> np.ndarray:
    """The trend's slope [N] at each origin e of the series y [n]: the mean step over its last m steps,
    (y[e-1] - y[e-1-m]) / m, with m the whole seasons in the window (so a seasonal pattern cancels;
    the window itself when it is shorter than a season), at most e - 1 (a padded window's history)."""
    season = max(int(season), 1)
    span = (window // season) * season if window >= season else window
    m = np.clip(origins - 1, 1, span)
    slope = (y[origins - 1] - y[np.maximum(origins - 1 - m, 0)]) / m
    return np.where(origins > 1, slope, 0.0)


def log_magnitude(window_values: np.ndarray) -> np.ndarray:
    """log of the mean |y| over each window's observed values [N, L] -> [N]: the head's magnitude feature."""
    magnitude = np.nanmean(np.abs(window_values), 1)
    return np.log(np.where(magnitude > 0, magnitude, 1e-8))


@dataclass
class Windows:
    """A batch of samples (see the module docstring) and what inverts their transform.

    location, scale, slope [N]: natural-unit forecasts are ``inverse(z)``; mase_scale [N]: each sample's
    series' mean absolute step before the origin (its MASE scale at season 1), for scale-free
    interval calibration; series [N]: the index of each sample's series in the panel; origin [N]:
    its forecast origin e.
    """

    steps: np.ndarray
    head: np.ndarray
    target: Optional[np.ndarray]
    location: np.ndarray
    scale: np.ndarray
    log: bool
    slope: np.ndarray
    mase_scale: np.ndarray
    series: np.ndarray
    origin: np.ndarray

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Transformed forecasts z [N, H, ...] -> natural units: location + scale z, plus slope h at
        horizon step h (the trend transform; the slope is 0 for the others)."""
        shape = (-1,) + (1,) * (z.ndim - 1)
        y = self.location.reshape(shape) + self.scale.reshape(shape) * z
        if z.ndim > 1:  # the trend line's rise to each horizon step: slope * h
            ahead = np.arange(1, z.shape[1] + 1).reshape((1, -1) + (1,) * (z.ndim - 2))
            y = y + self.slope.reshape(shape) * ahead
        return np.exp(np.clip(y, -700, 700)) if self.log else y

    def __len__(self) -> int:
        return len(self.steps)


def make_windows(
    panel: Panel,
    origins: List[np.ndarray],
    window: int,
    horizon: int,
    transform: str,
    scaling: CovariateScaling,
    with_target: bool = True,
) -> Windows:
    """The samples at ``origins[k]`` (forecast origins of series k) of every series. Forecasting from
    origin e uses y[:e] only (its series statistics too, so no sample sees its own future)."""
    parts = {k: [] for k in ("steps", "head", "target", "location", "scale", "slope", "mase", "series", "origin")}
    log = transform == "log-diff"
    for k, (s, es) in enumerate(zip(panel.series, origins)):
        es = np.asarray(es, np.int64)
        if len(es) == 0:
            continue
        y = np.log(s.values) if log else s.values
        location, scale = statistics_before(s.values, es, transform)
        padded = np.concatenate([np.full(window, np.nan), y])
        rows = es[:, None] + np.arange(window)[None, :]  # padded index of y[e - L + j] is e + j
        values = padded[rows]  # [N, L]
        natural = np.exp(values) if log else values
        slope = window_slope(y, es, window, panel.season) if transform == "trend" else np.zeros(len(es))
        if transform in ("diff", "log-diff", "trend"):
            location = y[es - 1]
        elif transform == "mean":
            scale = np.nanmean(np.abs(values), 1)
            scale = np.where(scale > 0, scale, 1.0)
        parts["location"].append(location)
        parts["scale"].append(scale)
        parts["mase"].append(statistics_before(s.values, es, "diff")[1])  # mean |y_t - y_t-1| before e
        parts["slope"].append(slope)
        observed = ~np.isnan(values)
        line = location[:, None] + slope[:, None] * np.arange(1 - window, 1)[None, :]  # the trend at each input step
        z = np.where(observed, (values - line) / scale[:, None], 0.0)
        past = _scaled_block(s.past, rows - window, scaling.past)
        known = _scaled_block(s.future, rows - window, scaling.future)
        parts["steps"].append(np.concatenate([z[..., None], observed[..., None], past, known], 2))
        ahead = es[:, None] + np.arange(horizon)[None, :]
        future = _scaled_block(s.future, ahead, scaling.future).reshape(len(es), -1)
        static = np.broadcast_to((s.static - scaling.static[0]) / scaling.static[1], (len(es), len(s.static)))
        log_scale = (log_magnitude(natural) - scaling.log_scale[0]) / scaling.log_scale[1]
        parts["head"].append(np.concatenate([future, static, log_scale[:, None]], 1))
        if with_target:
            line = location[:, None] + slope[:, None] * np.arange(1, horizon + 1)[None, :]
            parts["target"].append((y[ahead] - line) / scale[:, None])
        parts["series"].append(np.full(len(es), k))
        parts["origin"].append(es)
    if not parts["steps"]:
        raise ValueError("no windows: every series is too short for the window and horizon")
    return Windows(
        np.concatenate(parts["steps"]).astype(np.float32),
        np.concatenate(parts["head"]).astype(np.float32),
        np.concatenate(parts["target"]).astype(np.float32) if with_target else None,
        np.concatenate(parts["location"]).astype(np.float64),
        np.concatenate(parts["scale"]).astype(np.float64),
        log,
        np.concatenate(parts["slope"]).astype(np.float64),
        np.concatenate(parts["mase"]).astype(np.float64),
        np.concatenate(parts["series"]),
        np.concatenate(parts["origin"]),
    )


def _scaled_block(block: np.ndarray, rows: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """block [T, K] at ``rows`` [N, L] (negative rows: before the start, 0), standardised -> [N, L, K]."""
    if block.shape[1] == 0:
        return np.zeros(rows.shape + (0,))
    inside = rows >= 0
    picked = block[np.clip(rows, 0, len(block) - 1)]
    return np.where(inside[..., None], (picked - stats[0]) / stats[1], 0.0)


def feature_sizes(panel: Panel, horizon: int):
    """(features per input step, features of the head) for a panel's covariates."""
    s: Series = panel.series[0]
    return 2 + s.past.shape[1] + s.future.shape[1], horizon * s.future.shape[1] + len(s.static) + 1
