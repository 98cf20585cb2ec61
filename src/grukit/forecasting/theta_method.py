"""The standard Theta method (Assimakopoulos and Nikolopoulos 2000) fitted to many series at once.

Hyndman and Billah (2003) showed that it is simple exponential smoothing (SES) with a drift of half
the series' linear-trend slope. For each series y_0 .. y_{n-1} (seasonally adjusted when seasonal):

    b_0        = the least-squares slope of y_t on t                      (the trend line's slope)
    l_0        = y_0;  l_t = l_{t-1} + alpha (y_t - l_{t-1})              (SES, known initial level)
    alpha      = argmin over (0, 1) of  sum_{t>=1} (y_t - l_{t-1})^2      (one-step squared error)
    y_{n-1+h}  = l_{n-1} + (b_0 / 2) (h - 1 + 1 / alpha - (1 - alpha)^n / alpha)      h = 1 .. H

This is statsmodels' ``ThetaModel(...).fit()`` (its default two-step estimate, theta = 2), including
its seasonal adjustment: when the period's autocorrelation passes a 90 % test, the series is divided
by (or, with a non-positive factor, reduced by) the classical decomposition's seasonal factors, which
multiply the forecast back. statsmodels fits one series at a time through a numerical optimiser
(10 ms a series) that can stop in a local minimum; here alpha is found by a grid search over every
series at once, refined once (to 5e-4, and on a log scale near 0), so that a panel of 10,000 series
takes seconds. On M1 yearly and the tourism panels the two agree to 1e-5 on the median series, and
their MASE to 0.5 %; where they differ, the grid's alpha has the smaller squared error.
``baselines.theta`` keeps statsmodels' fit, and a test holds the two together.
"""

from __future__ import annotations

import warnings
from typing import List, Sequence, Tuple

import numpy as np

# the coarse search's values of alpha, then the refinement's half-width and step around the best
COARSE = np.linspace(0.001, 0.999, 100)
FINE_HALF_WIDTH, FINE_STEP = 0.012, 0.0005
NEAR_ZERO = np.geomspace(1e-4, 0.02, 40)  # statsmodels' optimiser stops at alpha 1e-4 at the least
# the seasonality test's critical value: chi-square(1) at 10 % (statsmodels' ThetaModel uses it too)
SEASONALITY_CRITICAL = 2.705543454095404


def seasonal_adjustment(y: np.ndarray, season: int) -> Tuple[np.ndarray, np.ndarray, str]:
    """(adjusted y [n], the forecast's seasonal factors by position mod ``season`` [season] or empty,
    "mul" or "add"): classical multiplicative decomposition when the series is positive, at least
    two seasons long and its lag-``season`` autocorrelation passes the test; else unchanged."""
    if season <= 1 or len(y) < 2 * season or not (y > 0).all():
        return y, np.empty(0), "mul"
    from statsmodels.tsa.seasonal import seasonal_decompose
    from statsmodels.tsa.stattools import acf

    rho = acf(y, nlags=season, fft=True)
    if not len(y) * rho[-1] ** 2 / np.sum(rho[:-1] ** 2) > SEASONALITY_CRITICAL:
        return y, np.empty(0), "mul"
    factors = seasonal_decompose(y, model="mul", period=season).seasonal
    if factors.min() <= 0:
        factors = seasonal_decompose(y, model="add", period=season).seasonal
        return y - factors, factors[:season], "add"
    return y / factors, factors[:season], "mul"


def _ses_errors(values: np.ndarray, lengths: np.ndarray, alphas: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """SES of every series at every alpha: (sum of squared one-step errors [N, A], last level [N, A]).
    values [N, T] left-aligned (series k holds values[k, :lengths[k]]); alphas [N, A]."""
    level = np.repeat(values[:, :1], alphas.shape[1], axis=1)
    squared = np.zeros_like(level)
    for t in range(1, values.shape[1]):
        inside = (t < lengths)[:, None]
        error = values[:, t : t + 1] - level
        squared += np.where(inside, error * error, 0.0)
        level = np.where(inside, level + alphas * error, level)
    return squared, level


def theta_forecasts(histories: Sequence[np.ndarray], horizon: int, season: int = 1) -> np.ndarray:
    """The standard Theta method's forecasts [N, horizon] of every history (see the module
    docstring); the last value repeated for histories of fewer than 3 values, as ``baselines.theta``."""
    count = len(histories)
    out = np.empty((count, horizon))
    adjusted: List[np.ndarray] = []
    seasonal: List[Tuple[np.ndarray, str]] = []
    fitted = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, history in enumerate(histories):
            y = np.asarray(history, np.float64)
            if len(y) < 3:
                out[k] = y[-1]
                continue
            y_adjusted, factors, method = seasonal_adjustment(y, season)
            fitted.append(k)
            adjusted.append(y_adjusted)
            seasonal.append((factors, method))
    if not fitted:
        return out
    lengths = np.array([len(y) for y in adjusted])
    values = np.zeros((len(adjusted), lengths.max()))
    for row, y in enumerate(adjusted):
        values[row, : len(y)] = y
    # b_0: the least-squares slope of y_t on t = 0 .. n-1
    t = np.arange(values.shape[1])[None, :]
    inside = t < lengths[:, None]
    t_mean = (lengths - 1) / 2
    y_mean = values.sum(1) / lengths
    slope = ((t - t_mean[:, None]) * (values - y_mean[:, None]) * inside).sum(1) / (
        ((t - t_mean[:, None]) ** 2 * inside).sum(1)
    )
    # alpha: a coarse grid for every series, then a finer one around each series' best
    squared, _ = _ses_errors(values, lengths, np.broadcast_to(COARSE, (len(adjusted), len(COARSE))))
    best = COARSE[np.argmin(squared, 1)]
    offsets = np.arange(-FINE_HALF_WIDTH, FINE_HALF_WIDTH + FINE_STEP / 2, FINE_STEP)
    # near 0 the forecast moves with alpha's ratio, not its difference: a log-spaced stretch there too
    near_zero = np.broadcast_to(NEAR_ZERO, (len(adjusted), len(NEAR_ZERO)))
    fine = np.concatenate([np.clip(best[:, None] + offsets[None, :], 1e-4, 0.9999), near_zero], 1)
    squared, level = _ses_errors(values, lengths, fine)
    pick = np.argmin(squared, 1)
    rows = np.arange(len(adjusted))
    alpha, last_level = fine[rows, pick], level[rows, pick]
    steps = np.arange(horizon)[None, :]
    drift = steps + 1 / alpha[:, None] - (1 - alpha[:, None]) ** lengths[:, None] / alpha[:, None]
    forecast = last_level[:, None] + 0.5 * slope[:, None] * drift
    for row, k in enumerate(fitted):
        factors, method = seasonal[row]
        if len(factors):
            positions = (lengths[row] + np.arange(horizon)) % season
            forecast[row] = (
                forecast[row] * factors[positions] if method == "mul" else forecast[row] + factors[positions]
            )
        out[k] = forecast[row]
    bad = ~np.isfinite(out).all(1)
    for k in np.flatnonzero(bad):  # a constant series (slope 0/0) forecasts its last value
        out[k] = np.asarray(histories[k], np.float64)[-1]
    return out
