"""Forecasting many series at once with one global GRU.

    from grukit.apps import forecasting
    model = forecasting.train(frame, horizon=12, id="store", time="date", target="sales",
                              future=["price"], static=["region"], quantiles=(0.1, 0.5, 0.9))
    forecasts = model.predict(frame)        # id, step, time, forecast, q0.1, q0.5, q0.9, lower_80, upper_80
    result = forecasting.backtest(panel, forecasting.Settings(horizon=12), cutoffs=10)

Panels come from long tables (one row per series and time), wide tables (one column per series)
and Monash ``.tsf`` files, with past, known-future and static covariates (:mod:`.panel`). The model
(:mod:`.forecaster`) is trained once across every series; its quantile forecasts are calibrated by
conformal prediction (:mod:`.conformal`); :mod:`.backtest` scores it and the baselines
(:mod:`.baselines`) from rolling origins with the Monash archive's metrics (:mod:`.metrics`).
"""

from __future__ import annotations

from typing import Optional, Sequence

from . import tsf
from .backtest import BacktestResult, backtest
from .forecaster import GlobalForecaster, Settings, fit, load
from .panel import Panel, Series
from .reading import read_panel, reader

__all__ = [
    "BacktestResult",
    "GlobalForecaster",
    "Panel",
    "Series",
    "Settings",
    "backtest",
    "fit",
    "load",
    "read",
    "train",
    "tsf",
]


def read(
    data,
    id: Optional[str] = None,
    time: Optional[str] = None,
    target: Optional[str] = None,
    targets: Sequence[str] = (),
    past: Sequence[str] = (),
    future: Sequence[str] = (),
    static: Sequence[str] = (),
    fill: str = "refuse",
    encoding: str = "utf-8",
) -> Panel:
    """A :class:`Panel` from a DataFrame, a CSV path or a ``.tsf`` path: long format with ``id``,
    ``time`` and ``target``; wide format with ``targets`` (default: every numeric column)."""
    return read_panel(data, reader(id, time, target, targets, past, future, static, fill, encoding))


def train(
    data,
    horizon: int,
    id: Optional[str] = None,
    time: Optional[str] = None,
    target: Optional[str] = None,
    targets: Sequence[str] = (),
    past: Sequence[str] = (),
    future: Sequence[str] = (),
    static: Sequence[str] = (),
    fill: str = "refuse",
    encoding: str = "utf-8",
    **settings,
) -> GlobalForecaster:
    """Train a global GRU forecaster on ``data`` (read as :func:`read` reads it); ``settings`` are
    :class:`Settings`' fields (window, quantiles, transform, epochs, ensemble, pad, progress, ...).
    The model keeps the reader settings: ``model.predict(new_data)`` reads new data the same way."""
    spec = reader(id, time, target, targets, past, future, static, fill, encoding)
    panel = read_panel(data, spec)
    return fit(panel, Settings(horizon=horizon, **settings), {"reader": spec})
