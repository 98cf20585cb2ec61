"""Microsoft's daily stock prices 1986-03-13 .. 2017-11-10 (7,983 trading days).

Read from the file ``pmdarima`` ships (``datasets/data/msft.tar.gz``) without
importing pmdarima, whose dependencies are heavy: ``pip install --no-deps
pmdarima==2.1.1`` is enough. The modelled series is the daily log return
log(close_t / close_{t-1}); the task reports the RMSE of the next day's close in
dollars, derived from the predicted return.
"""

from __future__ import annotations

import tarfile
from typing import Tuple

import numpy as np

from ._packages import package_file
from .series import SeriesSplit, make_windows


def msft_prices():
    """(dates [days] datetime64[D], close [days] float64) of every trading day."""
    import pandas as pd

    path = package_file("pmdarima", "datasets/data/msft.tar.gz", "pip install --no-deps pmdarima==2.1.1")
    with tarfile.open(path) as archive:
        frame = pd.read_csv(archive.extractfile("msft.csv"))
    frame = frame.sort_values("Date")
    return frame["Date"].to_numpy().astype("datetime64[D]"), frame["Close"].to_numpy(dtype=np.float64)


def msft_returns(window: int = 30, split: Tuple[float, float] = (0.7, 0.15)) -> Tuple[SeriesSplit, np.ndarray]:
    """Windows of ``window`` daily log returns predicting the next one, split in time order.

    Returns the split (target "log_return"; ``last_*`` is the return of the window's
    last day) and ``close`` [days]: the close on the day each return ends, so that
    ``close[i - 1] * exp(return[i])`` is day i's close.
    """
    dates, close = msft_prices()
    returns = np.diff(np.log(close))
    data = make_windows(returns[:, None], dates[1:], ("log_return",), "log_return", window, split)
    return data, close[1:]
