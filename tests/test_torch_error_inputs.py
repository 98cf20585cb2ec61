"""torch's own list of bad inputs for nn.GRU and nn.GRUCell (shipped in the wheel, in
``torch.testing._internal.common_modules``): grukit raises the same exception types.

grukit's messages differ (they name the argument and the expected value); the types must match,
so code that catches torch's exceptions catches ours. Deliberate differences are listed here and
in the README's compatibility section.
"""

import warnings

import pytest
import torch

import grukit

common_modules = pytest.importorskip("torch.testing._internal.common_modules")  # needs expecttest

PAIRS = {torch.nn.GRU: grukit.GRU, torch.nn.GRUCell: grukit.GRUCell}


def _samples():
    cases = []
    for info in common_modules.module_db:
        if info.module_cls not in PAIRS or info.module_error_inputs_func is None:
            continue
        samples = info.module_error_inputs_func(
            info, device="cpu", dtype=torch.float32, requires_grad=False, training=True
        )
        for k, sample in enumerate(samples):
            cases.append(pytest.param(info.module_cls, sample, id=f"{info.module_cls.__name__}-{k}"))
    return cases


def _run(cls, sample):
    inputs = sample.module_error_input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = cls(*inputs.constructor_input.args, **inputs.constructor_input.kwargs)
        if sample.error_on == common_modules.ModuleErrorEnum.FORWARD_ERROR:
            module(*inputs.forward_input.args, **inputs.forward_input.kwargs)


def _bias_is_not_a_bool(sample):
    args = sample.module_error_input.constructor_input.args
    return len(args) > 2 and not isinstance(args[2], bool)


@pytest.mark.parametrize("torch_cls,sample", _samples())
def test_grukit_raises_torchs_exception_type(torch_cls, sample):
    if torch_cls is torch.nn.GRUCell and _bias_is_not_a_bool(sample):
        # torch.nn.GRUCell(10, 20, "relu") takes "relu" as bias=True (the list is shared with RNNCell,
        # whose third argument is the nonlinearity); grukit refuses a bias that is not a bool
        with pytest.raises(TypeError, match="bias must be a bool"):
            _run(PAIRS[torch_cls], sample)
        return
    with pytest.raises(sample.error_type):  # torch itself, so the list means what it says here
        _run(torch_cls, sample)
    with pytest.raises(sample.error_type):
        _run(PAIRS[torch_cls], sample)


def test_proj_size_is_refused_as_torch_refuses_it():
    for value in (0, 5):
        with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
            torch.nn.GRU(10, 20, proj_size=value)
        with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
            grukit.GRU(10, 20, proj_size=value)


def test_cell_checks_sizes_before_dtype_as_torch_does():
    """A float64 input of the wrong size to a float32 cell: torch raises the size error (a RuntimeError);
    of the right size, a dtype error that is a RuntimeError in torch.nn.GRUCell, a ValueError in
    torch.nn.GRU: grukit's DtypeError is all of them."""
    wrong_size = torch.randn(3, 11, dtype=torch.float64)
    for cls in (torch.nn.GRUCell, grukit.GRUCell):
        with pytest.raises(RuntimeError, match="input_size"):
            cls(10, 20)(wrong_size)
        with pytest.raises(RuntimeError):
            cls(10, 20)(torch.randn(3, 10, dtype=torch.float64))
        with pytest.raises(RuntimeError, match="hidden"):
            cls(10, 20)(torch.randn(3, 10), torch.randn(3, 21, dtype=torch.float64))
    with pytest.raises(grukit.validation.ShapeError, match="10 features"):
        grukit.GRUCell(10, 20)(wrong_size)
    for cls in (torch.nn.GRU, grukit.GRU):
        with pytest.raises(ValueError, match="dtype"):
            cls(10, 20)(torch.randn(5, 3, 10, dtype=torch.float64))
