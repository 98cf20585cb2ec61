"""Where and how the fused CPU kernels are compiled and cached, safely on any machine.

A compiled library holds instructions of one instruction-set level. Loading AVX-512 code on a
CPU without AVX-512 ends the process with SIGILL, so a build is never reused on a CPU that lacks
what it was compiled for, even when a home folder (and its cache) is shared between machines:

* x86-64 code is compiled for an explicit micro-architecture level of the x86-64 psABI
  (``-march=x86-64-v2``, ``-v3`` = AVX2 + FMA, ``-v4`` = AVX-512 F/BW/CD/DQ/VL), the highest this
  CPU supports, or the one ``$GRUKIT_CPU_LEVEL`` names (at most this CPU's). The level is part of
  the cache key, and the build's manifest lists the CPU flags the level needs; a build whose
  flags this CPU lacks is rebuilt, never loaded. Other machines (ARM, ...) compile with
  ``-march=native`` and key the build on the CPU's whole feature list.
* A build is written into a private temporary folder and renamed into place only when complete,
  with a manifest holding the library's SHA-256. A cached library that is missing, truncated or
  corrupted (or a folder without a manifest) is rebuilt, not loaded.
* Builders of the same key take an exclusive ``flock`` on a lock file first (the operating system
  releases it if the process dies, so a killed build never blocks later ones); where locks do
  not work (some network file systems), the rename still makes one complete build win.

Layout under the cache root (``$GRUKIT_BUILD_DIR``, else ``~/.cache/grukit``)::

    cpu-<key>/                 a complete build: the library, manifest.json, the compiler's files
    cpu-<key>.lock             the builders' lock file (the holder's pid and start time while held)
    .cpu-<key>.tmp-<pid>-<id>/ a build in progress (removed when it ends; a killed build's, by the
                               next process that finds its key's lock free)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional

from .. import settings

MANIFEST = "manifest.json"

# The x86-64 micro-architecture levels (x86-64 psABI), each with the /proc/cpuinfo flags it needs.
_V2 = frozenset({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"})
_V3 = _V2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_V4 = _V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
X86_LEVELS: Dict[str, FrozenSet[str]] = {"x86-64": frozenset(), "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}


class UnusableBuild(RuntimeError):
    """A cached build that must not be loaded (other CPU, incomplete, corrupted)."""


def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags as Linux reports them (``flags`` on x86, ``Features`` on ARM)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def supported_levels(flags: FrozenSet[str]) -> List[str]:
    """The x86-64 levels whose every flag is in ``flags``, lowest first."""
    return [level for level, needs in X86_LEVELS.items() if needs <= flags]


def chosen_level(flags: FrozenSet[str], requested: Optional[str] = None) -> str:
    """The level to compile for: ``requested`` (default ``$GRUKIT_CPU_LEVEL``) if it names one, else
    the highest this CPU supports; ``"native"`` off x86.

    Raises:
        settings.SettingError: ``requested`` is not a level, or is above what this CPU supports.
    """
    if requested is None:
        requested = settings.get("GRUKIT_CPU_LEVEL")
    requested = requested or None  # "" asks for nothing
    if not is_x86():
        if requested not in (None, "native"):
            raise settings.SettingError(
                f"$GRUKIT_CPU_LEVEL must be 'native' on {platform.machine()}, got {requested!r}"
            )
        return "native"
    supported = supported_levels(flags)
    if requested is None:
        return supported[-1]
    if requested not in X86_LEVELS:
        raise settings.SettingError(f"$GRUKIT_CPU_LEVEL must be one of {', '.join(X86_LEVELS)}, got {requested!r}")
    if requested not in supported:
        raise settings.SettingError(
            f"$GRUKIT_CPU_LEVEL={requested} needs CPU flags this CPU lacks "
            f"({', '.join(sorted(X86_LEVELS[requested] - flags))}); this CPU supports up to {supported[-1]}"
        )
    return requested


def required_flags(level: str, flags: FrozenSet[str]) -> FrozenSet[str]:
    """The CPU flags a build for ``level`` needs: the level's, or all of this CPU's for native."""
    return flags if level == "native" else X86_LEVELS[level]


def compile_flags(level: str) -> List[str]:
    """Code-generation flags for ``level``: its instruction set, scheduled for this CPU (``-mtune``
    changes only the order of instructions, so the code still runs on any CPU of the level)."""
    if level == "native":
        return ["-march=native"]
    return [f"-march={level}", "-mtune=native"]


def cache_key(inputs: Iterable[bytes], level: str, flags: FrozenSet[str]) -> str:
    """Hash of what the library depends on: ``inputs`` (sources, compiler, torch, flags) and the level;
    for native builds the CPU's whole feature list."""
    key = hashlib.sha256()
    for item in inputs:
        key.update(hashlib.sha256(item).digest())
    key.update(platform.machine().encode())
    key.update(level.encode())
    if level == "native":
        key.update(" ".join(sorted(flags)).encode())
    return key.hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_build(folder: Path, flags: FrozenSet[str]) -> Path:
    """The library of a complete build in ``folder`` that this CPU can run.

    Raises:
        UnusableBuild: no manifest, a library missing or not the one the manifest describes, or a
            build for CPU flags this CPU lacks.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        library = folder / manifest["library"]
        needs = frozenset(manifest["required_flags"])
        expected_hash, expected_size = manifest["sha256"], manifest["size"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnusableBuild(f"{folder} has no readable manifest ({type(exc).__name__})") from None
    missing = needs - flags
    if missing:
        raise UnusableBuild(
            f"{folder} was built for {manifest.get('level')} on {manifest.get('cpu')!r}; "
            f"this CPU lacks {', '.join(sorted(missing))}"
        )
    try:
        size = library.stat().st_size
    except OSError:
        raise UnusableBuild(f"{library} is missing") from None
    if size != expected_size or _sha256(library) != expected_hash:
        raise UnusableBuild(f"{library} is not the library its manifest describes (truncated or corrupted)")
    return library


def _holder(lock_path: Path) -> str:
    """Who holds the builders' lock, from what the holder wrote into it: "process 1234 (stopped),
    building for 75 s"; "" if unknown."""
    try:
        pid, started = lock_path.read_text().split()[:2]
        pid_number, since = int(pid), time.time() - float(started)
    except (OSError, ValueError):
        return ""
    state = ""
    with contextlib.suppress(OSError, IndexError):
        # /proc/<pid>/stat: "pid (name) S ..."; T: stopped (SIGSTOP, Ctrl-Z), t: stopped by a debugger
        stat = Path(f"/proc/{pid_number}/stat").read_text()
        if stat[stat.rindex(")") + 2] in "Tt":
            state = " (stopped: resume it with `kill -CONT {0}` or end it with `kill {0}`)".format(pid_number)
    return f"process {pid_number}{state}, building for {since:.0f} s"


