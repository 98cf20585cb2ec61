"""``grukit compare --memory``: which recurrent models remember over long sequences. This module runs
the experiment and keeps its record; the tasks and models are :mod:`.memory_tasks`, the report
:mod:`.memory_report`.

Two tasks with a known record, at growing lengths: the adding problem and the copy task
(:mod:`.memory_tasks` says what each is and when it counts as solved).

Models: a plain RNN, an LSTM (both torch's) and grukit's GRU in both reset placements (Cho et
al. 2014 v3 "reset after", v1 "reset before"), at one hidden size for all, and with the RNN's
and LSTM's hidden sizes chosen to match the GRU's recurrent parameter count. The same
optimiser (Adam, gradient norm clipped to 1) for all; torch's initialisation except the
LSTM's forget-gate bias, set to 1 (Gers et al. 2000; Jozefowicz et al. 2015; Keras' default).
The learning rate is tuned once per model family on the shortest length of each task (seed
0) and reused at every length (the tuning run at the chosen rate is that model's seed-0 run
at the shortest length). Each cell trains until solved or until the step budget; a model
that fails at some length is not trained at the longer ones (reported as "not run").

Every finished run is appended as one JSON line to ``runs.jsonl`` as soon as it ends, so an
interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .memory_tasks import (
    FAMILY,
    KINDS,
    LABELS,
    TASKS,
    MemoryModel,
    loss_of,
    make_batch,
    solved_below,
    task_inputs,
    trivial_loss,
)
from .model_sizes import matched_hidden, recurrent_parameters

# ---------------------------------------------------------------- one run


@dataclass
class Settings:
    """The experiment's knobs; ``quick`` ones are for the tests."""

    lengths: Dict[str, Tuple[int, ...]] = field(
        default_factory=lambda: {
            "adding": (50, 100, 200, 400, 1000),
            "copy": (10, 20, 50, 100, 200, 500),
            "selective": (20, 50, 100, 200, 500),
        }
    )
    hidden: Dict[str, int] = field(default_factory=lambda: {"adding": 64, "copy": 128, "selective": 128})
    seeds: int = 2
    steps: Dict[str, int] = field(default_factory=lambda: {"adding": 10_000, "copy": 20_000, "selective": 20_000})
    max_minutes: float = 15.0  # a run also stops after this much wall time (reported as such)
    batch: int = 32
    eval_every: int = 100
    eval_size: int = 256
    test_size: int = 1000
    learning_rates: Tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    clip: float = 1.0
    patience: int = 5  # validation checks without improvement before the learning rate falls

    def budget_id(self, task: str) -> str:
        """A short hash of every setting that changes a ``task`` run's outcome (all but the lengths
        and the number of seeds, which each run records itself): runs resume only into an experiment
        whose settings give the same hash, so a quick run never reuses a full run's result or the
        other way round."""
        outcome = asdict(self)
        del outcome["lengths"], outcome["seeds"]
        outcome["hidden"], outcome["steps"] = self.hidden[task], self.steps[task]
        return hashlib.sha256(json.dumps(outcome, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def quick(cls) -> "Settings":
        return cls(
            lengths={"adding": (10, 20), "copy": (5, 10), "selective": (10, 15)},
            hidden={"adding": 8, "copy": 8, "selective": 8},
            seeds=1,
            steps={"adding": 20, "copy": 20, "selective": 20},
            batch=8,
            eval_every=10,
            eval_size=32,
            test_size=64,
            learning_rates=(1e-3, 1e-2),
            patience=1,
        )


@dataclass
class Run:
    """One trained cell: task, model, length, seed; the loss curve and, if solved, when."""

    task: str
    kind: str
    setting: str  # "hidden": the same hidden size as the GRU; "params": matched parameter count
    hidden: int
    parameters: int
    length: int
    seed: int
    learning_rate: float
    purpose: str  # "tune" or "main"
    steps: int = 0  # steps trained
    solved_at: Optional[int] = None  # the step whose validation loss first fell under the bar
    stopped_by_time: bool = False  # stopped by Settings.max_minutes before the step budget
    validation_loss: float = float("nan")
    test_loss: float = float("nan")
    trivial_loss: float = float("nan")
    seconds: float = 0.0
    curve: List[Tuple[int, float, float]] = field(default_factory=list)  # (step, train loss, validation loss)
    budget_id: str = ""  # Settings.budget_id(task) of the experiment that trained it

    @property
    def key(self) -> Tuple:
        return (
            self.purpose,
            self.task,
            self.kind,
            self.setting,
            self.length,
            self.seed,
            self.learning_rate,
            self.budget_id,
        )


def train_run(run: Run, settings: Settings) -> Run:
    """Train ``run``'s model until its validation loss is under the solved bar or the step budget
    is spent; fill in the outcome (returns ``run``)."""
    torch.set_num_threads(1)
    torch.manual_seed(run.seed)
    data = np.random.default_rng(run.seed)
    validation = make_batch(run.task, settings.eval_size, run.length, np.random.default_rng(10_000 + run.seed))
    model = MemoryModel(run.kind, run.task, run.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=run.learning_rate)
    # the rate falls to 0.3 x when the validation loss has not improved for `patience` checks
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.3, patience=settings.patience)
    bar = solved_below(run.task, run.length)
    run.trivial_loss = trivial_loss(run.task, run.length)
    budget, started, recent = settings.steps[run.task], time.perf_counter(), []
    for step in range(1, budget + 1):
        x, y = make_batch(run.task, settings.batch, run.length, data)
        loss = loss_of(run.task, model(x), y)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        optimiser.step()
        recent.append(loss.item())
        out_of_time = time.perf_counter() - started > 60 * settings.max_minutes
        if step % settings.eval_every == 0 or step == budget or out_of_time:
            with torch.no_grad():
                run.validation_loss = loss_of(run.task, model(validation[0]), validation[1]).item()
            run.curve.append((step, float(np.mean(recent)), run.validation_loss))
            recent = []
            schedule.step(run.validation_loss)
            if not math.isfinite(run.validation_loss):
                break
            if run.validation_loss < bar:
                run.solved_at = step
                break
            if out_of_time:
                run.stopped_by_time = True
                break
    run.steps = step
    run.seconds = time.perf_counter() - started
    test = make_batch(run.task, settings.test_size, run.length, np.random.default_rng(20_000 + run.seed))
    with torch.no_grad():
        run.test_loss = loss_of(run.task, model(test[0]), test[1]).item()
    return run


# ---------------------------------------------------------------- the record of finished runs


class RunLog:
    """``runs.jsonl``: one finished run per line, appended under a file lock by whichever worker
    finished it. A line cut short by a kill is ignored on reading (that run is trained again)."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> List[Run]:
        runs = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        fields = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    fields["curve"] = [tuple(point) for point in fields["curve"]]
                    runs.append(Run(**fields))
        return runs

    def append(self, run: Run) -> None:
        line = json.dumps(asdict(run)) + "\n"
        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0, os.SEEK_END)
            if f.tell():  # a line cut short by a kill must not swallow this one
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    line = "\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            fcntl.flock(f, fcntl.LOCK_UN)


def _sizes(task: str, hidden: int, kinds: Sequence[str] = KINDS) -> Iterable[Tuple[str, str, int]]:
    """(kind, setting, hidden size): every model of ``kinds`` at ``hidden``, and the RNN and LSTM
    again at the hidden size matching the GRU's recurrent parameter count (the GRU's own is both);
    the minGRU blocks, ten times a GRU's parameters at one width, only at the matched size."""
    inputs = task_inputs(task)
    target = recurrent_parameters("gru-after", inputs, hidden)
    for kind in kinds:
        if kind == "min-gru-blocks":
            yield kind, "params", matched_hidden(kind, inputs, target)
        else:
            yield kind, "hidden", hidden
    for kind in ("rnn", "lstm"):
        if kind in kinds:
            yield kind, "params", matched_hidden(kind, inputs, target)


