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
    log-season z_t = log(y_t + c) - log(y_a + c)          the default: the target as a log ratio to its
              a = e - S + (h mod S) for horizon step h   season's last value (the last value when S = 1
              (inputs: a = e - 1)                         or the history is shorter than a season), so the
                                                          model forecasts year-on-year growth, which
                                                          pools across series of any size; c: 0 for a
                                                          positive history, else a shift that makes it
                                                          positive (see ``log_shift``)
    log-profile z_t = log(y_t + c) - m - p(t mod S)       the log-season target anchored on a smoothed
              m: mean log value of the last season        season instead of one value per month: the last
              p: the seasonal profile, the mean over the  K whole seasons before e (K = the window's
                 K seasons of each one's deviations from  whole seasons, at most those in the history)
                 its own mean                             give the profile, and the last of them the
              (inputs too: the window deseasonalised)     level (the multiplicative decomposition the
                                                          M4 benchmarks deseasonalise with, Makridakis
                                                          et al. 2020); the same as log-season when
                                                          S = 1 or the history is shorter than a season

Covariates are standardised with statistics of the training panel (``CovariateScaling``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .panel import Panel, Series

TRANSFORMS = ("log-season", "log-profile", "diff", "log-diff", "trend", "level", "mean")
LOGS = ("log-diff", "log-season", "log-profile")  # the transforms that work on log values
ANCHORED = ("log-season", "log-profile")  # the transforms with an anchor per horizon step


def applicable(transform: str, panel: Panel) -> bool:
    """log-diff needs every value positive."""
    return transform != "log-diff" or all((s.values > 0).all() for s in panel.series)


# the log-magnitude feature's std is floored at 1 (a factor of e): a panel of one series, or of series
# of one size, would otherwise divide each window's small departure from their common magnitude by a
# tiny std and feed the network inputs of 1e5
LOG_SCALE_FLOOR = 1.0


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
            np.array([scales.mean(), max(scales.std(), LOG_SCALE_FLOOR)]),
        )

    def as_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("past", "future", "static", "log_scale")}

    @staticmethod
    def from_dict(saved: dict) -> "CovariateScaling":
        return CovariateScaling(*(np.asarray(saved[k], np.float64) for k in ("past", "future", "static", "log_scale")))


def log_shift(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """c [N] for the log-season transform at each origin e of ``values`` [n]: 0 when y[:e] is positive,
    else -min(y[:e]) plus 1 % of mean |y[:e]| (so a zero becomes a small positive value)."""
    y = np.asarray(values, np.float64)
    e = np.asarray(origins, np.int64)
    lowest = np.minimum.accumulate(y)[e - 1]
    magnitude = np.concatenate([[0.0], np.cumsum(np.abs(y))])[e] / e
    return np.where(lowest > 0, 0.0, -lowest + np.maximum(0.01 * magnitude, 1e-6))


def seasonal_step_before(values: np.ndarray, origins: np.ndarray, season: int) -> np.ndarray:
    """MASE's scale at each origin e [N]: mean |y_t - y_{t-S}| over y[:e] (lag 1 while y[:e] is no
    longer than a season; 1 where that is 0, as ``metrics.mase_scale`` does)."""
    y = np.asarray(values, np.float64)
    e = np.asarray(origins, np.int64)

    def mean_step(lag: int) -> np.ndarray:
        if len(y) <= lag:
            return np.zeros(len(e))
        sums = np.concatenate([[0.0], np.cumsum(np.abs(y[lag:] - y[:-lag]))])
        count = np.clip(e - lag, 0, len(sums) - 1)  # the lag-differences inside y[:e]
        return sums[count] / np.maximum(count, 1)

    season = max(int(season), 1)
    out = np.where(e > season, mean_step(season), mean_step(1))
    return np.where(out > 0, out, 1.0)


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

    location [N] or [N, H] (log-season: per horizon step), scale, slope, offset [N]: natural-unit
    forecasts are ``inverse(z)``; mase_scale [N]: each sample's series' mean absolute step before the
    origin (its MASE scale at season 1), for scale-free interval calibration; season_scale [N]: the
    same at the panel's season (MASE's scale, which weighs the training loss); series [N]: the index
    of each sample's series in the panel; origin [N]: its forecast origin e.
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
    offset: np.ndarray
    season_scale: np.ndarray

    def inverse(self, z, index=None):
        """Transformed forecasts z [N, H, ...] -> natural units (numpy arrays or torch tensors, for
        the samples ``index`` when given): y = location + scale z + slope h at horizon step h (the
        trend transform; slope 0 for the others), and exp(y) - offset for the log transforms."""
        pick = slice(None) if index is None else index
        xp = np if isinstance(z, np.ndarray) else _torch()

        def per_sample(values, trailing):  # [N] or [N, H] -> broadcastable against z
            values = values[pick]
            values = values if xp is np else xp.as_tensor(values, dtype=z.dtype)
            return values.reshape(tuple(values.shape) + (1,) * (z.ndim - values.ndim)) if trailing else values

        location = per_sample(self.location, True)
        scale, slope = per_sample(self.scale, True), per_sample(self.slope, True)
        y = location + scale * z
        if z.ndim > 1:  # the trend line's rise to each horizon step: slope * h
            ahead = np.arange(1, z.shape[1] + 1, dtype=np.float64).reshape((1, -1) + (1,) * (z.ndim - 2))
            y = y + slope * (ahead if xp is np else xp.as_tensor(ahead, dtype=z.dtype))
        if not self.log:
            return y
        return xp.exp(xp.clip(y, -700, 700) if xp is np else y.clamp(-80, 80)) - per_sample(self.offset, True)

    def __len__(self) -> int:
        return len(self.steps)


