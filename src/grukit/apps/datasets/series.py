"""Sliding windows over a time series, split in time order (no future leaks into training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np


@dataclass
class SeriesSplit:
    """Windows of a multivariate daily series predicting the next day's target.

    Arrays: ``x_*`` [N, window, F] float32, every feature standardised with the mean
    and std of the days the training windows see (nothing later); ``y_*`` [N] the
    next day's target in its own units; ``last_*`` [N] the target on the window's
    last day (the persistence forecast); ``dates_*`` [N] the predicted days.
    ``feature_mean`` / ``feature_std`` [F] undo the scaling; ``target_mean`` /
    ``target_std`` scale the target for training. ``values`` [days, F] and ``dates``
    [days] are the whole series, for forecasting past its end.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    last_train: np.ndarray
    dates_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    last_val: np.ndarray
    dates_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    last_test: np.ndarray
    dates_test: np.ndarray
    features: Tuple[str, ...]
    target: str
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: float
    target_std: float
    values: np.ndarray
    dates: np.ndarray


def make_windows(
    values: np.ndarray,
    dates: np.ndarray,
    features: Sequence[str],
    target: str,
    window: int,
    split: Tuple[float, float],
    horizon: int = 1,
) -> SeriesSplit:
    """Cut ``values`` [days, F] into (window, the next ``horizon`` days) pairs, split in time order.

    The first ``split[0]`` of the pairs train, the next ``split[1]`` validate, the
    rest test; every window lies wholly before the days it predicts. With ``horizon`` > 1,
    ``y_*`` is [N, horizon] and ``dates_*`` the first predicted day.
    """
    features = tuple(features)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if target not in features:
        raise ValueError(f"target {target!r} must be one of the features {features}")
    if len(split) != 2 or min(split) <= 0 or sum(split) >= 1:
        raise ValueError(f"split must be (train share, val share) with both > 0 and sum < 1, got {split!r}")
    n = len(values) - window - horizon + 1  # (window, next days) pairs
    if n < 3:
        raise ValueError(f"window={window} leaves fewer than 3 samples out of {len(values)} days")
    n_train = int(n * split[0])
    n_val = int(n * split[1])
    seen = values[: n_train + window]  # the days the training windows and targets see
    mean, std = seen.mean(0), seen.std(0) + 1e-8
    scaled = ((values - mean) / std).astype(np.float32)
    t_col = features.index(target)
    # x [n, window, F]: a strided view of `scaled` (window i = rows i .. i + window - 1), not
    # window copies of each row, so a long series costs its own size once more, not window times
    x = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0, writeable=True)[:n].transpose(0, 2, 1)
    ahead = np.arange(n)[:, None] + window + np.arange(horizon)[None, :]
    y = values[ahead, t_col].astype(np.float32)
    y = y[:, 0] if horizon == 1 else y
    last = values[window - 1 : window - 1 + n, t_col].astype(np.float32)
    day = dates[window : window + n]
    parts = [slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)]
    xs, ys, ls, ds = ([a[p] for p in parts] for a in (x, y, last, day))
    return SeriesSplit(
        x_train=xs[0],
        y_train=ys[0],
        last_train=ls[0],
        dates_train=ds[0],
        x_val=xs[1],
        y_val=ys[1],
        last_val=ls[1],
        dates_val=ds[1],
        x_test=xs[2],
        y_test=ys[2],
        last_test=ls[2],
        dates_test=ds[2],
        features=features,
        target=target,
        feature_mean=mean,
        feature_std=std,
        target_mean=float(mean[t_col]),
        target_std=float(std[t_col]),
        values=values,
        dates=dates,
    )


def day_of_year_features(dates: np.ndarray) -> np.ndarray:
    """[days, 2]: sin and cos of the day of the year (known in advance, so usable to forecast)."""
    day = (dates.astype("datetime64[D]") - dates.astype("datetime64[Y]")).astype(int)
    angle = 2 * np.pi * day / 365.25
    return np.stack([np.sin(angle), np.cos(angle)], 1)