def _new_run(task, kind, setting, hidden, length, seed, learning_rate, purpose, budget_id: str = "") -> Run:
    return Run(
        task,
        kind,
        setting,
        hidden,
        recurrent_parameters(kind, task_inputs(task), hidden),
        length,
        seed,
        learning_rate,
        purpose,
        budget_id=budget_id,
    )


def _train_and_log(run: Run, settings: Settings, log_path: str) -> Run:
    run = train_run(run, settings)
    RunLog(log_path).append(run)
    return run


def _chain(runs: List[Run], settings: Settings, log_path: str, done: Dict) -> List[Run]:
    """Train one model and seed at ascending lengths; stop after the first length it fails."""
    finished = []
    for run in runs:
        result = done.get(run.key) or _train_and_log(run, settings, log_path)
        finished.append(result)
        if result.solved_at is None:
            break
    return finished


def best_learning_rate(tuning: List[Run]) -> float:
    """The rate that solved in the fewest steps; if none solved, the lowest final validation loss."""
    solved = [r for r in tuning if r.solved_at is not None]
    if solved:
        return min(solved, key=lambda r: (r.solved_at, r.learning_rate)).learning_rate
    return min(tuning, key=lambda r: r.validation_loss if math.isfinite(r.validation_loss) else math.inf).learning_rate


