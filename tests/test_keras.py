"""grukit.keras.GRU against keras.layers.GRU (torch backend): same weights, same numbers."""

import itertools
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

gk = pytest.importorskip("grukit.keras")  # keras is part of the test extra; CI installs it
import keras  # noqa: E402
import torch  # noqa: E402

B, T, I, H = 3, 6, 4, 5


def _pair(weight_seed=0, **kwargs):
    """A keras.layers.GRU and a grukit.keras.GRU with the same config and the same random weights."""
    ref = keras.layers.GRU(H, **kwargs)
    ours = gk.GRU(H, **kwargs)
    x = np.zeros((B, T, I), "float32")
    ref(x)
    ours(x)
    rng = np.random.default_rng(weight_seed)
    weights = [rng.normal(0, 0.5, w.shape).astype("float32") for w in ref.get_weights()]
    ref.set_weights(weights)
    ours.set_weights(weights)
    return ref, ours


def _run(layer, x, G, **call):
    """Outputs and the gradients of sum(G * output) for the inputs and every weight."""
    xt = torch.tensor(x, requires_grad=True)
    for v in layer.trainable_variables:
        v.value.grad = None
    result = layer(xt, **call)
    outs = list(result) if isinstance(result, (list, tuple)) else [result]
    loss = sum((o * torch.tensor(g)).sum() for o, g in zip(outs, G))
    loss.backward()
    return [o.detach().numpy() for o in outs], [xt.grad.numpy()] + [
        v.value.grad.numpy() for v in layer.trainable_variables
    ]


def _assert_same(ref, ours, x, seed=1, **call):
    with torch.no_grad():
        shapes = [
            np.shape(o) for o in (ref(x, **call) if isinstance(ref(x, **call), (list, tuple)) else [ref(x, **call)])
        ]
    rng = np.random.default_rng(seed)
    G = [rng.normal(size=s).astype("float32") for s in shapes]
    (o1, g1), (o2, g2) = _run(ref, x, G, **call), _run(ours, x, G, **call)
    for a, b in zip(o1, o2):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


FLAGS = list(itertools.product([True, False], [True, False], [True, False], [True, False]))


@pytest.mark.parametrize("reset_after,return_sequences,return_state,go_backwards", FLAGS)
def test_same_outputs_and_gradients(reset_after, return_sequences, return_state, go_backwards):
    ref, ours = _pair(
        reset_after=reset_after, return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards
    )
    x = np.random.default_rng(2).normal(size=(B, T, I)).astype("float32")
    _assert_same(ref, ours, x)


