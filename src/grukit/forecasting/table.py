"""Reading a user's CSV file: the checks that turn a bad file into one sentence. The one CSV reader of
every grukit command (the forecaster's panels and the applications' own-data tasks).

Every error names the file, the column (and the command-line flag that named it) and, for a
bad value, the row: ``row`` counts data rows from 1, ``line`` is the line of the file (the
header is line 1), as a spreadsheet shows it. Files are read with pandas' ``read_csv``
conventions (comma separated, first line the header, compressed ``.gz``/``.bz2``/``.zip``/
``.xz`` files read as they are), and only the named columns are kept in memory.

Missing values (empty cells, NaN) are refused unless a ``fill`` policy says what to do, the same
choices for every command (``FILL_POLICIES``): ``drop`` the rows, ``ffill`` (carry the last value
forward, the first ones backward), ``interpolate`` (linear in the row number, ends carried) or
``zero`` for numeric columns. A panel (``grukit forecast``) fills missing times too, and refuses
``drop``, which would leave holes in a series' time grid.
"""

from __future__ import annotations

import codecs
import csv
import io
import lzma
import os
import sys
import zipfile
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .fill_policies import FILL_POLICIES

COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")


class TableError(ValueError):
    """A CSV file or data frame that cannot be used as asked; the message says why and what to do."""


def _describe(source) -> str:
    return repr(source) if isinstance(source, str) else "the data frame"


def _wide_encoding(encoding: str) -> bool:
    """UTF-16 and UTF-32 text holds NUL bytes, so the binary check must not apply to it."""
    try:
        return codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    except LookupError:
        raise TableError(f"--encoding {encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1)") from None


def open_source(path: str, encoding: str) -> Callable[[], Union[str, io.BytesIO]]:
    """Check the file ``--csv`` names and return a function giving what ``pandas.read_csv`` (or
    ``open``-like readers) should read, once per call: the path of a regular file, or for ``-``
    (standard input), a FIFO or a device (``/dev/stdin``, a shell's ``<(...)``), its bytes, read once.

    Missing, folder, unreadable, empty, binary or not in ``encoding``: refused with one sentence."""
    wide = _wide_encoding(encoding)
    if path == "-" or (os.path.exists(path) and not os.path.isdir(path) and not os.path.isfile(path)):
        try:
            data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
        except OSError as exc:
            raise TableError(f"--csv {path!r} cannot be read: {exc.strerror or exc}") from None
        what = "standard input" if path == "-" else f"{path!r} (a stream)"
        if not data:
            raise TableError(f"--csv {what} gave no bytes; a CSV file starts with a header line of column names")
        _check_text(path, data[: 1 << 16], encoding, wide)
        return lambda: io.BytesIO(data)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--csv {path!r}: no such file (give - to read standard input)")
    if os.path.isdir(path):
        raise TableError(f"--csv {path!r} is a folder; give a CSV file")
    if os.path.getsize(path) == 0:
        raise TableError(f"--csv {path!r} is empty (0 bytes); a CSV file starts with a header line of column names")
    if path.endswith(COMPRESSED):
        return lambda: path  # pandas decompresses; the checks below would read compressed bytes
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise TableError(f"--csv {path!r} cannot be read: {exc.strerror or exc}") from None
    _check_text(path, head, encoding, wide)
    return lambda: path


def _check_text(path: str, head: bytes, encoding: str, wide: bool) -> None:
    """The first 64 KB ``head`` of ``path``: text in ``encoding``, not binary, not blank."""
    if not wide and b"\x00" in head:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise TableError(
                f"--csv {path!r} is UTF-16 text (it starts with a byte-order mark); give --encoding utf-16"
            )
        raise TableError(f"--csv {path!r} is not a CSV file: it holds binary data (a NUL byte at {head.index(0)})")
    if not head.strip():
        raise TableError(f"--csv {path!r} is empty (only blank lines)")
    try:
        head.decode(encoding)
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            raise TableError(
                f"--csv {path!r} is not {encoding} text (byte 0x{head[exc.start]:02x} at offset {exc.start}); "
                "give its encoding with --encoding, e.g. --encoding latin-1 or --encoding cp1252"
            ) from None