def _torch():
    import torch

    return torch


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
    keys = ("steps", "head", "target", "location", "scale", "slope", "mase", "series", "origin", "offset", "season")
    parts = {k: [] for k in keys}
    log = transform in LOGS
    for k, (s, es) in enumerate(zip(panel.series, origins)):
        es = np.asarray(es, np.int64)
        if len(es) == 0:
            continue
        ahead = es[:, None] + np.arange(horizon)[None, :]
        if transform in ANCHORED:
            values, location, target, offset, input_anchor = _anchored_logs(
                s.values, es, window, horizon, panel.season, with_target, profile=transform == "log-profile"
            )
            natural = np.exp(values) - offset[:, None]
            scale = np.ones(len(es))
        else:
            y = np.log(s.values) if log else s.values
            location, scale = statistics_before(s.values, es, transform)
            padded = np.concatenate([np.full(window, np.nan), y])
            values = padded[es[:, None] + np.arange(window)[None, :]]  # [N, L]: padded index of y[e - L + j] is e + j
            natural = np.exp(values) if log else values
            offset = np.zeros(len(es))
        rows = es[:, None] + np.arange(window)[None, :]
        slope = window_slope(y, es, window, panel.season) if transform == "trend" else np.zeros(len(es))
        if transform in ("diff", "log-diff", "trend"):
            location = y[es - 1]
        elif transform == "mean":
            scale = np.nanmean(np.abs(values), 1)
            scale = np.where(scale > 0, scale, 1.0)
        if transform in ANCHORED:  # log-season: inputs relative to y[e-1]; log-profile: deseasonalised
            input_location = input_anchor
        else:
            input_location = location[:, None] + slope[:, None] * np.arange(1 - window, 1)[None, :]  # the trend line
        parts["location"].append(location)
        parts["scale"].append(scale)
        parts["mase"].append(statistics_before(s.values, es, "diff")[1])  # mean |y_t - y_t-1| before e
        parts["slope"].append(slope)
        parts["offset"].append(offset)
        parts["season"].append(seasonal_step_before(s.values, es, panel.season))
        observed = ~np.isnan(values)
        z = np.where(observed, (values - input_location) / scale[:, None], 0.0)
        past = _scaled_block(s.past, rows - window, scaling.past)
        known = _scaled_block(s.future, rows - window, scaling.future)
        parts["steps"].append(np.concatenate([z[..., None], observed[..., None], past, known], 2))
        future = _scaled_block(s.future, ahead, scaling.future).reshape(len(es), -1)
        static = np.broadcast_to((s.static - scaling.static[0]) / scaling.static[1], (len(es), len(s.static)))
        log_scale = (log_magnitude(natural) - scaling.log_scale[0]) / scaling.log_scale[1]
        parts["head"].append(np.concatenate([future, static, log_scale[:, None]], 1))
        if with_target and transform in ANCHORED:
            parts["target"].append(target - location)
        elif with_target:
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
        np.concatenate(parts["offset"]).astype(np.float64),
        np.concatenate(parts["season"]).astype(np.float64),
    )


