"""``grukit train forecast --csv FILE --target COL``: forecast a column of your own CSV file.

The rows are time steps (sorted by ``--time`` if given, else in file order). Inputs: the last
``--window`` rows of the target and of the ``--features`` columns (and, with ``--calendar``,
the day of the year from ``--time`` as sin/cos, known in advance); output: the target's next
``--horizon`` values. The windows are split in time order, 70 % train, 15 % validation, 15 %
test; every column is scaled with the mean and std of the rows the training windows see.
Model: GRU then Dense(horizon) (the weather task's shape). Metric: test RMSE over every
forecast step, in the target's units. Baselines: persistence (the last value, repeated) and,
with ``--season P``, seasonal naive (the value P steps earlier).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ...forecasting.table import (
    TableError,
    fill_missing,
    infer_freq_string,
    numeric_column,
    optional,
    read_table,
    time_column,
)
from ..datasets.series import day_of_year_features, make_windows
from .catalog import CATALOG
from .common import Options, finite_outputs, fit, model_file
from .forecast import Forecaster, ForecastTask, load_model
from .task import NotOffered

SPLIT = (0.7, 0.15)
WINDOW, HORIZON = 14, 1  # --window, --horizon defaults
DEFAULTS = CATALOG["forecast"]
RECENT_ROWS = 400  # rows kept in the model file, for `predict` and `gates`


def _columns(options: Options) -> Tuple[List[str], Dict[str, str]]:
    """(the feature columns, target first; flag -> column for reading)."""
    if not options.target:
        raise TableError("the forecast task needs --target COL: the column to forecast")
    extra = [c for c in optional(options.features) if c != options.target]
    named = {"--target": options.target, **{f"--features {c}": c for c in extra}}
    if options.time:
        named["--time"] = options.time
    elif options.calendar:
        raise TableError("--calendar needs --time COL: the day of the year comes from the time column")
    return [options.target] + extra, named


def read_series(source, options: Options):
    """(values [N, F] float64 in natural units, feature names, times [N] or None)."""
    columns, named = _columns(options)
    frame = read_table(source, named, options.encoding)
    flags = {column: flag.split()[0] for flag, column in named.items()}
    frame = fill_missing(frame, columns, [options.time] if options.time else [], options.fill, source, flags)
    values = np.stack([numeric_column(frame, c, flags[c], source) for c in columns], 1)
    times = None
    if options.time:
        times = _times(frame, options, source)
        order = np.argsort(times, kind="stable")
        values, times = values[order], times[order]
        repeated = np.flatnonzero(times[1:] == times[:-1])
        if len(repeated):
            raise TableError(f"--time column {options.time!r} repeats {str(times[repeated[0]])[:19]}: one row per time")
    names = list(columns)
    if options.calendar:
        values = np.concatenate([values, day_of_year_features(times.astype("datetime64[D]"))], 1)
        names += ["day_sin", "day_cos"]
    return values, names, times


def _times(frame, options: Options, source) -> np.ndarray:
    """The ``--time`` column [N]: dates and times as datetime64[ns]; a numeric column (a year, a
    step number) as its numbers (int64 when whole), never as nanoseconds since 1970."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(frame[options.time]):
        return time_column(frame, options.time, source)
    if options.calendar:
        raise TableError(
            f"--calendar needs dates in --time; column {options.time!r} holds numbers, which have no day of the year"
        )
    numbers = numeric_column(frame, options.time, "--time", source)
    return numbers.astype(np.int64) if np.all(numbers == np.round(numbers)) else numbers


def _check_length(rows: int, window: int, horizon: int, source) -> None:
    windows = rows - window - horizon + 1
    needed = next(n for n in range(3, 100) if int(n * SPLIT[0]) >= 1 and int(n * SPLIT[1]) >= 1)
    if windows < needed:
        raise TableError(
            f"{source if isinstance(source, str) else 'the data frame'} has {rows} rows: --window {window} + "
            f"--horizon {horizon} leave {max(windows, 0)} windows, and the 70/15/15 % split needs at least "
            f"{needed} ({window + horizon + needed - 1} rows); give more rows or a shorter --window"
        )


