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

from ..datasets.csv_table import TableError
from .panel import Panel, Series, calendar_features, season_of

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
    import pandas as pd

    from .panel import _fill

    if not os.path.exists(path):
        raise FileNotFoundError(f"--csv {path!r}: no such file")
    attributes, frequency, horizon, series = [], None, None, []
    with open(path, encoding=encoding, errors="strict") as handle:
        in_data = False
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                word, _, rest = line.partition(" ")
                if word == "@attribute":
                    attributes.append(rest.split()[0])
                elif word == "@frequency":
                    frequency = rest.strip()
                elif word == "@horizon":
                    horizon = int(rest)
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
            cells = fields[-1].split(",")
            try:
                y = np.array([np.nan if c.strip() == "?" else float(c) for c in cells], np.float64)
            except ValueError:
                bad = next(c for c in cells if c.strip() != "?" and not _is_number(c))
                raise TableError(f"{path!r} line {number} (series {name!r}): {bad!r} is not a number") from None
            if not np.isfinite(np.nan_to_num(y, nan=0.0)).all():
                raise TableError(f"{path!r} line {number} (series {name!r}): holds an infinity")
            if np.isnan(y).any():
                if fill == "refuse":
                    raise TableError(
                        f"{path!r} line {number} (series {name!r}) has missing values ('?'); give --fill ffill, "
                        "--fill interpolate or --fill zero"
                    )
                y = _fill(y[:, None], fill)[:, 0]
            start = None
            if "start_timestamp" in attributes:
                stamp = fields[attributes.index("start_timestamp")]  # fields: the attributes, then the values
                start = pd.to_datetime(stamp, format="%Y-%m-%d %H-%M-%S", errors="coerce")
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