def _anchored_logs(
    values: np.ndarray, origins: np.ndarray, window: int, horizon: int, season: int, with_target: bool, profile: bool
):
    """The log-season (``profile`` False) or log-profile transform's parts for the origins e [N] of
    one series ``values`` [n]: the window's log values [N, L] (NaN before the start), the anchors
    [N, H] of the horizon steps, the targets' log values [N, H] (zeros without targets), the shifts
    c [N], and the input steps' anchors [N, L].

    log-season anchors horizon step h on the log of its season's last value, y[e - S + h mod S], and
    the inputs on y[e - 1]. log-profile takes the last K whole seasons' logs B [N, K, S] (K = the
    window's whole seasons, at most e // S), the level m = mean(B[:, K-1]) and the profile
    p = mean_k (B[:, k] - mean(B[:, k])), and anchors every step t, input or horizon, on
    m + p[(t - e) mod S]. Both fall back to y[e - 1] where S = 1 or e < S.
    Logs are floored at 1 % of the history's mean magnitude, so a zero stays finite."""
    y = np.asarray(values, np.float64)
    e = np.asarray(origins, np.int64)
    offset = log_shift(y, e)
    floor = np.maximum(0.01 * (np.concatenate([[0.0], np.cumsum(np.abs(y))])[e] / e + offset), 1e-12)

    def logs(index):  # log(y[index] + c) per origin, floored; index [N, K], -1 and below: before the start
        inside = index >= 0
        raw = y[np.clip(index, 0, len(y) - 1)] + offset[:, None]
        return np.where(inside, np.log(np.maximum(raw, floor[:, None])), np.nan)

    window_values = logs(e[:, None] - window + np.arange(window)[None, :])
    steps = np.arange(horizon)[None, :]
    targets = logs(e[:, None] + steps) if with_target else np.zeros((len(e), horizon))
    seasonal = (season > 1) & (e >= season)  # [N]: the origins with a whole season before them
    last = logs(e[:, None] - 1)  # [N, 1]
    if not profile or season <= 1:  # at season 1 log-profile is log-season: no seasons to average
        anchor_index = np.where(seasonal[:, None], e[:, None] - season + steps % max(season, 1), e[:, None] - 1)
        return window_values, logs(anchor_index), targets, offset, np.broadcast_to(last, window_values.shape)
    season = int(season)  # > 1 here: season 1 returned above
    whole = np.clip(np.minimum(max(window // season, 1), e // season), 1, None)  # K [N]
    most = int(whole.max())
    # the last `most` seasons before e: B [N, most, S]; the seasons beyond an origin's K are masked
    index = e[:, None, None] - (most - np.arange(most))[None, :, None] * season + np.arange(season)[None, None, :]
    blocks = logs(index.reshape(len(e), -1)).reshape(index.shape)
    counted = (np.arange(most)[None, :] >= most - whole[:, None])[:, :, None]  # [N, most, 1]
    level = blocks[:, -1].mean(1)  # m [N] (NaN where e < S: those origins fall back)
    deviations = np.where(counted, blocks - blocks.mean(2, keepdims=True), 0.0)
    shape = deviations.sum(1) / whole[:, None]  # p [N, S]

    def anchor(offsets):  # m + p[(t - e) mod S] for steps t = e + offsets [K'] -> [N, K']
        return level[:, None] + shape[:, np.mod(offsets, season)]

    anchors = np.where(seasonal[:, None], anchor(np.arange(horizon)), last)
    inputs = np.where(seasonal[:, None], anchor(np.arange(-window, 0)), last)
    return window_values, anchors, targets, offset, inputs


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
