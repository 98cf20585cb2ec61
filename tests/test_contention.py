"""Teams that step aside when another process takes a core (issue 45; csrc/contention.h).

The policy is replayed on a fake clock (``contention_replay``: calls given as their steps'
durations, through the same StepWatch and ContentionPolicy the kernels use), so nothing here
depends on how busy the machine is. The step-aside path itself is run for real and compared with
the full team and the float64 oracle."""

import pytest
import torch

from grukit import settings
from grukit.backends import cpu_fused

pytestmark = pytest.mark.skipif(
    not cpu_fused.is_available(), reason=f"fused backend unavailable: {cpu_fused.why_unavailable()}"
)

US, MS = 1_000, 1_000_000
QUIET = [50 * US] * 200  # a call of 200 steps of 50 us
# the same call where the team's second thread lost its core three times for a 4 ms time slice
CONTENDED = [50 * US] * 197 + [4 * MS] * 3


def replay(calls):
    return cpu_fused.extension().contention_replay(calls)


def test_a_quiet_machine_keeps_the_full_team():
    assert replay([QUIET] * 50) == [True] * 50


def test_two_contended_calls_make_the_next_four_calls_use_one_thread_then_it_looks_again():
    # calls 0 and 1 stall (12 ms of 22 ms lost each): calls 2-5 on one thread; call 6 looks with the full team
    assert replay([CONTENDED] * 2 + [QUIET] * 6) == [True, True] + [False] * 4 + [True, True]


def test_one_contended_call_alone_keeps_the_full_team():
    # another runtime's threads still spinning after its last call: the first call after it stalls once
    assert replay([CONTENDED] + [QUIET] * 5) == [True] * 6
    assert replay([QUIET, CONTENDED, QUIET, CONTENDED, QUIET]) == [True] * 5


def test_the_back_off_doubles_while_the_contention_lasts_and_resets_after_a_clean_call():
    # stalled twice, 4 aside, stalled again, 8 aside, stalled again, 16 aside ... up to 64
    full = replay([CONTENDED] * (2 + 4 + 1 + 8 + 1 + 16 + 1 + 32 + 1 + 64 + 1 + 64 + 1))
    looks = [i for i, f in enumerate(full) if f]
    assert looks == [0, 1, 6, 15, 32, 65, 130, 195]
    # a clean look resets the back-off to 4 calls and the count of stalled calls: one stall after it
    # keeps the full team
    calls = [CONTENDED] * 2 + [QUIET] * 4 + [CONTENDED] + [QUIET] * 8 + [QUIET] + [CONTENDED] + [QUIET] * 5
    full = replay(calls)
    assert [i for i, f in enumerate(full) if f] == [0, 1, 6] + list(range(15, 22))


def test_slow_steps_that_are_not_time_slices_are_not_stalls():
    # steps 4x the fastest but only 150 us longer: cache misses or a page fault, not a lost core
    jittery = [50 * US, 200 * US] * 100
    assert replay([jittery, jittery, QUIET]) == [True] * 3


def test_a_stall_must_cost_a_fifth_of_the_call():
    # one 4 ms stall in a 20 ms call loses 3.95 ms < a fifth
    assert replay([[50 * US] * 320 + [4 * MS]] * 2 + [QUIET]) == [True] * 3
    # two of them lose 7.9 ms of 24 ms: two such calls step aside
    assert replay([[50 * US] * 320 + [4 * MS] * 2] * 2 + [QUIET]) == [True, True, False]


def test_calls_of_few_steps_decide_nothing():
    short = [50 * US] * 5 + [4 * MS] * 10  # 15 steps: fewer than the 16 the policy needs
    assert replay([short, short, QUIET]) == [True] * 3


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    cpu_fused.extension().contention_step_aside(0)  # whatever earlier calls here saw: the full team
    yield
    torch.set_num_threads(saved)
    cpu_fused.extension().contention_step_aside(0)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("batch, hidden", [(1, 512), (64, 128)], ids=["units", "rows"])
