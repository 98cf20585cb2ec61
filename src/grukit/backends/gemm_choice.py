"""Which matrix-product routine the fused CPU kernels use for each kind of product, by measurement.

The fused kernels spend most of their time in float32 matrix products of four kinds
(``csrc/gemm.h``'s ``Product``):

* recurrent: per step, h [rows, H] @ W_hh^T [H, 3H] (and the backward's d gates @ W_hh);
* projection: all steps at once, x [T*B, I] @ W_ih^T [I, 3H] (and d x);
* weight_gradient: sums over all steps, x^T [I, T*B] @ d gates [T*B, 3H] (K = T*B is large);
* row: any product of one row (batch 1, streaming), bound by reading the weights.

``SHAPES`` lists the (M, N, K) timed for each, at H = 128 to 512. One-row products are timed
inside a batch-1 layer forward (``ROW_LAYER_STEPS`` steps, per H): timed alone on the same operands, MKL looked
faster than brgemm at H = 128 while the layer ran 4 % (streaming 10 %) slower with it.

Three routines can compute each (``ROUTINES``): the BLAS libtorch exports (MKL's sgemm), oneDNN's
brgemm micro-kernel tiled 256 x 256 over N and K, and brgemm tiled over 128-row blocks too; one-row
products have a fourth candidate, grukit's own one-row kernel (``csrc/row_product.h``). Which
wins depends on the CPU: on an AVX-512 AMD EPYC brgemm runs about 2x MKL everywhere, while with
the same machine limited to AVX2 MKL wins the one-row and the large-K products (BENCHMARKS.md).
So at first use each routine is timed on the shapes above, single-threaded, and each kind gets
the routine with the lowest geometric mean of its time relative to the fastest routine on each
shape. The choice is cached beside the build (``gemm-<machine>.json``), keyed by the machine's
identity (CPU model and flags, the oneDNN/MKL instruction-set switches, torch's version); a cached
choice made among other candidates than today's ``CANDIDATES`` is measured again.

``$GRUKIT_GEMM`` overrides it: one of ``ROUTINES`` for every kind (the benchmarks and tests use
this; ``row_kernel`` computes a product of many rows one row at a time, correct but slow), or
``measure`` to time again and rewrite the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from .. import settings
from . import cpu_build

ROUTINES = ("blas", "brgemm", "brgemm_row_tiled", "row_kernel")  # csrc/gemm.h's Routine, in order
PRODUCTS = ("recurrent", "projection", "weight_gradient", "row")  # csrc/gemm.h's Product, in order
_MANY_ROWS = ("blas", "brgemm", "brgemm_row_tiled")
CANDIDATES: Dict[str, Tuple[str, ...]] = {  # the routines timed for each kind
    "recurrent": _MANY_ROWS,
    "projection": _MANY_ROWS,
    "weight_gradient": _MANY_ROWS,
    "row": _MANY_ROWS + ("row_kernel",),
}
_NEEDS_BRGEMM = ("brgemm", "brgemm_row_tiled")
SHAPES: Dict[str, List[Tuple[int, int, int]]] = {
    "recurrent": [(16, 384, 128), (64, 1536, 512)],  # B 32 and 128 split by rows over two threads
    "projection": [(3200, 384, 128), (2048, 1536, 512)],
    "weight_gradient": [(128, 384, 3200), (512, 1536, 2048)],
    # batch 1: H 128 and 256 run on one thread, H 512 splits its units over two (csrc/team.h)
    "row": [(1, 384, 128), (1, 768, 256), (1, 768, 512)],
}
ROW_LAYER_STEPS = 64  # one-row products are timed in a batch-1 layer forward of this many steps
PREFERENCE = ("brgemm", "brgemm_row_tiled", "row_kernel", "blas")
TIE = 0.05  # relative differences below this are timing noise on a shared VM
# environment switches that change which code oneDNN or MKL run, hence the measurement
_SWITCHES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "MKL_CBWR")


def machine_identity() -> Dict[str, str]:
    """What a measurement holds for: the CPU, the libraries' instruction-set switches, torch."""
    return {
        "cpu": cpu_build.cpu_model(),
        "cpu_flags_sha256": hashlib.sha256(" ".join(sorted(cpu_build.cpu_flags())).encode()).hexdigest()[:16],
        "torch": torch.__version__,
        **{name: os.environ.get(name, "") for name in _SWITCHES},
    }


