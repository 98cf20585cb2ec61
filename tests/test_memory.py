"""The long-memory experiment (grukit compare --memory): tasks well posed, the solved bars are
the memoryless losses they claim, a quick run writes its table and resumes without retraining."""

import itertools
import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from grukit.apps.studies import memory, memory_report, memory_tasks
from grukit.apps.studies.model_sizes import matched_hidden, recurrent_parameters
from grukit.apps.studies.report_file import read_sections, write_section


def test_adding_problem_sums_the_two_marked_values_one_per_half():
    x, y = memory_tasks.adding_problem(500, 30, np.random.default_rng(0))
    assert x.shape == (500, 30, 2) and (x[:, :, 1].sum(1) == 2).all()
    assert (x[:, :15, 1].sum(1) == 1).all() and (x[:, 15:, 1].sum(1) == 1).all()
    torch.testing.assert_close(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(1))
    # predicting the mean sum scores about the trivial loss 2/12
    assert abs(float(((y - 1.0) ** 2).mean()) - memory_tasks.trivial_loss("adding", 30)) < 0.03


def test_copy_task_layout():
    delay = 7
    x, y = memory_tasks.copy_task(50, delay, np.random.default_rng(0))
    assert x.shape == (50, delay + 20, 10) and y.shape == (50, delay + 20)
    symbols = x.argmax(2)
    assert ((symbols[:, :10] >= 1) & (symbols[:, :10] <= 8)).all()
    assert (symbols[:, 10 : delay + 9] == 0).all() and (symbols[:, delay + 9] == 9).all()
    assert (symbols[:, delay + 10 :] == 0).all()
    assert (y[:, : delay + 10] == 0).all() and torch.equal(y[:, -10:], symbols[:, :10])


@pytest.mark.parametrize("delay", [5, 50, 500])
def test_copy_trivial_loss_is_the_best_memoryless_prediction(delay):
    """Blanks for certain until the delimiter, then uniform over the 8 symbols."""
    x, y = memory_tasks.copy_task(20, delay, np.random.default_rng(1))
    logits = torch.full((20, delay + 20, 9), -1e9)
    logits[:, : delay + 10, 0] = 0
    logits[:, delay + 10 :, 1:] = 0
    loss = memory_tasks.loss_of("copy", logits, y).item()
    assert math.isclose(loss, memory_tasks.trivial_loss("copy", delay), rel_tol=1e-6)
    assert math.isclose(memory_tasks.solved_below("copy", delay), 0.05 * loss, rel_tol=1e-6)


@pytest.mark.parametrize("task", memory_tasks.TASKS)
def test_models_have_the_counted_parameters_and_the_task_shape(task):
    inputs = memory_tasks.task_inputs(task)
    target = recurrent_parameters("gru-after", inputs, 32)
    for kind in memory_tasks.KINDS:
        hidden = matched_hidden(kind, inputs, target)
        model = memory_tasks.MemoryModel(kind, task, hidden)
        assert sum(p.numel() for p in model.rnn.parameters()) == recurrent_parameters(kind, inputs, hidden)
        assert abs(recurrent_parameters(kind, inputs, hidden) - target) / target < 0.05
        x, y = memory_tasks.make_batch(task, 3, 6, np.random.default_rng(0))
        out = model(x)
        assert out.shape == ((3, 1) if task == "adding" else (3, 26, 9))
        loss = memory_tasks.loss_of(task, out, y)
        if task == "adding":  # mean squared error
            expected = ((out - y) ** 2).mean()
        else:  # cross-entropy per step: minus the mean log-probability of the target symbol
            expected = -torch.log_softmax(out, -1).gather(-1, y.unsqueeze(-1)).mean()
        torch.testing.assert_close(loss, expected)


def test_a_solvable_cell_stops_when_solved():
    """The adding problem at T = 10 is solved by a GRU in a few hundred steps; training stops there."""
    settings = memory.Settings(steps={"adding": 3000, "copy": 3000}, batch=32, eval_every=50)
    run = memory.train_run(memory._new_run("adding", "gru-after", "hidden", 16, 10, 0, 1e-2, "main"), settings)
    assert run.solved_at is not None and run.steps == run.solved_at < 3000
    assert run.validation_loss < 0.01 and run.test_loss < 0.02 and run.curve[-1][0] == run.solved_at


