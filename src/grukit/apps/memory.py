"""``grukit compare --memory``: which recurrent models remember over long sequences.

Two tasks with a known record, at growing lengths:

* the adding problem (Hochreiter and Schmidhuber 1997, in the setup of Le, Jaitly and Hinton
  2015, arXiv 1504.00941): a sequence of T pairs (value in [0, 1], marker); exactly two markers
  are 1, one in each half of the sequence; the target is the sum of the two marked values.
  Predicting the mean (1) scores the variance of a sum of two uniforms, 2/12 = 0.167, so
  *solved* means a validation MSE below 0.01 (under 6 % of that);
* the copy task with blank distractors (Arjovsky, Shah and Bengio 2016, arXiv 1511.06464): ten
  symbols from an alphabet of 8, then T - 1 blanks, a delimiter and ten more blanks; the model
  must output blanks until the delimiter and then the ten symbols. A memoryless model outputs
  blanks and then guesses, scoring a cross-entropy of 10 log 8 / (T + 20) per step, so *solved*
  means a validation cross-entropy below 5 % of that.

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

from ..min_gru import MinGRU
from ..min_gru_blocks import MinGRUBlocks
from ..nn import GRU
from .model_sizes import MIN_GRU_BLOCKS, matched_hidden, recurrent_parameters

KINDS = ("rnn", "lstm", "gru-after", "gru-before")
LABELS = {
    "rnn": "RNN (torch)",
    "lstm": "LSTM (torch)",
    "gru-after": "GRU grukit, reset after",
    "gru-before": "GRU grukit, reset before",
    "min-gru": "minGRU grukit",  # Feng et al. 2024; trained in grukit compare --min-gru
    "min-gru-blocks": "minGRU blocks grukit",  # the paper's model body: 3 residual blocks with an MLP
}
COLOURS = {
    "rnn": "tab:blue",
    "lstm": "tab:orange",
    "gru-after": "tab:green",
    "gru-before": "tab:red",
    "min-gru": "tab:purple",
    "min-gru-blocks": "tab:brown",
}  # every plot
FAMILY = {
    "rnn": "rnn",
    "lstm": "lstm",
    "gru-after": "gru",
    "gru-before": "gru",
    "min-gru": "min-gru",
    "min-gru-blocks": "min-gru-blocks",
}
TASKS = ("adding", "copy")  # grukit compare --memory; the minGRU comparison adds "selective"
EVERY_STEP_TASKS = ("copy", "selective")  # a target at every step (cross-entropy), not one at the end
COPY_SYMBOLS = 8  # the alphabet; 0 is the blank, 9 the delimiter
COPY_LENGTH = 10  # symbols to remember


# ---------------------------------------------------------------- the two tasks


def adding_problem(n: int, length: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """x [n, T, 2]: a value in [0, 1] and a marker (one 1 in each half); y [n, 1]: the sum of the
    two marked values."""
    values = rng.random((n, length))
    marks = np.zeros((n, length))
    first = rng.integers(0, max(1, length // 2), n)
    second = rng.integers(length // 2, length, n)
    marks[np.arange(n), first] = 1
    marks[np.arange(n), second] = 1
    x = np.stack([values, marks], 2).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy((values * marks).sum(1, keepdims=True).astype(np.float32))


def copy_task(n: int, delay: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """x [n, T + 20, 10]: one-hot symbols; y [n, T + 20]: the symbol to output at each step.

    Input:  s_1 .. s_10, T - 1 blanks, the delimiter, 10 blanks (s_i in 1..8, blank 0, delimiter 9).
    Target: T + 10 blanks, then s_1 .. s_10.
    """
    total = delay + 2 * COPY_LENGTH
    symbols = rng.integers(1, COPY_SYMBOLS + 1, (n, COPY_LENGTH))
    inputs = np.zeros((n, total), np.int64)
    inputs[:, :COPY_LENGTH] = symbols
    inputs[:, delay + COPY_LENGTH - 1] = COPY_SYMBOLS + 1
    targets = np.zeros((n, total), np.int64)
    targets[:, -COPY_LENGTH:] = symbols
    x = nn.functional.one_hot(torch.from_numpy(inputs), COPY_SYMBOLS + 2).float()
    return x, torch.from_numpy(targets)


def selective_copy(n: int, length: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Selective copying (Gu and Dao 2023, the Mamba paper; Feng et al. 2024 test the minGRU on it):
    the copy task with the 10 symbols at random positions among T steps, so that a model must
    choose what to store by content, not by position. x [n, T + 20, 10] one-hot; y [n, T + 20].

    Input:  T steps holding s_1 .. s_10 in order at random distinct positions and blanks elsewhere,
            the delimiter, 19 blanks (s_i in 1..8, blank 0, delimiter 9).
    Target: T + 10 blanks, then s_1 .. s_10.
    """
    if length < COPY_LENGTH:
        raise ValueError(f"selective copying needs T >= {COPY_LENGTH} steps for the symbols, got {length}")
    total = length + 2 * COPY_LENGTH
    symbols = rng.integers(1, COPY_SYMBOLS + 1, (n, COPY_LENGTH))
    positions = np.sort(np.argsort(rng.random((n, length)), axis=1)[:, :COPY_LENGTH], axis=1)
    inputs = np.zeros((n, total), np.int64)
    np.put_along_axis(inputs, positions, symbols, axis=1)
    inputs[:, length] = COPY_SYMBOLS + 1
    targets = np.zeros((n, total), np.int64)
    targets[:, -COPY_LENGTH:] = symbols
    x = nn.functional.one_hot(torch.from_numpy(inputs), COPY_SYMBOLS + 2).float()
    return x, torch.from_numpy(targets)


