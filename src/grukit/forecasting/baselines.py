"""The forecasts a practitioner tries first, for one series' history [n] -> [horizon]:

- naive: the last value, repeated;
- seasonal naive: the value one season earlier (naive when the history is shorter than a season);
- drift: the line through the first and last values, extended (Hyndman and Athanasopoulos, FPP 5.2);
- SES: simple exponential smoothing, its smoothing weight and initial level chosen by the one-step
  squared error, as R's ``forecast::ses`` does (statsmodels' ``SimpleExpSmoothing``); not among the
  backtest's default baselines, it checks a panel's protocol against published SES rows;
- ETS: exponential smoothing chosen by AICc over error, trend and damping (and season, when the
  history holds two seasons), as R's ``forecast::ets`` does (Hyndman et al. 2002), fitted with
  statsmodels' ``ETSModel``, with the model's own prediction intervals (``ets_with_intervals``:
  what a backtest compares the GRU's interval coverage with);
- damped ETS: Holt-Winters exponential smoothing with an additive damped trend and (with two full
  seasons) a multiplicative season, additive for a series with zeros or negatives (Gardner and
  McKenzie 1985), statsmodels' ``ExponentialSmoothing``: one model, no selection, so it fits in a
  fraction of ETS's time; the global forecaster combines its forecasts with the GRU's;
- Theta: the standard Theta method (Assimakopoulos and Nikolopoulos 2000; Hyndman and Billah 2003),
  statsmodels' ``ThetaModel``.

ETS and Theta need statsmodels (``pip install 'grukit[forecast]'``); the others need nothing.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Sequence, Tuple

import numpy as np


def naive(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    return np.full(horizon, float(history[-1]))


def seasonal_naive(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    if season <= 1 or len(history) < season:
        return naive(history, horizon)
    last_season = np.asarray(history[-season:], np.float64)
    return np.resize(last_season, horizon)


def drift(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    history = np.asarray(history, np.float64)
    slope = (history[-1] - history[0]) / max(len(history) - 1, 1)
    return history[-1] + slope * np.arange(1, horizon + 1)


def _statsmodels():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        raise ImportError(
            "the ETS and Theta baselines need statsmodels: pip install 'grukit[forecast]' (or statsmodels)"
        ) from None


def _best_ets(history: np.ndarray, season: int):
    """The fitted ETS model with the lowest AICc (see :func:`ets`), or None when none fits."""
    _statsmodels()
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = pd.Series(np.asarray(history, np.float64))  # a Series: statsmodels' prediction intervals need its index
    positive = bool((y > 0).all())
    seasonal_options = [None, "add"] if season > 1 and len(y) >= 2 * season + 2 else [None]
    best, best_aicc = None, np.inf
    for error in ("add", "mul") if positive else ("add",):
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            if damped and len(y) < 10:
                continue
            for seasonal in seasonal_options:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        fit = ETSModel(
                            y,
                            error=error,
                            trend=trend,
                            damped_trend=damped,
                            seasonal=seasonal,
                            seasonal_periods=season if seasonal else None,
                        ).fit(disp=False, maxiter=200)
                    except (ValueError, IndexError, np.linalg.LinAlgError):  # IndexError: too short for the form
                        continue
                aicc = fit.aicc if np.isfinite(fit.aicc) else fit.aic
                if np.isfinite(aicc) and aicc < best_aicc:
                    best, best_aicc = fit, aicc
    return best


def ets(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """The ETS model with the lowest AICc among additive/multiplicative errors, no/additive/damped
    trend and (with two full seasons) no/additive seasonality; multiplicative forms only for a
    positive series, and the damped ones only when the history has 10 or more values."""
    return ets_with_intervals(history, horizon, season, ())[0]


def ets_with_intervals(
    history: np.ndarray, horizon: int, season: int, coverages: Sequence[float]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ets`'s forecast [horizon] and its own prediction intervals, lower and upper
    [len(coverages), horizon], one per central ``coverages`` level (0.8: the 10 % and 90 % points):
    from the model's forecast distribution, exact where statsmodels has it (additive errors) and
    otherwise from 1000 simulated paths (Hyndman et al. 2008, ch. 6), seeded so a rerun agrees.
    NaN bounds where no model fits or the forecast is not finite (the forecast is then naive's)."""
    y = np.asarray(history, np.float64)
    nan = np.full((len(coverages), horizon), np.nan)
    best = _best_ets(y, season)
    if best is None:
        return naive(y, horizon), nan, nan.copy()
    forecast = np.asarray(best.forecast(horizon), np.float64)
    if not np.isfinite(forecast).all():
        return naive(y, horizon), nan, nan.copy()
    lower, upper = nan.copy(), nan.copy()
    if len(coverages):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prediction = best.get_prediction(start=len(y), end=len(y) + horizon - 1, rng=np.random.default_rng(0))
            for j, level in enumerate(coverages):
                bounds = prediction.summary_frame(alpha=1 - level)
                lower[j], upper[j] = bounds["pi_lower"].to_numpy(), bounds["pi_upper"].to_numpy()
    return forecast, lower, upper