def measure(extension, repeats: int = 5) -> Dict[str, Dict[str, List[float]]]:
    """Seconds per call, ``{kind: {routine: [seconds per shape in SHAPES[kind]]}}``, single-threaded.

    Routines that cannot run here (brgemm on a CPU oneDNN does not support) are left out.
    """
    runs_here = [r for r in ROUTINES if r not in _NEEDS_BRGEMM or extension.brgemm_works()]
    timings: Dict[str, Dict[str, List[float]]] = {}
    for kind, shapes in SHAPES.items():
        timings[kind] = {}
        for routine in (r for r in CANDIDATES[kind] if r in runs_here):
            if kind == "row":
                timings[kind][routine] = [
                    _batch_one_layer_seconds(extension, routine, H, repeats) for _, _, H in shapes
                ]
                continue
            seconds = []
            for M, N, K in shapes:
                calls = max(1, math.ceil(1.5e8 / (M * N * K)))  # about 3 ms per timing at 100 GFLOP/s
                seconds.append(extension.gemm_seconds(ROUTINES.index(routine), M, N, K, calls, repeats))
            timings[kind][routine] = seconds
    return timings


def _batch_one_layer_seconds(extension, routine: str, H: int, repeats: int) -> float:
    """Seconds of one batch-1 layer forward of ROW_LAYER_STEPS steps (input size H) with one-row products on
    ``routine``: a one-row product is bound by reading the weights, so timed alone, repeated on the
    same operands, it misleads; timed inside the layer it is judged where it runs."""
    import time

    saved = extension.gemm_routines()
    extension.set_gemm_routines(saved[:3] + [ROUTINES.index(routine)])
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(ROW_LAYER_STEPS, 1, H, generator=generator)
        w_ih, w_hh = torch.randn(3 * H, H, generator=generator) * 0.1, torch.randn(3 * H, H, generator=generator) * 0.1
        inputs = dict(x=x, h0=torch.zeros(1, H), w_ih=w_ih, w_hh=w_hh)  # reset after, nothing saved (the defaults)
        best = math.inf
        for _ in range(repeats + 1):
            start = time.perf_counter()
            torch.ops.grukit.gru_layer_fwd(**inputs)
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        extension.set_gemm_routines(saved)


def choose(timings: Dict[str, Dict[str, List[float]]]) -> Dict[str, str]:
    """``{kind: routine}``: per kind, the routine with the lowest geometric mean over the shapes of
    its time divided by the fastest routine's time on that shape (ties within ``TIE`` go to the
    routine earlier in ``PREFERENCE``: the row-tiled brgemm equals brgemm below 128 rows)."""
    chosen = {}
    for kind, by_routine in timings.items():
        fastest = [min(column) for column in zip(*by_routine.values())]  # per shape

        def relative(routine: str) -> float:
            return math.exp(sum(math.log(t / f) for t, f in zip(by_routine[routine], fastest)) / len(fastest))

        best = min(relative(routine) for routine in by_routine)
        # within the timing noise of the best, keep the earlier routine of PREFERENCE
        chosen[kind] = next(r for r in PREFERENCE if r in by_routine and relative(r) <= best * (1 + TIE))
    return chosen


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temporary.write_text(text)
    os.replace(temporary, path)


def configure(extension, folder: Path) -> Dict[str, object]:
    """Set the extension's routine per kind of product and say how it was chosen.

    Args:
        extension: the loaded ``grukit_cpu`` module.
        folder: the build folder; the measurement is cached there as ``gemm-<machine>.json``.

    Returns:
        ``{"routines": {kind: routine}, "source": "measured" | "cached" | "$GRUKIT_GEMM",
        "file": path or None, "timings": {...} or None}``.

    Raises:
        ValueError: ``$GRUKIT_GEMM`` is not ``measure`` or a routine name.
    """
    requested = settings.get("GRUKIT_GEMM")
    if requested in ROUTINES:
        if requested in _NEEDS_BRGEMM and not extension.brgemm_works():
            warnings.warn(
                f"$GRUKIT_GEMM={requested}: oneDNN's brgemm does not run on this CPU; BLAS computes the products",
                RuntimeWarning,
                stacklevel=2,
            )
        routines = {kind: requested for kind in PRODUCTS}
        result = {"routines": routines, "source": "$GRUKIT_GEMM", "file": None, "timings": None}
    else:
        identity = machine_identity()
        name = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        path = folder / f"gemm-{name}.json"
        cached = None
        if requested == "auto":
            try:
                cached = json.loads(path.read_text())
                if (
                    cached.get("machine") != identity
                    or set(cached.get("routines", {})) != set(PRODUCTS)
                    or cached.get("candidates") != {kind: list(c) for kind, c in CANDIDATES.items()}
                ):
                    cached = None  # another machine, or chosen among other routines than today's
            except (OSError, ValueError):
                cached = None
        if cached is not None:
            routines, timings, source = cached["routines"], cached["timings"], "cached"
        else:
            timings = measure(extension)
            routines, source = choose(timings), "measured"
            record = {
                "machine": identity,
                "candidates": CANDIDATES,
                "shapes": SHAPES,
                "timings": timings,
                "routines": routines,
            }
            try:
                _write_atomically(path, json.dumps(record, indent=1))
            except OSError:
                pass  # a read-only cache: the choice holds for this process
        result = {"routines": routines, "source": source, "file": str(path), "timings": timings}
    extension.set_gemm_routines([ROUTINES.index(result["routines"][kind]) for kind in PRODUCTS])
    return result
