"""Seattle daily weather (vega_datasets' offline copy): next-day forecasting windows.

1,461 days, 2012-01-01 .. 2015-12-31, columns precipitation (mm), temp_max and
temp_min (deg C), wind (m/s), plus day_sin / day_cos (the day of the year, which
is known in advance). Shipped inside ``vega_datasets`` (only its ``local_data`` is
offline); install with ``pip install grukit[data]``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .series import SeriesSplit, day_of_year_features, make_windows

FEATURES = ("temp_max", "temp_min", "precipitation", "wind", "day_sin", "day_cos")


def seattle_weather(
    window: int = 14,
    target: str = "temp_max",
    features: Sequence[str] = ("temp_max", "temp_min", "precipitation", "wind"),
    split: Tuple[float, float] = (0.7, 0.15),
) -> SeriesSplit:
    """Windows of ``window`` days predicting the next day's ``target``, split in time order
    (train 70%, validation 15%, test the last ~7 months by default).

    Raises:
        ImportError: vega_datasets (or pandas) is not installed.
        ValueError: bad ``window``, ``target``, ``features`` or ``split``.
    """
    try:
        from vega_datasets import local_data
    except ImportError:
        raise ImportError(
            "this dataset ships inside the package 'vega_datasets', which is not installed: "
            "run `pip install grukit[data]` (or `pip install vega_datasets pandas`)"
        ) from None
    features = tuple(features)
    for name in features + (target,):
        if name not in FEATURES:
            raise ValueError(f"features and target must be among {FEATURES}, got {name!r}")
    frame = local_data.seattle_weather().sort_values("date")
    dates = frame["date"].to_numpy().astype("datetime64[D]")
    columns = {name: frame[name].to_numpy(dtype=np.float64) for name in FEATURES[:4]}
    columns["day_sin"], columns["day_cos"] = day_of_year_features(dates).T
    values = np.stack([columns[name] for name in features], 1)
    return make_windows(values, dates, features, target, window, split)