def test_best_learning_rate_prefers_fewest_steps_then_lowest_loss():
    def run(rate, solved_at, loss):
        r = memory._new_run("adding", "rnn", "hidden", 4, 10, 0, rate, "tune")
        r.solved_at, r.validation_loss = solved_at, loss
        return r

    assert memory.best_learning_rate([run(1e-3, 900, 0.009), run(1e-2, 300, 0.008), run(3e-3, None, 0.1)]) == 1e-2
    assert (
        memory.best_learning_rate([run(1e-3, None, 0.05), run(1e-2, None, float("nan")), run(3e-3, None, 0.1)]) == 1e-3
    )


def _solved_up_to(longest: dict, seeds=2):
    """Main runs in which each (task, kind) solves every length up to ``longest[task][kind]``."""
    runs = []
    settings = memory.Settings(seeds=seeds)
    for task, by_kind in longest.items():
        for (kind, limit), setting in itertools.product(by_kind.items(), ("hidden", "params")):
            if setting == "params" and kind.startswith("gru"):
                continue  # the GRU sets the parameter count: its runs are both
            for seed in range(seeds):
                for length in settings.lengths[task]:
                    r = memory._new_run(task, kind, setting, 4, length, seed, 1e-3, "main")
                    r.solved_at = 100 if length <= limit else None
                    r.validation_loss, r.trivial_loss = (0.001 if r.solved_at else 0.5), 1.0
                    runs.append(r)
                    if r.solved_at is None:
                        break
    return runs, settings


def test_claims_follow_the_longest_lengths_solved():
    runs, settings = _solved_up_to(
        {
            "adding": {"rnn": 0, "lstm": 200, "gru-after": 400, "gru-before": 1000},
            "copy": {"rnn": 10, "lstm": 20, "gru-after": 50, "gru-before": 20},
        }
    )
    text = "\n".join(memory_report.claims(runs, settings))
    assert "adding: RNN none (none matched), LSTM 200 (200 matched), GRU reset after 400, reset before 1000" in text
    assert "1. *Plain RNNs have a short-term memory problem*: **supported**" in text
    assert (
        "2. *GRUs capture long-term dependencies*: **supported**" in text and "adding T = 1000, copy delay 50" in text
    )
    assert "short and medium ones*: **contradicted**" in text
    runs, settings = _solved_up_to(
        {"adding": {"rnn": 50, "lstm": 1000, "gru-after": 400}, "copy": {"rnn": 10, "lstm": 50, "gru-after": 20}}
    )
    text = "\n".join(memory_report.claims(runs, settings))
    assert "short and medium ones*: **supported**" in text
    assert (
        "**left open**" not in text.split("3.")[0] and "RNNs have a short-term memory problem*: **supported**" in text
    )
    runs, settings = _solved_up_to({"adding": {"rnn": 0, "lstm": 0, "gru-after": 0}, "copy": {"rnn": 0}})
    assert "every claim is **left open**" in "\n".join(memory_report.claims(runs, settings))


def test_report_sections_keep_each_other(tmp_path):
    path = str(tmp_path / "C.md")
    write_section(path, "memory", "memory text")
    write_section(path, "tasks", "tasks text\nline 2")
    write_section(path, "memory", "memory text, again")
    assert read_sections(path) == {"tasks": "tasks text\nline 2", "memory": "memory text, again"}
    text = open(path).read()
    assert text.index("tasks text") < text.index("memory text") and list(tmp_path.iterdir()) == [tmp_path / "C.md"]


