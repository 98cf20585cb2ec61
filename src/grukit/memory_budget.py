"""Refusing a run whose arguments ask for more memory than the machine has, before it starts.

A run that outgrows memory does not fail cleanly: it swaps for minutes, is killed by the kernel, or
ends in a MemoryError traceback after hours of work. The commands estimate from their arguments what
the largest allocations will take, and :func:`check_fits` refuses up front with the estimate and
the memory available (2026-12-07, on a 24 GB machine)::

    $ grukit train weather --hidden 30000
    grukit train: error: --hidden 30000 needs about 43.2 GB (the GRU's weights, gradients and two Adam
    moments: 16 bytes x 2,700,000,000 parameters), more than the 24.7 GB this machine has available

The weights' term is a lower bound (the input layer is not counted); the activations' term is an
estimate from a measured constant (:data:`ACTIVATION_VALUES_PER_UNIT`). A run refused here would not
fit; one that passes may still need more than the estimate (the data, the model's other layers).
"""

from __future__ import annotations

import os
from typing import Optional

GB = 1e9
BYTES_PER_TRAINED_PARAMETER = 16  # float32 weight, its gradient, and Adam's two moments


def available_bytes(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> Optional[int]:
    """The memory this process can still take: the kernel's MemAvailable, lowered to what a cgroup v2
    limit (``memory.max`` minus ``memory.current``) leaves; None where neither can be read."""
    found = []
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(os.path.join(cgroup, "memory.max")) as f:
            limit = f.read().strip()
        if limit != "max":
            with open(os.path.join(cgroup, "memory.current")) as f:
                found.append(max(0, int(limit) - int(f.read().strip())))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_fits(what: str, needed: float, detail: str, available: Optional[int] = None) -> None:
    """ValueError naming ``what`` (the arguments asking), the estimate ``needed`` in bytes with its
    ``detail``, and the memory available, when ``needed`` exceeds it. Passes where the available
    memory cannot be read."""
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise ValueError(
            f"{what} needs about {needed / GB:.1f} GB ({detail}), more than the {available / GB:.1f} GB this "
            "machine has available"
        )


def gru_training_bytes(hidden: int, layers: int, directions: int = 1) -> int:
    """A lower bound of a GRU's training memory: 16 bytes per parameter of its recurrent and
    between-layer weights, 3H x H per layer and direction and 3H x D*H into each layer above the first
    (the input layer's own weights and the activations depend on the data and are not counted)."""
    recurrent = layers * directions * 3 * hidden * hidden
    between = (layers - 1) * directions * 3 * hidden * directions * hidden
    return BYTES_PER_TRAINED_PARAMETER * (recurrent + between)


# float32 values a GRU's training step holds per hidden unit, time step and sample: the saved gates
# and states, the input projection and their gradients, with the allocator's slack. Measured with the
# forecaster (H 64, batch 128, daily panel of 3 series): peak RSS grew 4.2 GB from --window 2000 to
# --window 8000 --pad, 5.5 KB per step and sample, about 21 values per unit.
ACTIVATION_VALUES_PER_UNIT = 20


def gru_activation_bytes(batch: int, steps: int, hidden: int, layers: int) -> int:
    """What one training batch of ``batch`` sequences of ``steps`` steps holds through a GRU's
    forward and backward pass (:data:`ACTIVATION_VALUES_PER_UNIT` float32 values per unit)."""
    return 4 * ACTIVATION_VALUES_PER_UNIT * batch * steps * hidden * layers


def check_gru_training(hidden: int, layers: int, directions: int = 1, available: Optional[int] = None) -> None:
    """:func:`check_fits` for ``--hidden`` and ``--layers``: see :func:`gru_training_bytes`."""
    needed = gru_training_bytes(hidden, layers, directions)
    check_fits(
        f"--hidden {hidden}" + (f" --layers {layers}" if layers > 1 else ""),
        needed,
        f"the GRU's weights, gradients and two Adam moments: {BYTES_PER_TRAINED_PARAMETER} bytes x "
        f"{needed // BYTES_PER_TRAINED_PARAMETER:,} parameters",
        available,
    )
