"""How many CPUs this process may use, and grukit's default thread count from it.

torch starts as many threads as the machine has cores (those in the affinity mask), whatever a
container's CPU quota says. A container limited to 2 CPUs on a 64-core host (cgroup ``cpu.max``)
then runs 64 threads that take turns on 2 CPUs' worth of time, and grukit's thread teams, which meet
at every time step, wait at every meeting for a thread that is not running. onnxruntime and OpenVINO
read the quota; torch does not.

:func:`usable_cpus` is the smallest of:

* the CPUs in the process's affinity mask (``os.sched_getaffinity``: ``taskset``, ``docker --cpuset-cpus``);
* the cgroup's CPU quota, rounded up: cgroup v2 ``cpu.max`` ("quota period", or "max"), or v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none), in the process's own cgroup and every
  cgroup above it (``docker --cpus``, Kubernetes CPU limits).

:func:`apply_default_threads` lowers torch's thread count to that number, once, when grukit's fused
kernels load, unless the user chose a count: ``OMP_NUM_THREADS`` set, or ``torch.set_num_threads``
called with a number other than torch's own default (a call made later always wins).
"""

from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Optional

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _ancestors(path: str) -> Iterable[str]:
    """``/a/b`` -> ``/a/b``, ``/a``, ``/``: a quota set on a parent cgroup limits its children."""
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        yield "/" + "/".join(parts[:depth])


def quota_cpus(root: str = CGROUP_ROOT, proc_self_cgroup: str = PROC_SELF_CGROUP) -> Optional[float]:
    """The CPU quota of this process's cgroups in CPUs (quota / period; 1.5 for "150000 100000"),
    the smallest along the cgroup's ancestors, v2 and v1; None where no quota is set or readable."""
    limits = []
    for line in (_read(proc_self_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2: <root>/<path>/cpu.max
            for folder in _ancestors(path):
                text = _read(os.path.join(root + folder, "cpu.max"))
                if text:
                    quota, _, period = text.partition(" ")
                    if quota != "max" and float(period or 100000) > 0:
                        limits.append(float(quota) / float(period or 100000))
        elif "cpu" in controllers.split(","):  # cgroup v1: <root>/<controllers>/<path>/cpu.cfs_*_us
            for mount in {controllers, "cpu", "cpu,cpuacct"}:
                for folder in _ancestors(path):
                    base = os.path.join(root, mount) + folder
                    quota, period = (
                        _read(os.path.join(base, "cpu.cfs_quota_us")),
                        _read(os.path.join(base, "cpu.cfs_period_us")),
                    )
                    if quota and period and int(quota) > 0 and int(period) > 0:
                        limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def usable_cpus(
    affinity: Optional[Callable[[], Iterable[int]]] = None,
    root: str = CGROUP_ROOT,
    proc_self_cgroup: str = PROC_SELF_CGROUP,
) -> int:
    """The CPUs this process may use: the affinity mask's size (``affinity()``, default
    ``os.sched_getaffinity(0)``), lowered to the cgroup quota rounded up (a 1.5-CPU quota gives 2
    threads: the half CPU still runs one); at least 1."""
    if affinity is None and hasattr(os, "sched_getaffinity"):
        affinity = lambda: os.sched_getaffinity(0)  # noqa: E731
    try:
        count = len(set(affinity())) if affinity is not None else (os.cpu_count() or 1)
    except OSError:
        count = os.cpu_count() or 1
    quota = quota_cpus(root, proc_self_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota - 1e-9))
    return max(1, count)


def torch_default_threads(topology: str = "/sys/devices/system/cpu") -> int:
    """The count torch starts with when nobody chose one: the machine's physical cores (c10's
    ``TaskThreadPoolBase::defaultNumThreads``, from cpuinfo; the whole machine, not the affinity
    mask), counted here as the distinct (package, core) pairs of ``topology``; os.cpu_count() where
    that cannot be read."""
    cores = set()
    try:
        names = [n for n in os.listdir(topology) if n.startswith("cpu") and n[3:].isdigit()]
    except OSError:
        names = []
    for name in names:
        package = _read(os.path.join(topology, name, "topology", "physical_package_id"))
        core = _read(os.path.join(topology, name, "topology", "core_id"))
        if package is not None and core is not None:
            cores.add((package, core))
    return len(cores) or os.cpu_count() or 1


_APPLIED = False


def apply_default_threads(
    torch_module=None, usable: Optional[int] = None, default: Optional[int] = None, environ=os.environ
) -> Optional[int]:
    """Lower torch's thread count to :func:`usable_cpus` where the user did not choose a count (no
    ``OMP_NUM_THREADS``, and torch still at its default, :func:`torch_default_threads`) and the
    count exceeds what the process may use. Returns the count set, or None where nothing changed.
    Once per process: later calls do nothing, and a ``torch.set_num_threads`` made after it wins."""
    global _APPLIED
    if _APPLIED:
        return None
    _APPLIED = True
    if environ.get("OMP_NUM_THREADS"):
        return None
    if torch_module is None:
        import torch as torch_module
    current = torch_module.get_num_threads()
    default = torch_default_threads() if default is None else default
    usable = usable_cpus() if usable is None else usable
    if current != default or usable >= current:
        return None  # the user set a count (torch.set_num_threads), or the quota does not bind
    torch_module.set_num_threads(usable)
    return usable
