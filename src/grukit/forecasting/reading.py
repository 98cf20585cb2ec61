"""One entry to the three panel formats, and the reader settings a trained model keeps so that
``predict`` reads new data the way training did."""

from __future__ import annotations

import inspect
from typing import Dict, Optional, Sequence

import numpy as np

from .panel import Panel, from_long, from_wide
from .table import TableError


def reader(
    *,
    id: Optional[str] = None,
    time: Optional[str] = None,
    target: Optional[str] = None,
    targets: Sequence[str] = (),
    past: Sequence[str] = (),
    future: Sequence[str] = (),
    static: Sequence[str] = (),
    fill: str = "refuse",
    encoding: str = "utf-8",
) -> Dict:
    """The reader settings, checked: the long format needs ``id``, ``time`` and ``target``; the wide
    one takes ``targets`` (or every numeric column) and refuses past and static covariates. A single
    series is a panel of one: ``target`` without ``id`` is the wide format with that one column."""
    one_series = id is None and bool(target)
    if one_series:
        if targets:
            raise TableError("give --target COL (one series) or --targets A,B (one column per series), not both")
        targets, target = [target], None
    if id is not None:
        for flag, value in (("--time", time), ("--target", target)):
            if not value:
                raise TableError(f"the long format (--id) needs {flag} COL as well")
        if targets:
            raise TableError("--targets is for the wide format (one column per series); with --id give --target")
    else:
        if past or static:
            raise TableError("--past and --static covariates need the long format (--id, --time, --target)")
    return {
        "id": id,
        "time": time,
        "target": target,
        "targets": list(targets),
        "past": list(past),
        "future": list(future),
        "static": list(static),
        "fill": fill,
        "encoding": encoding,
        "targets_flag": "--target" if one_series else "--targets",
    }


READER_OPTIONS = tuple(inspect.signature(reader).parameters)  # the keywords read() and train() pass on

# the long table of statsforecast, neuralforecast and utilsforecast: one row per series and time
NIXTLA_COLUMNS = {"id": "unique_id", "time": "ds", "target": "y"}


def with_table_convention(data, columns: Dict) -> Dict:
    """``columns`` (reader keywords) with id, time and target set to unique_id, ds and y when
    ``data`` is a DataFrame holding those three columns and no format was named: such a frame is
    read as it comes."""
    named = any(columns.get(k) for k in ("id", "time", "target", "targets"))
    frame_columns = getattr(data, "columns", None)
    if named or frame_columns is None or not set(NIXTLA_COLUMNS.values()) <= set(frame_columns):
        return columns
    return {**NIXTLA_COLUMNS, **columns}


def uses_table_convention(settings: Dict) -> bool:
    """Whether reader ``settings`` read the unique_id, ds, y convention (predict answers in it)."""
    return all(settings.get(k) == v for k, v in NIXTLA_COLUMNS.items())


def read_panel(source, settings: Dict) -> Panel:
    """A panel from a CSV path, a DataFrame or a ``.tsf`` path, with ``settings`` from :func:`reader`."""
    if isinstance(source, Panel):
        return source
    if isinstance(source, str) and source.endswith(".tsf"):
        from .tsf import read_tsf

        return read_tsf(source, settings["fill"], settings["encoding"])
    if settings["id"] is not None:
        return from_long(
            source,
            settings["id"],
            settings["time"],
            settings["target"],
            settings["past"],
            settings["future"],
            settings["static"],
            settings["fill"],
            settings["encoding"],
        )
    return from_wide(
        source,
        settings["targets"],
        settings["time"],
        settings["future"],
        settings["fill"],
        settings["encoding"],
        settings.get("targets_flag", "--targets"),  # absent from the settings of models saved before it
    )


def align_static(panel: Panel, names: Sequence[str]) -> Panel:
    """The panel's static covariates reordered to ``names`` (a model's); a category the model did
    not see gets zeros in every one-hot column."""
    if list(panel.static_names) == list(names):
        return panel
    position = {name: j for j, name in enumerate(panel.static_names)}
    for name in names:
        if "=" not in name and name not in position:
            raise TableError(f"--static column {name!r} (the model's) is not in this data")
    for s in panel.series:
        s.static = np.array([s.static[position[n]] if n in position else 0.0 for n in names])
    panel.static_names = list(names)
    return panel
