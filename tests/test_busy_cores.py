"""The thread tuner: it keeps the full thread count on an idle machine, falls back to fewer when
the batches say another process holds a core (saying so once), and comes back when the load ends."""

import pytest

from grukit import busy_cores
from grukit.busy_cores import ThreadTuner


class Machine:
    """A fake clock whose batches take ``cost[threads]`` seconds per sample."""

    def __init__(self, cost):
        self.now, self.cost, self.threads, self.calls = 0.0, cost, 2, []

    def set_threads(self, n):
        self.threads = n
        self.calls.append(n)

    def clock(self):
        return self.now


def _train(tuner, machine, batches, samples=32):
    used = []
    for _ in range(batches):
        with tuner.batch(samples):
            used.append(machine.threads)
            machine.now += machine.cost[machine.threads] * samples
    return used


def test_an_idle_machine_keeps_every_thread():
    machine, said = Machine({2: 1.0, 1: 1.8}), []
    tuner = ThreadTuner(2, recheck_seconds=1e9, set_threads=machine.set_threads, clock=machine.clock, say=said.append)
    used = _train(tuner, machine, 40)
    assert used[:2] == [2, 2] and set(used[2:10]) == {1, 2}  # the warm-up, then the probe alternates
    assert used[10:] == [2] * 30 and said == []


def test_a_busy_core_moves_training_to_fewer_threads_once_said_and_back_when_it_ends(monkeypatch):
    monkeypatch.setattr(ThreadTuner, "said", False)
    machine, said = Machine({2: 3.0, 1: 1.0}), []
    tuner = ThreadTuner(2, recheck_seconds=500, set_threads=machine.set_threads, clock=machine.clock, say=said.append)
    used = _train(tuner, machine, 20)
    assert used[10:] == [1] * 10
    assert len(said) == 1 and "2 threads ran 3.0x slower than 1" in said[0] and "OMP_NUM_THREADS" in said[0]
    other = ThreadTuner(2, recheck_seconds=500, set_threads=machine.set_threads, clock=machine.clock, say=said.append)
    assert _train(other, machine, 20)[10:] == [1] * 10 and len(said) == 1  # a second network: not said again
    machine.set_threads(1)
    machine.cost = {2: 1.0, 1: 1.8}  # the other process ended
    used = _train(tuner, machine, 40)  # the next probe starts once 500 s of training have passed
    assert used[-5:] == [2] * 5 and len(said) == 1  # said once per run
    _train(tuner, machine, 3)
    tuner.restore()
    assert machine.threads == 2


def test_an_epoch_s_short_last_batch_is_not_timed(monkeypatch):
    """Batches of 128 with every fourth one of 16 (an epoch's remainder), whose fixed cost makes it 4x
    dearer per sample: timed, the short ones fell on the full count and made it look 2x slower."""
    monkeypatch.setattr(ThreadTuner, "said", False)
    machine, said = Machine({2: 1.0, 1: 1.3}), []
    tuner = ThreadTuner(2, recheck_seconds=1e9, set_threads=machine.set_threads, clock=machine.clock, say=said.append)
    used = []
    for index in range(40):
        samples = 16 if index % 4 == 3 else 128
        with tuner.batch(samples):
            used.append(machine.threads)
            machine.now += machine.cost[machine.threads] * samples * (4 if samples == 16 else 1)
    assert used[-10:] == [2] * 10 and said == []


def test_a_small_difference_is_not_worth_a_switch():
    machine = Machine({2: 1.0, 1: 1.0 / (busy_cores.SLOWER - 0.1)})
    tuner = ThreadTuner(2, recheck_seconds=1e9, set_threads=machine.set_threads, clock=machine.clock, say=print)
    assert _train(tuner, machine, 20)[10:] == [2] * 10


@pytest.mark.parametrize("world, omp, enabled", [(1, None, True), (2, None, False), (1, "2", False)])
def test_the_user_s_choice_and_multi_process_runs_are_left_alone(monkeypatch, world, omp, enabled):
    monkeypatch.setattr(busy_cores.torch, "get_num_threads", lambda: 2)
    if omp:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    else:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert ThreadTuner.for_training(world).enabled is enabled
    assert ThreadTuner.for_training(world, chosen=2).enabled is False  # forecasting's --threads
    assert ThreadTuner(1).enabled is False  # one thread: nothing fewer to try


def test_training_goes_through_the_tuner_and_restores_the_thread_count(monkeypatch):
    import torch

    from grukit.apps.tasks import training
    from grukit.apps.tasks.options import Options

    batches = []

    class Recording(ThreadTuner):
        def batch(self, samples):
            batches.append(samples)
            return super().batch(samples)

    monkeypatch.setattr(training, "ThreadTuner", Recording)
    before = torch.get_num_threads()
    model = torch.nn.Linear(3, 1)
    data = (torch.randn(20, 3), torch.randn(20))
    training.fit(
        model,
        data,
        lambda m, x, y: ((m(x).squeeze(1) - y) ** 2).mean(),
        lambda: 0.0,
        2,
        1e-2,
        8,
        Options(task="weather", quiet=True),
        higher_is_better=False,
    )
    assert batches == [8, 8, 4, 8, 8, 4] and torch.get_num_threads() == before
