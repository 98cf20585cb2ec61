"""The command line's argument types (argparse ``type=`` functions) and its file checks.

Each gives argparse one line naming what was expected; the values they accept follow the core's
rules (``grukit.validation``).
"""

from __future__ import annotations

import argparse
import re
from typing import List, Sequence


def _argument(parse, text: str, expected: str):
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an int >= 1."""
    value = _argument(int, text, "an int")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an int >= 0."""
    value = _argument(int, text, "an int")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def check_writable_file(name: str, path: str) -> None:
    """``path`` can be written as a file: its folder exists and is writable, and it is not a folder
    or a read-only file. Checked before hours of training, so the result is not lost at the end."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{name} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path!r}: the folder {folder!r} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {path!r}: the file exists and is not writable")
    target = os.path.realpath(path)  # a symlink is written through: its target must be a regular file
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"{name} {path!r} is not a regular file (a device, FIFO or socket); give a file name")
    _check_can_create_in(name, path, os.path.dirname(target))


def _check_can_create_in(name: str, path: str, folder: str) -> None:
    """Create and remove a file in ``folder``, as the save will (a temporary file renamed over the
    target): permission bits do not tell for root, /proc, or a read-only mount."""
    import os
    import tempfile

    try:
        handle, probe = tempfile.mkstemp(prefix=".grukit-check-", dir=folder)
    except OSError as exc:
        raise ValueError(
            f"{name} {path!r}: cannot create a file in {folder!r} ({exc.strerror or exc}); give a path in a "
            "writable folder"
        ) from None
    os.close(handle)
    os.remove(probe)


def check_writable_outputs(args, *flags: str) -> None:
    """:func:`check_writable_file` for each of ``flags`` ("--output", "--json", ...) to which the
    parsed ``args`` give a path."""
    for flag in flags:
        path = getattr(args, flag[2:].replace("-", "_"), None)
        if path:
            check_writable_file(flag, path)


def positive_float(text: str) -> float:
    """argparse ``type=``: a number > 0."""
    value = _argument(float, text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def probability_below_one(text: str) -> float:
    """argparse ``type=``: a number in [0, 1), as :func:`check_probability` wants it."""
    value = _argument(float, text, "a number")
    try:
        from ..validation import check_probability  # imports torch: not at start-up

        return check_probability("the value", value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}") from None


LIST_VALUED = ("--quantiles",)  # options whose value is a comma-separated list of numbers


def attach_list_values(argv: Sequence[str], flags: Sequence[str] = LIST_VALUED) -> List[str]:
    """``argv`` with ``--quantiles -0.1,0.5`` written as ``--quantiles=-0.1,0.5``: argparse reads a
    value starting with '-' that is not a plain number as an option, and would answer "expected one
    argument" instead of the option's own check naming the bad level."""
    out: List[str] = []
    for token in argv:
        if out and out[-1] in flags and re.match(r"^-[\d.]", token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def add_reading_arguments(group, encoding_help: str = "the file's text encoding (default utf-8)") -> None:
    """``--fill`` and ``--encoding``: how every command that reads a CSV file reads it (one set of
    ``--fill`` choices, ``grukit.forecasting.fill_policies``)."""
    from ..forecasting.fill_policies import FILL_HELP, FILL_POLICIES

    group.add_argument("--fill", choices=FILL_POLICIES, default="refuse", help=FILL_HELP)
    group.add_argument("--encoding", default="utf-8", help=encoding_help)
