"""Rolling-origin evaluation: K forecast origins (cut-offs) over the last part of every series, the
model trained once on the values before the first, then asked to forecast from each (reading the
actual values up to it, as a deployed model would), with the baselines on the same windows.

For a series of n values, horizon H, K cut-offs ``step`` apart:

    c_k = n - H - (K - 1 - k) * step,      k = 0 .. K-1      (the last window ends at n)

The Monash archive's protocol (test = the last H values of each series) is K = 1.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import metrics
from .baselines import BASELINES, WITH_INTERVALS, forecast_with_intervals
from .forecaster import GlobalForecaster, Settings, fit, intervals
from .panel import Panel
from .table import TableError

MODEL = "grukit GRU"


@dataclass
class BacktestResult:
    """Forecasts and scores of every method at every (series, cut-off).

    forecasts[method]: [N, K, H] point forecasts; actual: [N, K, H]; quantiles: [N, K, H, Q] the
    model's calibrated quantiles at ``levels``; bounds[method]["80%"]: (lower, upper) [N, K, H] of
    each interval the method gives (the model's calibrated ones; ETS's own); scores[method][metric]:
    [N, K]; seconds[method]: the time to produce its forecasts (the model: ``train_seconds`` to train,
    then its forecasts).
    """

    ids: List[str]
    cutoffs: np.ndarray  # [N, K]
    horizon: int
    season: int
    actual: np.ndarray
    forecasts: Dict[str, np.ndarray]
    quantiles: np.ndarray
    levels: List[float]
    bounds: Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    scores: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    transforms: List[str] = field(default_factory=list)

    def summary(self) -> Dict[str, Dict[str, float]]:
        """Per method: the mean and median over series of each metric (each series' mean over cut-offs;
        None where a method gave no value, as ETS gives no interval where no model fits)."""
        out = {}
        for method, by_metric in self.scores.items():
            row = {}
            for name, values in by_metric.items():
                per_series = _nan_quietly(np.nanmean, values, 1)
                row[f"{name} mean"] = _number(_nan_quietly(np.nanmean, per_series))
                if name == "MASE":
                    row["MASE median"] = _number(_nan_quietly(np.nanmedian, per_series))
            row["seconds"] = self.seconds.get(method, float("nan"))
            out[method] = row
        return out

    def per_series(self) -> Dict[str, Dict[str, Dict[str, float]]]:
        """series id -> method -> metric -> mean over cut-offs."""
        return {
            sid: {
                method: {name: _number(_nan_quietly(np.nanmean, values[i])) for name, values in by_metric.items()}
                for method, by_metric in self.scores.items()
            }
            for i, sid in enumerate(self.ids)
        }

    def table(self) -> str:
        """A Markdown table of :meth:`summary`, methods as rows."""
        summary = self.summary()
        columns = ["MASE mean", "MASE median", "sMAPE mean", "RMSE mean"]
        extra = [c for c in next(iter(summary.values())) if c.startswith(("coverage", "pinball"))]
        columns += extra + ["seconds"]
        lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for method, row in summary.items():
            cells = [_cell(row.get(c)) for c in columns]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "horizon": self.horizon,
            "season": self.season,
            "cutoffs": int(self.cutoffs.shape[1]),
            "series": len(self.ids),
            "train_seconds": self.train_seconds,
            "transforms": self.transforms,
            "overall": self.summary(),
            "per_series": self.per_series(),
        }


def _nan_quietly(reduce, values, axis=None):
    """``reduce`` (np.nanmean, np.nanmedian) without the warning for an all-NaN slice (which gives NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(values, axis)


def _number(value) -> Optional[float]:
    """A float for a report, None for NaN (JSON has no NaN)."""
    return None if np.isnan(value) else float(value)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"


def interval_label(lower_level: float, upper_level: float) -> str:
    """The name of the interval between two quantile levels: 0.1, 0.9 -> "80%"."""
    return f"{100 * (upper_level - lower_level):g}%"


def cutoffs_of(panel: Panel, horizon: int, count: int, step: int) -> np.ndarray:
    """[N, K] cut-offs (see the module docstring); refuses a series too short to keep a value before
    its first cut-off."""
    lengths = np.array([len(s) for s in panel.series])
    cut = lengths[:, None] - horizon - (count - 1 - np.arange(count))[None, :] * step
    short = np.flatnonzero(cut[:, 0] < 2)
    if len(short):
        s = panel.series[short[0]]
        raise TableError(
            f"series {s.id!r} (from row {s.row}) has {len(s)} values: too few for {count} cut-offs {step} apart "
            f"with horizon {horizon} (it needs {horizon + (count - 1) * step + 2}); give fewer --cutoffs or a "
            "smaller --step"
        )
    return cut


def score(result: BacktestResult, panel: Panel) -> None:
    """Fill ``result.scores`` from its forecasts (MASE's scale from each series' values before the cut-off)."""
    N, K = result.cutoffs.shape
    scale = np.array(
        [
            [metrics.mase_scale(panel.series[i].values[: result.cutoffs[i, k]], result.season) for k in range(K)]
            for i in range(N)
        ]
    )
    for method, forecast in result.forecasts.items():
        error = forecast - result.actual
        scores = {
            "MASE": np.abs(error).mean(2) / scale,
            "sMAPE": np.array(
                [[metrics.smape(result.actual[i, k], forecast[i, k]) for k in range(K)] for i in range(N)]
            ),
            "RMSE": np.sqrt((error**2).mean(2)),
        }
        for label, (lower, upper) in result.bounds.get(method, {}).items():
            inside = ((result.actual >= lower) & (result.actual <= upper)).mean(2)
            scores[f"coverage {label}"] = np.where(np.isnan(lower).any(2), np.nan, inside)  # NaN: no interval
        if method == MODEL:
            q = result.quantiles
            losses = [
                np.maximum(level * (result.actual - q[..., j]), (level - 1) * (result.actual - q[..., j])).mean(2)
                for j, level in enumerate(result.levels)
            ]
            scores["pinball"] = np.mean(losses, 0) / scale  # scaled like MASE (the median's is MASE / 2)
        result.scores[method] = scores


def backtest(
    panel: Panel,
    settings: Settings,
    cutoffs: int = 10,
    step: int = 1,
    baselines: Sequence[str] = ("naive", "seasonal naive", "drift", "ETS", "Theta"),
    season: Optional[int] = None,
    model: Optional[GlobalForecaster] = None,
) -> BacktestResult:
    """Train once on the values before each series' first cut-off (or use ``model``), forecast from
    every cut-off, and score the model and ``baselines`` on the same windows."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")
    if cutoffs < 1 or step < 1:
        raise ValueError(f"cutoffs and step must be positive integers, got {cutoffs} and {step}")
    horizon = settings.horizon
    season = season or panel.season
    cut = cutoffs_of(panel, horizon, cutoffs, step)
    started = time.perf_counter()
    if model is None:
        model = fit(panel.cut(cut[:, 0]), settings)
    trained = time.perf_counter()
    quantiles, _ = model.quantiles_at(panel, [row for row in cut])  # origins <= n - H: covariates known
    forecast_seconds = time.perf_counter() - trained
    N, K = cut.shape
    quantiles = quantiles.reshape(N, K, horizon, -1)
    actual = np.stack([np.stack([s.values[c : c + horizon] for c in cut[i]]) for i, s in enumerate(panel.series)])
    levels = model.fitted.levels
    result = BacktestResult(
        panel.ids, cut, horizon, season, actual, {MODEL: quantiles[..., levels.index(0.5)]}, quantiles, levels
    )
    result.train_seconds = trained - started
    result.seconds[MODEL] = forecast_seconds
    result.transforms = sorted(set(model.fitted.transforms))
    pairs = intervals(levels)
    labels = [interval_label(lo, hi) for lo, hi in pairs]
    result.bounds[MODEL] = {
        label: (quantiles[..., levels.index(lo)], quantiles[..., levels.index(hi)])
        for label, (lo, hi) in zip(labels, pairs)
    }
    coverages = [hi - lo for lo, hi in pairs]
    for name in baselines:
        clock = time.perf_counter()
        runs = [  # one fit per window gives the forecast and the method's own intervals, where it has them
            [forecast_with_intervals(name, s.values[:c], horizon, season, coverages) for c in cut[i]]
            for i, s in enumerate(panel.series)
        ]
        result.forecasts[name] = np.array([[run[0] for run in row] for row in runs])
        if name in WITH_INTERVALS:
            lower, upper = (np.array([[run[side] for run in row] for row in runs]) for side in (1, 2))  # [N, K, C, H]
            result.bounds[name] = {label: (lower[:, :, j], upper[:, :, j]) for j, label in enumerate(labels)}
        result.seconds[name] = time.perf_counter() - clock
    score(result, panel)
    return result


def plot(result: BacktestResult, panel: Panel, path: str, count: int = 4) -> None:
    """A PNG of ``count`` series: their values, and the model's forecast from the last cut-off with
    its widest calibrated interval, beside the best baseline's (by mean MASE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import write_atomically

    summary = result.summary()
    others = [m for m in summary if m != MODEL]
    rival = min(others, key=lambda m: summary[m]["MASE mean"]) if others else None
    pairs = intervals(result.levels)
    chosen = np.linspace(0, len(result.ids) - 1, min(count, len(result.ids))).astype(int)
    figure, axes = plt.subplots(len(chosen), 1, figsize=(8, 2.4 * len(chosen)), squeeze=False)
    for axis, i in zip(axes[:, 0], chosen):
        s, c = panel.series[i], result.cutoffs[i, -1]
        start = max(0, c - 4 * result.horizon)
        steps = np.arange(start, min(len(s), c + result.horizon))
        x = s.times if s.times is not None else np.arange(len(s.future))  # dates where the panel has them
        axis.plot(x[steps], s.values[steps], color="black", lw=1, label="actual")
        ahead = x[np.arange(c, c + result.horizon)]
        if pairs:
            lo, hi = pairs[0]
            axis.fill_between(
                ahead,
                result.quantiles[i, -1, :, result.levels.index(lo)],
                result.quantiles[i, -1, :, result.levels.index(hi)],
                alpha=0.3,
                label=f"{100 * (hi - lo):g}% interval",
            )
        axis.plot(ahead, result.forecasts[MODEL][i, -1], lw=1.5, label=MODEL)
        if rival:
            axis.plot(ahead, result.forecasts[rival][i, -1], lw=1, ls="--", label=rival)
        axis.set_title(str(s.id), fontsize=9)
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=90))
    plt.close(figure)