@contextlib.contextmanager
def _exclusive(lock_path: Path, report_every_s: float = 30.0):
    """An exclusive lock on ``lock_path`` for the ``with`` block (``fcntl.flock``: released by the
    operating system when the process ends, however it ends). Where locking is unsupported the
    block runs unlocked; the atomic rename in ``build`` keeps the result whole.

    The holder writes its pid and start time into the file; a process that has to wait says whom it
    waits for (and whether that process is stopped) on stderr, then again every ``report_every_s``."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_for(handle, lock_path, report_every_s)
        except OSError:
            yield
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {time.time():.0f}\n")
            handle.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for(handle, lock_path: Path, report_every_s: float) -> None:
    """Take the lock another process holds, saying on stderr whom this process waits for."""
    import fcntl

    waited, said = 0.0, -report_every_s
    while True:
        if waited - said >= report_every_s:
            holder = _holder(lock_path) or "another process"
            sys.stderr.write(
                f"grukit: waiting {waited:.0f} s for {holder} to finish building the fused CPU kernels "
                f"(lock {lock_path})\n"
            )
            sys.stderr.flush()
            said = waited
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.5)
            waited += 0.5


def _unlocked(lock_path: Path) -> bool:
    """Nobody holds ``lock_path`` now (so no build of its key is in progress)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True
    except OSError:
        return False


def remove_stale_temporaries(root: Path) -> None:
    """The temporary folders of builds that died (killed mid-compile, any key): a folder whose key's
    lock nobody holds belongs to no build in progress, since builders hold the lock throughout."""
    for folder in list(root.glob(".cpu-*.tmp-*")) + list(root.glob(".cpu-*.stale-*")):
        key = folder.name[len(".cpu-") :].split(".")[0]
        if _unlocked(root / f"cpu-{key}.lock"):
            shutil.rmtree(folder, ignore_errors=True)


def _announce(level: str, root: Path) -> float:
    """Say once, on stderr, that a build starts (the first command on a machine otherwise looks
    hung for about 40 s); returns the start time."""
    sys.stderr.write(
        f"grukit: building the fused CPU kernels for this CPU ({level}), once per machine and torch version: "
        f"about 40 s on an idle 2-core machine, minutes on a busy one (cached in {root})\n"
    )
    sys.stderr.flush()
    return time.time()


def build(
    root: Path,
    key: str,
    level: str,
    flags: FrozenSet[str],
    compile_into: Callable[[Path], Path],
    description: Optional[Dict[str, str]] = None,
) -> Path:
    """The library of the complete build ``cpu-<key>`` under ``root``, compiling it if needed.

    Args:
        root: the cache folder.
        key: ``cache_key(...)`` of this build.
        level: the instruction-set level it is compiled for (``chosen_level``).
        flags: this CPU's flags (``cpu_flags()``).
        compile_into: compiles into the given empty folder and returns the library's path there.
        description: extra facts recorded in the manifest (compiler, torch version, ...).

    Returns:
        the path of the library inside ``root / f"cpu-{key}"``.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"cpu-{key}"
    with contextlib.suppress(UnusableBuild):
        library = check_build(final, flags)
        if any(root.glob(".cpu-*.tmp-*")):  # a build killed earlier left its folder: cleaned on the next run
            remove_stale_temporaries(root)
        return library
    with _exclusive(root / f"cpu-{key}.lock"):
        with contextlib.suppress(UnusableBuild):
            return check_build(final, flags)  # another process finished it while we waited
        remove_stale_temporaries(root)
        temporary = root / f".cpu-{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temporary.mkdir()
        try:
            started = _announce(level, root)
            library = compile_into(temporary)
            sys.stderr.write(f"grukit: built the fused CPU kernels in {time.time() - started:.0f} s\n")
            manifest = {
                "library": library.name,
                "level": level,
                "required_flags": sorted(required_flags(level, flags)),
                "cpu": cpu_model(),
                "sha256": _sha256(library),
                "size": library.stat().st_size,
                **(description or {}),
            }
            (temporary / MANIFEST).write_text(json.dumps(manifest, indent=1))
            if final.exists():  # an unusable build: set it aside, then replace it
                stale = root / f".cpu-{key}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                with contextlib.suppress(OSError):
                    os.rename(final, stale)
                    shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(temporary, final)
            except OSError:  # another process (without a working lock) renamed its build first
                pass
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return check_build(final, flags)
