"""Low-precision GRU inference on this CPU: grukit float32, bfloat16 and int8 against every peer at
every precision it offers, with each one's error against float64.

    python bench/low_precision_speed.py            # 2 threads, every case; writes BENCHMARKS.md
    python bench/low_precision_speed.py --quick    # fewer rounds, no file written

Method (as bench/gru_speed.py): one process, 2 threads; for each case every implementation is
warmed up, then they run interleaved, round after round, and each one's median over the rounds is
reported, with its speed-up over grukit float32 measured in the same rounds. Every implementation
runs the same GRU (torch.nn.GRU's form, reset after; random weights) on the same input; its error
is the largest |output - float64 output| over the call.

Implementations:
  torch.nn.GRU          PyTorch's float32 GRU
  torch.ao int8         torch.ao.nn.quantized.dynamic.GRU (int8 weights, FBGEMM; deprecated in torch)
  ort float32           onnxruntime's GRU operator, one-node model (no int8 or bfloat16 GRU there)
  openvino f32 / bf16   OpenVINO on the same ONNX model, INFERENCE_PRECISION_HINT f32 / bf16,
                        INFERENCE_NUM_THREADS = the thread count
  grukit f32 / bf16 / int8   grukit.GRU (fused CPU kernels) and its QuantizedGRU

Streaming: one step per Python call at batch 1 (torch.nn.GRUCell for torch; the peers' models on one
step with the state fed back; grukit's native streams).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grukit  # noqa: E402
from gru_speed import ROOT, build_level, fmt, machine_label, measure, write_section  # noqa: E402
from grukit import convert, quantized  # noqa: E402

THREADS = 2
# torch.ao's quantization functions warn that they move to torchao (which has no GRU): measured anyway
warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*are deprecated.*")
CASES = [  # (label, B, T, H)
    ("B1 T1000 H128", 1, 1000, 128),
    ("B1 T1000 H512", 1, 1000, 512),
    ("B32 T100 H256", 32, 100, 256),
    ("B128 T50 H512", 128, 50, 512),
]
COLUMNS = [
    "torch.nn.GRU",
    "torch.ao int8",
    "ort float32",
    "openvino f32",
    "openvino bf16",
    "grukit f32",
    "grukit bf16",
    "grukit int8",
]


def torch_ao_int8(module: torch.nn.GRU) -> torch.nn.Module:
    """torch.ao's dynamic int8 GRU of ``module`` (quantize_dynamic swaps the children of the module
    it is given, never the module itself: hence the container)."""
    quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {torch.nn.GRU}, dtype=torch.qint8)
    assert type(quantized[0]).__module__.startswith("torch.ao.nn.quantized"), type(quantized[0])
    return quantized[0]


def onnx_gru(module: grukit.GRU, with_state: bool) -> bytes:
    """A one-node ONNX model of ``module`` (reset after): X [T, B, I] (and H0 [1, B, H] with
    ``with_state``) -> Y [T, 1, B, H], Y_h [1, B, H]."""
    from onnx import TensorProto, helper, numpy_helper

    s = convert.layer_state(module)
    W, R, B = convert.torch_to_onnx([(s["w_ih"], s["w_hh"], s["b_ih"], s["b_hh"])])
    H = module.hidden_size
    inputs = ["X", "W", "R", "B"] + (["", "H0"] if with_state else [])
    node = helper.make_node("GRU", inputs, ["Y", "Y_h"], hidden_size=H, linear_before_reset=1)
    feeds = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", module.input_size])]
    if with_state:
        feeds.append(helper.make_tensor_value_info("H0", TensorProto.FLOAT, [1, "B", H]))
    graph = helper.make_graph(
        [node],
        "gru",
        feeds,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h")],
        initializer=[numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((W, "W"), (R, "R"), (B, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    return model.SerializeToString()


def ort_session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see bench/gru_speed.py
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def openvino_request(model: bytes, precision: str):
    """An OpenVINO infer request for the ONNX ``model`` at ``precision`` ("f32" or "bf16"); None
    without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gru.onnx"
        path.write_bytes(model)
        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": str(THREADS)},
        )
    return compiled.create_infer_request()


def peers(module: grukit.GRU, with_state: bool):
    """name -> f(inputs as NumPy arrays) -> (Y, Y_h) for onnxruntime and OpenVINO at each precision."""
    model = onnx_gru(module, with_state)
    session = ort_session(model)
    calls = {"ort float32": lambda feeds: session.run(None, feeds)}
    for precision in ("f32", "bf16"):
        try:
            request = openvino_request(model, precision)
        except RuntimeError as exc:  # e.g. ONEDNN_MAX_CPU_ISA below what its GRU primitive needs
            print(f"openvino {precision}: not measured ({str(exc).strip().splitlines()[-1]})", flush=True)
            continue
        if request is not None:

            def call(feeds, request=request):
                request.infer(feeds)
                return request.get_output_tensor(0).data, request.get_output_tensor(1).data

            calls[f"openvino {precision}"] = call
    return calls