def test_a_layer_that_stepped_aside_computes_what_the_full_team_does(
    two_threads, reset_after, precision, batch, hidden
):
    """B1 H512 splits hidden units over 2 threads (a barrier per step), B64 H128 batch rows (4 parts);
    stepped aside, one thread computes everything: the same results as the full team's, and the
    oracle's."""
    import grukit

    torch.manual_seed(0)
    module = grukit.GRU(hidden, hidden, reset_after=reset_after).eval()
    if precision == "int8":
        module = module.quantized("int8")
    x, h0 = torch.randn(40, batch, hidden), torch.randn(1, batch, hidden)
    extension = cpu_fused.extension()
    with torch.no_grad():
        before = extension.contention_calls_aside()
        full_out, full_h = module(x, h0)
        assert extension.contention_calls_aside() == before  # (a quiet call: the full team)
        extension.contention_step_aside(1)
        aside_out, aside_h = module(x, h0)
        assert extension.contention_calls_aside() == before + 1  # one layer, one direction: one call aside
        extension.contention_step_aside(0)
    torch.testing.assert_close(aside_out, full_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aside_h, full_h, rtol=1e-5, atol=1e-5)
    if precision == "float32":
        exact = grukit.GRU(hidden, hidden, reset_after=reset_after).double()
        exact.load_state_dict({k: v.double() for k, v in module.state_dict().items()})
        with torch.no_grad():
            torch.testing.assert_close(aside_out.double(), exact(x.double(), h0.double())[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "int8"])
def test_a_module_call_that_steps_aside_runs_torchs_operations_around_the_layers_on_one_thread(
    two_threads, monkeypatch, quantized
):
    """The zero initial state, stacking the final states and the int8 module's check of the output
    run inside the stepped-aside call on one thread (else they wake OpenMP's other thread, which
    spins on the shared core); a two-layer call counts once; the caller's thread count comes back."""
    import grukit
    from grukit import functional
    from grukit import quantized as quantized_module

    seen = []
    stack_layers = functional.stack_layers

    def spying_stack_layers(*args):
        seen.append(torch.get_num_threads())
        result = stack_layers(*args)
        seen.append(torch.get_num_threads())
        return result

    monkeypatch.setattr(functional, "stack_layers", spying_stack_layers)
    torch.manual_seed(0)
    module = grukit.GRU(64, 128, num_layers=2).eval()
    if quantized:
        module = module.quantized("int8")
        check = quantized_module.QuantizedGRU._check_no_infinity
        monkeypatch.setattr(
            quantized_module.QuantizedGRU,
            "_check_no_infinity",
            lambda self, x, h_n: (seen.append(torch.get_num_threads()), check(self, x, h_n)),
        )
    x = torch.randn(20, 64, 64)
    extension = cpu_fused.extension()
    with torch.no_grad():
        full_out, _ = module(x)
        assert seen and set(seen) == {2}
        seen.clear()
        before = extension.contention_calls_aside()
        extension.contention_step_aside(1)
        aside_out, _ = module(x)
        assert set(seen) == {1} and len(seen) == (3 if quantized else 2)
        assert extension.contention_calls_aside() == before + 1  # two layers, one module call aside
        assert torch.get_num_threads() == 2
        seen.clear()
        module(x)  # the step-aside is spent: the full team again
        assert set(seen) == {2}
    torch.testing.assert_close(aside_out, full_out, rtol=1e-5, atol=1e-5)


def test_the_setting_allows_adapt_and_off(monkeypatch):
    assert settings.SETTINGS["GRUKIT_CONTENTION"].default == "adapt"
    monkeypatch.setenv("GRUKIT_CONTENTION", "sometimes")
    with pytest.raises(settings.SettingError, match="adapt.*off"):
        settings.get("GRUKIT_CONTENTION")
