"""Seattle daily weather (vega_datasets' offline copy): next-day forecasting windows.

1,461 days, 2012-01-01 .. 2015-12-31, columns precipitation (mm), temp_max and
temp_min (deg C), wind (m/s). Shipped inside ``vega_datasets`` (only its
``local_data`` is offline); install with ``pip install grukit[data]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

FEATURES = ("temp_max", "temp_min", "precipitation", "wind")


@dataclass
class SeriesSplit:
    """Sliding windows over a time series, split in time order (no future leaks).

    Arrays: ``x_*`` [N, window, F] float32, standardised with the training
    split's mean and std; ``y_*`` [N] float32, the next step's target in its
    own units; ``last_*`` [N] the target's value on the window's last day (the
    persistence forecast). ``feature_mean`` / ``feature_std`` [F] undo the
    scaling; ``target_mean`` / ``target_std`` scale the target for training.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    last_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    last_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    last_test: np.ndarray
    features: Tuple[str, ...]
    target: str
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: float
    target_std: float
    test_dates: np.ndarray


def _missing(package: str, extra: str = "data") -> ImportError:
    return ImportError(
        f"this dataset ships inside the package {package!r}, which is not installed: "
        f"run `pip install grukit[{extra}]` (or `pip install {package}`)"
    )


def seattle_weather(
    window: int = 14,
    target: str = "temp_max",
    features: Sequence[str] = FEATURES,
    split: Tuple[float, float] = (0.7, 0.15),
) -> SeriesSplit:
    """Windows of ``window`` days predicting the next day's ``target``.

    The days are split in time order: the first ``split[0]`` of the targets
    train, the next ``split[1]`` validate, the rest (the last ~7 months by
    default) test. Each window lies wholly before the day it predicts.

    Raises:
        ImportError: vega_datasets (or pandas) is not installed.
        ValueError: bad ``window``, ``target``, ``features`` or ``split``.
    """
    try:
        from vega_datasets import local_data
    except ImportError:
        raise _missing("vega_datasets") from None
    features = tuple(features)
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    for name in features + (target,):
        if name not in FEATURES:
            raise ValueError(f"features and target must be among {FEATURES}, got {name!r}")
    if target not in features:
        raise ValueError(f"target {target!r} must be one of the features {features}")
    if len(split) != 2 or min(split) <= 0 or sum(split) >= 1:
        raise ValueError(f"split must be (train share, val share) with both > 0 and sum < 1, got {split!r}")

    frame = local_data.seattle_weather().sort_values("date")
    values = frame[list(features)].to_numpy(dtype=np.float64)  # [days, F]
    dates = frame["date"].to_numpy()
    t_col = features.index(target)
    n = len(values) - window  # number of (window, next day) pairs
    if n < 3:
        raise ValueError(f"window={window} leaves fewer than 3 samples out of {len(values)} days")
    n_train = int(n * split[0])
    n_val = int(n * split[1])
    # statistics from the days the training windows and targets see, nothing later
    seen = values[: n_train + window]
    mean, std = seen.mean(0), seen.std(0) + 1e-8
    scaled = (values - mean) / std
    idx = np.arange(n)[:, None] + np.arange(window)[None, :]  # [n, window] day indices
    x = scaled[idx].astype(np.float32)
    y = values[window:, t_col].astype(np.float32)
    last = values[window - 1 : -1, t_col].astype(np.float32)
    parts = [slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)]
    (xtr, xva, xte), (ytr, yva, yte), (ltr, lva, lte) = (
        [a[p] for p in parts] for a in (x, y, last)
    )
    return SeriesSplit(
        x_train=xtr, y_train=ytr, last_train=ltr,
        x_val=xva, y_val=yva, last_val=lva,
        x_test=xte, y_test=yte, last_test=lte,
        features=features, target=target,
        feature_mean=mean, feature_std=std,
        target_mean=float(mean[t_col]), target_std=float(std[t_col]),
        test_dates=dates[window:][parts[2]],
    )
