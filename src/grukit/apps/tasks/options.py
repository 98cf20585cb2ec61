"""What ``grukit train`` passes to a task (:class:`Options`), and the options a model file keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

REGULARISERS = ("layer_norm", "zoneout", "recurrent_dropout")  # grukit.GRU's options a task may set


@dataclass
class Options:
    """What ``grukit train`` passes to a task (None means the task's default)."""

    task: str
    epochs: Optional[int] = None
    hidden: Optional[int] = None
    layers: int = 1
    reset_after: bool = True
    seed: int = 0
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    output: Optional[str] = None
    limit: int = 0  # > 0: only that many samples (quick runs and tests)
    quiet: bool = False
    checkpoint: Optional[str] = None  # written after every epoch (rank 0)
    resume: Optional[str] = None  # a checkpoint to continue from
    layer_norm: bool = False  # the GRU's regularisers (grukit.GRU's options of the same names)
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    precisions: bool = False  # also report the test metric with the GRU in bfloat16 and int8
    # your own data (the classify-text and classify-series tasks; see grukit.apps.own_data)
    csv: Optional[str] = None  # a CSV file (or, for classify-series, a .ts file)
    features: Optional[str] = None  # classify-series: the channels, comma separated
    time: Optional[str] = None  # classify-series: the column that orders the rows
    text: Optional[str] = None  # classify-text: the text column
    label: Optional[str] = None  # classify-text, classify-series: the class column
    id: Optional[str] = None  # classify-series: the column naming each sequence
    fill: str = "refuse"  # missing values: refuse, drop, ffill, interpolate
    encoding: str = "utf-8"
    max_classes: int = 1000  # classify-text, classify-series: more classes in --label are refused

    def gru_options(self) -> Dict:
        """The regulariser keyword arguments for ``grukit.GRU`` (saved in model files' config)."""
        return {name: getattr(self, name) for name in REGULARISERS}


def saved_reading_options(saved: Dict, names: Sequence[str], **given: Optional[str]) -> Options:
    """Options for reading a new file the way a saved model's training file was read: its ``names``
    options (columns, encoding, fill) from the model file, replaced by those ``given`` that are set."""
    chosen = {name: saved["options"].get(name) for name in names}
    chosen.update({name: value for name, value in given.items() if name in names and value})
    return Options(task=saved["task"], **{name: value for name, value in chosen.items() if value is not None})


def saved_gru_options(config: Dict) -> Dict:
    """The regulariser keyword arguments stored in a model file's config (none in older files)."""
    return {name: config[name] for name in REGULARISERS if name in config}
