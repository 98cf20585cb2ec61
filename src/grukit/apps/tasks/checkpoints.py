"""Checkpoints written during training: whole or not at all (``grukit.files``), and a failure to write
one never stops the run."""

from __future__ import annotations

import sys
from typing import Dict

from ...files import first_line, save_atomically


def write_checkpoint(path: str, state: Dict) -> None:
    """Write a checkpoint; if it cannot be written (a full disk...), say so once and train on: the
    run is worth more than its checkpoints."""
    try:
        save_atomically(state, path)
    except Exception as exc:
        if path not in _FAILED_CHECKPOINTS:
            _FAILED_CHECKPOINTS.add(path)
            print(
                f"grukit: could not write the checkpoint {path!r} ({first_line(exc)}); training goes on",
                file=sys.stderr,
            )


_FAILED_CHECKPOINTS: set = set()