def seasonal_naive(series: np.ndarray, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """[len(ends), horizon]: for a window ending at row t, step k's forecast is the value at
    t + k - season * ceil(k / season) (the same point of the last season seen)."""
    k = np.arange(1, horizon + 1)
    back = season * np.ceil(k / season).astype(int)
    rows = ends[:, None] + k[None, :] - back[None, :]
    return series[np.clip(rows, 0, None)]


def time_text(t) -> str:
    """A time as people write it: "2015-12-31", "2015-12-31 06:00:00"; a row number as itself."""
    return str(t)[:19].replace("T00:00:00", "").replace("T", " ")


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def train_frame(source, options: Options) -> Dict:
    """Train on ``source`` (a CSV path or a pandas DataFrame); the report, with ``model_file``."""
    window = options.window or WINDOW
    horizon = options.horizon or HORIZON
    if options.season is not None and options.season < 1:
        raise TableError(f"--season must be a positive number of rows, got {options.season}")
    values, names, times = read_series(source, options)
    if options.limit:
        values = values[-options.limit :]
        times = times[-options.limit :] if times is not None else None
    _check_length(len(values), window, horizon, source)
    torch.manual_seed(options.seed)
    steps = times if times is not None else np.arange(len(values))
    data = make_windows(values, steps, names, names[0], window, SPLIT, horizon)
    n_test = len(data.y_test)
    ends = np.arange(len(values) - window - horizon + 1)[-n_test:] + window - 1  # each test window's last row
    if options.season and ends[0] + 1 < options.season:  # its forecast would read before row 0
        raise TableError(
            f"--season {options.season} reaches back before the first row: the first test window ends at row "
            f"{ends[0] + 1} of {len(values)}; give a season of at most {ends[0] + 1} rows, or more rows"
        )
    hidden = options.hidden or DEFAULTS.hidden
    model = Forecaster(len(names), hidden, options.layers, options.reset_after, horizon)
    scale = lambda y: ((y - data.target_mean) / data.target_std).astype(np.float32)  # noqa: E731

    def predict(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy() * data.target_std + data.target_mean

    result = fit(
        model,
        (torch.from_numpy(data.x_train), torch.from_numpy(scale(data.y_train))),
        lambda m, xb, yb: nn.functional.mse_loss(m(xb), yb),
        lambda: _rmse(predict(data.x_val), data.y_val),
        options.epochs or DEFAULTS.epochs,
        options.lr or DEFAULTS.lr,
        options.batch_size or DEFAULTS.batch_size,
        options,
        higher_is_better=False,
    )
    repeat = lambda last: last if horizon == 1 else np.repeat(last[:, None], horizon, 1)  # noqa: E731
    baselines = {"persistence (the last value)": _rmse(repeat(data.last_test), data.y_test)}
    if options.season:
        naive = seasonal_naive(values[:, 0], ends, horizon, options.season)
        baselines[f"seasonal naive (the value {options.season} rows earlier)"] = _rmse(
            naive[:, 0] if horizon == 1 else naive, data.y_test
        )
    what = "the next value" if horizon == 1 else f"the next {horizon} values"
    report = {
        "task": "forecast",
        "metric": f"test RMSE of {what} of {names[0]!r}",
        "model": _rmse(predict(data.x_test), data.y_test),
        "baselines": baselines,
        "split": {"train": len(data.y_train), "val": len(data.y_val), "test": n_test},
        "test_period": f"{time_text(data.dates_test[0])} .. {time_text(steps[-1])}",
        **result,
    }
    recent = slice(max(0, len(values) - max(RECENT_ROWS, window)), None)
    step = _time_step(times)
    report["model_file"] = model_file(
        "forecast",
        options,
        model,
        config={
            "features": names,
            "columns": names[: len(names) - 2 * bool(options.calendar)],
            "calendar": bool(options.calendar),
            "time": options.time,
            "hidden": hidden,
            "layers": options.layers,
            "reset_after": options.reset_after,
            "window": window,
            "horizon": horizon,
            "fill": options.fill,
            "encoding": options.encoding,
        },
        scaling={"mean": data.feature_mean.tolist(), "std": data.feature_std.tolist()},
        recent={
            "values": values[recent].tolist(),
            "times": [_saved_time(t) for t in times[recent]] if times is not None else None,
            "step": step,
        },
    )
    return report


def train(options: Options) -> Dict:
    """``grukit train forecast``: :func:`train_frame` on the file ``--csv``."""
    if not options.csv:
        raise TableError("the forecast task reads your data: give --csv FILE and --target COL")
    return train_frame(options.csv, options)


def _time_step(times: Optional[np.ndarray]) -> Optional[str]:
    """The rows' frequency as a pandas offset ("D", "MS", "h" ...) when pandas can infer it from
    the last rows, else the most common gap in nanoseconds (as text); for numeric times, "+gap"
    (the most common gap, "+1" for years); None without times."""
    import pandas as pd

    if times is None or len(times) < 3:
        return None
    if not np.issubdtype(times.dtype, np.datetime64):  # numbers: "+gap", the most common gap
        gaps, counts = np.unique(np.diff(times), return_counts=True)
        return f"+{gaps[counts.argmax()].item()}"
    try:
        inferred = infer_freq_string(pd.DatetimeIndex(times[-50:]))
    except (TypeError, ValueError):
        inferred = None
    if inferred:
        return inferred
    gaps, counts = np.unique(np.diff(times), return_counts=True)
    return str(int(gaps[counts.argmax()].astype("timedelta64[ns]").astype(np.int64)))


def _saved_time(t):
    """A time as a model file keeps it: a date as text, a number as itself."""
    return str(t) if isinstance(t, np.datetime64) else t.item()


def _saved_times(recent: Dict) -> Optional[np.ndarray]:
    """The times a model file keeps (``recent["times"]``) as an array: datetime64[ns], or numbers."""
    times = recent["times"]
    if not times:
        return None
    return np.array(times) if isinstance(times[0], (int, float)) else np.array(times, "datetime64[ns]")


def next_times(last, step: str, count: int) -> np.ndarray:
    """The ``count`` times after ``last`` at frequency ``step`` (see :func:`_time_step`)."""
    import pandas as pd

    if step.startswith("+"):  # numeric times
        gap = float(step[1:]) if "." in step or "e" in step else int(step[1:])
        return last + np.arange(1, count + 1) * gap
    if step.isdigit():
        return np.datetime64(last, "ns") + np.arange(1, count + 1) * np.timedelta64(int(step), "ns")
    return pd.date_range(pd.Timestamp(last), periods=count + 1, freq=step)[1:].to_numpy()


def forecast(saved: Dict, rows: int, csv: Optional[str] = None) -> List[Tuple[str, float]]:
    """(time label, value) for ``rows`` steps past the end of the training file (or of ``csv``,
    a newer file with the same columns), each forecast fed back as the next input.

    Raises:
        NotOffered: more than ``horizon`` steps of a model with input features other than the
            target (their future values are unknown).
    """
    c = saved["config"]
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"--days must be a positive number of steps, got {rows!r}")
    exogenous = len(c["columns"]) > 1
    if exogenous and rows > c["horizon"]:
        raise NotOffered(
            f"this model reads {', '.join(c['columns'][1:])} besides {c['columns'][0]!r}, whose future values are "
            f"unknown: it forecasts at most --days {c['horizon']} (its --horizon); give newer data with --csv FILE"
        )
    if csv:
        options = Options(
            task="forecast",
            target=c["columns"][0],
            features=",".join(c["columns"][1:]),
            time=c["time"],
            calendar=c["calendar"],
            fill=c["fill"],
            encoding=c["encoding"],
        )
        values, _, times = read_series(csv, options)
        if len(values) < c["window"]:
            raise TableError(f"--csv {csv!r} has {len(values)} rows; the model reads the last {c['window']}")
    else:
        values = np.array(saved["recent"]["values"])
        times = _saved_times(saved["recent"])
    model = load_model(saved)
    mean, std = np.array(saved["scaling"]["mean"]), np.array(saved["scaling"]["std"])
    history = values[-c["window"] :].copy()
    step = saved["recent"]["step"]
    future = next_times(times[-1], step, rows) if step and times is not None else None
    out: List[Tuple[str, float]] = []
    while len(out) < rows:
        with torch.no_grad():
            scaled = torch.from_numpy(((history - mean) / std).astype(np.float32)[None])
            ahead = np.atleast_1d(finite_outputs(model(scaled)).numpy()[0]) * std[0] + mean[0]
        for value in ahead[: rows - len(out)]:
            row = history[-1].copy()
            row[0] = value
            if future is not None:
                when = future[len(out)]
                label = time_text(when)
                if c["calendar"]:
                    row[-2:] = day_of_year_features(np.array([when]).astype("datetime64[D]"))[0]
            else:
                label = f"t+{len(out) + 1}"
            out.append((label, float(value)))
            history = np.concatenate([history[1:], row[None]], 0)
    return out


class CsvForecastTask(ForecastTask):
    """forecast: any numeric column of a CSV file."""

    how_to_use = "it forecasts: `grukit predict MODEL --days N` (or --csv NEWER.csv to continue from newer data)"
    takes_csv = True

    def __init__(self):
        super().__init__("forecast", "", train)

    def predict(self, saved: Dict, texts: Sequence[str], days: int, csv: Optional[str] = None) -> List[str]:
        if texts:
            raise SystemExit("grukit predict: a forecast model forecasts (--days N, --csv FILE); it takes no text")
        target = saved["config"]["columns"][0]
        return [f"{label}  {target} {value:.4g}" for label, value in forecast(saved, days, csv)]

    def gates_input(self, saved: Dict, text: Sequence[str], days: int):
        if text:
            raise SystemExit("grukit gates: a forecast model reads the series (--days N), not text")
        values = np.array(saved["recent"]["values"])
        if not 2 <= days <= len(values):
            raise ValueError(f"--days must be between 2 and {len(values)} (the rows kept in the model), got {days}")
        mean, std = np.array(saved["scaling"]["mean"]), np.array(saved["scaling"]["std"])
        times = saved["recent"]["times"]
        labels = [time_text(t) for t in times[-days:]] if times else [f"t-{days - i}" for i in range(days)]
        stretch = ((values[-days:] - mean) / std).astype(np.float32)
        return load_model(saved), torch.from_numpy(stretch), labels


TASK = CsvForecastTask()
