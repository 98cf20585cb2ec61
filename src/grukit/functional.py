"""``gru(...)``: the single entry point every grukit front end calls.

It validates every argument (errors name the argument, the expected and the
received value), handles empty inputs, stacks layers and directions, and hands
each layer to a backend (see ``grukit.backends``). The math of one step is in
``grukit.reference``.

Conventions decided here, for every backend:

* Empty input. A batch of 0 sequences, or sequences of 0 steps (T = 0), is
  valid: the output is an empty tensor of the right shape and the final state
  is the initial state (zeros if none given). A GRU that runs zero steps does
  not change its state.
* Lengths. ``lengths[b]`` may be anything in 0..T and need not be sorted.
  Output steps at or past a sequence's length are 0; the final state of a
  sequence is its state after its last valid step (its initial state if its
  length is 0). The reverse direction runs over each sequence's own valid
  steps, last to first, as ``torch.nn.GRU`` does on packed sequences.
* NaN and Inf are not checked for (that would cost a pass over the data and a
  device sync). They propagate through the arithmetic of the sequence they are
  in and never into other sequences of the batch. Input steps past a
  sequence's length are never read, so NaN padding is harmless, in the output
  and in the gradients.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import backends
from .backends.layer_options import LayerOptions, padded_weights
from .backends.masks import ZoneoutDraw
from .validation import (
    KEEPS_STATE,
    autocast_on,
    check_bool,
    check_dropout,
    check_lengths,
    check_regularisers,
    check_tensor,
    check_update_gate,
    shape_text,
)

LayerWeights = Tuple[Tensor, ...]  # (w_ih, w_hh) or (w_ih, w_hh, b_ih, b_hh)


def _check_weights(weights, I: int, D: int, bidirectional: bool, like: Tensor):
    """Validate ``weights`` for input size I and D directions; returns (L, H, 4-tuples with None biases)."""
    if isinstance(weights, Tensor) or not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError("weights must be a non-empty list of (w_ih, w_hh[, b_ih, b_hh]) tuples")
    if len(weights) % D:
        raise ValueError(f"weights must hold {D} tuples per layer (bidirectional={bidirectional}), got {len(weights)}")
    L = len(weights) // D
    first = weights[0]
    if not isinstance(first, (list, tuple)) or len(first) not in (2, 4):
        raise TypeError("weights[0] must be a tuple (w_ih, w_hh) or (w_ih, w_hh, b_ih, b_hh)")
    if not isinstance(first[1], Tensor) or first[1].dim() != 2:
        raise TypeError("weights[0][1] (w_hh) must be a 2-D torch.Tensor [3H, H]")
    H = first[1].shape[1]
    has_bias = len(first) == 4
    clean = []
    for k, w in enumerate(weights):
        layer = k // D
        if not isinstance(w, (list, tuple)) or len(w) != len(first):
            raise ValueError(f"weights[{k}] must be a tuple of {len(first)} tensors like weights[0], got {w!r:.80}")
        in_size = I if layer == 0 else D * H
        # w_hh first: H is read from it, so its error is the one that explains a wrong H
        check_tensor(f"weights[{k}][1] (w_hh of layer {layer})", w[1], (3 * H, H), like)
        check_tensor(f"weights[{k}][0] (w_ih of layer {layer})", w[0], (3 * H, in_size), like)
        if has_bias:
            check_tensor(f"weights[{k}][2] (b_ih of layer {layer})", w[2], (3 * H,), like)
            check_tensor(f"weights[{k}][3] (b_hh of layer {layer})", w[3], (3 * H,), like)
            clean.append(tuple(w))
        else:
            clean.append((w[0], w[1], None, None))
    return L, H, clean


_FLAGS = ("batch_first", "bidirectional", "reset_after", "training")


def _check_options(options: dict) -> None:
    """The options a caller named (those left out keep the function's defaults, valid as they are)."""
    for name in _FLAGS:
        if name in options:
            check_bool(name, options[name])
    if "update_gate" in options:
        check_update_gate(options["update_gate"])
    if "dropout" in options:
        check_dropout(options["dropout"])


def _in_the_weights_dtype(run, input_name: str, weights_at: int):
    """``run`` (a GRU call: its input first, the weights at position ``weights_at``, then hx), computed
    in the weights' dtype under ``torch.autocast`` when the input's differs (:func:`_autocast_compute_dtype`),
    with the results in the input's dtype. Only the input and hx are converted; every option passes
    through as given, so no option is named twice."""

    @functools.wraps(run)
    def call(*args, **options):
        given = args[0] if args else options.get(input_name)
        if not isinstance(given, Tensor) or not autocast_on(given.device.type):
            return run(*args, **options)  # the common path: no autocast, nothing copied
        weights = args[weights_at] if len(args) > weights_at else options.get("weights")
        dtype = _autocast_compute_dtype(given, weights) if given.dtype.is_floating_point else None
        if dtype is None:
            return run(*args, **options)
        args = list(args)
        if args:
            args[0] = given.to(dtype)
        else:
            options[input_name] = given.to(dtype)
        hx_at = weights_at + 1
        if len(args) > hx_at:
            args[hx_at] = args[hx_at].to(dtype) if isinstance(args[hx_at], Tensor) else args[hx_at]
        elif isinstance(options.get("hx"), Tensor):
            options["hx"] = options["hx"].to(dtype)
        out, h_n = run(*args, **options)
        return out.to(given.dtype), h_n.to(given.dtype)

    return call


def _options_checked_first(run, name: str):
    """The public entry point ``name``: ``run`` behind a check of the options its caller names.
    A module, whose options were checked when it was made, calls ``run`` itself."""

    @functools.wraps(run)
    def entry(*args, **options):
        _check_options(options)
        return run(*args, **options)

    entry.__name__ = entry.__qualname__ = name
    return entry


def _check_regularisers(layer_norm, zoneout, recurrent_dropout, count: int, H: int, like: Tensor):
    """Validate the regulariser options; returns layer_norm as a list of ``count`` 4-tuples (or Nones)."""
    check_regularisers(zoneout, recurrent_dropout)
    if layer_norm is None:
        return [None] * count
    if isinstance(layer_norm, Tensor) or not isinstance(layer_norm, (list, tuple)) or len(layer_norm) != count:
        raise ValueError(
            f"layer_norm must hold one (gamma_ih, beta_ih, gamma_hh, beta_hh) tuple per layer and "
            f"direction ({count}), got {layer_norm!r:.80}"
        )
    for k, ln in enumerate(layer_norm):
        if not isinstance(ln, (list, tuple)) or len(ln) != 4:
            raise ValueError(f"layer_norm[{k}] must be a tuple (gamma_ih, beta_ih, gamma_hh, beta_hh)")
        for name, t in zip(("gamma_ih", "beta_ih", "gamma_hh", "beta_hh"), ln):
            check_tensor(f"layer_norm[{k}] ({name})", t, (3 * H,), like)
    return [tuple(ln) for ln in layer_norm]


def _regularisers(
    layer_norm_k, zoneout: float, recurrent_dropout: float, training: bool, B: int, H: int, like: Tensor
) -> dict:
    """The layer-norm, zoneout and recurrent-dropout arguments of one layer-direction's backend call.

    Training: zoneout as a ``ZoneoutDraw`` (the backend draws a fresh 0/1 mask per step and
    unit, 1 = keep h_{t-1}, in the layout of the layer's input rows) and
    one recurrent-dropout mask [B, H] (0 or 1/(1-p)) for the whole sequence. Evaluation: zoneout
    becomes its expected value (the probability itself), recurrent dropout nothing.
    """
    options = {} if layer_norm_k is None else {"layer_norm": layer_norm_k}
    if zoneout:
        options["zoneout"] = ZoneoutDraw.new(zoneout) if training else float(zoneout)
    if recurrent_dropout and training:
        keep = 1.0 - float(recurrent_dropout)
        options["recurrent_mask"] = (torch.rand(B, H, device=like.device) < keep).to(like.dtype) / keep
    return options


def _empty_graph_anchor(tensors) -> Optional[Tensor]:
    """A scalar 0 that depends on every tensor that requires grad (the sum of an empty slice of
    each, so NaN or Inf in them cannot leak into it), or None when autograd has nothing to record."""
    needing = [t for t in tensors if isinstance(t, Tensor) and t.requires_grad]
    if not needing or not torch.is_grad_enabled():
        return None
    return sum(t.reshape(-1)[:0].sum() for t in needing)


def _autocast_compute_dtype(input: Tensor, weights) -> Optional[torch.dtype]:
    """Under ``torch.autocast`` for the input's device, an input whose dtype differs from the
    weights' (say bfloat16 input, float32 weights) is computed in the weights' dtype and the
    results are returned in the input's: the dtypes torch.nn.GRU returns there, with float32
    accuracy. None when no such conversion applies (then mixed dtypes are an error)."""
    if not autocast_on(input.device.type):
        return None
    try:
        weight = weights[0][0]
    except (TypeError, IndexError, KeyError):
        return None  # malformed weights: validation below says what is wrong
    if not isinstance(weight, Tensor) or not weight.dtype.is_floating_point or weight.dtype == input.dtype:
        return None
    return weight.dtype


def _variant(reset_after, update_gate, layer_norm, zoneout, recurrent_dropout) -> backends.Variant:
    """What the call computes, for choosing a backend (validated before)."""
    return backends.Variant(
        reset_after=reset_after,
        keeps_state=update_gate == KEEPS_STATE,
        layer_norm=layer_norm is not None,
        zoneout=bool(zoneout),
        recurrent_dropout=bool(recurrent_dropout),
    )


def _tensors(hx: Optional[Tensor], weights: Sequence[LayerWeights], layer_norm) -> list:
    """The call's tensors besides the input: hx, every weight and layer-norm gain and bias (for
    :func:`backends.select`)."""
    return [hx, *(t for group in (*weights, *layer_norm) if group for t in group)]


def check_batch_sizes(batch_sizes: Tensor, rows: int) -> int:
    """B, the number of sequences of a PackedSequence with ``batch_sizes`` [T] over ``rows`` steps
    in all, after checking that the sizes are non-empty, positive, non-increasing and sum to ``rows``."""
    if batch_sizes.numel() == 0 or int(batch_sizes.min()) < 1 or bool((batch_sizes[1:] > batch_sizes[:-1]).any()):
        raise ValueError("batch_sizes must be non-empty, positive and non-increasing")
    if int(batch_sizes.sum()) != rows:
        raise ValueError(f"batch_sizes sum to {int(batch_sizes.sum())} but data has {rows} rows")
    return int(batch_sizes[0])


@torch.library.custom_op("grukit::packed_batch", mutates_args=())
def _packed_batch(batch_sizes: Tensor, rows: int) -> Tensor:
    """:func:`check_batch_sizes` as an operator, for ``torch.compile``: an empty [B] tensor, so that
    B reaches the graph as a size rather than as a value read out of a tensor (which would break
    ``fullgraph=True``). The checks run on the real sizes each time the compiled graph runs."""
    return batch_sizes.new_empty((check_batch_sizes(batch_sizes, rows),), dtype=torch.uint8)


@_packed_batch.register_fake
def _packed_batch_fake(batch_sizes: Tensor, rows: int) -> Tensor:
    return batch_sizes.new_empty((torch.library.get_ctx().new_dynamic_size(),), dtype=torch.uint8)


def packed_batch_size(batch_sizes: Tensor, rows: int):
    """B for a PackedSequence's ``batch_sizes`` [T] (CPU) over ``rows`` packed steps, checked
    (:func:`check_batch_sizes`); while ``torch.compile`` traces, a size the graph computes at run time."""
    if torch.compiler.is_compiling():
        return _packed_batch(batch_sizes, rows).shape[0]
    return check_batch_sizes(batch_sizes, rows)


def call_scope(backend):
    """The context one whole call runs in on ``backend``: its ``call_scope()`` where it has that
    capability (the fused CPU kernels: a call after calls that lost time to another process runs on
    one thread, torch's operations around the layers included), else nothing; nothing either while
    torch.compile traces the call (the compiled graph runs its operators as it finds them)."""
    if torch.compiler.is_compiling() or not hasattr(backend, "call_scope"):
        return contextlib.nullcontext()
    return backend.call_scope()


def stack_layers(run_layer, x, hx, weights, L, D, B, H, feature_dim, dropout, training):
    """Run L layers of D directions: each layer's directions see the previous layer's output
    (directions concatenated along ``feature_dim``), with dropout between layers when training.

    ``run_layer(layer_input, h0 [B, H], weights_k, reverse) -> (output, h_last [B, H])``.
    Returns the last layer's output and the final states stacked as [L*D, B, H].
    """
    finals = []
    layer_input = x
    for layer in range(L):
        outs = []
        for direction in range(D):
            k = layer * D + direction
            h0 = hx[k] if hx is not None else x.new_zeros(B, H)
            out, h_last = run_layer(layer_input, h0, weights[k], direction == 1)
            outs.append(out)
            finals.append(h_last)
        layer_input = outs[0] if D == 1 else torch.cat(outs, dim=feature_dim)
        if dropout and training and layer < L - 1:
            layer_input = torch.nn.functional.dropout(layer_input, p=float(dropout), training=True)
    return layer_input, torch.stack(finals, 0)


def gru_with_checked_options(
    input: Tensor,
    weights: Sequence[LayerWeights],
    hx: Optional[Tensor] = None,
    *,
    lengths: Union[Tensor, Sequence[int], None] = None,
    batch_first: bool = False,
    bidirectional: bool = False,
    reset_after: bool = True,
    update_gate: str = KEEPS_STATE,
    dropout: float = 0.0,
    training: bool = False,
    backend: Optional[str] = None,
    layer_norm: Optional[Sequence[Tuple[Tensor, Tensor, Tensor, Tensor]]] = None,
    zoneout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    """Run a (multi-layer, optionally bidirectional) GRU over a batch of sequences.

    Args:
        input: [T, B, I], or [B, T, I] if ``batch_first``. A floating dtype.
        weights: one tuple per layer and direction, in the order of
            ``torch.nn.GRU``'s parameters (layer 0, layer 0 reverse, layer 1, ...).
            Each tuple is ``(w_ih, w_hh, b_ih, b_hh)`` or ``(w_ih, w_hh)`` (no bias):
            w_ih [3H, I_k] (I_0 = I, later layers D*H), w_hh [3H, H], biases [3H].
            Gate order r, z, n, as in ``torch.nn.GRU``.
        hx: [L*D, B, H] initial states (L layers, D = 2 if bidirectional else 1),
            or None for zeros.
        lengths: [B] valid steps per sequence, each in 0..T, any order; None
            means all sequences have T steps. See the module doc.
        batch_first: input and output are [B, T, *] instead of [T, B, *].
        bidirectional: ``weights`` holds a forward and a reverse direction per layer.
        reset_after: True (default): n = tanh(x W_n + b_in + r * (h U_n + b_hn)),
            as PyTorch/cuDNN/Keras. False: n = tanh(x W_n + b_in + (r * h) U_n + b_hn),
            as Cho et al. 2014 v3 (arXiv 1406.1078) and most tutorials.
        update_gate: "keeps_state" (default): h' = z*h + (1-z)*n, as PyTorch/Keras/ONNX.
            "takes_candidate": h' = (1-z)*h + z*n, as Chung et al. 2014 (arXiv 1412.3555).
        dropout: probability of zeroing outputs of each layer but the last
            (only when ``training``), as ``torch.nn.GRU``.
        training: apply ``dropout``.
        backend: "auto", "torch", or another name from ``grukit.backends.names()``;
            None reads $GRUKIT_BACKEND (default "auto").
        layer_norm: None, or one ``(gamma_ih, beta_ih, gamma_hh, beta_hh)`` tuple ([3H] each)
            per layer and direction: the input and recurrent projections are layer-normalised
            (equations: ``grukit.reference.gru_forward``).
        zoneout: probability in [0, 1) that a unit keeps its previous value, drawn per step and
            unit when ``training``; the expected value is used otherwise.
        recurrent_dropout: probability in [0, 1) of dropping a unit of h_{t-1} where it enters the
            recurrent products, one mask per sequence (Keras' meaning), when ``training``.

    Returns:
        output: [T, B, D*H] (or [B, T, D*H]) the last layer's states at every step.
        h_n: [L*D, B, H] every layer's and direction's final state.

    ``gru`` checks the options first; ``gru_with_checked_options`` is the same call for a module
    whose options were checked when it was made.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not input.dtype.is_floating_point:
        raise TypeError(f"input must have a floating dtype (float16/bfloat16/float32/float64), got {input.dtype}")
    if input.dim() != 3:
        layout = "[B, T, I] (batch_first=True)" if batch_first else "[T, B, I] (batch_first=False)"
        raise ValueError(f"input must be 3-D {layout}, got shape {shape_text(input)}")

    x = input.transpose(0, 1) if batch_first else input
    T, B, I = x.shape
    D = 2 if bidirectional else 1
    L, H, clean_weights = _check_weights(weights, I, D, bidirectional, x)
    ln = _check_regularisers(layer_norm, zoneout, recurrent_dropout, L * D, H, x)
    if hx is not None:
        check_tensor("hx", hx, (L * D, B, H), x)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T, x.device)
        if B and int(lengths.min()) == T:
            lengths = None  # every sequence is full: no masking needed
    chosen = backends.select(
        x,
        backend,
        _variant(reset_after, update_gate, layer_norm, zoneout, recurrent_dropout),
        H,
        _tensors(hx, clean_weights, ln),
    )

    # ---- empty input: zero steps leave the state unchanged ---------------
    if T == 0 or B == 0 or H == 0:
        h_n = hx.clone() if hx is not None else x.new_zeros(L * D, B, H)  # a new tensor, as torch.nn.GRU
        out = x.new_zeros(T, B, D * H)
        anchor = _empty_graph_anchor([x, hx] + [t for w in clean_weights for t in w] + [t for g in ln if g for t in g])
        if anchor is not None:  # backward through an empty result works, as torch.nn.GRU's: zero gradients
            out, h_n = out + anchor, h_n + anchor
        return (out.transpose(0, 1) if batch_first else out), h_n

    # steps past a sequence's length are never read (NaN padding stays out of gradients)
    if lengths is not None:
        valid = torch.arange(T, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)
        x = torch.where(valid.unsqueeze(2), x, torch.zeros((), dtype=x.dtype, device=x.device))

    # ---- layers and directions ------------------------------------------
    if hasattr(chosen, "gru_network"):  # the backend runs the whole stack in one call
        output, h_n = chosen.gru_network(x, hx, clean_weights, L, bidirectional, lengths, dropout, training)
        return (output.transpose(0, 1) if batch_first else output), h_n

    def run_layer(layer_input, h0, weights_k, reverse):
        weights_k, ln_k = weights_k
        extra = _regularisers(ln_k, zoneout, recurrent_dropout, training, B, H, x)
        options = LayerOptions(reverse, reset_after, update_gate == KEEPS_STATE, **extra)
        return chosen.gru_layer(layer_input, h0, padded_weights(weights_k), lengths, options)

    with call_scope(chosen):
        output, h_n = stack_layers(run_layer, x, hx, list(zip(clean_weights, ln)), L, D, B, H, 2, dropout, training)
    return (output.transpose(0, 1) if batch_first else output), h_n


def gru_packed_with_checked_options(
    data: Tensor,
    batch_sizes: Tensor,
    weights: Sequence[LayerWeights],
    hx: Optional[Tensor] = None,
    *,
    bidirectional: bool = False,
    reset_after: bool = True,
    update_gate: str = KEEPS_STATE,
    dropout: float = 0.0,
    training: bool = False,
    backend: Optional[str] = None,
    layer_norm: Optional[Sequence[Tuple[Tensor, Tensor, Tensor, Tensor]]] = None,
    zoneout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    """:func:`gru` on the contents of a ``PackedSequence``, with no padding.

    Args:
        data: [N, I] ``PackedSequence.data``: the steps of the sequences, sorted longest
            first, step t's ``batch_sizes[t]`` rows after step t-1's.
        batch_sizes: [T] ``PackedSequence.batch_sizes`` (int64, CPU, positive, non-increasing).
        hx: [L*D, B, H] initial states in the same sorted order, or None for zeros.
        the rest: as :func:`gru`.

    Returns:
        data_out: [N, D*H] the output in the same packed layout; h_n: [L*D, B, H] (sorted order).

    Backends with a native packed kernel (the fused CPU one) run it directly: packed input then
    costs less than padded. Others get the padded batch and ``lengths``.
    """
    if not isinstance(data, Tensor):
        raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
    if not data.dtype.is_floating_point:
        raise TypeError(f"data must have a floating dtype, got {data.dtype}")
    if data.dim() != 2:
        raise ValueError(f"data must be 2-D [N, I] (PackedSequence.data), got shape {shape_text(data)}")
    if not isinstance(batch_sizes, Tensor) or batch_sizes.dim() != 1 or batch_sizes.dtype != torch.int64:
        raise TypeError("batch_sizes must be a 1-D int64 tensor (PackedSequence.batch_sizes)")
    sizes = batch_sizes.cpu()
    N, I = data.shape
    B = packed_batch_size(sizes, N)
    D = 2 if bidirectional else 1
    L, H, clean_weights = _check_weights(weights, I, D, bidirectional, data)
    ln = _check_regularisers(layer_norm, zoneout, recurrent_dropout, L * D, H, data)
    if hx is not None:
        check_tensor("hx", hx, (L * D, B, H), data)
    chosen = backends.select(
        data,
        backend,
        _variant(reset_after, update_gate, layer_norm, zoneout, recurrent_dropout),
        H,
        _tensors(hx, clean_weights, ln),
    )
    if hasattr(chosen, "gru_network_packed"):
        return chosen.gru_network_packed(data, sizes, hx, clean_weights, L, bidirectional, dropout, training)
    if not hasattr(chosen, "gru_layer_packed"):
        # packed row n is step t_of[n] of sequence b_of[n]; indexing (rather than torch's
        # pad_packed_sequence / pack_padded_sequence) keeps forward-mode AD working
        T = sizes.shape[0]
        running = torch.arange(B).unsqueeze(0) < sizes.unsqueeze(1)  # [T, B]
        t_of, b_of = (i.to(data.device) for i in running.nonzero(as_tuple=True))
        padded = data.new_zeros(T, B, I).index_put((t_of, b_of), data)
        lengths = running.sum(0)
        out, h_n = gru_with_checked_options(
            padded,
            weights,
            hx,
            lengths=lengths,
            bidirectional=bidirectional,
            reset_after=reset_after,
            update_gate=update_gate,
            dropout=dropout,
            training=training,
            backend=chosen.NAME,
            layer_norm=layer_norm,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )
        return out[t_of, b_of], h_n

    def run_layer(layer_input, h0, weights_k, reverse):
        weights_k, ln_k = weights_k
        extra = _regularisers(ln_k, zoneout, recurrent_dropout, training, B, H, data)
        options = LayerOptions(reverse, reset_after, update_gate == KEEPS_STATE, **extra)
        return chosen.gru_layer_packed(layer_input, sizes, h0, padded_weights(weights_k), options)

    with call_scope(chosen):
        return stack_layers(run_layer, data, hx, list(zip(clean_weights, ln)), L, D, B, H, 1, dropout, training)


gru_with_checked_options = _in_the_weights_dtype(gru_with_checked_options, "input", 1)
gru_packed_with_checked_options = _in_the_weights_dtype(gru_packed_with_checked_options, "data", 2)
gru = _options_checked_first(gru_with_checked_options, "gru")
gru_packed = _options_checked_first(gru_packed_with_checked_options, "gru_packed")


def run_quantized_layers(
    layers: List[Dict[str, Optional[Tensor]]],
    x: Tensor,
    hx: Optional[Tensor],
    *,
    hidden_size: int,
    bidirectional: bool,
    reset_after: bool,
    keeps_state: bool,
    zoneout: float,
    lengths: Optional[Tensor] = None,
    batch_sizes: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """``grukit.QuantizedGRU``'s layers (int8 or bfloat16 weights, run by the fused CPU kernels) over
    x [T, B, I] (padded, ``lengths`` optional) or [N, I] (packed, with
    ``batch_sizes``): (output [T, B, D*H] or [N, D*H], h_n [L*D, B, H]).

    ``layers``: per layer and direction, the op's weight inputs by name (w_ih, w_hh, b_ih, b_hh,
    w_ih_scale, w_hh_scale, gamma_ih, beta_ih, gamma_hh, beta_hh; None where absent).
    """
    D = 2 if bidirectional else 1
    L = len(layers) // D
    B = int(batch_sizes[0]) if batch_sizes is not None else x.shape[1]

    def run_layer(layer_input, h0, weights, reverse):
        out, h_n, _ = torch.ops.grukit.gru_layer_fwd(
            x=layer_input.contiguous(),
            h0=h0.contiguous(),
            lengths=lengths,
            batch_sizes=batch_sizes,
            reverse=reverse,
            reset_after=reset_after,
            keeps_state=keeps_state,
            zoneout_p=float(zoneout),
            **weights,
        )
        return out, h_n

    feature_dim = 1 if batch_sizes is not None else 2
    with torch.no_grad():
        return stack_layers(run_layer, x, hx, layers, L, D, B, hidden_size, feature_dim, 0.0, False)
