"""The report of ``grukit compare --memory``: the tables of longest lengths solved, every cell's
steps-to-solve or final loss, the claims judged, and the loss curves (:mod:`.memory` runs the
experiment)."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .memory import Run, Settings, best_learning_rate
from .memory_tasks import COLOURS, KINDS, LABELS, TASKS, solved_below, task_inputs, trivial_loss
from .model_sizes import recurrent_parameters

# ---------------------------------------------------------------- the report


def machine(jobs: int) -> str:
    """The CPU model, its x86-64 level, and how many one-thread runs shared it."""
    from ...backends import cpu_build

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
    from ..plotting import pyplot

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
