"""Weights between grukit / ``torch.nn.GRU``, Keras and ONNX layouts.

grukit stores weights exactly as ``torch.nn.GRU`` does, so a ``torch.nn.GRU``
``state_dict`` needs no conversion at all (``grukit.GRU.load_state_dict`` takes
it; ``GRU.from_torch`` / ``GRU.to_torch`` copy whole modules). This module
converts one layer-direction between that layout and the others:

==========  =====================  ======================  =========================  ==========
layout      input weights          recurrent weights       biases                     gate order
==========  =====================  ======================  =========================  ==========
torch       w_ih [3H, I]           w_hh [3H, H]            b_ih, b_hh [3H]            r, z, n
Keras 3     kernel [I, 3H]         recurrent_kernel [H,3H] bias [3H] (reset before)   z, r, h
                                                           or [2, 3H] (reset after)
ONNX        W [D, 3H, I]           R [D, 3H, H]            B [D, 6H] = [Wb, Rb]       z, r, h
==========  =====================  ======================  =========================  ==========

Keras and ONNX both use the "keeps_state" update meaning (h' = z*h + (1-z)*n).
A "takes_candidate" GRU converts to it exactly by negating its z weights and
biases (sigmoid(-a) = 1 - sigmoid(a)): :func:`flip_update_gate`.

All conversions are permutations, transposes and sign flips, so they are exact;
the one sum is Keras' single reset-before bias, b = b_ih + b_hh (Keras has no
separate recurrent bias there; the sum computes the same function because with
the reset gate before the matmul every recurrent bias is simply added).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .validation import KEEPS_STATE, check_bool, check_update_gate

Array = Union[np.ndarray, Tensor]
TorchWeights = Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]


def _as_tensor(name: str, a, ndim: Optional[int]) -> Tensor:
    if not isinstance(a, (np.ndarray, Tensor)):
        raise TypeError(f"{name} must be a NumPy array or torch.Tensor, got {type(a).__name__}")
    t = torch.as_tensor(a)
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    return t


def _torch_layer(name: str, w_ih, w_hh, b_ih=None, b_hh=None) -> List[Tensor]:
    """One layer-direction in torch layout, checked: w_hh [3H, H], w_ih [3H, I], biases [3H] (both
    or neither). Returns [w_ih, w_hh(, b_ih, b_hh)] as detached tensors; errors name ``name[k]``."""
    w_hh = _as_tensor(f"{name}[1] (w_hh)", w_hh, 2).detach()
    w_ih = _as_tensor(f"{name}[0] (w_ih)", w_ih, 2).detach()
    H = w_hh.shape[1]
    if tuple(w_hh.shape) != (3 * H, H):
        raise ValueError(f"{name}[1] (w_hh) must have shape (3H, H) = ({3 * H}, {H}), got {tuple(w_hh.shape)}")
    if w_ih.shape[0] != 3 * H:
        raise ValueError(f"{name}[0] (w_ih) must have shape (3H, I) with 3H = {3 * H}, got {tuple(w_ih.shape)}")
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{name}: b_ih and b_hh must both be given or both be None")
    out = [w_ih, w_hh]
    for k, (label, b) in enumerate((("b_ih", b_ih), ("b_hh", b_hh)), start=2):
        if b is None:
            continue
        b = _as_tensor(f"{name}[{k}] ({label})", b, 1).detach()
        if tuple(b.shape) != (3 * H,):
            raise ValueError(f"{name}[{k}] ({label}) must have shape (3H,) = ({3 * H},), got {tuple(b.shape)}")
        out.append(b)
    return out


def _numpy(t: Tensor) -> np.ndarray:
    """A NumPy copy; bfloat16 (which NumPy lacks) becomes float32, exactly."""
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def onnx_gate_rows(split3, join, negate, w, keeps_state: bool = True):
    """The one encoding of torch's gate rows in ONNX's layout, written once for every form the rows take
    (tensors here, graph values in ``grukit.onnx_translation``'s two exporters).

    torch stacks the gate rows (r, z, n); ONNX (and Keras) stack (z, r, h). Chung et al. (2014)'s
    update meaning ("takes_candidate": h_t = z h'_t + (1 - z) h_{t-1}) is ONNX's with the z rows
    negated, since sigmoid(-a) = 1 - sigmoid(a). The reordering is its own inverse.

    Args:
        split3: w -> its three row blocks (a, b, c).
        join: (a, b, c) -> the rows stacked again.
        negate: a -> -a.
        w: [3H, ...] rows in one layout.
        keeps_state: False negates the z block (torch's "takes_candidate" -> ONNX's meaning).
    """
    r, z, n = split3(w)
    return join(z if keeps_state else negate(z), r, n)


def _swap_first_two_gates(t: Tensor, dim: int) -> Tensor:
    """Reorder 3 gate blocks along ``dim`` between torch's (r, z, n) and ONNX's / Keras' (z, r, h)."""
    return onnx_gate_rows(lambda w: w.chunk(3, dim=dim), lambda *blocks: torch.cat(blocks, dim=dim), torch.neg, t)


def _negate_z(t: Tensor, dim: int = 0) -> Tensor:
    """Negate the z block (the second third, torch gate order) along ``dim``."""
    if t.shape[dim] % 3:
        raise ValueError(f"GRU weights have 3H rows (gates r, z, n), a multiple of 3; got shape {tuple(t.shape)}")
    H = t.shape[dim] // 3
    out = t.clone()
    out.narrow(dim, H, H).neg_()
    return out


def flip_update_gate(weights):
    """Switch a GRU between the "keeps_state" and "takes_candidate" update meanings.

    Negates the update-gate (z) rows of every weight and bias, so that the new
    z is 1 - old z and the GRU computes exactly the same function under the
    other meaning. Its own inverse.

    Args:
        weights: a ``state_dict`` of ``grukit.GRU`` / ``torch.nn.GRU`` / a cell
            (keys ``weight_ih*``, ``weight_hh*``, ``bias_ih*``, ``bias_hh*``), or
            one layer's tuple ``(w_ih, w_hh[, b_ih, b_hh])`` in torch layout.

    Returns:
        The same kind of object with new tensors.
    """
    if isinstance(weights, Mapping):
        prefixes = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return type(weights)(
            (k, _negate_z(v) if k.rsplit(".", 1)[-1].startswith(prefixes) else v) for k, v in weights.items()
        )
    if isinstance(weights, (tuple, list)):
        return type(weights)(None if w is None else _negate_z(torch.as_tensor(w)) for w in weights)
    raise TypeError(f"weights must be a state_dict or a tuple of tensors, got {type(weights).__name__}")


# --------------------------------------------------------------------------- Keras


def keras_to_torch(
    kernel: Array,
    recurrent_kernel: Array,
    bias: Optional[Array] = None,
    *,
    reset_after: bool,
    update_gate: str = KEEPS_STATE,
) -> TorchWeights:
    """Keras 3 GRU weights -> ``(w_ih, w_hh, b_ih, b_hh)`` in torch layout.

    Args:
        kernel: [I, 3H], recurrent_kernel: [H, 3H], columns in gate order z, r, h.
        bias: [3H] if ``reset_after`` is False, [2, 3H] (input row, recurrent row)
            if True; None for ``use_bias=False``.
        reset_after: the Keras layer's ``reset_after``; the result must be used
            with a grukit GRU of the same ``reset_after``.
        update_gate: the meaning the result should use (Keras' own is "keeps_state").

    Returns:
        w_ih [3H, I], w_hh [3H, H], b_ih [3H], b_hh [3H] as torch tensors
        (biases None if ``bias`` is None). For reset before, b_hh is zeros.
    """
    check_update_gate(update_gate)
    k = _as_tensor("kernel", kernel, 2)
    rk = _as_tensor("recurrent_kernel", recurrent_kernel, 2)
    if k.shape[1] % 3:
        raise ValueError(f"kernel must have shape (I, 3H), got {tuple(k.shape)}")
    H = k.shape[1] // 3
    if tuple(rk.shape) != (H, 3 * H):
        raise ValueError(f"recurrent_kernel must have shape ({H}, {3 * H}), got {tuple(rk.shape)}")
    w_ih = _swap_first_two_gates(k.T, 0).contiguous()
    w_hh = _swap_first_two_gates(rk.T, 0).contiguous()
    b_ih = b_hh = None
    if bias is not None:
        if reset_after:
            b = _as_tensor("bias", bias, None)
            if tuple(b.shape) != (2, 3 * H):
                raise ValueError(f"bias must have shape (2, {3 * H}) for reset_after=True, got {tuple(b.shape)}")
            b_ih, b_hh = _swap_first_two_gates(b[0], 0), _swap_first_two_gates(b[1], 0)
        else:
            b = _as_tensor("bias", bias, None)
            if tuple(b.shape) != (3 * H,):
                raise ValueError(f"bias must have shape ({3 * H},) for reset_after=False, got {tuple(b.shape)}")
            b_ih, b_hh = _swap_first_two_gates(b, 0), torch.zeros_like(b)
    weights = (w_ih, w_hh, b_ih, b_hh)
    return flip_update_gate(weights) if update_gate != KEEPS_STATE else weights


def torch_to_keras(
    w_ih: Array,
    w_hh: Array,
    b_ih: Optional[Array] = None,
    b_hh: Optional[Array] = None,
    *,
    reset_after: bool,
    update_gate: str = KEEPS_STATE,
) -> List[np.ndarray]:
    """Torch-layout weights -> the list Keras' ``GRU.set_weights`` takes.

    Args:
        w_ih [3H, I], w_hh [3H, H], b_ih / b_hh [3H] or None: one layer-direction
            of a grukit GRU (gate order r, z, n).
        reset_after: that GRU's ``reset_after`` (the Keras layer must use the same).
        update_gate: that GRU's update meaning; "takes_candidate" is flipped to
            Keras' "keeps_state".

    Returns:
        ``[kernel [I, 3H], recurrent_kernel [H, 3H]]`` plus ``bias`` ([3H] if
        reset before, [2, 3H] if reset after) when the GRU has biases.
    """
    check_update_gate(update_gate)
    check_bool("reset_after", reset_after)
    w = _torch_layer("weights", w_ih, w_hh, b_ih, b_hh)
    if update_gate != KEEPS_STATE:
        w = list(flip_update_gate(tuple(w)))
    out = [_numpy(_swap_first_two_gates(w[0], 0).T), _numpy(_swap_first_two_gates(w[1], 0).T)]
    if b_ih is not None:
        bi, bh = _swap_first_two_gates(w[2], 0), _swap_first_two_gates(w[3], 0)
        out.append(_numpy(torch.stack([bi, bh]) if reset_after else bi + bh))
    return out


# --------------------------------------------------------------------------- ONNX


def torch_to_onnx(directions: Sequence[Sequence[Array]]) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Torch-layout weights of one layer -> the ONNX ``GRU`` operator's W, R, B.

    Args:
        directions: one ``(w_ih, w_hh[, b_ih, b_hh])`` per direction (forward
            first), "keeps_state" meaning (flip first otherwise).

    Returns:
        W [D, 3H, I], R [D, 3H, H], B [D, 6H] (None without biases), gate order z, r, h.
        Use ``linear_before_reset=1`` for reset_after=True, 0 for False.
    """
    if not isinstance(directions, (list, tuple)) or len(directions) not in (1, 2):
        raise ValueError(
            "directions must be a list of 1 or 2 (w_ih, w_hh[, b_ih, b_hh]) tuples (forward first), "
            f"got {directions!r:.80}"
        )
    Ws, Rs, Bs = [], [], []
    for k, d in enumerate(directions):
        if not isinstance(d, (list, tuple)) or len(d) not in (2, 4):
            raise ValueError(f"directions[{k}] must be a tuple (w_ih, w_hh) or (w_ih, w_hh, b_ih, b_hh)")
        w = _torch_layer(f"directions[{k}]", *d)
        Ws.append(_swap_first_two_gates(w[0], 0))
        Rs.append(_swap_first_two_gates(w[1], 0))
        if len(w) == 4:
            Bs.append(torch.cat([_swap_first_two_gates(w[2], 0), _swap_first_two_gates(w[3], 0)]))
    if Bs and len(Bs) != len(Ws):
        raise ValueError("every direction must have biases, or none")
    if len({tuple(w.shape) for w in Ws}) > 1 or len({tuple(r.shape) for r in Rs}) > 1:
        raise ValueError("both directions must have the same sizes (I, H)")
    B = _numpy(torch.stack(Bs)) if Bs else None
    return _numpy(torch.stack(Ws)), _numpy(torch.stack(Rs)), B


def onnx_to_torch(W: Array, R: Array, B: Optional[Array] = None) -> List[Tuple[Tensor, ...]]:
    """ONNX ``GRU`` W [D, 3H, I], R [D, 3H, H], B [D, 6H] -> one torch-layout tuple per direction:
    (w_ih, w_hh, b_ih, b_hh), or (w_ih, w_hh) without B, as ``grukit.gru`` takes them."""
    W = _as_tensor("W", W, 3)
    R = _as_tensor("R", R, 3)
    D, threeH, _ = W.shape
    if threeH % 3:
        raise ValueError(f"W must have shape (D, 3H, I) with 3H rows, a multiple of 3; got {tuple(W.shape)}")
    H = threeH // 3
    if tuple(R.shape) != (D, 3 * H, H):
        raise ValueError(f"R must have shape ({D}, {3 * H}, {H}), got {tuple(R.shape)}")
    if B is not None:
        B = _as_tensor("B", B, 2)
        if tuple(B.shape) != (D, 6 * H):
            raise ValueError(f"B must have shape ({D}, {6 * H}), got {tuple(B.shape)}")
    out = []
    for d in range(D):
        w_ih = _swap_first_two_gates(W[d], 0)
        w_hh = _swap_first_two_gates(R[d], 0)
        if B is None:
            out.append((w_ih, w_hh))
        else:
            out.append((w_ih, w_hh, _swap_first_two_gates(B[d, : 3 * H], 0), _swap_first_two_gates(B[d, 3 * H :], 0)))
    return out


# --------------------------------------------------------------------------- modules


def layer_state(module, layer: int = 0, reverse: bool = False) -> Dict[str, Tensor]:
    """One layer-direction of a ``grukit.GRU`` / ``torch.nn.GRU`` as a dict
    with keys w_ih, w_hh, b_ih, b_hh (detached tensors; biases None if absent)."""
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    get = lambda n: getattr(module, n + sfx).detach() if hasattr(module, n + sfx) else None  # noqa: E731
    if get("weight_ih") is None:
        raise ValueError(f"module has no layer {layer}{' reverse' if reverse else ''}")
    return {"w_ih": get("weight_ih"), "w_hh": get("weight_hh"), "b_ih": get("bias_ih"), "b_hh": get("bias_hh")}
