"""Forecast accuracy, as the Monash archive defines it (Godahewa et al. 2021, appendix C).

For one series with training values y_1..y_M, forecasts F and actual values Y over h steps,
and seasonal period S:

    MASE  = mean_k |F_k - Y_k|  /  ( 1/(M-S) * sum_{t=S+1..M} |y_t - y_{t-S}| )     (Hyndman and Koehler 2006)
    sMAPE = 100 % * mean_k |F_k - Y_k| / ((|Y_k| + |F_k|) / 2)
    RMSE  = sqrt(mean_k (F_k - Y_k)^2)

and, for quantile forecasts Q_q at levels q,

    pinball_q = mean_k max(q (Y_k - Q_q,k), (q - 1)(Y_k - Q_q,k))      (Koenker and Bassett 1978)
    coverage  = share of Y_k inside [lower_k, upper_k].
"""

from __future__ import annotations

import numpy as np


def mase_scale(history: np.ndarray, season: int) -> float:
    """The in-sample mean absolute seasonal difference of ``history`` [M]: MASE's denominator. A
    history no longer than ``season`` uses lag 1 (as the archive's R code does); a constant history
    gets 1 rather than 0 (its MASE would be infinite), which the reports say."""
    history = np.asarray(history, np.float64)
    lag = season if len(history) > season else 1
    scale = float(np.mean(np.abs(history[lag:] - history[:-lag]))) if len(history) > lag else 0.0
    return scale if scale > 0 else 1.0


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    return float(np.mean(np.abs(np.asarray(forecast) - np.asarray(actual))) / scale)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    actual, forecast = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    denominator = (np.abs(actual) + np.abs(forecast)) / 2
    ratio = np.divide(np.abs(forecast - actual), denominator, out=np.zeros_like(actual), where=denominator > 0)
    return float(100 * np.mean(ratio))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(forecast, np.float64) - np.asarray(actual, np.float64)) ** 2)))


def pinball(actual: np.ndarray, quantile_forecast: np.ndarray, level: float) -> float:
    error = np.asarray(actual, np.float64) - np.asarray(quantile_forecast, np.float64)
    return float(np.mean(np.maximum(level * error, (level - 1) * error)))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    actual = np.asarray(actual)
    return float(np.mean((actual >= lower) & (actual <= upper)))