def _check_row_widths(path: str, readable, encoding: str) -> None:
    """Every data row has as many fields as the header: pandas fills a short row with missing
    values and, reading only some columns, drops a long row's extra fields, both silently."""
    if isinstance(readable, str) and readable.endswith(COMPRESSED):
        return
    stream = (
        open(readable, encoding=encoding, newline="")
        if isinstance(readable, str)
        else io.TextIOWrapper(readable, encoding=encoding, newline="")
    )
    with stream:
        rows = csv.reader(stream)
        header = next(rows, None)
        if header is None:
            return
        for row in rows:
            if row and len(row) != len(header):
                raise TableError(
                    f"--csv {path!r}: line {rows.line_num} has {len(row)} fields but the header has {len(header)}; "
                    'a field holding a comma must be quoted ("1,5")'
                )


# a damaged compressed file or a read error, met while pandas reads
UNREADABLE = (EOFError, OSError, lzma.LZMAError, zlib.error, zipfile.BadZipFile)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_table(source: Union[str, "object"], columns: Dict[str, str], encoding: str = "utf-8", every_numeric=False):
    """The columns ``columns`` (flag -> column name, e.g. {"--target": "sales"}; a flag naming
    several columns is made unique with a suffix, "--features a") of a CSV file
    or a pandas DataFrame, as a DataFrame in file order (index 0..N-1); with ``every_numeric``,
    every other numeric column too (after the named ones).

    Raises:
        FileNotFoundError: no such file.
        TableError: empty, binary, not CSV, not in ``encoding``, a named column missing (the
            message lists the columns there are), or no data rows.
    """
    import pandas as pd

    wanted = list(dict.fromkeys(columns.values()))
    if isinstance(source, pd.DataFrame):
        frame = source
        available = header = [str(c) for c in frame.columns]
    else:
        path = os.fspath(source)
        readable = open_source(path, encoding)
        try:
            available = [str(c) for c in pd.read_csv(readable(), nrows=0, encoding=encoding).columns]
            # the header as written: pandas renames a repeated name ("a", "a.1"), which would hide it
            header = [str(c) for c in pd.read_csv(readable(), header=None, nrows=1, encoding=encoding).iloc[0]]
        except UnicodeDecodeError as exc:
            raise TableError(
                f"--csv {path!r} is not {encoding} text ({exc.reason} at byte {exc.start}); give its encoding "
                "with --encoding, e.g. --encoding latin-1"
            ) from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, *UNREADABLE) as exc:
            raise TableError(f"--csv {path!r} is not a CSV file pandas can read: {_first_line(exc)}") from None
    for flag, name in columns.items():
        if header.count(name) > 1:
            raise TableError(
                f"{flag.split()[0]} {name!r} names {header.count(name)} columns of {_describe(source)}; "
                "rename the others so that the column is unambiguous"
            )
        if name not in available:
            shown = ", ".join(c if c.isprintable() else repr(c) for c in available[:30])  # a quoted newline: one line
            shown += f" ... ({len(available)} in all)" if len(available) > 30 else ""
            raise TableError(
                f"{flag.split()[0]} {name!r} is not a column of {_describe(source)}; its columns are: {shown}"
            )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if every_numeric and repeated:  # every column is read: pandas would rename the second "a" to "a.1"
        name = repeated[0]
        where = [k + 1 for k, column in enumerate(header) if column == name]
        raise TableError(
            f"{_describe(source)} has {len(where)} columns named {name!r} (columns {', '.join(map(str, where))}); "
            "give each its own name"
        )
    if not isinstance(source, pd.DataFrame):
        try:
            _check_row_widths(path, readable(), encoding)
            frame = pd.read_csv(
                readable(), usecols=None if every_numeric else wanted, encoding=encoding, low_memory=False
            )
        except UnicodeDecodeError as exc:
            raise TableError(
                f"--csv {path!r} is not {encoding} text ({exc.reason} past the first 64 KB); give its encoding "
                "with --encoding, e.g. --encoding latin-1"
            ) from None
        except (pd.errors.ParserError, csv.Error, *UNREADABLE) as exc:
            raise TableError(f"--csv {path!r} is not a well-formed CSV file: {_first_line(exc)}") from None
    if every_numeric:
        for name in frame.columns:
            if name not in wanted and not pd.api.types.is_numeric_dtype(frame[name]):
                _refuse_nearly_numeric(frame[name], str(name), source)
        wanted += [c for c in frame.columns if c not in wanted and pd.api.types.is_numeric_dtype(frame[c])]
    frame = frame[wanted].reset_index(drop=True)
    if len(frame) == 0:
        raise TableError(f"{_describe(source)} has a header but no data rows")
    return frame


