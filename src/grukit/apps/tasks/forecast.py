"""Next-day forecasting: the tutorials' regressor, GRU then Dense(1), on weather and stock prices.

weather: Seattle's next-day maximum temperature from 14 days of it plus the day of the
    year (sin, cos). Metric: test RMSE in deg C. Baselines: persistence (tomorrow = today)
    and the day-of-year mean of the training years.
stocks: MSFT's next-day log return from 30 days of returns. Metric: test RMSE of the
    next-day close in dollars, close_t * exp(predicted return) (the RMSE of the log
    return is reported too). Baseline: persistence (tomorrow's close = today's, i.e. a
    zero return).
Both splits are in time order; inputs are scaled with training statistics only.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from ...export import OnnxGraph, append_gru, save
from ...nn import GRU
from ..datasets.series import day_of_year_features
from .catalog import CATALOG
from .model_files import load_weights, metric_by_precision, model_file
from .options import Options
from .task import Task
from .training import fit

SETTINGS = {
    "weather": {"window": 14},
    "stocks": {"window": 30},
}


class Forecaster(nn.Module):
    """x [B, window, F] (scaled) -> the next day's scaled target [B] (``horizon`` 1), or the next
    ``horizon`` days' [B, horizon]: GRU then Dense(horizon)."""

    def __init__(self, features: int, hidden: int = 50, layers: int = 1, reset_after: bool = True, horizon: int = 1):
        super().__init__()
        self.gru = GRU(features, hidden, num_layers=layers, batch_first=True, reset_after=reset_after)
        self.dense = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.gru(x)
        out = self.dense(h_n[-1])
        return out.squeeze(1) if out.shape[1] == 1 else out