def damped_ets(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """Damped-trend Holt-Winters (see the module docstring); naive where it does not fit or its
    forecast is not finite, and for histories of fewer than 4 values."""
    _statsmodels()
    y = np.asarray(history, np.float64)
    if len(y) < 4:
        return naive(y, horizon)
    seasonal = None
    if season > 1 and len(y) >= 2 * season:
        seasonal = "mul" if bool((y > 0).all()) else "add"
    for form in (seasonal, None) if seasonal else (None,):  # a seasonal fit that fails falls back to none
        forecast = _holt_winters(y, horizon, season, form)
        if forecast is not None and _plausible(forecast, y):
            return forecast
    return naive(y, horizon)


def _holt_winters(y: np.ndarray, horizon: int, season: int, seasonal):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=True,
                seasonal=seasonal,
                seasonal_periods=season if seasonal else None,
                initialization_method="estimated",
            ).fit()
            return np.asarray(fit.forecast(horizon), np.float64)
        except (ValueError, IndexError, np.linalg.LinAlgError, ZeroDivisionError):
            return None


def _plausible(forecast: np.ndarray, history: np.ndarray) -> bool:
    """Finite, and within twice the history's range of it: a fit that diverged (a multiplicative
    season on a series near zero can forecast 1e300) is not used."""
    span = float(history.max() - history.min()) or max(abs(float(history[-1])), 1.0)
    return bool(np.isfinite(forecast).all()) and bool(
        (forecast >= history.min() - 2 * span).all() and (forecast <= history.max() + 2 * span).all()
    )


def ses(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """Simple exponential smoothing (Brown 1959): l_t = l_{t-1} + alpha (y_t - l_{t-1}), the forecast
    l_n at every step; alpha and l_0 minimise the one-step squared error (statsmodels' "estimated"
    initialisation, R's ``ses(initial = "optimal")``). ``season`` is unused (SES has none); naive for
    histories of fewer than 2 values or a fit that is not finite."""
    _statsmodels()
    from statsmodels.tsa.holtwinters import SimpleExpSmoothing

    y = np.asarray(history, np.float64)
    if len(y) < 2:
        return naive(y, horizon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecast = np.asarray(SimpleExpSmoothing(y, initialization_method="estimated").fit().forecast(horizon))
    return forecast if np.isfinite(forecast).all() else naive(y, horizon)


def theta(history: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """The standard Theta method: SES with drift equal to half the linear trend's slope, on the
    seasonally adjusted series (classical multiplicative decomposition, when seasonal and positive)."""
    _statsmodels()
    from statsmodels.tsa.forecasting.theta import ThetaModel

    y = np.asarray(history, np.float64)
    if len(y) < 3:
        return naive(y, horizon)
    deseasonalize = season > 1 and len(y) >= 2 * season and bool((y > 0).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ThetaModel(y, period=season if deseasonalize else 1, deseasonalize=deseasonalize).fit()
        forecast = np.asarray(fit.forecast(horizon), np.float64)
    return forecast if np.isfinite(forecast).all() else naive(y, horizon)


BASELINES: Dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "naive": naive,
    "seasonal naive": seasonal_naive,
    "drift": drift,
    "ETS": ets,
    "damped ETS": damped_ets,
    "Theta": theta,
}
STATISTICAL = ("ETS", "damped ETS", "Theta")  # need statsmodels
# the baselines with their own prediction intervals: (history, horizon, season, coverages) -> (forecast, lower, upper)
WITH_INTERVALS = {"ETS": ets_with_intervals}


def forecast_with_intervals(name: str, history: np.ndarray, horizon: int, season: int, coverages: Sequence[float]):
    """Baseline ``name``'s (forecast [horizon], lower, upper [len(coverages), horizon]) from one fit;
    lower and upper are None for a baseline without intervals of its own."""
    if name in WITH_INTERVALS:
        return WITH_INTERVALS[name](history, horizon, season, coverages)
    return BASELINES[name](history, horizon, season), None, None