def trivial_loss(task: str, length: int) -> float:
    """The loss of the best model without memory: predict the mean sum (adding, variance 2/12),
    or blanks and then a uniform guess (copy and selective copying, 10 log 8 / (T + 20) per step)."""
    if task == "adding":
        return 2.0 / 12.0
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (length + 2 * COPY_LENGTH)


def solved_below(task: str, length: int) -> float:
    """The loss under which a run counts as solved: MSE 0.01 (adding), 5 % of trivial (copy, selective)."""
    return 0.01 if task == "adding" else 0.05 * trivial_loss(task, length)


def task_inputs(task: str) -> int:
    return 2 if task == "adding" else COPY_SYMBOLS + 2


def make_batch(task: str, n: int, length: int, rng: np.random.Generator):
    return {"adding": adding_problem, "copy": copy_task, "selective": selective_copy}[task](n, length, rng)


# ---------------------------------------------------------------- models


class MemoryModel(nn.Module):
    """Recurrent layer of ``kind`` -> linear head, on the last step (adding) or every step (copy).

    x [B, T, I] -> [B, outputs] (adding) or [B, T, outputs] (copy).
    """

    def __init__(self, kind: str, task: str, hidden: int):
        super().__init__()
        inputs = task_inputs(task)
        self.every_step = task in EVERY_STEP_TASKS
        self.rnn = {
            "rnn": lambda: nn.RNN(inputs, hidden, batch_first=True),
            "lstm": lambda: nn.LSTM(inputs, hidden, batch_first=True),
            "gru-after": lambda: GRU(inputs, hidden, batch_first=True, reset_after=True),
            "gru-before": lambda: GRU(inputs, hidden, batch_first=True, reset_after=False),
            "min-gru": lambda: MinGRU(inputs, hidden, batch_first=True),
            "min-gru-blocks": lambda: MinGRUBlocks(inputs, hidden, batch_first=True, **MIN_GRU_BLOCKS),
        }[kind]()
        if kind == "lstm":  # forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015; Keras' default)
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden : 2 * hidden] = 1.0
                self.rnn.bias_hh_l0[hidden : 2 * hidden] = 0.0
        self.head = nn.Linear(hidden, COPY_SYMBOLS + 1 if self.every_step else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(x)
        return self.head(outputs if self.every_step else outputs[:, -1])


def loss_of(task: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Adding: mean squared error. Copy, selective copying: cross-entropy per step, averaged over every step."""
    if task == "adding":
        return nn.functional.mse_loss(prediction, target)
    return nn.functional.cross_entropy(prediction.reshape(-1, prediction.shape[-1]), target.reshape(-1))


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


# ---------------------------------------------------------------- the report


def machine(jobs: int) -> str:
    """The CPU model, its x86-64 level, and how many one-thread runs shared it."""
    from ..backends import cpu_build

    level = cpu_build.chosen_level(cpu_build.cpu_flags()) if cpu_build.is_x86() else "not x86"
    return f"{cpu_build.cpu_model()} ({level}), {jobs} runs at a time, one thread each"


def _main_runs(runs: List[Run], task: str, kind: str, setting: str) -> Dict[Tuple[int, int], Run]:
    """(length, seed) -> run, for one model; the GRU's "params" runs are its "hidden" runs."""
    setting = "hidden" if kind.startswith("gru") else setting
    return {
        (r.length, r.seed): r
        for r in runs
        if r.purpose == "main" and r.task == task and r.kind == kind and r.setting == setting
    }


def _models(runs: List[Run], task: str) -> List[Tuple[str, str, int]]:
    """(kind, setting, hidden) of every model that ran on ``task``, in table order."""
    seen = {}
    for r in runs:
        if r.purpose == "main" and r.task == task:
            seen[(r.kind, r.setting)] = r.hidden
    order = [(k, "hidden") for k in KINDS] + [(k, "params") for k in ("rnn", "lstm")]
    return [(k, s, seen[(k, s)]) for k, s in order if (k, s) in seen]


def longest_solved(runs: List[Run], task: str, kind: str, setting: str, seeds: int, every_seed: bool) -> int:
    """The longest length solved by every seed (or by any seed); 0 if none."""
    by_cell = _main_runs(runs, task, kind, setting)
    lengths = sorted({length for length, _ in by_cell})
    best = 0
    for length in lengths:
        solved = [
            by_cell.get((length, s)) is not None and by_cell[(length, s)].solved_at is not None for s in range(seeds)
        ]
        if all(solved) if every_seed else any(solved):
            best = length
    return best


def _cell(run: Optional[Run]) -> str:
    if run is None:
        return "not run"
    if run.solved_at is not None:
        return f"{run.solved_at:,}"
    return f"no: {run.validation_loss / run.trivial_loss:.2f}" + (" (time)" if run.stopped_by_time else "")


def markdown(runs: List[Run], settings: Settings, command: str, wall_seconds: float, machine: str) -> str:
    """The memory section of COMPARISON.md: setup, learning rates, every cell, longest lengths,
    and what the numbers say about the three claims."""
    lines = [
        "## Long-range memory: the adding problem and the copy task",
        "",
        f"Made by `{command}` in {wall_seconds / 60:.0f} minutes of wall time on {machine}. Setup: batch "
        f"{settings.batch}; Adam with gradient-norm clipping at {settings.clip}, the learning rate cut to 0.3x "
        f"after {settings.patience} checks without improvement; torch's initialisation except the LSTM's "
        "forget-gate bias, 1 (Gers et al. 2000; Keras' default); hidden size "
        f"{settings.hidden['adding']} (adding) and {settings.hidden['copy']} (copy) for every model and, in the "
        "\"matched parameters\" rows, the RNN's and LSTM's hidden size chosen to match the GRU's recurrent "
        f"parameter count. A cell trains until the loss on {settings.eval_size} held-out sequences (checked every "
        f"{settings.eval_every} steps) is under the bar, or for at most {settings.steps['adding']:,} (adding) / "
        f"{settings.steps['copy']:,} (copy) steps or {settings.max_minutes:g} minutes. Solved: adding MSE < 0.01 "
        "(predicting the mean scores 0.167); copy cross-entropy < 5 % of the memoryless 10 log 8 / (T + 20). A "
        'model that fails at one length is not trained at the longer ones ("not run"). The learning rate was '
        "tuned once per model family (RNN, LSTM, GRU) on the shortest length of each task, seed 0, from "
        f"{', '.join(f'{v:g}' for v in settings.learning_rates)}, and used at every length and seed.",
        "",
        'Each cell: the step at which each seed solved it ("no: x" = not solved in the budget, final '
        'validation loss x times the trivial one; "(time)": stopped by the time limit, not the step budget).',
        "",
    ]
    for task in TASKS:
        tuning = [r for r in runs if r.purpose == "tune" and r.task == task]
        if not tuning:
            continue
        lengths = settings.lengths[task]
        name = "T" if task == "adding" else "delay T"
        lines += [f"### {'Adding problem' if task == 'adding' else 'Copy task'}", ""]
        lines.append(
            "| learning rate, tuned at "
            + f"{name} = {lengths[0]} | "
            + " | ".join(f"{v:g}" for v in settings.learning_rates)
            + " | chosen |"
        )
        lines.append("|---" * (len(settings.learning_rates) + 2) + "|")
        for kind in ("rnn", "lstm", "gru-after"):
            rows = {r.learning_rate: r for r in tuning if r.kind == kind}
            chosen = best_learning_rate(list(rows.values()))
            family = {"rnn": "RNN", "lstm": "LSTM", "gru-after": "GRU (reset after; both GRUs use it)"}[kind]
            lines.append(
                f"| {family} | " + " | ".join(_cell(rows.get(v)) for v in settings.learning_rates) + f" | {chosen:g} |"
            )
        lines += [
            "",
            "| model | hidden | parameters | " + " | ".join(f"{name} = {n}" for n in lengths) + " |",
            "|---|---|---|" + "---|" * len(lengths),
        ]
        for kind, setting, hidden in _models(runs, task):
            cells = _main_runs(runs, task, kind, setting)
            label = LABELS[kind] + (", matched parameters" if setting == "params" else "")
            lines.append(
                f"| {label} | {hidden} | {recurrent_parameters(kind, task_inputs(task), hidden):,} | "
                + " | ".join(" / ".join(_cell(cells.get((n, s))) for s in range(settings.seeds)) for n in lengths)
                + " |"
            )
        lines.append("")
    lines += [
        "### Longest length solved",
        "",
        "| model | adding, every seed | adding, any seed | copy, every seed | copy, any seed |",
        "|---|---|---|---|---|",
    ]
    for kind, setting, hidden in _models(runs, "adding"):
        label = LABELS[kind] + (", matched parameters" if setting == "params" else "")
        values = [
            longest_solved(runs, task, kind, setting, settings.seeds, every)
            for task in TASKS
            for every in (True, False)
        ]
        lines.append(f"| {label} | " + " | ".join(str(v) if v else "none" for v in values) + " |")
    lines += (
        ["", "### The claims", ""]
        + claims(runs, settings)
        + [
            "",
            "![loss curves](memory_loss_curves.png)",
            "![longest length solved](memory_longest_solved.png)",
        ]
    )
    return "\n".join(lines) + "\n"


def claims(runs: List[Run], settings: Settings) -> List[str]:
    """One paragraph per claim of the usual GRU tutorials, judged from the runs by a stated rule:
    the longest length solved by every seed, at matched hidden size and at matched parameters.
    Claim 1 holds if the plain RNN (its better size) solves shorter lengths than both gated
    families on both tasks; claim 2 if the GRU (its better placement) solves longer lengths than
    the plain RNN on both tasks; claim 3 if the LSTM solves longer lengths than the GRU in the
    comparisons (matched hidden size, matched parameters; each task) and never shorter."""

    def longest(task, kind, setting="hidden"):
        return longest_solved(runs, task, kind, setting, settings.seeds, every_seed=True)

    def fmt(task, kind, setting="hidden"):
        value = longest(task, kind, setting)
        return str(value) if value else "none"

    def gru_best(task):
        return max(longest(task, "gru-after"), longest(task, "gru-before"))

    out = []
    facts = "; ".join(
        f"{task}: RNN {fmt(task, 'rnn')} ({fmt(task, 'rnn', 'params')} matched), LSTM {fmt(task, 'lstm')} "
        f"({fmt(task, 'lstm', 'params')} matched), GRU reset after {fmt(task, 'gru-after')}, reset before "
        f"{fmt(task, 'gru-before')}"
        for task in TASKS
    )
    out.append(f"Longest length solved by every seed — {facts}.")
    out.append("")
    if not any(r.solved_at for r in runs if r.purpose == "main"):
        return out + [
            "No model solved any length: the run cannot tell the models apart, so every claim is **left open**."
        ]
    rnn = {t: max(longest(t, "rnn"), longest(t, "rnn", "params")) for t in TASKS}
    gated = {t: min(gru_best(t), max(longest(t, "lstm"), longest(t, "lstm", "params"))) for t in TASKS}
    if all(rnn[t] < gated[t] for t in TASKS):
        verdict = (
            "**supported**: on both tasks the plain RNN (either size) solves shorter lengths than the GRU and LSTM"
        )
    elif all(rnn[t] >= gated[t] for t in TASKS):
        verdict = "**contradicted**: the plain RNN solves lengths as long as the gated models on both tasks"
    else:
        verdict = "**left open**: the plain RNN falls behind both gated models on one task only"
    lstm_best = {t: max(longest(t, "lstm"), longest(t, "lstm", "params")) for t in TASKS}
    numbers = "; ".join(
        f"{task}: RNN {rnn[task] or 'none'}, LSTM {lstm_best[task] or 'none'}, GRU {gru_best(task) or 'none'}"
        for task in TASKS
    )
    out.append(
        f"1. *Plain RNNs have a short-term memory problem*: {verdict} (longest solved at either size: {numbers})."
    )
    if all(gru_best(t) > rnn[t] for t in TASKS):
        verdict = (
            "**supported**: the GRU solves lengths the plain RNN cannot on both tasks "
            f"(adding T = {gru_best('adding')}, copy delay {gru_best('copy')})"
        )
    elif all(gru_best(t) == 0 for t in TASKS):
        verdict = "**contradicted** at these lengths and budget: the GRU solves none"
    else:
        verdict = "**left open**: the GRU outlasts the plain RNN on one task only"
    out.append(f"2. *GRUs capture long-term dependencies*: {verdict}.")
    comparisons = []
    for task in TASKS:
        for setting in ("hidden", "params"):
            lstm, gru = longest(task, "lstm", setting), gru_best(task)
            comparisons.append((task, setting, lstm, gru))
    lstm_wins = [c for c in comparisons if c[2] > c[3]]
    gru_wins = [c for c in comparisons if c[3] > c[2]]
    detail = ", ".join(
        f"{task} ({'matched hidden' if setting == 'hidden' else 'matched parameters'}): LSTM {lstm or 'none'}, "
        f"GRU {gru or 'none'}"
        for task, setting, lstm, gru in comparisons
    )
    if lstm_wins and not gru_wins:
        verdict = "**supported**: the LSTM solves longer lengths than the GRU"
    elif gru_wins and not lstm_wins:
        verdict = (
            "**contradicted**: the GRU solves lengths at least as long as the LSTM in every comparison, longer in some"
        )
    elif not gru_wins and not lstm_wins:
        verdict = "**left open**: the LSTM and the GRU reach the same longest length in every comparison"
    else:
        verdict = "**left open**: each wins some comparisons"
    out.append(
        f"3. *LSTMs are the better pick for very long sequences, GRUs for short and medium ones*: {verdict} ({detail})."
    )
    out += [
        "",
        f"The rule: a claim is judged on the longest length solved by every seed. The verdicts hold for "
        f"this setup: these hidden sizes, a budget of {settings.steps['adding']:,} (adding) and "
        f"{settings.steps['copy']:,} (copy) steps, Adam with one learning rate per family. A model that fails "
        "here might still solve a length with far more steps or other tuning; the table says how close each "
        "came (its final loss against the memoryless one).",
    ]
    return out


def plot(runs: List[Run], settings: Settings, out_dir: str) -> List[str]:
    """memory_loss_curves.png (validation loss / trivial loss against steps, seed 0, for each
    task at its two shortest lengths) and memory_longest_solved.png (per model and task)."""
    from .plotting import pyplot

    plt = pyplot()
    paths = []
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False)
    for row, task in enumerate(TASKS):
        for col, length in enumerate(settings.lengths[task][:2]):
            ax = axes[row][col]
            for kind, setting, hidden in _models(runs, task):
                run = _main_runs(runs, task, kind, setting).get((length, 0))
                if run is None or not run.curve:
                    continue
                steps = [p[0] for p in run.curve]
                label = LABELS[kind] + f", H={hidden}" + (" (matched)" if setting == "params" else "")
                ratios = [p[2] / run.trivial_loss for p in run.curve]
                ax.plot(steps, ratios, ls="--" if setting == "params" else "-", label=label, color=COLOURS[kind])
            ax.axhline(solved_below(task, length) / trivial_loss(task, length), color="grey", lw=0.8, ls=":")
            ax.set_yscale("log")
            ax.set_xlabel("training step")
            ax.set_ylabel("validation loss / memoryless loss")
            ax.set_title(f"{task}, {'T' if task == 'adding' else 'delay'} = {length}, seed 0")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "memory_loss_curves.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, task in zip(axes[0], TASKS):
        models = _models(runs, task)
        names = [
            LABELS[k].replace("grukit, ", "").replace(" (torch)", "") + (" (matched)" if s == "params" else "")
            for k, s, _ in models
        ]
        every = [longest_solved(runs, task, k, s, settings.seeds, True) for k, s, _ in models]
        anyseed = [longest_solved(runs, task, k, s, settings.seeds, False) for k, s, _ in models]
        positions = np.arange(len(models))
        ax.barh(positions, anyseed, color="#c6dbef", label="any seed")
        ax.barh(positions, every, color="#3182bd", label="every seed")
        ax.set_yticks(positions, names, fontsize=8)
        ax.set_xscale("symlog", linthresh=max(1, settings.lengths[task][0]))
        ax.set_xticks(list(settings.lengths[task]), [str(v) for v in settings.lengths[task]])
        ax.set_xlabel("longest length solved (T for adding, delay for copy)")
        ax.set_title(task)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "memory_longest_solved.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
