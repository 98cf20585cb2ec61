"""``GRU`` and ``GRUCell``: drop-in replacements for ``torch.nn.GRU`` / ``torch.nn.GRUCell``.

Same constructor arguments, parameter names, shapes and initialisation, same call
signature and outputs (``PackedSequence`` in and out), so a ``torch.nn.GRU``
``state_dict`` loads directly and gives the same numbers. Two extra keyword
options choose the GRU variant (see ``grukit.reference`` for the equations):

* ``reset_after`` (default True, PyTorch's and cuDNN's form): where the reset
  gate acts. False gives Cho et al. 2014 v3's form (most tutorials'), r applied to h before the
  recurrent product.
* ``update_gate`` (default "keeps_state", PyTorch's meaning): "keeps_state"
  means h' = z*h + (1-z)*n; "takes_candidate" means h' = (1-z)*h + z*n, as
  Chung et al. 2014 write it.
"""

from __future__ import annotations

import math
import warnings
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import backends
from .functional import gru_packed_with_checked_options, gru_with_checked_options
from .module_parts import (
    ALWAYS,
    GRU_FIELDS,
    LAYER_NORM_NAMES,
    GRUWeights,
    describe_grukit_module,
    extra_repr_of,
    layer_suffixes,
    refuse_torchscript,
)
from .quantized import QuantizedGRU
from .stream import GRUStream
from .torch_call import call_as_torch_gru
from .validation import (
    KEEPS_STATE,
    check_bool,
    check_cell_input,
    check_dropout,
    check_regularisers,
    check_size,
    check_update_gate,
)


def _shared_arguments(module) -> tuple:
    """The positional constructor arguments torch.nn.GRU and grukit.GRU share, read from either."""
    return (
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bias,
        module.batch_first,
        module.dropout,
        module.bidirectional,
    )


