"""A panel: many time series of one target, each with its own length and start, and their covariates.

Three kinds of covariate (as in neuralforecast and darts):

- **past** covariates are observed up to now only: they enter the encoder beside the target;
- **future** (known-in-advance) covariates, such as prices, promotions or holidays, are also known over
  the forecast horizon: the rows after a series' last target value hold them (the target cell left
  empty), and they enter both the encoder and the forecast head;
- **static** covariates are one value per series (a category or a number).

A panel comes from a long table (one row per series and time: ``--id``, ``--time``, ``--target``), a
wide table (one column per series: ``--targets A,B,C``, rows in time order) or a Monash ``.tsf`` file
(:mod:`.tsf`). With a time column the frequency is inferred, missing timestamps are reported (or filled
with ``fill``), and calendar features for the frequency (month of year, day of week, ...) are added as
known-future covariates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .fill_policies import FILL_POLICIES
from .table import (
    TableError,
    _describe,
    _rows,
    infer_freq_string,
    numeric_column,
    read_table,
    time_column,
)

# the season length the Monash archive (Godahewa et al. 2021) uses for MASE, by pandas frequency
SEASONS = {"Y": 1, "Q": 4, "M": 12, "W": 52, "D": 7, "h": 24, "30min": 48, "min": 60}
# the frequency of a time column of whole numbers (statsforecast's integer ``ds``): one step is 1,
# the season unknown (1), no calendar features
INTEGER_STEPS = "integer"
FILL_CHOICES = FILL_POLICIES  # one set for every command; a panel refuses "drop" (:func:`check_panel_fill`)


@dataclass
class Series:
    """One series of the panel.

    values:  [n] float64, the target's history, without missing values.
    future:  [n + f, F] float64, the known-future covariates (and calendar features) at every
             history step and at the ``f`` rows after it that the source supplied.
    past:    [n, P] float64, the past-only covariates.
    static:  [S] float64, the static covariates (categories one-hot).
    times:   [n + f] datetime64, int64 (integer time steps) or None (no time column: positions).
    row:     the series' first row in the source (1-based), for messages.
    """

    id: str
    values: np.ndarray
    future: np.ndarray
    past: np.ndarray
    static: np.ndarray
    times: Optional[np.ndarray] = None
    row: int = 1

    def __len__(self) -> int:
        return len(self.values)

    def cut(self, n: int) -> "Series":
        """The series as it was after its first ``n`` values (future covariates kept: they are known)."""
        return Series(self.id, self.values[:n], self.future, self.past[:n], self.static, self.times, self.row)


@dataclass
class Panel:
    """Many series of one target; ``season`` is the seasonal period in steps (1: none);
    ``horizon``: the forecast horizon the source states (a .tsf file's header), or None."""

    series: List[Series]
    target: str = "value"
    past_names: List[str] = field(default_factory=list)
    future_names: List[str] = field(default_factory=list)
    static_names: List[str] = field(default_factory=list)
    frequency: Optional[str] = None
    season: int = 1
    horizon: Optional[int] = None

    @property
    def ids(self) -> List[str]:
        return [s.id for s in self.series]

    def cut(self, lengths: Sequence[int]) -> "Panel":
        """Each series cut to its length in ``lengths``."""
        return Panel(
            [s.cut(n) for s, n in zip(self.series, lengths)],
            self.target,
            self.past_names,
            self.future_names,
            self.static_names,
            self.frequency,
            self.season,
            self.horizon,
        )


def season_of(frequency: Optional[str]) -> int:
    """The seasonal period of a pandas frequency string ("MS" -> 12, "D" -> 7); 1 when unknown."""
    if not frequency:
        return 1
    base = frequency.split("-")[0].lstrip("0123456789")
    for key in ("30min", "min", "h", "D", "W", "M", "Q", "Y"):
        if base.startswith(key) or (key == "Y" and base.startswith("A")):
            return SEASONS["30min"] if frequency.startswith("30") and key == "min" else SEASONS[key]
    return 1


def calendar_features(times: np.ndarray, frequency: Optional[str]) -> np.ndarray:
    """[n, C] sin/cos of the calendar positions that repeat at ``frequency``: month of year for
    monthly and quarterly data, week of year for weekly, day of week and of year for daily, hour of
    day and day of week for hourly and finer; none (C = 0) for yearly or unknown frequencies."""
    import pandas as pd

    if frequency is None or times is None or frequency == INTEGER_STEPS:
        return np.zeros((0 if times is None else len(times), 0))
    index = pd.DatetimeIndex(times)
    season = season_of(frequency)
    positions = {
        12: [(index.month - 1, 12)],
        4: [(index.month - 1, 12)],
        52: [(index.isocalendar().week.to_numpy() - 1, 53)],
        7: [(index.day_of_week, 7), (index.day_of_year - 1, 366)],
        24: [(index.hour, 24), (index.day_of_week, 7)],
        48: [(index.hour * 2 + index.minute // 30, 48), (index.day_of_week, 7)],
        60: [(index.minute, 60), (index.hour, 24)],
    }.get(season, [])
    columns = []
    for value, period in positions:
        angle = 2 * np.pi * np.asarray(value, np.float64) / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, 1) if columns else np.zeros((len(index), 0))


def future_times(times: np.ndarray, frequency: Optional[str], count: int) -> Optional[np.ndarray]:
    """The ``count`` timestamps after ``times`` at ``frequency`` (None without times)."""
    import pandas as pd

    if times is None or frequency is None:
        return None
    if frequency == INTEGER_STEPS:
        return np.arange(int(times[-1]) + 1, int(times[-1]) + count + 1, dtype=np.int64)
    return pd.date_range(pd.Timestamp(times[-1]), periods=count + 1, freq=frequency)[1:].to_numpy()


def infer_frequency(times_by_series: Sequence[np.ndarray], column: str, source) -> Optional[str]:
    """The pandas frequency most series follow (``pd.infer_freq`` on each series with 3 or more
    distinct times, gaps allowed: the most common step of each series is tried too);
    ``INTEGER_STEPS`` for integer times (:func:`.table.time_column`)."""
    import pandas as pd

    if any(np.issubdtype(np.asarray(times).dtype, np.integer) for times in times_by_series):
        return INTEGER_STEPS

    votes: Dict[str, int] = {}
    for times in times_by_series:
        if len(times) < 3:
            continue
        index = pd.DatetimeIndex(times)
        guess = infer_freq_string(index)
        if guess is None:  # gaps: the most common step, if it is a calendar one pandas knows
            steps, counts = np.unique(np.diff(index.asi8), return_counts=True)
            step = steps[np.argmax(counts)]
            for candidate in ("YS", "YE", "QS", "QE", "MS", "ME", "W", "D", "h", "30min", "min"):
                grid = pd.date_range(index[0], periods=3, freq=candidate)
                if grid[0] == index[0] and np.diff(grid.asi8)[0] in (step, step - 86400 * 10**9, step + 86400 * 10**9):
                    guess = candidate
                    break
        if guess:
            votes[guess] = votes.get(guess, 0) + 1
    if not votes:
        raise TableError(
            f"--time column {column!r} of {_describe(source)}: no regular frequency could be inferred "
            "(each series needs 3 or more times at a regular step: days, weeks, months, quarters, years, hours)"
        )
    return max(votes, key=votes.get)


def check_panel_fill(fill: str) -> None:
    """A panel takes every ``--fill`` choice but ``drop``: leaving a row out would leave a hole in its
    series' regular time grid, which must be filled anyway."""
    if fill not in FILL_CHOICES:
        raise TableError(f"--fill must be one of {', '.join(FILL_CHOICES)}, got {fill!r}")
    if fill == "drop":
        raise TableError(
            "--fill drop leaves rows out, which would leave holes in a series' time grid; "
            "give --fill ffill, --fill interpolate or --fill zero"
        )


def _fill(values: np.ndarray, how: str) -> np.ndarray:
    """``values`` [n, K] with NaNs filled by ``how`` (ffill then bfill, linear interpolation, or 0)."""
    import pandas as pd

    frame = pd.DataFrame(values)
    if how == "zero":
        return frame.fillna(0.0).to_numpy(np.float64)
    if how == "interpolate":
        frame = frame.interpolate(limit_direction="both")
    return frame.ffill().bfill().fillna(0.0).to_numpy(np.float64)


def _static_matrix(frame, static: Sequence[str], ids: np.ndarray, order: List[str], source):
    """([N, S] static covariates by series in ``order``, their names); text columns one-hot."""
    import pandas as pd

    blocks, names = [], []
    for name in static:
        per_id = frame.groupby(ids, sort=False)[name].nunique(dropna=False)
        varying = per_id[per_id > 1]
        if len(varying):
            sid = varying.index[0]
            rows = np.flatnonzero(ids == sid)
            raise TableError(
                f"--static column {name!r} of {_describe(source)} changes within series {sid!r} (rows "
                f"{rows[0] + 1} to {rows[-1] + 1}); a static covariate holds one value per series"
            )
        first = frame.groupby(ids, sort=False)[name].first().reindex(order)
        if first.isna().any():
            sid = first.index[first.isna().to_numpy()][0]
            raise TableError(f"--static column {name!r} of {_describe(source)} is empty for series {sid!r}")
        numbers = pd.to_numeric(first, errors="coerce")
        if numbers.notna().all():
            blocks.append(numbers.to_numpy(np.float64)[:, None])
            names.append(name)
        else:
            categories = sorted({str(v) for v in first})
            blocks.append(np.stack([(first.astype(str) == c).to_numpy(np.float64) for c in categories], 1))
            names += [f"{name}={c}" for c in categories]
    matrix = np.concatenate(blocks, 1) if blocks else np.zeros((len(order), 0))
    return matrix, names


def rows_by_id(ids: np.ndarray) -> Tuple[List[str], Dict[str, np.ndarray]]:
    """(the ids in order of first appearance, each id's rows [in file order]): one sort, where a
    comparison of every id with every row took 41 s for 10,000 series of 40 rows."""
    import pandas as pd

    codes, uniques = pd.factorize(ids)
    rows = np.argsort(codes, kind="stable")
    groups = np.split(rows, np.cumsum(np.bincount(codes))[:-1])
    order = [str(u) for u in uniques]
    return order, dict(zip(order, groups))


def from_long(
    source,
    id: str,
    time: str,
    target: str,
    past: Sequence[str] = (),
    future: Sequence[str] = (),
    static: Sequence[str] = (),
    fill: str = "refuse",
    encoding: str = "utf-8",
) -> Panel:
    """A panel from a long table (a CSV path or a DataFrame): one row per (``id``, ``time``).

    Rows after a series' last ``target`` value may leave the target empty: they carry the
    ``future`` covariates over the forecast horizon. Raises TableError naming the column and row for
    a duplicate (id, time), an id with one row, a missing timestamp (unless ``fill``), a gap in the
    target or a covariate (unless ``fill``), or a static column that changes within a series.
    """
    check_panel_fill(fill)
    named = {"--id": id, "--time": time, "--target": target}
    named.update({f"--past {c}": c for c in past})
    named.update({f"--future {c}": c for c in future})
    named.update({f"--static {c}": c for c in static})
    frame = read_table(source, named, encoding)
    ids = frame[id].astype(str).to_numpy()
    missing_id = np.flatnonzero(frame[id].isna().to_numpy())
    if len(missing_id):
        raise TableError(f"--id column {id!r} of {_describe(source)} is empty at row {missing_id[0] + 1}")
    times = time_column(frame, time, source)
    if times.dtype.kind == "M" and np.isnat(times).any():
        row = int(np.flatnonzero(np.isnat(times))[0])
        raise TableError(f"--time column {time!r} of {_describe(source)} is empty at row {row + 1}")
    keys = frame.assign(_id=ids, _t=times).duplicated(["_id", "_t"], keep=False).to_numpy()
    if keys.any():
        rows = np.flatnonzero(keys)
        raise TableError(
            f"--id {id!r} and --time {time!r} of {_describe(source)}: series {ids[rows[0]]!r} has two rows at "
            f"{str(times[rows[0]])[:19]} (rows {rows[0] + 1} and {rows[1] + 1}); one row per series and time"
        )
    target_values = numeric_column(frame, target, "--target", source)
    covariates = {
        c: numeric_column(frame, c, flag.split()[0], source)
        for flag, c in named.items()
        if flag[2:6] in ("past", "futu")
    }
    order, by_id = rows_by_id(ids)
    frequency = infer_frequency([np.sort(times[rows]) for rows in by_id.values()], time, source)
    statics, static_names = _static_matrix(frame, static, ids, order, source)
    series = []
    for k, sid in enumerate(order):
        rows = by_id[sid][np.argsort(times[by_id[sid]], kind="stable")]
        if len(rows) < 2:
            raise TableError(
                f"--id column {id!r} of {_describe(source)}: series {sid!r} has one row (row {rows[0] + 1}); "
                "a series needs a history to forecast from"
            )
        series.append(
            _one_series(
                sid,
                rows,
                times,
                target_values,
                covariates,
                past,
                future,
                statics[k],
                frequency,
                fill,
                target,
                time,
                source,
            )
        )
    return Panel(series, target, list(past), list(future), static_names, frequency, season_of(frequency))


def _one_series(
    sid, rows, times, target_values, covariates, past, future, static, frequency, fill, target, time, source
):
    """One series of :func:`from_long`: reindexed onto its regular time grid, gaps filled or refused,
    trailing target-less rows kept as future-covariate rows."""
    import pandas as pd

    if frequency == INTEGER_STEPS:
        stamps = pd.Index(times[rows])
        grid = pd.Index(np.arange(stamps[0], stamps[-1] + 1, dtype=np.int64))
    else:
        stamps = pd.DatetimeIndex(times[rows])
        grid = pd.date_range(stamps[0], stamps[-1], freq=frequency)
    if not stamps.isin(grid).all():
        off = rows[int(np.flatnonzero(~stamps.isin(grid))[0])]
        raise TableError(
            f"--time column {time!r} of {_describe(source)}: series {sid!r} has {str(times[off])[:19]} (row "
            f"{off + 1}), off its {frequency} grid"
        )
    position = grid.get_indexer(stamps)
    if len(grid) > len(stamps) and fill == "refuse":
        gap = grid[~grid.isin(stamps)][0]
        raise TableError(
            f"--time column {time!r} of {_describe(source)}: series {sid!r} has no row at {str(gap)[:19]} (its "
            f"frequency is {frequency}); give --fill ffill, --fill interpolate or --fill zero to fill missing times"
        )
    y = np.full(len(grid), np.nan)
    y[position] = target_values[rows]
    observed = np.flatnonzero(~np.isnan(y))
    if len(observed) < 2:
        raise TableError(
            f"--target column {target!r} of {_describe(source)}: series {sid!r} has {len(observed)} value"
            f"{'' if len(observed) == 1 else 's'}; a series needs a history to forecast from"
        )
    n = int(observed[-1]) + 1  # rows after the last target value carry future covariates only
    if len(grid) > n and not future:
        raise TableError(
            f"--target column {target!r} of {_describe(source)}: series {sid!r} is empty from row "
            f"{rows[np.searchsorted(position, n)] + 1}; rows without a target are for --future covariates only"
        )
    holes = np.flatnonzero(np.isnan(y[:n]))
    if len(holes) and fill == "refuse":
        raise TableError(
            f"--target column {target!r} of {_describe(source)}: series {sid!r} misses its value at "
            f"{str(grid[holes[0]])[:19]}; give --fill ffill, --fill interpolate or --fill zero"
        )
    values = _fill(y[:n, None], fill)[:, 0] if len(holes) else y[:n]

    def block(names, length):
        out = np.full((len(grid), len(names)), np.nan)
        for j, name in enumerate(names):
            out[position, j] = covariates[name][rows]
        out = out[:length]
        bad = np.argwhere(np.isnan(out))
        if len(bad) and fill == "refuse":
            name = names[bad[0][1]]
            flag = "--past" if name in past else "--future"
            raise TableError(
                f"{flag} column {name!r} of {_describe(source)}: series {sid!r} misses its value at "
                f"{str(grid[bad[0][0]])[:19]}; give --fill ffill, --fill interpolate or --fill zero"
            )
        return _fill(out, fill) if len(bad) else out

    known = np.concatenate([block(list(future), len(grid)), calendar_features(grid.to_numpy(), frequency)], 1)
    return Series(sid, values, known, block(list(past), n), static, grid.to_numpy(), int(rows[0]) + 1)


def from_wide(
    source,
    targets: Sequence[str] = (),
    time: Optional[str] = None,
    future: Sequence[str] = (),
    fill: str = "refuse",
    encoding: str = "utf-8",
    targets_flag: str = "--targets",
) -> Panel:
    """A panel from a wide table: each of ``targets`` is a series (every numeric column but ``time``
    and ``future`` when ``targets`` is empty); rows in ``time`` order (or file order). Leading empty
    cells start a series later; trailing ones end it earlier; a gap inside needs ``fill``.
    ``future`` columns are shared by every series. ``targets_flag``: the flag that named the targets in
    messages ("--target" for a single series, a panel of one)."""
    check_panel_fill(fill)
    named = {f"{targets_flag} {c}": c for c in targets}
    if time:
        named["--time"] = time
    named.update({f"--future {c}": c for c in future})
    frame = read_table(source, named, encoding, every_numeric=not targets)
    if not targets:
        targets = [str(c) for c in frame.columns if c != time and c not in future]
        if not targets:
            raise TableError(f"{_describe(source)} has no numeric column to forecast; name them with --targets")
    times, frequency = None, None
    file_rows = np.arange(len(frame))  # each row's place in the file, for messages
    if time:
        times = time_column(frame, time, source)
        order = np.argsort(times, kind="stable")
        frame, times, file_rows = frame.iloc[order].reset_index(drop=True), times[order], order
        repeated = np.flatnonzero(times[1:] == times[:-1])
        if len(repeated):
            raise TableError(
                f"--time column {time!r} of {_describe(source)} repeats {str(times[repeated[0]])[:19]}: "
                "one row per time"
            )
        frequency = infer_frequency([times], time, source)
    shared = np.stack([numeric_column(frame, c, "--future", source) for c in future], 1) if future else None
    calendar = calendar_features(times, frequency) if times is not None else np.zeros((len(frame), 0))
    series = []
    for name in targets:
        y = numeric_column(frame, name, targets_flag if name in named.values() else "", source)
        observed = np.flatnonzero(~np.isnan(y))
        if len(observed) < 2:
            raise TableError(
                f"column {name!r} of {_describe(source)} has {len(observed)} value(s); a series needs two or more"
            )
        start, n = int(observed[0]), int(observed[-1]) + 1
        holes = np.flatnonzero(np.isnan(y[start:n]))
        if len(holes) and fill == "refuse":
            flag = f"{targets_flag} " if name in named.values() else ""
            raise TableError(
                f"{flag}column {name!r} of {_describe(source)} has {len(holes)} missing value"
                f"{'s' if len(holes) > 1 else ''} (row {_rows(file_rows[start + holes])}); give --fill ffill, "
                "--fill interpolate or --fill zero"
            )
        values = _fill(y[start:n, None], fill)[:, 0] if len(holes) else y[start:n]
        known = calendar[start:]
        if shared is not None:
            history, after = shared[start:n], shared[n:]
            bad = np.argwhere(np.isnan(history))
            if len(bad) and fill == "refuse":
                raise TableError(
                    f"--future column {future[bad[0][1]]!r} of {_describe(source)} is empty at row "
                    f"{start + bad[0][0] + 1}; give --fill ffill, --fill interpolate or --fill zero"
                )
            history = _fill(history, fill) if len(bad) else history
            # rows after the target's last value: the horizon's covariates, up to the first empty one
            complete = ~np.isnan(after).any(1)
            after = after[: int(np.argmin(complete)) if not complete.all() else len(after)]
            known = np.concatenate([np.concatenate([history, after]), known[: len(history) + len(after)]], 1)
        series.append(
            Series(
                name,
                values,
                known,
                np.zeros((n - start, 0)),
                np.zeros(0),
                None if times is None else times[start:],
                start + 1,
            )
        )
    return Panel(series, "value", [], list(future), [], frequency, season_of(frequency))
