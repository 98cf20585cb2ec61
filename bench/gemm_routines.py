"""The matrix-product routines on this machine: what the fused kernels choose from, and what they chose.

    python bench/gemm_routines.py            # writes this machine's section of BENCHMARKS.md
    GRUKIT_CPU_LEVEL=x86-64-v3 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/gemm_routines.py

Times every routine (MKL's sgemm, oneDNN brgemm, brgemm tiled by rows; for one-row products grukit's
own kernel too) on the shapes of each
kind of product (``grukit.backends.gemm_choice.SHAPES``), single-threaded, exactly as the
kernels' first use does, and reports GFLOP/s per shape and the routine ``gemm_choice.choose``
keeps for each kind. A section per machine label (CPU, instruction set, switches).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from gru_speed import HEADER, build_level, machine_label, write_section  # noqa: E402
from grukit.backends import cpu_fused, gemm_choice  # noqa: E402

ROW_STEPS = gemm_choice.ROW_LAYER_STEPS


def main():
    if not cpu_fused.is_available():
        sys.exit(f"the fused CPU backend is unavailable: {cpu_fused.why_unavailable()}")
    timings = gemm_choice.measure(cpu_fused.extension())
    chosen = gemm_choice.choose(timings)
    routines = [r for r in gemm_choice.ROUTINES if any(r in by_routine for by_routine in timings.values())]
    lines = ["| kind | M x N x K | " + " | ".join(routines) + " |", "|---" * (len(routines) + 2) + "|"]
    for kind, by_routine in timings.items():
        for i, (M, N, K) in enumerate(gemm_choice.SHAPES[kind]):
            # one-row products are timed inside a batch-1 layer forward of ROW_STEPS steps: per step
            seconds = {r: t[i] / (ROW_STEPS if kind == "row" else 1) for r, t in by_routine.items()}
            rates = {r: 2 * M * N * K / s / 1e9 for r, s in seconds.items()}
            best = max(rates, key=rates.get)
            cells = [
                "-" if r not in rates else f"**{rates[r]:.0f}**" if r == best else f"{rates[r]:.0f}" for r in routines
            ]
            lines.append(f"| {kind} | {M} x {N} x {K} | " + " | ".join(cells) + " |")
    label = machine_label()
    start, end = f"<!-- gemm-routines: {label} -->", f"<!-- /gemm-routines: {label} -->"
    text = f"""{start}
### Matrix-product routines: {label}

`python bench/gemm_routines.py` on {datetime.date.today().isoformat()}, kernels built for {build_level()}. GFLOP/s, one
thread, the fastest per shape in bold; "row": a batch-1 layer forward of {ROW_STEPS} steps (its one-row
products on each routine) over {ROW_STEPS} one-row products, so the element-wise work counts against it.
Chosen per kind (geometric mean of time relative to the fastest, ties within {gemm_choice.TIE:.0%}
to the preferred order {", ".join(gemm_choice.PREFERENCE)}):
{", ".join(f"{k} **{r}**" for k, r in chosen.items())}.

{chr(10).join(lines)}
{end}
"""
    print(text)
    path = ROOT / "BENCHMARKS.md"
    if not path.exists():
        path.write_text(HEADER)
    write_section(path, start, end, text)


if __name__ == "__main__":
    main()
