"""Every ``GRUKIT_*`` environment variable, declared once: its meaning, the values it allows, its
default, and when it is read.

Code reads a setting with :func:`get` (or :func:`is_on` for a switch), never with ``os.environ``:
a value outside the allowed ones is refused with one line naming them (:class:`SettingError`), so
a typo never quietly selects something else. ``import grukit`` checks every one that is set
(:func:`check_all`), so a setting read only on a GPU or at a build is refused on any machine.
The table of docs/settings.md is this registry (``python -m grukit.settings`` prints it; a test
checks that the page has it).
"""

from __future__ import annotations

import os
import sys
from typing import Dict, NamedTuple, Optional, Tuple


class SettingError(ValueError):
    """A ``GRUKIT_*`` environment variable set to a value it does not allow."""


class Setting(NamedTuple):
    name: str
    meaning: str
    default: str
    allowed: Optional[Tuple[str, ...]]  # None: any text (a folder)
    read: str  # when grukit reads it


BACKENDS = ("auto", "torch", "cpu_fused", "native", "triton")  # grukit.backends' names, and "auto"
GEMM_ROUTINES = ("blas", "brgemm", "brgemm_row_tiled", "row_kernel")  # backends.gemm_choice.ROUTINES
CPU_LEVELS = ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "native")  # backends.cpu_build's levels
TRITON_DESIGNS = ("persistent", "stepwise")  # backends.triton_backend.DESIGNS
SWITCH = ("0", "1")

SETTINGS: Dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "GRUKIT_BACKEND",
            "the backend of every call that names none (`backend=None`)",
            "auto",
            BACKENDS,
            "at each call (and when a module is made)",
        ),
        Setting(
            "GRUKIT_GEMM",
            "the matrix-product routine of the fused CPU kernels: `auto` (measured once per machine and "
            "cached), `measure` (measure again), or one routine for every product",
            "auto",
            ("auto", "measure") + GEMM_ROUTINES,
            "when the fused kernels load",
        ),
        Setting(
            "GRUKIT_CONTENTION",
            "`adapt`: a fused CPU layer whose threads meet every step (small batch, large H) runs on one "
            "thread for the next calls (4, doubling while it lasts) after two calls in a row that each lost a "
            "fifth of their time waiting for a thread another process had descheduled; `off`: always the full team",
            "adapt",
            ("adapt", "off"),
            "when the fused kernels load",
        ),
        Setting(
            "GRUKIT_CPU_LEVEL",
            "the instruction-set level the fused CPU kernels are compiled for (default: the highest this CPU has)",
            "",
            ("",) + CPU_LEVELS,
            "when the fused kernels are built or loaded",
        ),
        Setting(
            "GRUKIT_BUILD_DIR",
            "the folder caching the fused CPU kernels' builds (default `~/.cache/grukit`)",
            "",
            None,
            "when the fused kernels are built or loaded",
        ),
        Setting(
            "GRUKIT_DISABLE_BUILD",
            "`1`: never build the fused CPU kernels (the portable path runs instead)",
            "0",
            SWITCH,
            "when a backend is chosen",
        ),
        Setting(
            "GRUKIT_VERBOSE_BUILD",
            "`1`: print the compiler's output when the fused CPU kernels are built",
            "0",
            SWITCH,
            "when the fused kernels are built",
        ),
        Setting(
            "GRUKIT_TRITON_DESIGN",
            "the Triton backend's design at every size (default: chosen by batch and hidden size)",
            "",
            ("",) + TRITON_DESIGNS,
            "at each Triton call",
        ),
        Setting(
            "GRUKIT_CUDA_GRAPHS",
            "`0`: run the Triton per-step loops eagerly instead of replaying them from CUDA graphs",
            "1",
            SWITCH,
            "when the Triton backend is imported",
        ),
        Setting(
            "GRUKIT_CACHE_DIR",
            "the applications' data cache (the parsed Bach chorales; default `~/.cache/grukit`)",
            "",
            None,
            "when a task reads its data",
        ),
        Setting(
            "GRUKIT_CHECK_REPLICAS",
            "`1`: in distributed training, check after every step that every rank holds the same parameters",
            "0",
            SWITCH,
            "at each training step (`--nproc` > 1)",
        ),
    )
}


def get(name: str) -> str:
    """The value of setting ``name`` (its default when unset or empty).

    Raises:
        SettingError: the value is not one the setting allows (the message lists them).
    """
    setting = SETTINGS[name]
    value = os.environ.get(name, "")
    if value == "":
        return setting.default
    if setting.allowed is not None and value not in setting.allowed:
        allowed = ", ".join(v for v in setting.allowed if v)
        raise SettingError(f"${name} must be one of {allowed} (or unset), got {value!r}")
    return value


def check_all() -> None:
    """Check every setting that is set (``import grukit`` calls this), so a wrong value is refused when
    grukit is imported, before anything runs, even one read only later (on a GPU, at a build).

    Raises:
        SettingError: the first setting whose value it does not allow, in one line naming the allowed ones.
    """
    for name in SETTINGS:
        get(name)


def started_as_a_command() -> bool:
    """This process is the ``grukit`` command, or ``python -m grukit...`` being located (while Python
    imports the module's packages, ``sys.argv[0]`` is ``-m``)."""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program) == "grukit" or program == "-m" or program.endswith("apps/cli.py")


def is_on(name: str) -> bool:
    """A switch (``0`` or ``1``) is ``1``."""
    return get(name) == "1"


def markdown_table() -> str:
    """The settings as docs/settings.md's table."""
    lines = ["| variable | meaning | values | read |", "|---|---|---|---|"]
    for s in SETTINGS.values():
        if s.allowed is None:
            values = "a folder"
        else:
            values = ", ".join(f"`{v}`" for v in s.allowed if v)
            if s.default:
                values += f" (default `{s.default}`)"
        lines.append(f"| `{s.name}` | {s.meaning} | {values} | {s.read} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