@pytest.mark.slow
def test_compare_memory_quick_writes_the_table_and_resumes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from grukit.apps.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--memory", "--quick", "--out", str(out)]) == 0
    log = (out / "runs.jsonl").read_text().splitlines()
    runs = [json.loads(line) for line in log]
    assert {r["purpose"] for r in runs} == {"tune", "main"} and {r["task"] for r in runs} == {"adding", "copy"}
    section = read_sections(str(out / "COMPARISON.md"))["memory"]
    for kind in memory_tasks.KINDS:  # the minGRU has its own section (grukit compare --min-gru)
        assert memory_tasks.LABELS[kind] in section
    assert "### Longest length solved" in section and "### The claims" in section
    for name in ("memory_loss_curves.png", "memory_longest_solved.png"):
        assert (out / name).stat().st_size > 10_000
    # a run cut off in the middle of its line is trained again; the others are not
    (out / "runs.jsonl").write_text("\n".join(log[:-1]) + "\n" + log[-1][: len(log[-1]) // 2])
    capsys.readouterr()
    assert main(["compare", "--memory", "--quick", "--out", str(out)]) == 0
    assert f"resuming: {len(log) - 1} runs of these settings" in capsys.readouterr().out
    again = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()[len(log) :]]
    assert len(again) == 1 and again[0]["task"] == runs[-1]["task"] and again[0]["length"] == runs[-1]["length"]


def test_runs_resume_only_into_an_experiment_with_the_same_settings(tmp_path, monkeypatch):
    """A quick experiment in a folder holding a full one's runs neither reuses nor reports them
    (it once claimed the full runs' T = 1000 results "with a budget of 20 steps")."""
    full, quick = memory.Settings(), memory.Settings.quick()
    assert full.budget_id("adding") != quick.budget_id("adding")
    assert full.budget_id("adding") != full.budget_id("copy")
    # the lengths and the number of seeds are recorded by each run, so they do not change the id
    assert memory.Settings(seeds=5, lengths={**full.lengths, "adding": (7,)}).budget_id("adding") == full.budget_id(
        "adding"
    )

    def train_run(run, settings):  # runs in the pool's (forked) worker: its outcome says which settings trained it
        return replace(run, steps=settings.steps[run.task], solved_at=1)

    monkeypatch.setattr(memory, "train_run", train_run)
    log = memory.RunLog(str(tmp_path / "runs.jsonl"))
    from_full = memory._new_run("adding", "gru-after", "hidden", 8, 10, 0, 1e-3, "tune", full.budget_id("adding"))
    log.append(replace(from_full, steps=10_000, solved_at=5))
    runs = memory.run_experiment(quick, str(tmp_path), jobs=1, log=lambda line: None, tasks=("adding",),
                                 kinds=("gru-after",))  # fmt: skip
    assert runs and all(r.budget_id == quick.budget_id("adding") for r in runs)
    again = [r for r in runs if (r.purpose, r.length, r.learning_rate) == ("tune", 10, 1e-3)]
    assert len(again) == 1 and again[0].steps == quick.steps["adding"]  # trained again, not the full run reused
    assert len(log.read()) == len(runs) + 1  # the full run stays in the file


def test_a_quick_compare_does_not_write_into_the_committed_comparison_folder(tmp_path, monkeypatch):
    from grukit.apps.cli import main

    class Stop(Exception):
        pass

    def run_experiment(settings, out_dir, **kwargs):
        raise Stop(out_dir)

    monkeypatch.setattr(memory, "run_experiment", run_experiment)
    monkeypatch.chdir(tmp_path)
    for argv, folder in ((["--quick"], "comparison-quick"), ([], "comparison")):
        with pytest.raises(Stop) as stopped:
            main(["compare", "--memory", *argv])
        assert stopped.value.args == (folder,)
    with open(os.path.join(os.path.dirname(__file__), "..", ".gitignore")) as f:
        assert "comparison-quick/" in f.read().split()


def test_the_committed_runs_carry_the_settings_they_were_trained_with():
    """comparison/runs.jsonl holds the full experiment's runs: each is tagged with the default
    settings' id, so `grukit compare --memory` resumes from them and a quick run does not."""
    path = os.path.join(os.path.dirname(__file__), "..", "comparison", "runs.jsonl")
    full = memory.Settings()
    runs = memory.RunLog(path).read()
    assert runs and all(r.budget_id == full.budget_id(r.task) for r in runs)
