"""The Monash forecasting archive's ``.tsf`` format (Godahewa et al. 2021): a header of ``@`` lines,
then one series per line, ``name:start_timestamp:v1,v2,...`` (``?`` for a missing value).

    @attribute series_name string
    @attribute start_timestamp date
    @frequency yearly
    @horizon 6
    @data
    T1:1972-01-01 00-00-00:3600,7700,12300,...
"""

from __future__ import annotations

import os

import numpy as np

from .panel import Panel, Series, calendar_features, season_of
from .table import FLOAT32_MAX, TableError

# the archive's frequency names -> pandas frequencies
FREQUENCIES = {
    "yearly": "YS",
    "quarterly": "QS",
    "monthly": "MS",
    "weekly": "W",
    "daily": "D",
    "hourly": "h",
    "half_hourly": "30min",
    "10_minutes": "10min",
    "minutely": "min",
    "4_seconds": "4s",
}


def read_tsf(path: str, fill: str = "refuse", encoding: str = "utf-8") -> Panel:
    """The series of a Monash ``.tsf`` file as a :class:`Panel` (its ``horizon`` the header's, None
    if it gives none). Missing values (``?``) are refused unless ``fill`` names a way to fill them
    (ffill, interpolate, zero); every error names the line."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--csv {path!r}: no such file")
    try:
        return _read_tsf(path, fill, encoding)
    except UnicodeDecodeError as exc:
        raise TableError(
            f"{path!r} is not {encoding} text ({exc.reason}); give its encoding with --encoding, "
            "for example --encoding latin-1"
        ) from None


def _read_tsf(path: str, fill: str, encoding: str) -> Panel:
    import pandas as pd

    from .panel import _fill

    attributes, frequency, horizon, series, names = [], None, None, [], {}
    with open(path, encoding=encoding, errors="strict") as handle:
        in_data = False
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                word, _, rest = line.partition(" ")
                if word == "@attribute":
                    if len(rest.split()) != 2:
                        raise TableError(
                            f"{path!r} line {number}: an @attribute line needs a name and a type "
                            f"('@attribute series_name string'), got {line!r}"
                        )
                    attributes.append(rest.split()[0])
                elif word == "@frequency":
                    frequency = rest.strip()
                elif word == "@horizon":
                    try:
                        horizon = int(rest)
                    except ValueError:
                        horizon = 0
                    if horizon < 1:
                        raise TableError(
                            f"{path!r} line {number}: @horizon must be a whole number of steps, at least 1, "
                            f"got {rest.strip()!r}"
                        )
                elif word == "@data":
                    in_data = True
                continue
            fields = line.split(":")
            if len(fields) != len(attributes) + 1:
                raise TableError(
                    f"{path!r} line {number}: {len(fields)} ':'-separated fields, expected {len(attributes) + 1} "
                    f"({', '.join(attributes)}, values)"
                )
            name = fields[0]
            if name in names:
                raise TableError(
                    f"{path!r} line {number}: series {name!r} appears twice (first on line {names[name]}); "
                    "each series needs its own name"
                )
            names[name] = number
            cells = fields[-1].split(",")
            try:
                y = np.array([np.nan if c.strip() == "?" else float(c) for c in cells], np.float64)
            except ValueError:
                bad = next(c for c in cells if c.strip() != "?" and not _is_number(c))
                raise TableError(f"{path!r} line {number} (series {name!r}): {bad!r} is not a number") from None
            beyond = np.abs(y) > FLOAT32_MAX  # "inf", 1e999 (inf once read), 1e308: the models compute in float32
            if beyond.any():
                bad = cells[int(np.flatnonzero(beyond)[0])].strip()
                raise TableError(
                    f"{path!r} line {number} (series {name!r}): {bad!r} is infinite or too large for the models "
                    "(float32, up to 3.4e38)"
                )
            if np.isnan(y).any():
                if fill == "refuse":
                    first = int(np.flatnonzero(np.isnan(y))[0])
                    raise TableError(
                        f"{path!r} line {number} (series {name!r}) has {int(np.isnan(y).sum())} missing values "
                        f"(the first, value {first + 1}, is {cells[first].strip()!r}); give --fill ffill, "
                        "--fill interpolate or --fill zero"
                    )
                y = _fill(y[:, None], fill)[:, 0]
            start = None
            if "start_timestamp" in attributes:
                stamp = fields[attributes.index("start_timestamp")]  # fields: the attributes, then the values
                start = pd.to_datetime(stamp, format="%Y-%m-%d %H-%M-%S", errors="coerce")
                if pd.isna(start):  # one unreadable start would silently drop every series' calendar
                    raise TableError(
                        f"{path!r} line {number} (series {name!r}): start timestamp {stamp!r} is not "
                        "'YYYY-MM-DD HH-MM-SS' (the archive's form)"
                    )
            series.append((name, y, start, number))
    if not series:
        raise TableError(f"{path!r} holds no series (no lines after @data)")
    pandas_frequency = FREQUENCIES.get(frequency or "")
    out = []
    for name, y, start, number in series:
        times = None
        if start is not None and pandas_frequency and not pd.isna(start):
            times = pd.date_range(start, periods=len(y), freq=pandas_frequency).to_numpy()
        calendar = calendar_features(times, pandas_frequency) if times is not None else np.zeros((len(y), 0))
        out.append(Series(name, y, calendar, np.zeros((len(y), 0)), np.zeros(0), times, number))
    if any(s.times is None for s in out):  # calendar features need every series' times
        for s in out:
            s.future, s.times = np.zeros((len(s), 0)), None
    return Panel(out, "value", frequency=pandas_frequency, season=season_of(pandas_frequency), horizon=horizon)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