class GRU(nn.Module):
    r"""A multi-layer GRU over sequences; a drop-in for ``torch.nn.GRU``.

    For each step t, each layer computes (defaults: ``reset_after=True``,
    ``update_gate="keeps_state"``, identical to ``torch.nn.GRU``)::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)     reset_after=False
        h_t = z_t * h_{t-1} + (1 - z_t) * n_t                         "keeps_state"
        h_t = (1 - z_t) * h_{t-1} + z_t * n_t                         "takes_candidate"

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout,
        bidirectional, device, dtype: as ``torch.nn.GRU``.
        reset_after: where the reset gate acts (see above).
        update_gate: "keeps_state" or "takes_candidate" (see above).
        backend: force a backend ("torch", ...); None picks the fastest
            (or $GRUKIT_BACKEND).
        layer_norm: normalise the input projection x W_ih^T and the recurrent projection
            h W_hh^T of every step, each with its own gain and bias (Ba et al. 2016, as Haste's
            LayerNormGRU; equations in ``grukit.reference.gru_forward``); adds parameters
            ``layer_norm_{weight,bias}_{ih,hh}_l{k}[_reverse]`` [3H] (gains 1, biases 0).
        zoneout: in training, each unit keeps its previous value with this probability, a
            fresh draw per step (Krueger et al. 2016); in evaluation, h_t = p h_{t-1} + (1-p) h'_t.
        recurrent_dropout: in training, drop units of h_{t-1} where it enters the recurrent
            products, one mask per sequence for all steps (Gal and Ghahramani 2016; Keras'
            ``recurrent_dropout``). Nothing in evaluation.
        All three are off by default: the drop-in behaviour and ``state_dict`` are unchanged.
        proj_size: refused with torch.nn.GRU's ValueError (projections are an LSTM option).

    Inputs: ``input, h_0``
        input: [T, B, I] ([B, T, I] if batch_first), [T, I] unbatched, or a
            ``PackedSequence``.
        h_0: [L*D, B, H] ([L*D, H] unbatched) or None for zeros.

    Outputs: ``output, h_n``
        output: [T, B, D*H] ([B, T, D*H] if batch_first; a ``PackedSequence`` if
            the input was one).
        h_n: [L*D, B, H], the final state of every layer and direction.

    Parameters ``weight_ih_l{k}[_reverse]`` [3H, I_k], ``weight_hh_l{k}[_reverse]``
    [3H, H], ``bias_ih_l{k}[_reverse]`` and ``bias_hh_l{k}[_reverse]`` [3H], gate
    order (r, z, n), all initialised from U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        >>> gru = GRU(10, 20, num_layers=2, reset_after=False)
        >>> output, h_n = gru(torch.randn(5, 3, 10))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        reset_after: bool = True,
        update_gate: str = KEEPS_STATE,
        backend: Optional[str] = None,
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        proj_size=None,
    ) -> None:
        super().__init__()
        if proj_size is not None:  # torch.nn.GRU refuses the argument itself, whatever its value
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.layer_norm = check_bool("layer_norm", layer_norm)
        self.zoneout, self.recurrent_dropout = check_regularisers(zoneout, recurrent_dropout)
        for flag_name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            check_bool(flag_name, flag)
        check_dropout(dropout)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}"
            )
        check_bool("reset_after", reset_after)
        check_update_gate(update_gate)
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.reset_after = reset_after
        self.update_gate = update_gate
        self.backend = backend
        self.mode = "GRU"
        self.proj_size = 0  # as torch.nn.GRU (read by flatten_parameters)
        factory = {"device": device, "dtype": dtype}
        D = 2 if bidirectional else 1
        H = self.hidden_size
        self._flat_weights_names: List[str] = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * H
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (3 * H, in_size)), ("weight_hh", (3 * H, H))]
                if bias:
                    shapes += [("bias_ih", (3 * H,)), ("bias_hh", (3 * H,))]
                for base, shape in shapes:
                    name = base + suffix
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)
                if layer_norm:
                    for base in LAYER_NORM_NAMES:
                        setattr(self, base + suffix, nn.Parameter(torch.empty(3 * H, **factory)))
        self.reset_parameters()
        # choose (and for the fused kernels, build or load) the backend now, outside any
        # torch.compile trace; an unknown backend name fails here rather than at the first call
        backends.prepare_for_module(self.weight_hh_l0, backend, self._variant(), self.hidden_size)

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.GRU``; layer-norm
        gains 1 and biases 0 (as ``torch.nn.LayerNorm``)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("layer_norm_weight"):
                nn.init.ones_(p)
            elif name.startswith("layer_norm_bias"):
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -bound, bound)

    def _variant(self) -> backends.Variant:
        return backends.Variant(
            reset_after=self.reset_after,
            keeps_state=self.update_gate == KEEPS_STATE,
            layer_norm=self.layer_norm,
            zoneout=bool(self.zoneout),
            recurrent_dropout=bool(self.recurrent_dropout),
        )

    def flatten_parameters(self) -> None:
        """On CUDA, for the form cuDNN computes, put the weights in one buffer in cuDNN's layout, as
        ``torch.nn.GRU.flatten_parameters`` does (the native backend then passes them to cuDNN
        without a copy per call). Elsewhere a no-op, kept so code written for torch runs unchanged."""
        if backends.why_not_variant(backends.get("native"), self._variant()):
            return
        torch.nn.RNNBase.flatten_parameters(self)

    def _apply(self, fn, recurse=True):
        # as torch.nn.GRU: moving the module (.cuda(), .to(...)) re-flattens its weights
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    @property
    def _flat_weights(self) -> List[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> List[List[Tensor]]:
        """Parameters grouped per layer and direction, as ``torch.nn.GRU.all_weights``."""
        per = 4 if self.bias else 2
        flat = self._flat_weights
        return [flat[i : i + per] for i in range(0, len(flat), per)]

    def layer_weights(self) -> List[Tuple[Tensor, ...]]:
        """The weights as ``grukit.functional.gru`` takes them."""
        return [tuple(w) for w in self.all_weights]

    def layer_norm_weights(self) -> Optional[List[Tuple[Tensor, Tensor, Tensor, Tensor]]]:
        """(gamma_ih, beta_ih, gamma_hh, beta_hh) per layer and direction, or None without layer norm."""
        if not self.layer_norm:
            return None
        suffixes = layer_suffixes(self.num_layers, self.bidirectional)
        return [tuple(getattr(self, base + suffix) for base in LAYER_NORM_NAMES) for suffix in suffixes]

    __prepare_scriptable__ = refuse_torchscript

    def extra_repr(self) -> str:
        return extra_repr_of(self, GRU_FIELDS)

    def forward(
        self, input: Union[Tensor, PackedSequence], hx: Optional[Tensor] = None
    ) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        if torch.jit.is_tracing():
            # the checks compare shapes, which the tracer sees as tensors and warns about once per
            # comparison; the traced graph is shape-generic (the op reads T and B from its input)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                return self._call(input, hx)
        return self._call(input, hx)

    def _call(self, input, hx: Optional[Tensor]):
        return call_as_torch_gru(
            self._run, input, hx, self.input_size, self.batch_first, self.weight_ih_l0, run_packed=self._run_packed
        )

    def _options(self) -> dict:
        """The keyword arguments of ``grukit.functional.gru`` / ``gru_packed`` this module sets
        (checked when the module was made)."""
        return dict(
            bidirectional=self.bidirectional,
            reset_after=self.reset_after,
            update_gate=self.update_gate,
            dropout=self.dropout,
            training=self.training,
            backend=self.backend,
            layer_norm=self.layer_norm_weights(),
            zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout,
        )

    def _run(self, x: Tensor, hx: Optional[Tensor], lengths) -> Tuple[Tensor, Tensor]:
        """x [T, B, I] -> (output [T, B, D*H], h_n [L*D, B, H])."""
        return gru_with_checked_options(x, self.layer_weights(), hx, lengths=lengths, **self._options())

    def _run_packed(self, data: Tensor, batch_sizes: Tensor, hx: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """A PackedSequence's data [N, I] (longest first) -> (data [N, D*H], h_n), with no padding."""
        return gru_packed_with_checked_options(data, batch_sizes, self.layer_weights(), hx, **self._options())

    def check_plain(self, what: str, training_only_ok: bool = True) -> None:
        """Raise unless this GRU computes the plain GRU function (no layer norm; no zoneout, which
        changes even the evaluation function; recurrent dropout only if ``training_only_ok``)."""
        extras = ["layer_norm=True"] if self.layer_norm else []
        extras += [f"zoneout={self.zoneout}"] if self.zoneout else []
        extras += (
            [f"recurrent_dropout={self.recurrent_dropout}"] if self.recurrent_dropout and not training_only_ok else []
        )
        if extras:
            raise ValueError(f"{what} supports the plain GRU only; this one has {', '.join(extras)}")

    def describe(self) -> GRUWeights:
        """This GRU with no module around it (its own parameters): what streams and the quantizer read."""
        return describe_grukit_module(self, "float", self.backend, layer_suffixes(self.num_layers, self.bidirectional))

    def stream(self, batch_size: int = 1, h0: Optional[Tensor] = None) -> GRUStream:
        """A :class:`grukit.stream.GRUStream` for step-by-step inference with these weights."""
        return GRUStream(self.describe(), batch_size, h0)

    def quantized(self, precision: str = "int8") -> QuantizedGRU:
        """``grukit.QuantizedGRU.from_float(self, precision)``: inference with this GRU's weights in
        ``precision`` ("int8" or "bfloat16"; ``grukit.quantized`` has the arithmetic)."""
        return QuantizedGRU.from_float(self, precision)

    # ---- conversion helpers --------------------------------------------------
    @classmethod
    def from_torch(cls, module: nn.GRU, **options) -> "GRU":
        """A grukit GRU with ``module``'s configuration and a copy of its weights."""
        if not isinstance(module, nn.GRU):
            raise TypeError(f"module must be a torch.nn.GRU, got {type(module).__name__}")
        p = next(module.parameters())
        new = cls(*_shared_arguments(module), device=p.device, dtype=p.dtype, **options)
        new.load_state_dict(module.state_dict())
        return new

    def to_torch(self) -> nn.GRU:
        """A ``torch.nn.GRU`` computing the same function.

        Works for ``reset_after=True`` with either update meaning (a
        "takes_candidate" GRU becomes "keeps_state" by negating the z rows).
        ``reset_after=False`` has no ``torch.nn.GRU`` equivalent and raises.
        """
        from .convert import flip_update_gate

        self.check_plain("to_torch (torch.nn.GRU)", training_only_ok=False)
        if not self.reset_after:
            raise ValueError(
                "reset_after=False (reset before the recurrent matmul) cannot be expressed "
                "as a torch.nn.GRU, which always applies the reset gate after it"
            )
        p = next(self.parameters())
        module = nn.GRU(*_shared_arguments(self), device=p.device, dtype=p.dtype)
        state = self.state_dict()
        if self.update_gate != KEEPS_STATE:
            state = flip_update_gate(state)
        module.load_state_dict(state)
        return module


