"""GRU speed on this CPU: grukit's fused kernels against torch.nn.GRU, onnxruntime and a torch loop.

    python bench/gru_speed.py                 # every case, 2 and 1 threads; writes BENCHMARKS.md
    python bench/gru_speed.py --quick         # fewer rounds, no file written

    # the same machine limited to AVX2 (kernels, oneDNN and MKL), as a second table:
    GRUKIT_CPU_LEVEL=x86-64-v3 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/gru_speed.py

Method: one process; for each case and thread count every implementation is
warmed up, then the implementations run interleaved, round after round (so a
slow spell of the machine hits all of them alike), and each one's median over
the rounds is reported. Small cases time a batch of calls per round. Ratios are
against torch.nn.GRU measured in the same rounds. All float32.

Roofline: the same process first measures the machine's float32 GEMM peak at each thread count:
the best of torch.mm (MKL) and of grukit's own routines (oneDNN brgemm, BLAS; run side by side on
every thread) on square products of 512, 1024 and 2048. Each case then reports the fraction of that peak
each implementation reaches, counting GEMM FLOPs only: forward 2*T*B*3H*(I+H), fwd+bwd three
times that.

BENCHMARKS.md keeps one section per machine (CPU model, instruction set, the kernels' build
level and the instruction-set switches): a run replaces its own machine's section only.

Implementations:
  torch.nn.GRU        PyTorch's own (reset after only)
  grukit after/before grukit.GRU with the fused CPU backend, reset_after=True/False
  torch loop before   grukit's portable backend: the reset-before GRU as plain torch
                      ops, one input GEMM then a Python loop of per-step ops
  ort after/before    onnxruntime's GRU operator in a one-node model,
                      linear_before_reset=1/0 (inference only)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import grukit  # noqa: E402
from grukit import convert  # noqa: E402
from grukit.backends import cpu_build, cpu_fused, gemm_choice  # noqa: E402


def instruction_set() -> str:
    """The widest x86 vector extension this CPU reports (the kernels' build level may be lower)."""
    flags = cpu_build.cpu_flags()
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2")):
        if flag in flags:
            return name
    return platform.machine()


def cpu_name() -> str:
    return cpu_build.cpu_model()


SWITCHES = ("GRUKIT_CPU_LEVEL", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def machine_label() -> str:
    """The CPU, its instruction set, and any switch limiting what the libraries run."""
    limits = [f"{name}={os.environ[name]}" for name in SWITCHES if os.environ.get(name)]
    return f"{cpu_name()} ({instruction_set()})" + (f", limited by {', '.join(limits)}" if limits else "")


def build_level() -> str:
    return cpu_fused.build_manifest()["level"]


# ------------------------------------------------------------------ roofline


def gemm_flops(B: int, T: int, H: int, I: int, train: bool) -> float:
    """GEMM FLOPs of one call: forward 2*T*B*3H*(I+H) (input and recurrent products), fwd+bwd 3x."""
    forward = 2.0 * T * B * 3 * H * (I + H)
    return 3 * forward if train else forward


def gemm_peak(threads: int, sizes=(512, 1024, 2048)):
    """(GFLOP/s, how, every rate): the best float32 GEMM rate with ``threads`` threads over square
    products of ``sizes``: torch.mm (MKL), or each of grukit's routines run side by side on
    ``threads`` Python threads (the extension releases the GIL while it times)."""
    import threading

    torch.set_num_threads(threads)
    extension = cpu_fused.extension()
    many_rows = gemm_choice.CANDIDATES["projection"]  # not the one-row kernel: these are square products
    routines = many_rows if extension.brgemm_works() else ("blas",)
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        calls = max(1, int(2e9 / n**3))
        torch.mm(a, b)
        best_mm = min(_seconds(lambda: [torch.mm(a, b) for _ in range(calls)]) for _ in range(3)) / calls
        rates[f"torch.mm {n}"] = 2 * n**3 / best_mm / 1e9
        for routine in routines:
            index = gemm_choice.ROUTINES.index(routine)
            seconds = [0.0] * threads

            def work(k, index=index, seconds=seconds, n=n, calls=calls):
                seconds[k] = extension.gemm_seconds(index, n, n, n, calls, 2)

            workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            rates[f"grukit {routine} {n}"] = threads * 2 * n**3 / max(seconds) / 1e9
    how = max(rates, key=rates.get)
    return rates[how], how, rates


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ implementations


def make_ort_session(module: grukit.GRU, reset_after: bool, threads: int):
    """A one-node ONNX model holding ``module``'s weights in the GRU operator."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    s = convert.layer_state(module)
    W, R, B = convert.torch_to_onnx([(s["w_ih"], s["w_hh"], s["b_ih"], s["b_hh"])])
    H = module.hidden_size
    node = helper.make_node(
        "GRU",
        ["X", "W", "R", "B"],
        ["Y", "Y_h"],
        hidden_size=H,
        linear_before_reset=1 if reset_after else 0,
    )
    graph = helper.make_graph(
        [node],
        "gru",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", module.input_size])],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None),
        ],
        initializer=[
            numpy_helper.from_array(W.astype(np.float32), "W"),
            numpy_helper.from_array(R.astype(np.float32), "R"),
            numpy_helper.from_array(B.astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # no spin-waiting after a run: its spinning threads would steal the cores from
    # whichever implementation runs next in the interleaved rounds
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def implementations(B, T, H, train, threads):
    """name -> zero-argument callable doing one forward (and backward if ``train``)."""
    torch.manual_seed(0)
    x = torch.randn(T, B, H)
    reference = torch.nn.GRU(H, H)
    after = grukit.GRU.from_torch(reference, reset_after=True, backend="cpu_fused")
    before = grukit.GRU.from_torch(reference, reset_after=False, backend="cpu_fused")
    loop_before = grukit.GRU.from_torch(reference, reset_after=False, backend="torch")
    modules = {
        "torch.nn.GRU": reference,
        "grukit after": after,
        "grukit before": before,
        "torch loop before": loop_before,
    }
    impls = {}
    for name, module in modules.items():
        if train:
            xr = x.clone().requires_grad_(True)

            def run(module=module, xr=xr):
                out, h_n = module(xr)
                (out.sum() + h_n.sum()).backward()
        else:

            def run(module=module):
                with torch.inference_mode():
                    module(x)

        impls[name] = run
    if not train:
        try:
            xn = x.numpy()
            for name, ra in (("ort after", True), ("ort before", False)):
                session = make_ort_session(reference if ra else before, ra, threads)
                impls[name] = lambda session=session: session.run(None, {"X": xn})
        except ImportError:
            pass
    return impls


def streaming_implementations(H, threads):
    """Per-call cost of one step at batch 1: x [1, H] -> h [1, H], state carried."""
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(H, H)
    x = torch.randn(1, H)
    state = {"h": torch.zeros(1, H)}

    def torch_cell():
        with torch.inference_mode():
            state["h"] = cell(x, state["h"])

    gru = grukit.GRU(H, H)
    gru.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    stream = gru.stream(batch_size=1)

    impls = {"torch.nn.GRUCell": torch_cell, "grukit stream after": lambda: stream.step(x)}
    gru_b = grukit.GRU(H, H, reset_after=False)
    gru_b.load_state_dict(gru.state_dict())
    stream_b = gru_b.stream(batch_size=1)
    impls["grukit stream before"] = lambda: stream_b.step(x)
    try:
        session = make_ort_session(gru, True, threads)
        xn = x.numpy()[None]
        impls["ort after"] = lambda: session.run(None, {"X": xn})
    except ImportError:
        pass
    return impls


def packed_implementations(B, T, H, train):
    """Padded (every sequence T steps) and packed (lengths T/2..T) input, same batch."""
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    x = torch.randn(T, B, H)
    lengths = torch.randint(T // 2, T + 1, (B,))
    lengths[0] = T
    reference = torch.nn.GRU(H, H)
    ours = grukit.GRU.from_torch(reference, backend="cpu_fused")
    packed_once = pack_padded_sequence(x, lengths, enforce_sorted=False)
    impls = {}
    for name, module in (("torch.nn.GRU", reference), ("grukit after", ours)):
        for kind in ("padded", "packed"):
            if train:  # packing is part of the graph, so it is timed too (for every implementation)

                def run(module=module, kind=kind):
                    xi = x.clone().requires_grad_(True)
                    inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if kind == "packed" else xi
                    out, h_n = module(inp)
                    data = out.data if kind == "packed" else out
                    (data.sum() + h_n.sum()).backward()
            else:  # inference: the GRU alone on input packed beforehand

                def run(module=module, kind=kind):
                    with torch.inference_mode():
                        module(packed_once if kind == "packed" else x)

            impls[f"{name} {kind}"] = run
    return impls


# ------------------------------------------------------------------ timing


def measure(impls, rounds: int, target_seconds: float = 0.02):
    """Median seconds per call of every implementation, interleaved round by round."""
    reps = {}
    for name, fn in impls.items():
        for _ in range(3):
            fn()
        start = time.perf_counter()
        fn()
        one = max(time.perf_counter() - start, 1e-7)
        reps[name] = max(1, int(target_seconds / one))
    samples = {name: [] for name in impls}
    order = list(impls)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            fn, n = impls[name], reps[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(v) for name, v in samples.items()}


CASES = [
    # (label, B, T, H, train, the project's target in ms at 2 threads)
    ("B32 T100 I=H=128, fwd+bwd", 32, 100, 128, True, 6.0),
    ("B32 T100 I=H=128, inference", 32, 100, 128, False, 2.5),
    ("B64 T100 I=H=256, fwd+bwd", 64, 100, 256, True, 45.0),
    ("B128 T50 I=H=512, inference", 128, 50, 512, False, 55.0),
    ("B1 T1000 I=H=128, inference", 1, 1000, 128, False, 2.0),
]
CASE_SHAPES = {label: (B, T, H, train) for label, B, T, H, train, _ in CASES}
# torch.nn.GRU (GRUCell for streaming) on the machine where the targets were set, in ms:
# target speed-up = this / target, a criterion that does not drift with the machine's speed
ISSUE_TORCH_MS = {
    "B32 T100 I=H=128, fwd+bwd": 21.0,
    "B32 T100 I=H=128, inference": 5.6,
    "B64 T100 I=H=256, fwd+bwd": 110.0,
    "B128 T50 I=H=512, inference": 119.0,
    "B1 T1000 I=H=128, inference": 11.6,
    "streaming B1 H128, one step per Python call": 21e-3,
}


def write_section(path: Path, start: str, end: str, text: str) -> None:
    """Replace the part of ``path`` between the ``start`` and ``end`` markers by ``text``; a new
    machine's section goes after the last machine section (or before the first other section)."""
    import re

    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        # the old section's line break goes with it, so the new one ends its last line
        ending = text if text.endswith("\n") else text + "\n"
        new = re.sub(re.escape(start) + r".*?" + re.escape(end) + r"\n?", lambda _: ending, old, flags=re.S)
    else:
        last = old.rfind("<!-- /gru-speed:")
        at = old.find("\n", last) + 1 if last >= 0 else old.find("<!--")
        at = len(old) if at <= 0 else at
        new = old[:at].rstrip("\n") + "\n\n" + text + "\n" + old[at:]
    path.write_text(new)


def fmt(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms * 1e3:.1f} us" if ms < 0.1 else f"{ms:.2f} ms"


def run(quick: bool):
    rounds = 5 if quick else 15
    rows, peaks = [], {}
    for threads in (2, 1):
        peaks[threads] = gemm_peak(threads)
        print(
            f"[{threads} threads] float32 GEMM peak {peaks[threads][0]:.0f} GFLOP/s ({peaks[threads][1]}); "
            + ", ".join(f"{k} {v:.0f}" for k, v in peaks[threads][2].items()),
            flush=True,
        )
        torch.set_num_threads(threads)
        for label, B, T, H, train, target in CASES:
            result = measure(implementations(B, T, H, train, threads), rounds)
            rows.append((threads, label, result, target))
            print(f"[{threads} threads] {label}: " + ", ".join(f"{k} {fmt(v)}" for k, v in result.items()), flush=True)
        for train in (False, True):
            result = measure(packed_implementations(32, 100, 128, train), rounds)
            label = f"packed vs padded, B32 T100 H128, {'fwd+bwd' if train else 'inference'}"
            rows.append((threads, label, result, None))
            print(f"[{threads} threads] {label}: " + ", ".join(f"{k} {fmt(v)}" for k, v in result.items()), flush=True)
        result = measure(streaming_implementations(128, threads), rounds, target_seconds=0.01)
        rows.append((threads, "streaming B1 H128, one step per Python call", result, 5e-3))
        print(f"[{threads} threads] streaming: " + ", ".join(f"{k} {fmt(v)}" for k, v in result.items()), flush=True)
    return rows, peaks


def table(rows, threads, peak_gflops: float):
    """One row per case: each implementation's time, its speed-up over the first column and,
    for the layer cases, the fraction of the GEMM peak its GEMM FLOPs reach."""
    columns = ["torch.nn.GRU", "grukit after", "grukit before", "torch loop before", "ort after", "ort before"]
    stream_columns = ["torch.nn.GRUCell", "grukit stream after", "grukit stream before", "ort after"]
    out = [
        "| case | " + " | ".join(columns) + " | target: time / speed-up | met: time / speed-up |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for t, label, result, target in rows:
        if t != threads or label.startswith("packed"):
            continue
        streaming = label.startswith("streaming")
        cols = stream_columns if streaming else columns
        base = result[cols[0]]
        flops = None if streaming else gemm_flops(*CASE_SHAPES[label][:3], CASE_SHAPES[label][2], CASE_SHAPES[label][3])

        def peak_share(seconds):
            return "" if flops is None else f"{flops / seconds / 1e9 / peak_gflops:.0%}"

        cells = []
        for c in cols + [None] * (len(columns) - len(cols)):
            if c is None or c not in result:
                cells.append("-")
                continue
            name = c + " " if streaming else ""
            notes = [] if c == cols[0] else [f"{base / result[c]:.2f}x"]
            notes += [peak_share(result[c])] if flops else []
            cells.append(f"{name}{fmt(result[c])}" + (f" ({', '.join(notes)})" if notes else ""))
        slowest = max(result[c] for c in cols if c.startswith("grukit"))  # both formulations must meet it
        want_ratio = ISSUE_TORCH_MS[label] / target
        got_ratio = base / slowest
        goal = f"{fmt(target / 1e3)} / {want_ratio:.2f}x"
        met = "-"
        if threads == 2:
            by_time = "yes" if slowest * 1e3 <= target else f"no ({slowest * 1e3 / target:.2f}x)"
            by_ratio = "yes" if got_ratio >= want_ratio else f"no ({got_ratio:.2f}x)"
            met = f"{by_time} / {by_ratio}"
        out.append(f"| {label} | " + " | ".join(cells) + f" | {goal} | {met} |")
    return "\n".join(out)


# The targets of "fast on every CPU" at 2 threads, judged for both formulations (grukit after and
# before) in the same rounds as the peers: inference at least 1.1x the faster of torch.nn.GRU and
# onnxruntime (either placement), fwd+bwd at least 1.5x torch.nn.GRU, and two cases' share of the
# machine's measured GEMM peak.
SPEED_UP_TARGET = {"inference": 1.1, "fwd+bwd": 1.5}
PEAK_SHARE_TARGET = {"B128 T50 I=H=512, inference": 0.85, "B32 T100 I=H=128, fwd+bwd": 0.60}


def targets_table(rows, peak_gflops: float) -> str:
    """One line per target and case at 2 threads: what is compared, each formulation's figure, met or not."""
    out = ["| case | target | grukit after | grukit before | met |", "|---|---|---|---|---|"]
    for t, label, result, _ in rows:
        if t != 2 or label not in CASE_SHAPES:
            continue
        B, T, H, train = CASE_SHAPES[label]
        grukit = [result["grukit after"], result["grukit before"]]
        if train:
            peer, criterion = result["torch.nn.GRU"], "speed-up over torch.nn.GRU"
            want = SPEED_UP_TARGET["fwd+bwd"]
        else:
            peers = {n: result[n] for n in ("torch.nn.GRU", "ort after", "ort before") if n in result}
            fastest = min(peers, key=peers.get)
            peer, criterion = peers[fastest], f"speed-up over the faster peer ({fastest})"
            want = SPEED_UP_TARGET["inference"]
        got = [peer / g for g in grukit]
        met = "yes" if min(got) >= want else "no"
        out.append(f"| {label} | {criterion} >= {want}x | {got[0]:.2f}x | {got[1]:.2f}x | {met} |")
        if label in PEAK_SHARE_TARGET:
            share = [gemm_flops(B, T, H, H, train) / g / 1e9 / peak_gflops for g in grukit]
            want_share = PEAK_SHARE_TARGET[label]
            met = "yes" if min(share) >= want_share else "no"
            out.append(
                f"| {label} | share of the GEMM peak >= {want_share:.0%} | {share[0]:.0%} | {share[1]:.0%} | {met} |"
            )
    return "\n".join(out)


def packed_table(rows, threads):
    out = [
        "| case | torch.nn.GRU padded | torch.nn.GRU packed | grukit padded | grukit packed | grukit packed / padded |",
        "|---|---|---|---|---|---|",
    ]
    for t, label, r, _ in rows:
        if t != threads or not label.startswith("packed"):
            continue
        out.append(
            f"| {label[len('packed vs padded, ') :]} "
            f"| {fmt(r['torch.nn.GRU padded'])} | {fmt(r['torch.nn.GRU packed'])} "
            f"| {fmt(r['grukit after padded'])} | {fmt(r['grukit after packed'])} "
            f"| {r['grukit after packed'] / r['grukit after padded']:.2f} |"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15, and no BENCHMARKS.md")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    if not cpu_fused.is_available():
        sys.exit(f"the fused CPU backend is unavailable: {cpu_fused.why_unavailable()}")
    label = machine_label()
    gemm = cpu_fused.gemm_routines()
    print(f"{label}; kernels built for {build_level()}; matrix products: {gemm['routines']}", flush=True)
    rows, peaks = run(args.quick)
    if args.quick:
        print(table(rows, 2, peaks[2][0]))
        print(targets_table(rows, peaks[2][0]))
        print(packed_table(rows, 2))
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"

    def peak_line(threads):
        gflops, how, rates = peaks[threads]
        mkl = max(v for k, v in rates.items() if k.startswith("torch.mm"))
        return (
            f"float32 GEMM peak at {threads} thread{'s' if threads > 1 else ''}: {gflops:.0f} GFLOP/s "
            f"({how}^3; torch.mm's best {mkl:.0f})"
        )

    start, end = f"<!-- gru-speed: {label} -->", f"<!-- /gru-speed: {label} -->"
    section = f"""{start}
## {label}

Written by `{" ".join(f"{k}={os.environ[k]}" for k in SWITCHES if os.environ.get(k))} python bench/gru_speed.py`
on {datetime.date.today().isoformat()} (commit {commit}). {os.cpu_count()} cores; kernels built for {build_level()};
matrix products: {", ".join(f"{k} {r}" for k, r in gemm["routines"].items())} ({gemm["source"]}).
torch {torch.__version__}, onnxruntime {ort_version}, Python {platform.python_version()}. float32.
{peak_line(2)}; {peak_line(1)}.
In brackets: the speed-up over the first column, and the share of that peak the case's GEMM
FLOPs reach.

### 2 threads

{table(rows, 2, peaks[2][0])}

Targets of "fast on every CPU" (2 threads; both formulations must meet each, so "met" judges the
slower; the contended case is in "Under contention" below):

{targets_table(rows, peaks[2][0])}

### 1 thread

{table(rows, 1, peaks[1][0])}

### Packed sequences cost no more than padded ones

2 threads:

{packed_table(rows, 2)}

1 thread:

{packed_table(rows, 1)}
{end}
"""
    path = Path(args.output)
    if not path.exists():
        path.write_text(HEADER)
    write_section(path, start, end, section)
    print(f"wrote {args.output}")


HEADER = """# Benchmarks

`python bench/gru_speed.py` writes one section per machine below (its CPU, instruction set and
the switches that limited it), replacing only its own machine's section. Each figure is the
median over 15 interleaved rounds after warm-up (see the script's docstring); in brackets, the
speed-up over the first column (torch.nn.GRU, or torch.nn.GRUCell for streaming) measured in the
same rounds, and the share of the machine's float32 GEMM peak (measured in the same process) that
the case's GEMM FLOPs reach. "fwd+bwd" is one forward and one backward pass of the layer;
"inference" runs under `torch.inference_mode()`. The target column is the project's goal for
grukit at 2 threads, as a time and as the speed-up over torch.nn.GRU that the time meant when the
goal was set (torch measured then on an AVX-512 EPYC); both formulations must meet it, so "met"
judges the slower. Packed-sequence rows: lengths drawn from 50..100 (one of 100), packed with
`enforce_sorted=False`; "padded" is the same batch at full length; fwd+bwd includes
`pack_padded_sequence` and its backward.

- Reproduce: `make install && .venv/bin/python bench/gru_speed.py` (add `--quick` for a short run).
- onnxruntime is the `GRU` operator alone (no framework overhead), one thread pool of the same size.
- "torch loop before" is the reset-before GRU (Cho et al. 2014 v3, as tutorials write it) as plain
  torch ops: the only way to train it with PyTorch today without grukit.
- The VM's two cores run at speeds that drift over minutes, so small 2-thread cases move by up
  to 1.6x between runs; the 1-thread tables are steadier.
"""


if __name__ == "__main__":
    main()