def sequence_implementations(B: int, T: int, H: int):
    """name -> callable running the case once and returning its output [T, B, H]; and each one's
    largest error against float64."""
    torch.manual_seed(0)
    reference = torch.nn.GRU(H, H).eval()
    x = torch.randn(T, B, H)
    ours = grukit.GRU.from_torch(reference, backend="cpu_fused").eval()
    int8, bf16 = ours.quantized("int8"), ours.quantized("bfloat16")
    ao = torch_ao_int8(reference)
    feeds = {"X": x.numpy()}

    def torch_call(module):
        def call():
            with torch.inference_mode():
                return module(x)[0]

        return call

    impls = {"torch.nn.GRU": torch_call(reference), "torch.ao int8": torch_call(ao)}
    for name, peer in peers(ours, with_state=False).items():
        impls[name] = lambda peer=peer: torch.from_numpy(np.array(peer(feeds)[0][:, 0]))
    impls.update({"grukit f32": torch_call(ours), "grukit bf16": torch_call(bf16), "grukit int8": torch_call(int8)})
    with torch.no_grad():
        exact = grukit.GRU.from_torch(reference).double()(x.double())[0]
    errors = {name: float((fn().double() - exact).abs().max()) for name, fn in impls.items()}
    return impls, errors


def streaming_implementations(H: int, steps: int = 100):
    """One step per Python call at batch 1, the state fed back: name -> callable; and each one's
    largest error over ``steps`` steps from zeros against float64."""
    torch.manual_seed(0)
    reference = torch.nn.GRU(H, H).eval()
    cell = torch.nn.GRUCell(H, H)
    cell.load_state_dict({name[: -len("_l0")]: w for name, w in reference.state_dict().items()})
    ao = torch_ao_int8(reference)
    ours = grukit.GRU.from_torch(reference).eval()
    xs = torch.randn(steps, 1, H)
    steppers = {
        "torch.nn.GRU": lambda x, h: cell(x, h),
        "torch.ao int8": lambda x, h: ao(x[None], h[None])[1][0],
    }
    for name, peer in peers(ours, with_state=True).items():
        steppers[name] = lambda x, h, peer=peer: torch.from_numpy(
            np.array(peer({"X": x[None].numpy(), "H0": h[None].numpy()})[1][0])
        )
    streams = {"grukit f32": ours.stream(1), "grukit bf16": ours.quantized("bfloat16").stream(1)}
    streams["grukit int8"] = ours.quantized("int8").stream(1)
    for name, stream in streams.items():
        steppers[name] = lambda x, h, stream=stream: stream.step(x)

    impls, states = {}, {}
    for name, step in steppers.items():
        state = states[name] = {"h": torch.zeros(1, H), "t": 0}

        def call(step=step, state=state):
            with torch.inference_mode():
                state["h"] = step(xs[state["t"] % steps], state["h"])
            state["t"] += 1
            return state["h"]

        impls[name] = call
    with torch.no_grad():
        exact = grukit.GRU.from_torch(reference).double()(xs.double())[0][:, 0]
    errors = {}
    for name, call in impls.items():
        for stream in streams.values():
            stream.reset()
        states[name].update(h=torch.zeros(1, H), t=0)
        outs = torch.stack([call().reshape(-1) for _ in range(steps)])
        errors[name] = float((outs.double() - exact).abs().max())
    return impls, errors


def run(quick: bool):
    torch.set_num_threads(THREADS)
    rounds = 5 if quick else 11
    rows = []
    for label, B, T, H in CASES:
        impls, errors = sequence_implementations(B, T, H)
        rows.append((label, measure(impls, rounds), errors))
        print(label, ", ".join(f"{k} {fmt(v)}" for k, v in rows[-1][1].items()), flush=True)
    for H in (128, 512):
        impls, errors = streaming_implementations(H)
        label = f"stream step B1 H{H}"
        rows.append((label, measure(impls, rounds, target_seconds=0.01), errors))
        print(label, ", ".join(f"{k} {fmt(v)}" for k, v in rows[-1][1].items()), flush=True)
    return rows


def table(rows) -> str:
    """Per case: each implementation's time, its speed-up over grukit float32 and its largest error."""
    out = ["| case | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, times, errors in rows:
        base = times["grukit f32"]
        cells = [
            f"{fmt(times[c])} ({base / times[c]:.2f}x; err {errors[c]:.0e})" if c in times else "-" for c in COLUMNS
        ]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def instructions_line() -> str:
    return (
        f"grukit's kernels built for {build_level()}; int8 products: {quantized.instructions('int8')}; "
        f"bfloat16 products: {quantized.instructions('bfloat16')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds; print only, BENCHMARKS.md unchanged")
    args = parser.parse_args()
    rows = run(args.quick)
    machine = machine_label()
    text = "\n".join(
        [
            f"<!-- low-precision: {machine} -->",
            f"### Low-precision inference: {machine}, {THREADS} threads",
            "",
            f"Measured {datetime.date.today()} by `python bench/low_precision_speed.py`; {instructions_line()}. "
            "Each cell: median time (speed-up over grukit f32 in the same rounds; largest |error| of the "
            "output against float64).",
            "",
            table(rows),
            f"<!-- /low-precision: {machine} -->",
        ]
    )
    print(text)
    if not args.quick:
        write_section(
            ROOT / "BENCHMARKS.md", f"<!-- low-precision: {machine} -->", f"<!-- /low-precision: {machine} -->", text
        )


if __name__ == "__main__":
    main()