class GRUCell(nn.Module):
    r"""One GRU step; a drop-in for ``torch.nn.GRUCell``.

    Computes ``h' = cell(x, h)`` with the equations of :class:`GRU` (same
    ``reset_after`` and ``update_gate`` options).

    Inputs: ``input`` [B, I] or [I], ``hx`` [B, H] or [H] (None for zeros).
    Output: ``h'`` [B, H] or [H].
    Parameters: ``weight_ih`` [3H, I], ``weight_hh`` [3H, H], ``bias_ih``, ``bias_hh`` [3H].
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        reset_after: bool = True,
        update_gate: str = KEEPS_STATE,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        # hidden_size 0 is accepted, as torch.nn.GRUCell does (the state is empty); torch.nn.GRU refuses it
        self.hidden_size = check_size("hidden_size", hidden_size, allow_zero=True)
        check_bool("bias", bias)
        check_bool("reset_after", reset_after)
        check_update_gate(update_gate)
        self.bias = bias
        self.reset_after = reset_after
        self.update_gate = update_gate
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        H = self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, self.input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * H, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * H, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        variant = backends.Variant(reset_after=reset_after, keeps_state=update_gate == KEEPS_STATE)
        backends.prepare_for_module(self.weight_hh, backend, variant, H)  # as GRU

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0  # as torch.nn.GRUCell
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    __prepare_scriptable__ = refuse_torchscript

    def extra_repr(self) -> str:
        return extra_repr_of(self, (("bias", True), ("reset_after", ALWAYS), ("update_gate", ALWAYS)))

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, h, unbatched = check_cell_input(input, hx, self.input_size, self.hidden_size, self.weight_ih)
        weights = [(self.weight_ih, self.weight_hh) + ((self.bias_ih, self.bias_hh) if self.bias else ())]
        _, h_n = gru_with_checked_options(
            x, weights, h, reset_after=self.reset_after, update_gate=self.update_gate, backend=self.backend
        )
        return h_n.view(-1) if unbatched else h_n[0]