def _refuse_nearly_numeric(column, name: str, source) -> None:
    """A column read as text only because a few cells are not numbers (a typo, "n/a"), where
    every numeric column is wanted: refused, naming the cell, rather than silently left out."""
    import pandas as pd

    filled = column.notna().to_numpy()
    try:
        numbers = pd.to_numeric(column, errors="coerce").notna().to_numpy()
    except OverflowError:  # an integer no float holds ("9" * 400): pandas gives up on the column
        numbers = np.array([_parses_as_number(cell) for cell in column], bool)
    text = np.flatnonzero(filled & ~numbers)
    if not len(text):  # every cell a number, yet pandas kept text: a number no float holds (400 digits)
        for row, cell in enumerate(column):
            if filled[row] and _beyond_float32(cell):
                raise TableError(
                    f"column {name!r} of {_describe(source)} holds {str(cell)[:30]!r}... at row {_rows([row], 1)}, "
                    "a number too large for the models (float32)"
                )
        return
    if numbers.sum() and numbers.sum() >= len(text):  # mostly numbers: a channel with bad cells
        raise TableError(
            f"column {name!r} of {_describe(source)} is numeric but for {column.iloc[text[0]]!r} at row "
            f"{_rows(text, 1)} ({len(text)} such cell{'s' if len(text) > 1 else ''}); fix the cells, or name the "
            "channels with --features to leave the column out"
        )


def _parses_as_number(cell) -> bool:
    try:
        float(cell)
        return True
    except OverflowError:  # a number, too large for a float
        return True
    except (TypeError, ValueError):
        return False


def _beyond_float32(cell) -> bool:
    try:
        return not abs(float(cell)) <= FLOAT32_MAX
    except (OverflowError, TypeError, ValueError):
        return True


def _rows(index: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(f"{i + 1} (line {i + 2})" for i in index[:limit])
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


FLOAT32_MAX = float(np.finfo(np.float32).max)  # the models compute in float32


def numeric_column(frame, name: str, flag: str, source) -> np.ndarray:
    """Column ``name`` as float64 [N]; a value that is not a number, an infinity (``inf``, ``1e999``)
    or a number beyond float32's range (the models compute in float32) is refused with its row.
    Missing values stay NaN (see :func:`fill_missing`)."""
    import pandas as pd

    column = frame[name]
    values = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & column.notna().to_numpy())
    if len(bad):
        raise TableError(
            f"{flag} column {name!r} of {_describe(source)} holds {column.iloc[bad[0]]!r} at row "
            f"{_rows(bad, 1)}, not a number ({len(bad)} such value{'s' if len(bad) > 1 else ''})"
        )
    numbers = values.to_numpy(np.float64)
    huge = np.flatnonzero(np.abs(np.nan_to_num(numbers, nan=0.0)) > FLOAT32_MAX)
    if len(huge):
        raise TableError(
            f"{flag} column {name!r} of {_describe(source)} holds {str(column.iloc[huge[0]])!r} at row "
            f"{_rows(huge, 1)}: {'an infinity' if np.isinf(numbers[huge[0]]) else 'a number beyond float32 (3.4e38)'}, "
            f"which a model cannot train on or forecast from ({len(huge)} such value{'s' if len(huge) > 1 else ''})"
        )
    return numbers


def _flagged(flags: Dict[str, str], name: str) -> str:
    """ "--target " for a column a flag named, "" for one read as every other numeric column."""
    return f"{flags[name]} " if name in flags else ""


