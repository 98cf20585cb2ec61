"""Teams that step aside when another process takes a core (issue 45; csrc/contention.h).

The policy is replayed on a fake clock (``contention_replay``: calls given as their start time and
step durations, through the same StepWatch and ContentionPolicy the kernels use), so nothing here
depends on how busy the machine is. The step-aside path itself is run for real and compared with
the full team and the float64 oracle."""

import pytest
import torch

from grukit import settings
from grukit.backends import cpu_fused

pytestmark = pytest.mark.skipif(
    not cpu_fused.is_available(), reason=f"fused backend unavailable: {cpu_fused.why_unavailable()}"
)

US, MS, S = 1_000, 1_000_000, 1_000_000_000
QUIET = [50 * US] * 200  # a call of 200 steps of 50 us
# the same call where the team's second thread lost its core three times for a 4 ms time slice
CONTENDED = [50 * US] * 197 + [4 * MS] * 3


def replay(calls):
    return cpu_fused.extension().contention_replay(calls)


def test_a_quiet_machine_keeps_the_full_team():
    assert replay([(i * 10 * MS, QUIET) for i in range(50)]) == [True] * 50


def test_a_contended_call_makes_the_next_calls_use_one_thread_until_the_back_off_ends():
    # call 0 stalls (12 ms of 22 ms lost); calls within 0.25 s after it run on one thread; the
    # first call after that looks again with the full team
    calls = [(0, CONTENDED), (30 * MS, QUIET), (200 * MS, QUIET), (300 * MS, QUIET), (400 * MS, QUIET)]
    assert replay(calls) == [True, False, False, True, True]


def test_the_back_off_doubles_while_the_contention_lasts_and_resets_after_a_clean_call():
    calls, t = [], 0
    # contended calls: the first ends at 9.85 + 12 ms = ~22 ms; the back-off is 0.25 s, then 0.5 s
    calls.append((t, CONTENDED))
    ends = sum(CONTENDED)
    calls.append((ends + 260 * MS, CONTENDED))  # after 0.25 s: full team, stalls again -> 0.5 s
    second_end = ends + 260 * MS + sum(CONTENDED)
    calls.append((second_end + 300 * MS, QUIET))  # inside the 0.5 s back-off: one thread
    calls.append((second_end + 510 * MS, QUIET))  # after it: full team, clean -> back-off 0.25 s again
    third_end = second_end + 510 * MS + sum(QUIET)
    calls.append((third_end + 1 * MS, CONTENDED))  # full team, stalls -> 0.25 s (reset), not 1 s
    fourth_end = third_end + 1 * MS + sum(CONTENDED)
    calls.append((fourth_end + 260 * MS, QUIET))
    assert replay(calls) == [True, True, False, True, True, True]


def test_slow_steps_that_are_not_time_slices_are_not_stalls():
    # steps 4x the fastest but only 150 us longer: cache misses or a page fault, not a lost core
    jittery = [50 * US, 200 * US] * 100
    assert replay([(0, jittery), (1 * MS + sum(jittery), QUIET)]) == [True, True]


def test_a_stall_must_cost_a_fifth_of_the_call():
    # one 4 ms stall in a 20 ms call loses 3.95 ms < a fifth
    few = [50 * US] * 320 + [4 * MS]
    assert replay([(0, few), (sum(few) + MS, QUIET)]) == [True, True]
    # two of them lose 7.9 ms of 24 ms
    more = [50 * US] * 320 + [4 * MS] * 2
    assert replay([(0, more), (sum(more) + MS, QUIET)]) == [True, False]


def test_calls_of_few_steps_decide_nothing():
    short = [50 * US] * 5 + [4 * MS] * 10  # 15 steps: fewer than the 16 the policy needs
    assert replay([(0, short), (sum(short) + MS, QUIET)]) == [True, True]


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    cpu_fused.extension().contention_step_aside(0.0)  # whatever earlier calls here saw: the full team
    yield
    torch.set_num_threads(saved)
    cpu_fused.extension().contention_step_aside(0.0)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_layer_that_stepped_aside_computes_what_the_full_team_does(two_threads, reset_after, precision):
    """B1 H512 splits hidden units over 2 threads (a barrier per step); stepped aside, one thread
    computes every unit: the same results as the full team's, and the oracle's."""
    import grukit

    torch.manual_seed(0)
    module = grukit.GRU(512, 512, reset_after=reset_after).eval()
    if precision == "int8":
        module = module.quantized("int8")
    x, h0 = torch.randn(40, 1, 512), torch.randn(1, 1, 512)
    extension = cpu_fused.extension()
    with torch.no_grad():
        before = extension.contention_calls_aside()
        full_out, full_h = module(x, h0)
        assert extension.contention_calls_aside() == before  # (a quiet call: the full team)
        extension.contention_step_aside(60.0)
        aside_out, aside_h = module(x, h0)
        assert extension.contention_calls_aside() == before + 1  # one layer, one direction: one call aside
        extension.contention_step_aside(0.0)
    torch.testing.assert_close(aside_out, full_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aside_h, full_h, rtol=1e-5, atol=1e-5)
    if precision == "float32":
        exact = grukit.GRU(512, 512, reset_after=reset_after).double()
        exact.load_state_dict({k: v.double() for k, v in module.state_dict().items()})
        with torch.no_grad():
            torch.testing.assert_close(aside_out.double(), exact(x.double(), h0.double())[0], rtol=1e-4, atol=1e-4)


def test_the_setting_allows_adapt_and_off(monkeypatch):
    assert settings.SETTINGS["GRUKIT_CONTENTION"].default == "adapt"
    monkeypatch.setenv("GRUKIT_CONTENTION", "sometimes")
    with pytest.raises(settings.SettingError, match="adapt.*off"):
        settings.get("GRUKIT_CONTENTION")