def load_data(task: str, limit: int = 0):
    from ..datasets import msft_returns, seattle_weather

    window = SETTINGS[task]["window"]
    if task == "weather":
        data, close = seattle_weather(window=window, features=("temp_max", "day_sin", "day_cos")), None
    else:
        data, close = msft_returns(window=window)
    if limit:  # keep the most recent `limit` training windows (quick runs and tests)
        data.x_train, data.y_train = data.x_train[-limit:], data.y_train[-limit:]
        data.last_train, data.dates_train = data.last_train[-limit:], data.dates_train[-limit:]
    return data, close


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _predict_scaled(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def day_of_year_mean(train_dates, train_targets, dates, half_width: int = 7) -> np.ndarray:
    """For each date: the mean training target over days of the year within +-half_width."""

    def doy(d):
        return (d.astype("datetime64[D]") - d.astype("datetime64[Y]")).astype(int)

    train_day, day = doy(train_dates), doy(dates)
    out = np.empty(len(dates))
    for i, d in enumerate(day):
        gap = np.abs(train_day - d)
        near = np.minimum(gap, 366 - gap) <= half_width
        out[i] = train_targets[near].mean() if near.any() else train_targets.mean()
    return out


def train(options: Options) -> Dict:
    task = options.task
    settings = SETTINGS[task]
    torch.manual_seed(options.seed)
    data, close = load_data(task, options.limit)
    hidden = options.hidden or CATALOG[task].hidden
    epochs = options.epochs or CATALOG[task].epochs
    batch_size = options.batch_size or CATALOG[task].batch_size
    model = Forecaster(len(data.features), hidden, options.layers, options.reset_after)
    scale = lambda y: (y - data.target_mean) / data.target_std  # noqa: E731
    unscale = lambda z: z * data.target_std + data.target_mean  # noqa: E731
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(scale(data.y_train).astype(np.float32))

    def loss_fn(m, xb, yb):
        return nn.functional.mse_loss(m(xb), yb)

    def val_rmse():
        return _rmse(unscale(_predict_scaled(model, data.x_val)), data.y_val)

    result = fit(
        model,
        (x, y),
        loss_fn,
        val_rmse,
        epochs,
        options.lr or CATALOG[task].lr,
        batch_size,
        options,
        higher_is_better=False,
    )
    pred = unscale(_predict_scaled(model, data.x_test))
    if task == "weather":
        report = {
            "metric": "test RMSE of the next day's max temperature (deg C)",
            "model": _rmse(pred, data.y_test),
            "precisions": metric_by_precision(
                model, lambda m: _rmse(unscale(_predict_scaled(m, data.x_test)), data.y_test), options
            ),
            "baselines": {
                "persistence (tomorrow = today)": _rmse(data.last_test, data.y_test),
                "day-of-year mean of the training years": _rmse(
                    day_of_year_mean(data.dates_train, data.y_train, data.dates_test), data.y_test
                ),
            },
        }
    else:
        n_test = len(data.y_test)
        prev_close = close[-n_test - 1 : -1]  # the close on each window's last day
        true_close = close[-n_test:]
        report = {
            "metric": "test RMSE of the next day's close (USD), from the predicted log return",
            "model": _rmse(prev_close * np.exp(pred), true_close),
            "baselines": {"persistence (tomorrow's close = today's)": _rmse(prev_close, true_close)},
            "log_return_rmse": {
                "model": _rmse(pred, data.y_test),
                "persistence (zero return)": _rmse(0 * pred, data.y_test),
            },
        }
    report.update(
        task=task,
        split={"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test)},
        test_period=f"{str(data.dates_test[0])} .. {str(data.dates_test[-1])}",
        **result,
    )
    report["model_file"] = model_file(
        task,
        options,
        model,
        config={
            "features": list(data.features),
            "hidden": hidden,
            "layers": options.layers,
            "reset_after": options.reset_after,
            "window": settings["window"],
        },
        scaling={"mean": data.feature_mean.tolist(), "std": data.feature_std.tolist()},
    )
    return report


def load_model(saved: Dict) -> Forecaster:
    c = saved["config"]
    model = Forecaster(len(c["features"]), c["hidden"], c["layers"], c["reset_after"], c.get("horizon", 1))
    return load_weights(model, saved)


def predict(saved: Dict, days: int) -> List[Dict]:
    """Forecast ``days`` days past the end of the data, feeding each forecast back in.

    Returns one {"date", "value"} per day: max temperature (deg C) for weather, close
    (USD) for stocks. Only the modelled series is fed back; the day of the year is known.
    """
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"--days must be a positive number of days, got {days!r}")
    task, c = saved["task"], saved["config"]
    model = load_model(saved)
    mean, std = np.array(saved["scaling"]["mean"]), np.array(saved["scaling"]["std"])
    data, close = load_data(task)
    history = data.values[-c["window"] :].copy()  # [window, F] in natural units
    date = data.dates[-1]
    last_close = close[-1] if close is not None else None
    out = []
    for _ in range(days):
        date = date + np.timedelta64(1, "D")
        if task == "stocks":  # trading days: skip weekends
            while date.astype("datetime64[D]").astype(object).weekday() >= 5:
                date = date + np.timedelta64(1, "D")
        scaled = ((history - mean) / std).astype(np.float32)[None]
        value = float(_predict_scaled(model, scaled)[0]) * std[0] + mean[0]
        row = np.empty(history.shape[1])
        row[0] = value
        if task == "weather":
            row[1:] = day_of_year_features(np.array([date]))[0]
            out.append({"date": str(date), "value": value})
        else:
            last_close = last_close * np.exp(value)
            out.append({"date": str(date), "value": float(last_close)})
        history = np.concatenate([history[1:], row[None]], 0)
    return out


class ForecastTask(Task):
    """weather or stocks: both forecast the next day from a window of days."""

    how_to_use = "it forecasts: `grukit predict MODEL --days N`"

    def __init__(self, name: str, unit: str, train_task=train):
        super().__init__(train_task, load_model)
        self.name = name
        self.unit = unit  # of the forecast values, as printed

    def predict(self, saved: Dict, texts: Sequence[str], days: int) -> List[str]:
        if texts:
            raise SystemExit(f"grukit predict: a {self.name} model forecasts (--days N); it takes no text")
        return [f"{row['date']}  {row['value']:.2f} {self.unit}" for row in predict(saved, days)]

    def to_onnx(self, saved: Dict, path: str) -> str:
        """Input ``x`` [B, window, F]: the last ``window`` rows of the features (the file's
        ``config.features``) in their own units; output ``prediction`` [B] ([B, horizon] for a
        multi-step model): the next value(s) of the first feature, the target, in its units. The
        training scaling is part of the graph:

            x_scaled   = (x - mean) / std                 (per feature, the training statistics)
            prediction = Dense(GRU(x_scaled)) * std_0 + mean_0
        """
        model = load_model(saved)
        g = OnnxGraph()
        T = g.TensorProto
        features = len(saved["config"]["features"])
        mean = np.asarray(saved["scaling"]["mean"], np.float32)
        std = np.asarray(saved["scaling"]["std"], np.float32)
        inputs = [g.helper.make_tensor_value_info("x", T.FLOAT, ["batch", "window", features])]
        scaled = g.node("Div", [g.node("Sub", ["x", g.const("feature_mean", mean)]), g.const("feature_std", std)])
        x = g.node("Transpose", [scaled], perm=[1, 0, 2])
        _, h_n = append_gru(g, model.gru, x, None, None)
        horizon = saved["config"].get("horizon", 1)
        value = g.linear(model.dense, g.last_state(model.gru, h_n))  # [B, horizon], scaled
        if horizon == 1:
            value = g.node("Squeeze", [value, g.const("axes", np.array([1], np.int64))])
        in_units = g.node("Mul", [value, g.const("target_std", std[:1])])
        g.node("Add", [in_units, g.const("target_mean", mean[:1])], ["prediction"])
        shape = ["batch"] if horizon == 1 else ["batch", horizon]
        save(g, inputs, [g.helper.make_tensor_value_info("prediction", T.FLOAT, shape)], path)
        target = saved["config"]["features"][0]
        return (
            f"the {self.name} model as ONNX (opset 14, one GRU node per layer): x [batch, window, "
            f"{features}] ({', '.join(saved['config']['features'])}, unscaled) -> prediction, the next {target}"
        )

    def gates_input(self, saved: Dict, text: Sequence[str], days: int):
        if text:
            raise SystemExit(f"grukit gates: a {self.name} model reads the series (--days N), not text")
        if days < 2:
            raise ValueError(f"--days must be at least 2, got {days}")
        data, _ = load_data(self.name)
        mean, std = np.array(saved["scaling"]["mean"]), np.array(saved["scaling"]["std"])
        stretch = ((data.values[-days:] - mean) / std).astype(np.float32)
        labels = [str(d)[5:] if self.name == "weather" else str(d) for d in data.dates[-days:]]
        return load_model(saved), torch.from_numpy(stretch), labels


TASKS = [ForecastTask("weather", "deg C max"), ForecastTask("stocks", "USD close")]