def fill_missing(frame, numeric: Sequence[str], other: Sequence[str], fill: str, source, flags: Dict[str, str]):
    """``frame`` with its missing values handled by ``fill`` (see the module's docstring).

    ``numeric`` columns may be filled; a missing value in an ``other`` column (text, label,
    id, time) can only be dropped. ``flags`` maps a column to the flag that named it.
    """
    if fill not in FILL_POLICIES:
        raise TableError(f"--fill must be one of {', '.join(FILL_POLICIES)}, got {fill!r}")
    missing = frame.isna()
    if not missing.to_numpy().any():
        return frame
    if fill == "drop":
        kept = frame[~missing.any(axis=1)].reset_index(drop=True)
        if len(kept) == 0:
            raise TableError(f"--fill drop left no rows of {_describe(source)}: every row misses a value")
        return kept
    for name in list(other) + (list(numeric) if fill == "refuse" else []):
        rows = np.flatnonzero(missing[name].to_numpy())
        if len(rows):
            remedy = (
                "give --fill drop to leave those rows out"
                if name in other
                else "give --fill ffill, --fill interpolate, --fill zero or --fill drop"
            )
            raise TableError(
                f"{_flagged(flags, name)}column {name!r} of {_describe(source)} has {len(rows)} missing "
                f"value{'s' if len(rows) > 1 else ''} (row {_rows(rows)}); {remedy}"
            )
    frame = frame.copy()
    for name in numeric:
        column = frame[name].astype(np.float64)
        if fill == "zero":
            frame[name] = column.fillna(0.0)
            continue
        if fill == "interpolate":
            column = column.interpolate(method="linear", limit_direction="both")
        frame[name] = column.ffill().bfill()
        if frame[name].isna().all():
            raise TableError(
                f"{_flagged(flags, name)}column {name!r} of {_describe(source)} has no values at all; "
                f"--fill {fill} has nothing to fill it from"
            )
    return frame


def time_column(frame, name: str, source) -> np.ndarray:
    """Column ``name`` parsed as times [N]: datetime64[ns], or int64 when the column is numeric and
    every value a whole number (an integer time step, as statsforecast allows for ``ds``; pandas
    would read 1, 2, 3 as nanoseconds after 1970). Unparseable times, and numbers with a fraction,
    are refused."""
    import pandas as pd

    column = frame[name]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(np.float64, na_value=np.nan)
        given = ~np.isnan(values)
        fraction = np.flatnonzero(given & (values != np.round(values)))
        if len(fraction):
            raise TableError(
                f"--time column {name!r} of {_describe(source)} holds {values[fraction[0]]:g} at row "
                f"{_rows(fraction, 1)}: a numeric time column must hold whole steps (1, 2, 3 ...) or dates"
            )
        empty = np.flatnonzero(~given)
        if len(empty):
            raise TableError(f"--time column {name!r} of {_describe(source)} is empty at row {empty[0] + 1}")
        return values.astype(np.int64)
    parsed = pd.to_datetime(frame[name], errors="coerce")
    given = frame[name].notna().to_numpy()
    if (parsed.isna().to_numpy() & given).any():
        # pandas takes the format of the first value for all: "2020-01-02 12:00" after "2020-01-01" is
        # a time all the same, parsed on its own
        parsed = pd.to_datetime(frame[name], errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy() & given)
    if len(bad):
        raise TableError(
            f"--time column {name!r} of {_describe(source)} holds {frame[name].iloc[bad[0]]!r} at row "
            f"{_rows(bad, 1)}, which is not a date or time"
        )
    return parsed.to_numpy()


def class_labels(
    values: Sequence, flag: str, name: str, source, max_classes: int = 1000, warn_above: int = 100
) -> List[str]:
    """The distinct labels, sorted: at least two and at most ``max_classes`` (``--max-classes``: a
    column of ids or free text read as labels would otherwise train for hours), with a warning above
    ``warn_above``."""
    import warnings

    classes = sorted({str(v) for v in values})
    if len(classes) < 2:
        raise TableError(
            f"{flag} column {name!r} of {_describe(source)} holds a single class ({classes[0]!r} in every row); "
            "a classifier needs at least two"
        )
    if len(classes) > max_classes:
        raise TableError(
            f"{flag} column {name!r} of {_describe(source)} holds {len(classes)} classes, more than --max-classes "
            f"{max_classes}: is it the label column? (give --max-classes {len(classes)} if it is)"
        )
    if len(classes) > warn_above:
        warnings.warn(
            f"{flag} column {name!r} holds {len(classes)} classes (more than {warn_above}): is it the label column? "
            "Each class needs several training examples.",
            stacklevel=2,
        )
    return classes


def optional(value: Optional[str]) -> List[str]:
    """A comma-separated column list from the command line (None -> [])."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def infer_freq_string(index) -> Optional[str]:
    """``pd.infer_freq`` as a frequency string. pandas 3 warns that infer_freq will return an offset
    object; where its option to do so now exists, the offset is asked for and written as its string."""
    import pandas as pd

    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            guess = pd.infer_freq(index)
    except (KeyError, pd.errors.OptionError):  # an older pandas: a string already
        guess = pd.infer_freq(index)
    return None if guess is None else getattr(guess, "freqstr", guess)
