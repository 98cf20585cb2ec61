"""The minGRU (Feng et al. 2024) against the GRU on this CPU: training speed, the scan against the
memory-bandwidth floor, the scan's float32 accuracy at T = 100,000, and streaming per step.

    python bench/min_gru_speed.py            # writes its section of BENCHMARKS.md
    python bench/min_gru_speed.py --quick    # fewer rounds and cases, print only

Method (as bench/gru_speed.py): one process, every implementation warmed up, then run interleaved
round after round; each one's median is reported, and ratios come from the same rounds. float32,
2 threads (torch.set_num_threads). A training call is forward and backward of one layer on
[T, B, I] input (input gradients included), the loss the sum of the outputs.

  minGRU          grukit.MinGRU, its scan by the fused CPU kernels (csrc/min_gru_scan.h)
  minGRU (torch)  grukit.MinGRU on the portable path (the scan by recursive doubling in torch ops)
  GRU grukit      grukit.GRU (fused CPU kernels, reset after)
  torch.nn.GRU    PyTorch's own

Bandwidth floor: the scan reads k [T, B, 2H] and writes h [T, B, H] forward; backward it reads
d_h, h and k and writes d_k: 3 and 6 arrays of T*B*H floats. The floor is those bytes at the
machine's bandwidth, measured here as the best rate of ``dst.copy_(src)`` (read + write) on
buffers of the scan's size; the scan also allocates its outputs, which a fresh buffer pays for in
page faults (``clone()``'s rate shows how much).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

import grukit  # noqa: E402
from gru_speed import fmt, machine_label, measure, write_section  # noqa: E402
from grukit import min_gru_reference  # noqa: E402
from grukit.backends import cpu_fused, torch_ops  # noqa: E402

THREADS = 2
# (B, T, H, I): the target case first, then T, H, B sweeps (I = H: a layer in a stack), and the
# target case with a small input (the first layer of a model on few features)
CASES = [
    (32, 1024, 256, 256),
    (32, 64, 256, 256),
    (32, 4096, 256, 256),
    (32, 1024, 128, 128),
    (64, 1024, 512, 512),
    (16, 1024, 256, 256),
    (32, 1024, 256, 32),
]
QUICK_CASES = CASES[:1] + CASES[-1:]


def training_step(module, x):
    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = module(x)
        out.sum().backward()

    return step


def training_implementations(B, T, H, I):
    torch.manual_seed(0)
    x = torch.randn(T, B, I, requires_grad=True)
    return {
        "minGRU": training_step(grukit.MinGRU(I, H), x),
        "minGRU (torch)": training_step(grukit.MinGRU(I, H, backend="torch"), x),
        "GRU grukit": training_step(grukit.GRU(I, H), x),
        "torch.nn.GRU": training_step(torch.nn.GRU(I, H), x),
    }


def bandwidth(elements: int) -> dict:
    """GB/s of copying ``elements`` floats into a buffer that exists (the floor's rate) and into a
    fresh one (``clone``: page faults included)."""
    src, dst = torch.ones(elements), torch.empty(elements)
    times = measure({"copy": lambda: dst.copy_(src), "clone": lambda: src.clone()}, rounds=7)
    return {name: 2 * elements * 4 / seconds / 1e9 for name, seconds in times.items()}


def scan_against_floor(B, T, H, rounds):
    k, h0, d_h = torch.randn(T, B, 2 * H), torch.zeros(B, H), torch.randn(T, B, H)
    h = cpu_fused.min_gru_scan(k, h0)
    times = measure(
        {
            "forward": lambda: cpu_fused.min_gru_scan(k, h0),
            "backward": lambda: torch.ops.grukit.min_gru_scan_backward(d_h, h, k, h0),
        },
        rounds,
    )
    rates = bandwidth(3 * T * B * H)
    rows = []
    for name, arrays in (("forward", 3), ("backward", 6)):
        floor = arrays * T * B * H * 4 / (rates["copy"] * 1e9)
        rows.append((name, times[name], floor))
    return rows, rates


def log_space_scan(k, h0):
    """The paper's scan in log space (Heinsen 2023, as Feng et al. 2024 train it): log h_t =
    a*_t + logcumsumexp_s(log b_s - a*_s), a*_t = sum_{s <= t} log(1 - z_s), b_0 carrying h0 (> 0)."""
    k_z, k_h = k.chunk(2, dim=-1)
    log_one_minus_z = -torch.nn.functional.softplus(k_z)
    log_z = -torch.nn.functional.softplus(-k_z)
    log_candidate = torch.where(k_h >= 0, (torch.relu(k_h) + 0.5).log(), -torch.nn.functional.softplus(-k_h))
    a_star = torch.cumsum(log_one_minus_z, dim=0)
    log_b = torch.cat([h0.log().unsqueeze(0), log_z + log_candidate])
    a_star = torch.cat([torch.zeros_like(h0).unsqueeze(0), a_star])
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=0))[1:]


def accuracy(T=100_000, B=2, H=16):
    """Largest |h - h_float64| over T steps in float32, for the three ways of computing the scan."""
    g = torch.Generator().manual_seed(0)
    k = torch.randn(T, B, 2 * H, generator=g) * 2
    h0 = torch.rand(B, H, generator=g) + 0.1  # positive, as the log-space scan needs
    exact = torch.from_numpy(min_gru_reference.scan_forward(k.double().numpy(), h0.double().numpy()))
    return {
        "sequential (fused CPU kernel)": (cpu_fused.min_gru_scan(k, h0).double() - exact).abs().max().item(),
        "recursive doubling (torch ops)": (torch_ops.min_gru_scan(k, h0).double() - exact).abs().max().item(),
        "log space (the paper's)": (log_space_scan(k, h0).double() - exact).abs().max().item(),
    }


def streaming(H, steps=200):
    torch.manual_seed(0)
    x = torch.randn(steps, 1, H)
    mingru, gru, cell = grukit.MinGRU(H, H), grukit.GRU(H, H), torch.nn.GRUCell(H, H)
    min_stream, gru_stream = mingru.stream(), gru.stream()

    def loop(step):
        def run():
            with torch.no_grad():
                for t in range(steps):
                    step(x[t])

        return run

    state = {"h": torch.zeros(1, H)}

    def cell_step(xt):
        state["h"] = cell(xt, state["h"])

    times = measure(
        {
            "minGRU stream": loop(min_stream.step),
            "GRU grukit stream": loop(gru_stream.step),
            "torch GRUCell": loop(cell_step),
        },
        rounds=7,
    )
    return {name: seconds / steps for name, seconds in times.items()}


def markdown(training_rows, scan_rows, rates, errors, stream_rows, command) -> str:
    machine = machine_label()
    lines = [
        f"<!-- min-gru: {machine} -->",
        f"## minGRU against the GRU: {machine}, {THREADS} threads",
        "",
        f"`{command}` ({datetime.date.today().isoformat()}, torch {torch.__version__}, kernels built for "
        f"{cpu_fused.build_manifest()['level']}). float32; medians of interleaved rounds; one layer, "
        "forward and backward (input gradients included).",
        "",
        "| B | T | H | I | minGRU | minGRU (torch ops) | GRU grukit | torch.nn.GRU "
        "| GRU grukit / minGRU | torch.nn.GRU / minGRU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (B, T, H, I), t in training_rows:
        lines.append(
            f"| {B} | {T} | {H} | {I} | {fmt(t['minGRU'])} | "
            f"{fmt(t['minGRU (torch)'])} | {fmt(t['GRU grukit'])} | "
            f"{fmt(t['torch.nn.GRU'])} | {t['GRU grukit'] / t['minGRU']:.2f}x | "
            f"{t['torch.nn.GRU'] / t['minGRU']:.2f}x |"
        )
    (B, T, H, _), _ = training_rows[0]
    lines += [
        "",
        f"The scan alone at B {B}, T {T}, H {H}, against the bandwidth floor (copy into an existing buffer: "
        f"{rates['copy']:.1f} GB/s; into a fresh one, `clone()`: {rates['clone']:.1f} GB/s):",
        "",
        "| pass | arrays of T*B*H floats | time | floor | time / floor |",
        "|---|---|---|---|---|",
    ]
    for name, seconds, floor in scan_rows:
        arrays = 3 if name == "forward" else 6
        lines.append(f"| {name} | {arrays} | {fmt(seconds)} | {fmt(floor)} | {seconds / floor:.2f} |")
    lines += [
        "",
        "The scan's float32 error at T = 100,000 (B 2, H 16, largest |h - h_float64|; `accuracy()`):",
        "",
        "| computation | max abs error |",
        "|---|---|",
    ]
    lines += [f"| {name} | {error:.2e} |" for name, error in errors.items()]
    lines += [
        "",
        "Streaming inference, one step per Python call, B 1, I = H (seconds per step):",
        "",
        "| H | minGRU stream | GRU grukit stream | torch GRUCell |",
        "|---|---|---|---|",
    ]
    for H, t in stream_rows:
        lines.append(f"| {H} | {fmt(t['minGRU stream'])} | {fmt(t['GRU grukit stream'])} | {fmt(t['torch GRUCell'])} |")
    lines.append(f"<!-- /min-gru: {machine} -->")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and cases; print only")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if not cpu_fused.load():
        sys.exit(f"the fused CPU kernels are unavailable: {cpu_fused.why_unavailable()}")
    rounds = 3 if args.quick else 7
    training_rows = []
    for B, T, H, I in QUICK_CASES if args.quick else CASES:
        started = time.perf_counter()
        times = measure(training_implementations(B, T, H, I), rounds, target_seconds=0.01)
        training_rows.append(((B, T, H, I), times))
        print(
            f"B{B} T{T} H{H} I{I}: " + ", ".join(f"{n} {fmt(s)}" for n, s in times.items()),
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    B, T, H, _ = CASES[0]
    scan_rows, rates = scan_against_floor(B, T, H, rounds)
    errors = accuracy()
    stream_rows = [(H, streaming(H)) for H in (128, 256)]
    command = "python bench/min_gru_speed.py" + (" --quick" if args.quick else "")
    text = markdown(training_rows, scan_rows, rates, errors, stream_rows, command)
    print(text)
    if not args.quick:
        machine = machine_label()
        write_section(
            ROOT.parent / "BENCHMARKS.md", f"<!-- min-gru: {machine} -->", f"<!-- /min-gru: {machine} -->", text
        )


if __name__ == "__main__":
    main()
