"""ONNX export checked in onnxruntime against grukit, every configuration, several batch sizes and lengths."""

import itertools

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import grukit  # noqa: E402
from grukit.apps.cli import main  # noqa: E402
from grukit.apps.tasks.model_files import load  # noqa: E402
from grukit.export import to_onnx  # noqa: E402

CONFIGS = list(itertools.product([1, 2], [False, True], [True, False], ["keeps_state", "takes_candidate"]))


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("layers,bidirectional,reset_after,update_gate", CONFIGS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_gru_export_matches_onnxruntime(tmp_path, layers, bidirectional, reset_after, update_gate, batch_first):
    torch.manual_seed(layers * 8 + bidirectional * 4 + reset_after * 2 + batch_first)
    gru = grukit.GRU(
        3,
        6,
        num_layers=layers,
        bidirectional=bidirectional,
        reset_after=reset_after,
        update_gate=update_gate,
        batch_first=batch_first,
    )
    D = 2 if bidirectional else 1
    full = _session(to_onnx(gru, str(tmp_path / "full.onnx"), initial_state=True, sequence_lens=True))
    plain = _session(to_onnx(gru, str(tmp_path / "plain.onnx")))
    for B, T in ((1, 1), (2, 5), (5, 9)):  # one export, several batch sizes and lengths
        x = torch.randn(B, T, 3) if batch_first else torch.randn(T, B, 3)
        h0 = torch.randn(layers * D, B, 6)
        lengths = torch.randint(1, T + 1, (B,))
        want, want_h = grukit.gru(
            x,
            gru.layer_weights(),
            h0,
            lengths=lengths,
            batch_first=batch_first,
            bidirectional=bidirectional,
            reset_after=reset_after,
            update_gate=update_gate,
        )
        out, h_n = full.run(None, {"input": x.numpy(), "h0": h0.numpy(), "lengths": lengths.int().numpy()})
        np.testing.assert_allclose(out, want.detach().numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(h_n, want_h.detach().numpy(), atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            want, want_h = gru(x)
        out, h_n = plain.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(out, want.numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(h_n, want_h.numpy(), atol=1e-5, rtol=1e-5)


def test_linear_before_reset_follows_reset_after(tmp_path):
    import onnx

    for reset_after, expected in ((True, 1), (False, 0)):
        model = onnx.load(to_onnx(grukit.GRU(2, 3, reset_after=reset_after), str(tmp_path / "g.onnx")))
        (node,) = [n for n in model.graph.node if n.op_type == "GRU"]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["linear_before_reset"] == expected


def test_torch_nn_gru_exports_too(tmp_path):
    ref = torch.nn.GRU(3, 4, num_layers=2)
    session = _session(to_onnx(ref, str(tmp_path / "t.onnx")))
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        want, _ = ref(x)
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], want.numpy(), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "weather"])
def test_task_models_export_through_the_cli(tmp_path, task):
    model_path, onnx_path = str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")
    assert 0 == main(
        [
            "train",
            task,
            "--epochs",
            "1",
            "--limit",
            "300",
            "--quiet",
            "--hidden",
            "12",
            "--layers",
            "2",
            "--output",
            model_path,
        ]
    )
    assert main(["export", model_path, onnx_path]) == 0
    saved = load(model_path)
    session = _session(onnx_path)
    from grukit.apps.tasks import TASKS

    model = TASKS[task].load(saved)
    if task == "sentiment":
        for texts in (["a fine film"], ["a joyous, moving and very funny film", "dull", "the plot is a mess"]):
            ids, lengths = __import__("grukit.apps.datasets.reviews", fromlist=["encode"]).encode(
                texts, saved["vocab"], saved["max_len"]
            )
            got = session.run(None, {"ids": ids, "lengths": lengths})[0]
            with torch.no_grad():
                want = torch.sigmoid(model(torch.from_numpy(ids), torch.from_numpy(lengths))).numpy()
            np.testing.assert_allclose(got, want, atol=1e-5)
    else:  # the graph takes the features in their own units and returns deg C: the scaling is inside
        from grukit.apps.tasks import forecast

        mean = np.array(saved["scaling"]["mean"], np.float32)
        std = np.array(saved["scaling"]["std"], np.float32)
        for B in (1, 4):
            x = (mean + std * np.random.default_rng(B).normal(size=(B, 14, 3))).astype(np.float32)
            with torch.no_grad():
                want = model(torch.from_numpy((x - mean) / std)).numpy() * std[0] + mean[0]
            np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-4)
        data, _ = forecast.load_data("weather")
        last_window = data.values[-14:].astype(np.float32)[None]
        tomorrow = forecast.predict(saved, 1)[0]["value"]  # what `grukit predict MODEL --days 1` prints
        np.testing.assert_allclose(session.run(None, {"x": last_window})[0], [tomorrow], atol=1e-3)


@pytest.mark.parametrize("reset_after", [True, False])
def test_torch_export_with_dynamic_batch_and_length(reset_after):
    gru = grukit.GRU(3, 5, num_layers=2, bidirectional=True, reset_after=reset_after)
    x = torch.randn(4, 2, 3)
    exported = torch.export.export(
        gru, (x,), dynamic_shapes=({0: torch.export.Dim("time"), 1: torch.export.Dim("batch")},)
    )
    assert any("grukit.gru_layer_fwd" in str(n.target) for n in exported.graph.nodes)  # the fused op, not a trace of it
    for shape in ((4, 2, 3), (9, 5, 3)):
        x = torch.randn(*shape)
        for a, b in zip(exported.module()(x), gru(x)):
            torch.testing.assert_close(a, b)