def run_experiment(
    settings: Settings,
    out_dir: str,
    jobs: int = 2,
    log=print,
    tasks: Sequence[str] = TASKS,
    kinds: Sequence[str] = KINDS,
) -> List[Run]:
    """Tune the learning rates, then train every chain of ``kinds`` on ``tasks``; returns every
    finished run of these settings (tuning included). Resumes from ``out_dir/runs.jsonl``: runs
    already there, of an earlier experiment with the same settings too (the same
    ``Settings.budget_id``), are not trained again; runs of other settings are kept in the file
    and left out of the result. One learning rate per family (``FAMILY``), tuned on the family's
    first kind."""
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "runs.jsonl")
    budgets = {task: settings.budget_id(task) for task in tasks}

    def these_settings(runs: List[Run]) -> List[Run]:
        return [r for r in runs if r.task in budgets and r.budget_id == budgets[r.task]]

    done = {r.key: r for r in these_settings(RunLog(log_path).read())}
    if done:
        log(f"resuming: {len(done)} runs of these settings already in {log_path}")

    def report(run: Run) -> None:
        outcome = f"solved at step {run.solved_at}" if run.solved_at else f"not solved in {run.steps} steps"
        log(
            f"{run.purpose:4s} {run.task:6s} T={run.length:<4d} {LABELS[run.kind]:25s} H={run.hidden:<3d} "
            f"seed {run.seed} lr {run.learning_rate:g}: {outcome}, validation {run.validation_loss:.4g} "
            f"(trivial {run.trivial_loss:.4g}), {run.seconds:.0f} s"
        )

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        tuned_kinds = [k for k in kinds if k == next(j for j in kinds if FAMILY[j] == FAMILY[k])]
        tuning = []
        for task in tasks:
            shortest = settings.lengths[task][0]
            for kind in tuned_kinds:
                for rate in settings.learning_rates:
                    tuning.append(
                        _new_run(task, kind, "hidden", settings.hidden[task], shortest, 0, rate, "tune", budgets[task])
                    )
        pending = [pool.submit(_train_and_log, r, settings, log_path) for r in tuning if r.key not in done]
        for future in pending:
            report(future.result())
        done = {r.key: r for r in these_settings(RunLog(log_path).read())}
        tuned = [done[r.key] for r in tuning]
        rates = {
            (task, FAMILY[kind]): best_learning_rate([r for r in tuned if r.task == task and r.kind == kind])
            for task in tasks
            for kind in tuned_kinds
        }
        log("learning rates: " + ", ".join(f"{t} {f} {v:g}" for (t, f), v in rates.items()))
        for tuned_run in tuned:  # the tuning run at the chosen rate is that model's seed-0 run at this length
            main_run = replace(tuned_run, purpose="main")
            if tuned_run.learning_rate == rates[(tuned_run.task, FAMILY[tuned_run.kind])] and main_run.key not in done:
                RunLog(log_path).append(main_run)
                done[main_run.key] = main_run
        chains = []
        for task in tasks:
            for kind, setting, hidden in _sizes(task, settings.hidden[task], kinds):
                for seed in range(settings.seeds):
                    rate = rates[(task, FAMILY[kind])]
                    chains.append(
                        [
                            _new_run(task, kind, setting, hidden, length, seed, rate, "main", budgets[task])
                            for length in settings.lengths[task]
                        ]
                    )
        # the LSTM's chains are the slowest per step: start them first so the pool ends together
        chains.sort(key=lambda c: (c[0].kind != "lstm", c[0].task != "adding"))
        futures = [pool.submit(_chain, chain, settings, log_path, done) for chain in chains]
        for future in futures:
            for run in future.result():
                if run.key not in done:
                    report(run)
    return these_settings(RunLog(log_path).read())
