"""Matrix-product routines chosen by measurement: every routine is right, the choice is cached per machine.

The kernels' float32 products can run on four routines (csrc/gemm.h; the fourth, grukit's own one-row
kernel, is a candidate for one-row products only); a machine uses the fastest
per kind of product. Each routine is checked here against the float64 oracle on shapes that
exercise every kind of product (one-row, per-step, all-steps and weight-gradient products, with
tiles cut in M, N and K), forward and gradients.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from grukit.backends import cpu_fused, gemm_choice
from grukit.functional import gru
from oracle import oracle_layer, random_weights

pytestmark = pytest.mark.skipif(
    not cpu_fused.is_available(), reason=f"fused backend unavailable: {cpu_fused.why_unavailable()}"
)


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


# float32 against float64 differs by about 3e-7 relative (norm). B=1: one-row products; B=20 at
# T=8: 160 rows for the input projection (cut by 128-row tiles); H=300: 3H=900 columns cut by
# 256-column tiles and K=300 cut by 256-deep tiles
@pytest.mark.parametrize("routine", gemm_choice.ROUTINES)
@pytest.mark.parametrize("T,B,H", [(8, 20, 300), (5, 1, 40)], ids=["tiled", "one-row"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_every_routine_matches_the_oracle_in_float32(routines, routine, T, B, H, reset_after):
    routines(routine)
    rng = np.random.default_rng(H)
    I = 270
    weights = random_weights(rng, I, H, scale=0.05)
    x = rng.normal(size=(T, B, I))
    h0 = rng.normal(size=(1, B, H))
    d_out = rng.normal(size=(T, B, H))
    out_ref, hn_ref, backward = oracle_layer(x, h0[0], weights, None, False, reset_after, "keeps_state")
    grads_ref = backward(d_out, np.zeros((B, H)))
    tw = [torch.tensor(w, dtype=torch.float32, requires_grad=True) for w in weights]
    tx = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    out, hn = gru(tx, [tuple(tw)], torch.tensor(h0, dtype=torch.float32), reset_after=reset_after, backend="cpu_fused")
    out.backward(torch.tensor(d_out, dtype=torch.float32))
    assert _relative_error(out.detach().double().numpy(), out_ref) < 1e-6
    assert _relative_error(tx.grad.double().numpy(), grads_ref["x"]) < 1e-6
    for w, name in zip(tw, ["w_ih", "w_hh", "b_ih", "b_hh"]):
        assert _relative_error(w.grad.double().numpy(), grads_ref[name]) < 1e-6, name


def test_choose_takes_the_fastest_per_kind_and_the_preferred_within_noise():
    timings = {
        "recurrent": {"blas": [20.0, 1100.0], "brgemm": [7.6, 507.0], "brgemm_row_tiled": [7.4, 495.0]},
        "row": {"blas": [2.1, 38.0], "brgemm": [2.2, 51.0], "brgemm_row_tiled": [2.2, 50.0]},
        "projection": {"blas": [40.0, 380.0], "brgemm": [14.0, 190.0], "brgemm_row_tiled": [15.0, 150.0]},
        "weight_gradient": {"blas": [9.0, 100.0], "brgemm": [10.0, 120.0]},
    }
    assert gemm_choice.choose(timings) == {
        "recurrent": "brgemm",  # 3 % apart: noise, so the preferred one
        "row": "blas",
        "projection": "brgemm_row_tiled",  # geometric means 1.035 vs brgemm's 1.125
        "weight_gradient": "blas",
    }


@pytest.fixture
def rows_timed_by_the_fake(monkeypatch):
    """One-row products are timed inside a real layer forward; with a fake extension, by its table."""

    def fake(extension, routine, H, repeats):
        return extension.gemm_seconds(gemm_choice.ROUTINES.index(routine), 1, 3 * H, H, 1, repeats)

    monkeypatch.setattr(gemm_choice, "_batch_one_layer_seconds", fake)


class FakeExtension:
    """Records what configure() sets; times every routine alike except the one made fastest."""

    def __init__(self, fastest="blas", brgemm=True):
        self.fastest, self.brgemm, self.set_to, self.timed = fastest, brgemm, None, 0

    def brgemm_works(self):
        return self.brgemm

    def gemm_seconds(self, routine, M, N, K, calls, repeats):
        self.timed += 1
        return 1e-3 if gemm_choice.ROUTINES[routine] == self.fastest else 2e-3

    def set_gemm_routines(self, routines):
        self.set_to = [gemm_choice.ROUTINES[r] for r in routines]


def test_choice_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch, rows_timed_by_the_fake):
    monkeypatch.delenv("GRUKIT_GEMM", raising=False)
    first = FakeExtension("brgemm_row_tiled")
    result = gemm_choice.configure(first, tmp_path)
    assert result["source"] == "measured" and first.set_to == ["brgemm_row_tiled"] * 4
    assert first.timed == sum(len(gemm_choice.CANDIDATES[k]) * len(s) for k, s in gemm_choice.SHAPES.items())
    record = json.loads((tmp_path / result["file"]).read_text())
    assert record["machine"] == gemm_choice.machine_identity()
    second = FakeExtension("blas")
    again = gemm_choice.configure(second, tmp_path)
    assert again["source"] == "cached" and second.timed == 0 and second.set_to == ["brgemm_row_tiled"] * 4


def test_another_machine_identity_measures_again(tmp_path, monkeypatch, rows_timed_by_the_fake):
    monkeypatch.delenv("GRUKIT_GEMM", raising=False)
    gemm_choice.configure(FakeExtension("brgemm"), tmp_path)
    other_isa = "AVX" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other_isa)  # the libraries now run other code
    other = FakeExtension("blas")
    result = gemm_choice.configure(other, tmp_path)
    assert result["source"] == "measured" and other.set_to == ["blas"] * 4
    assert len(list(tmp_path.glob("gemm-*.json"))) == 2


def test_environment_forces_a_routine_or_a_new_measurement(tmp_path, monkeypatch, rows_timed_by_the_fake):
    monkeypatch.setenv("GRUKIT_GEMM", "blas")
    forced = FakeExtension("brgemm")
    assert gemm_choice.configure(forced, tmp_path)["source"] == "$GRUKIT_GEMM"
    assert forced.set_to == ["blas"] * 4 and forced.timed == 0
    monkeypatch.setenv("GRUKIT_GEMM", "measure")
    gemm_choice.configure(FakeExtension("brgemm"), tmp_path)
    remeasured = FakeExtension("blas")
    assert gemm_choice.configure(remeasured, tmp_path)["source"] == "measured" and remeasured.timed > 0
    monkeypatch.setenv("GRUKIT_GEMM", "mkl")
    expected = (
        r"GRUKIT_GEMM must be one of auto, measure, blas, brgemm, brgemm_row_tiled, row_kernel \(or unset\), got 'mkl'"
    )
    with pytest.raises(ValueError, match=expected):
        gemm_choice.configure(FakeExtension(), tmp_path)


def test_without_brgemm_only_blas_is_timed(tmp_path, monkeypatch, rows_timed_by_the_fake):
    monkeypatch.delenv("GRUKIT_GEMM", raising=False)
    extension = FakeExtension("brgemm", brgemm=False)
    result = gemm_choice.configure(extension, tmp_path)
    assert extension.set_to == ["blas"] * 3 + ["row_kernel"]  # a tie: grukit's own kernel is preferred
    assert [list(t) for t in result["timings"].values()] == [["blas"]] * 3 + [["blas", "row_kernel"]]


def test_a_choice_cached_among_other_candidates_is_measured_again(tmp_path, monkeypatch, rows_timed_by_the_fake):
    monkeypatch.delenv("GRUKIT_GEMM", raising=False)
    path = Path(gemm_choice.configure(FakeExtension("blas"), tmp_path)["file"])
    record = json.loads(path.read_text())
    record["candidates"]["row"] = ["blas", "brgemm", "brgemm_row_tiled"]  # a cache from before row_kernel
    path.write_text(json.dumps(record))
    again = FakeExtension("row_kernel")
    result = gemm_choice.configure(again, tmp_path)
    assert result["source"] == "measured" and again.set_to[3] == "row_kernel"
    assert json.loads(path.read_text())["candidates"]["row"] == list(gemm_choice.CANDIDATES["row"])


def test_real_measurement_times_every_routine():
    extension = cpu_fused.extension()
    timings = gemm_choice.measure(extension, repeats=1)
    assert set(timings) == set(gemm_choice.PRODUCTS)
    for kind, by_routine in timings.items():
        for routine, seconds in by_routine.items():
            assert len(seconds) == len(gemm_choice.SHAPES[kind]) and all(0 < s < 10 for s in seconds), (kind, routine)
    with pytest.raises(RuntimeError, match="routine must be 0 .. 3, got 4"):
        extension.gemm_seconds(4, 4, 4, 4, 1, 1)
    with pytest.raises(RuntimeError, match="routines must name one routine per product kind"):
        extension.set_gemm_routines([0, 1])