MASKS = {
    "right-padded": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], bool),
    "left-padded": np.array([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]], bool),
    "empty row": np.array([[0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]], bool),
}


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masks_match_keras(mask_name, reset_after, go_backwards):
    ref, ours = _pair(reset_after=reset_after, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = np.random.default_rng(3).normal(size=(B, T, I)).astype("float32")
    mask = torch.tensor(MASKS[mask_name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these masks must take the fused path: no fallback warning
        _assert_same(ref, ours, x, mask=mask)


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_embedding_mask_zero_and_bidirectional(padding, reset_after):
    tokens = np.array([[5, 3, 9, 2, 0, 0], [7, 1, 0, 0, 0, 0], [4, 4, 4, 4, 4, 4]])
    if padding == "pre":
        tokens = np.array([np.concatenate([r[r > 0][:0], np.zeros((r == 0).sum(), int), r[r > 0]]) for r in tokens])
    models = []
    for GRU in (keras.layers.GRU, gk.GRU):
        keras.utils.set_random_seed(0)
        models.append(
            keras.Sequential(
                [
                    keras.Input((T,), dtype="int32"),
                    keras.layers.Embedding(12, I, mask_zero=True),
                    keras.layers.Bidirectional(GRU(H, reset_after=reset_after, return_sequences=True)),
                    keras.layers.Bidirectional(GRU(H, reset_after=reset_after)),
                    keras.layers.Dense(1),
                ]
            )
        )
    models[1].set_weights(models[0].get_weights())
    np.testing.assert_allclose(
        models[1].predict(tokens, verbose=0), models[0].predict(tokens, verbose=0), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("reset_after", [True, False])
def test_stateful_over_two_batches(reset_after):
    ref, ours = _pair(reset_after=reset_after, stateful=True, return_sequences=True)
    rng = np.random.default_rng(4)
    for layer in (ref, ours):
        layer.reset_state()
    for _ in range(2):
        x = rng.normal(size=(B, T, I)).astype("float32")
        np.testing.assert_allclose(ours(x).detach().numpy(), ref(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.states[0].numpy(), ref.states[0].numpy(), rtol=1e-5, atol=1e-5)
    ours.reset_state()
    assert not ours.states[0].numpy().any()


def test_input_dropout_in_training_matches_keras():
    ref, ours = _pair(dropout=0.4, seed=7, return_sequences=True)
    x = np.random.default_rng(5).normal(size=(B, T, I)).astype("float32")
    a = ref(x, training=True).detach().numpy()
    b = ours(x, training=True).detach().numpy()
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert not np.allclose(a, ref(x, training=False).detach().numpy())


@pytest.mark.parametrize(
    "option,expected",
    [
        ({"activation": "relu"}, "activation='relu'"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation='hard_sigmoid'"),
    ],
)
def test_other_options_fall_back_to_keras_with_one_warning(option, expected):
    gk._warned.clear()
    x = np.random.default_rng(6).normal(size=(B, T, I)).astype("float32")
    with pytest.warns(UserWarning, match=expected):
        ref, ours = _pair(return_sequences=True, **option)
        _assert_same(ref, ours, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours(x)  # said once only


@pytest.mark.parametrize("reset_after", [True, False])
def test_recurrent_dropout_trains_with_keras_per_gate_masks_and_evaluates_fused(reset_after):
    """Keras draws one recurrent mask per gate (and one input mask per gate with it): training
    runs Keras' loop, with one warning, and gives Keras' numbers for the same seed; evaluation
    (no masks) runs fused. Before, the input masks' list crashed the fused loop."""
    options = dict(return_sequences=True, dropout=0.3, recurrent_dropout=0.4, reset_after=reset_after, seed=5)
    ref, ours = _pair(**options)
    x = np.random.default_rng(8).normal(size=(B, T, I)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the fused path takes it
        _assert_same(ref, ours, x)  # evaluation: no dropout, Keras' numbers
    ref, ours = _pair(**options)  # fresh seed generators for both
    gk._warned.clear()
    with pytest.warns(UserWarning, match="one mask per gate"):
        got = ours(x, training=True).detach().numpy()
    want = ref(x, training=True).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # the same seed: the same masks
    assert not np.allclose(got, ours(x, training=False).detach().numpy())  # and they act


def test_mask_with_a_gap_falls_back():
    ref, ours = _pair(return_sequences=True)
    gk._warned.clear()
    x = np.random.default_rng(7).normal(size=(B, T, I)).astype("float32")
    mask = torch.tensor([[1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    with pytest.warns(UserWarning, match="a mask with gaps"):
        _assert_same(ref, ours, x, mask=mask)


def test_summary_parameter_counts_and_keras_file_round_trip(tmp_path):
    counts = []
    for GRU in (keras.layers.GRU, gk.GRU):
        for reset_after in (True, False):
            model = keras.Sequential([keras.Input((T, I)), GRU(H, reset_after=reset_after), keras.layers.Dense(1)])
            counts.append(model.count_params())
    assert counts[:2] == counts[2:] == [3 * (I * H + H * H + 2 * H) + H + 1, 3 * (I * H + H * H + H) + H + 1]
    model = keras.Sequential(
        [
            keras.Input((T, I)),
            gk.GRU(H, reset_after=False, return_sequences=True),
            keras.layers.Bidirectional(gk.GRU(H)),
            keras.layers.Dense(1),
        ]
    )
    x = np.random.default_rng(8).normal(size=(B, T, I)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[0]) is gk.GRU and loaded.layers[0].reset_after is False
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert [w.name for w in model.layers[0].weights] == ["kernel", "recurrent_kernel", "bias"]


def test_another_active_backend_gives_a_clear_error():
    # only torch is installed here (Keras' numpy backend needs jax), so Keras is made to report
    # another active backend; grukit.keras must refuse it with instructions
    code = "import keras; keras.backend.backend = lambda: 'numpy'; import grukit.keras"
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "grukit.keras needs Keras' torch backend, but Keras is running on 'numpy'" in done.stderr
    assert "KERAS_BACKEND=torch" in done.stderr


def test_import_selects_torch_when_no_backend_is_set():
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = "import grukit.keras, keras; print(keras.backend.backend())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "torch", done.stderr


def test_integer_input_is_accepted_as_keras_accepts_it():
    ref, ours = _pair(return_sequences=True)
    x = np.random.default_rng(3).integers(-2, 3, size=(B, T, I)).astype("int32")
    want = ref(x).detach().numpy()
    got = ours(x)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_a_mask_of_the_wrong_length_is_refused_naming_the_shape():
    _, ours = _pair()
    x = np.random.default_rng(3).normal(size=(B, T, I)).astype("float32")
    with pytest.raises(ValueError, match=r"mask must have shape \[batch, timesteps\]"):
        ours(x, mask=np.ones((B, T - 1), bool))  # Keras' own GRU fails too (IndexError); before, a silent result
