"""Forecasting many series at once with one global GRU.

    from grukit import forecasting
    model = forecasting.train(frame, horizon=12, id="store", time="date", target="sales",
                              future=["price"], static=["region"], quantiles=(0.1, 0.5, 0.9))
    forecasts = model.predict(frame)        # id, step, time, forecast, q0.1, q0.5, q0.9, lower_80, upper_80

    model = forecasting.train(frame, horizon=12)   # a frame with unique_id, ds, y: read as it comes
    model.predict(frame)                           # unique_id, ds, step, forecast, q0.1, ..., upper_80
    result = forecasting.backtest(panel, forecasting.Settings(horizon=12), cutoffs=10)

Panels come from long tables (one row per series and time), wide tables (one column per series)
and Monash ``.tsf`` files, with past, known-future and static covariates (:mod:`.panel`). The model
(:mod:`.forecaster`) is trained once across every series; its quantile forecasts are calibrated by
conformal prediction (:mod:`.conformal`); :mod:`.backtesting` scores it and the baselines
(:mod:`.baselines`) from rolling origins with the Monash archive's metrics (:mod:`.metrics`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .forecaster import GlobalForecaster
    from .panel import Panel

# imported on first use (PEP 562), so that the grukit command's parser, which imports
# grukit.apps.forecast_commands, does not import torch and pandas before it has parsed anything
_LAZY = {
    "BacktestResult": ".backtesting",
    "backtest": ".backtesting",
    "GlobalForecaster": ".forecaster",
    "Settings": ".forecaster",
    "fit": ".forecaster",
    "load": ".forecaster",
    "Panel": ".panel",
    "Series": ".panel",
    "tsf": ".tsf",
}

__all__ = sorted([*_LAZY, "read", "train"])


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    return module if name == "tsf" else getattr(module, name)


def read(data, **columns) -> "Panel":
    """A :class:`Panel` from a DataFrame, a CSV path or a ``.tsf`` path. A DataFrame with columns
    ``unique_id``, ``ds`` and ``y`` (the long table of statsforecast and neuralforecast) is read as
    it comes, without naming them. ``columns`` are
    :func:`.reading.reader`'s keywords: the long format takes ``id``, ``time`` and ``target``, the
    wide one ``targets`` (default: every numeric column) and ``time``; both take ``future``, and the
    long one ``past`` and ``static`` covariates; ``fill`` and ``encoding``."""
    from .reading import read_panel, reader, with_table_convention

    return read_panel(data, reader(**with_table_convention(data, columns)))


def train(data, horizon: int, **options) -> "GlobalForecaster":
    """Train a global GRU forecaster on ``data``. ``options`` are :func:`read`'s column keywords and
    :class:`Settings`' fields (window, quantiles, transform, epochs, ensemble, pad, progress, ...).
    The model keeps the reader settings: ``model.predict(new_data)`` reads new data the same way."""
    from .forecaster import Settings, fit
    from .reading import READER_OPTIONS, read_panel, reader, with_table_convention

    columns = {name: options.pop(name) for name in READER_OPTIONS if name in options}
    spec = reader(**with_table_convention(data, columns))
    return fit(read_panel(data, spec), Settings(horizon=horizon, **options), {"reader": spec})
