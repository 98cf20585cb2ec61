"""Files grukit writes and reads: whole or not at all, and never code.

* :func:`write_atomically`: a file appears complete or not at all (a crash, a kill or a full disk
  mid-write leaves the previous one); :func:`save_atomically` and :func:`write_json` use it.
* :func:`load_tensors`: a model file or checkpoint read with ``weights_only=True``, so a crafted file
  cannot run code, and every way it can be unreadable said in one line.
* :func:`check_finite_weights`: a state_dict holding NaN or inf is refused, naming the entry.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict

import torch

TEMPORARY_PREFIX = ".grukit-save-"  # + "<pid>-<random>.tmp": a save in progress


def save_atomically(obj, path: str) -> None:
    """``torch.save(obj, path)`` through :func:`write_atomically`."""
    write_atomically(path, lambda temporary: torch.save(obj, temporary))


def write_json(path: str, payload) -> None:
    """``payload`` as indented JSON at ``path``, through :func:`write_atomically` (values JSON does
    not know, such as timestamps, as their ``str``)."""
    text = json.dumps(payload, indent=2, default=str)
    write_atomically(path, lambda temporary: Path(temporary).write_text(text))


def write_atomically(path: str, write: Callable[[str], object]):
    """``write(temporary)`` to a temporary file beside ``path``, renamed over it when complete: a
    crash, a kill or a full disk mid-write leaves the previous file (or none), never a partial one.
    Returns what ``write`` returns.

    A symlink is followed (its target is replaced, the link kept); anything else that is not a
    regular file (a device, a FIFO, a folder) is refused. The new file keeps the old one's
    permissions (a private 0600 model stays private), or gets the umask's for a new file. The
    temporary name is short (so a long ``path`` still fits the file-name limit), and temporaries
    that a killed save left in the folder are removed.
    """
    target = os.path.realpath(path)
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"{path!r} is not a regular file ({_kind_of(target)}); grukit writes only regular files")
    folder = os.path.dirname(target)
    _remove_stale_temporaries(folder)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _naming(exc, path) from None
    os.close(handle)
    try:
        result = write(temporary)
        if os.path.exists(target):
            mode = stat.S_IMODE(os.stat(target).st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, target)
        return result
    except OSError as exc:
        raise _naming(exc, path) from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _naming(error: OSError, path: str) -> OSError:
    """``error`` about the temporary file beside ``path``, told as an error writing ``path``: the
    name the user gave, never the temporary's."""
    return type(error)(error.errno, error.strerror or first_line(error), path)


def _kind_of(path: str) -> str:
    mode = os.stat(path).st_mode
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _remove_stale_temporaries(folder: str) -> None:
    """Remove ``TEMPORARY_PREFIX<pid>-*.tmp`` files in ``folder`` whose process no longer runs (a
    save killed mid-write, SIGKILL or SIGTERM, left them)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(TEMPORARY_PREFIX) and name.endswith(".tmp")):
            continue
        pid = name[len(TEMPORARY_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's first line, at most ``limit`` characters (its type's name if it has no text):
    what a one-line error message quotes of a cause that may span many lines."""
    return (str(error).strip().splitlines() or [""])[0][:limit] or type(error).__name__


def load_tensors(path: str, what: str) -> Dict:
    """A model file or checkpoint, read with ``weights_only=True``: tensors and plain Python data
    only, so a crafted file cannot run code. ``what`` names the file in errors."""
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a grukit {what}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols of non-torch files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        reason = first_line(exc)
        raise ValueError(
            f"{path!r} is not a grukit {what}: it is not a torch file of tensors and plain data (grukit "
            f"loads nothing else, because loading other objects could run code; {reason})"
        ) from None
    except Exception as exc:  # empty, truncated, damaged or not torch: torch's unpickler raises many kinds
        # (EOFError, RuntimeError, ValueError, IndexError on a damaged stack, ...), none of them the user's to read
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        raise ValueError(
            f"{path!r} is not a readable grukit {what} (empty, truncated or another format: {reason})"
        ) from None


def check_finite_weights(state: Dict, what: str) -> None:
    """ValueError naming the first float tensor of ``state`` (a state_dict) that holds NaN or inf:
    a trained model never holds them, so the file was damaged (or training diverged)."""
    damaged = [
        name
        for name, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if damaged:
        raise ValueError(
            f"{what} {damaged[0]!r}"
            + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else "")
            + " hold NaN or infinite values: every prediction would be NaN; train the model again"
        )
