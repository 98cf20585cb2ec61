"""``grukit compare --min-gru``: the minGRU (Feng et al. 2024) against the GRU, with the budgets and
rules of the GRU-vs-LSTM comparison.

* the sentiment and weather tasks (:func:`grukit.apps.compare.train_task`): the GRU (reset after)
  and the minGRU at hidden size 64, and the minGRU again at the hidden size whose parameter count
  matches the GRU's (it has no recurrent weights: 2 (I H + H) against 3 (I H + H H + 2 H));
* in both, the paper's model body as well (``grukit.MinGRUBlocks``: 3 residual blocks of a minGRU
  layer and an MLP), at the width whose parameter count matches the GRU's;
* the long-memory problems (:mod:`grukit.apps.memory`): the adding problem and the copy task, as
  there, and selective copying (the paper's synthetic task), for both models. Runs already in
  ``runs.jsonl`` (the GRU's, from ``grukit compare --memory`` with the same settings) are reused.

Writes the "min-gru" section of COMPARISON.md: the tables and, for each claim of the paper that
these tasks can test, a verdict from the numbers by a stated rule. Training speed against a fast
GRU is measured by ``bench/min_gru_speed.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from . import memory, memory_report, memory_tasks
from .compare import train_task
from .model_sizes import matched_hidden, recurrent_parameters

KINDS = ("gru-after", "min-gru", "min-gru-blocks")
MEMORY_TASKS = ("adding", "copy", "selective")
TASK_INPUTS = {"sentiment": 64, "weather": 3}  # the embedding size; the weather features
HIDDEN = 64


def _task_models(task: str):
    """(kind, setting, hidden): both at 64, the minGRU and its blocks at the GRU's parameter count."""
    inputs = TASK_INPUTS[task]
    yield "gru-after", "hidden", HIDDEN
    yield "min-gru", "hidden", HIDDEN
    target = recurrent_parameters("gru-after", inputs, HIDDEN)
    # 2 (I H + H) = target, solved for H
    yield "min-gru", "params", max(1, round(target / (2 * (inputs + 1))))
    yield "min-gru-blocks", "params", matched_hidden("min-gru-blocks", inputs, target)


def run_tasks(seeds: int, epochs: Dict[str, int], limit: int, log=print, done: Sequence[Dict] = ()) -> List[Dict]:
    """Train every model of :func:`_task_models` on both tasks, each seed; a result in ``done`` made
    with the same epochs and limit is kept instead of trained again."""
    key = ("task", "kind", "setting", "hidden", "seed", "epochs", "limit")
    kept = {tuple(r.get(k) for k in key): r for r in done}
    results = []
    for task in ("sentiment", "weather"):
        for kind, setting, hidden in _task_models(task):
            for seed in range(seeds):
                r = kept.get((task, kind, setting, hidden, seed, epochs[task], limit))
                if r is not None:
                    results.append(r)
                    continue
                r = train_task(kind, task, hidden, epochs[task], seed, limit)
                r.update(setting=setting, seed=seed, epochs=epochs[task], limit=limit)
                results.append(r)
                log(
                    f"{task:9s} {memory_tasks.LABELS[kind]:15s} H={hidden:<4d} seed {seed}: {r['metric']:.4f} "
                    f"({r['seconds_per_epoch']:.2f} s/epoch)"
                )
    return results


def run_memory(settings: memory.Settings, out_dir: str, jobs: int, log=print) -> List[memory.Run]:
    return memory.run_experiment(settings, out_dir, jobs, log, tasks=MEMORY_TASKS, kinds=KINDS)


def _summary(values, fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _task_columns(results: List[Dict]):
    """(label, rows by task) per model column, in table order."""
    columns = []
    for kind, setting in (("gru-after", "hidden"),) + MODELS["one layer"] + MODELS["blocks"]:
        rows = {
            task: [r for r in results if r["task"] == task and r["kind"] == kind and r["setting"] == setting]
            for task in TASK_INPUTS
        }
        if all(rows.values()):
            label = memory_tasks.LABELS[kind] + (", matched parameters" if setting == "params" else "")
            columns.append((label, rows))
    return columns


def tasks_markdown(results: List[Dict]) -> List[str]:
    columns = _task_columns(results)
    lines = [
        "### Sentiment and weather (the tasks of the GRU-vs-LSTM table, same epochs, learning rates and seeds)",
        "",
        "| | " + " | ".join(label for label, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for task in TASK_INPUTS:
        lines.append(
            f"| hidden size ({task}) | " + " | ".join(str(rows[task][0]["hidden"]) for _, rows in columns) + " |"
        )
        lines.append(
            f"| parameters, recurrent layer ({task}) | "
            + " | ".join(str(rows[task][0]["parameters"]) for _, rows in columns)
            + " |"
        )
    for task, key, name, fmt in (
        ("sentiment", "metric", "sentiment test accuracy", "{:.3f}"),
        ("weather", "metric", "weather test RMSE, deg C", "{:.3f}"),
        ("sentiment", "seconds_per_epoch", "training, s per epoch (sentiment)", "{:.2f}"),
        ("weather", "seconds_per_epoch", "training, s per epoch (weather)", "{:.2f}"),
        ("sentiment", "inference_seconds", "inference, s for the test reviews", "{:.3f}"),
    ):
        lines.append(
            f"| {name} | " + " | ".join(_summary([r[key] for r in rows[task]], fmt) for _, rows in columns) + " |"
        )
    return lines


def memory_markdown(runs: List[memory.Run], settings: memory.Settings) -> List[str]:
    lines = []
    for task in MEMORY_TASKS:
        name = "delay T" if task == "copy" else "T"
        title = {"adding": "Adding problem", "copy": "Copy task", "selective": "Selective copying"}[task]
        lengths = settings.lengths[task]
        lines += [
            "",
            f"### {title} (steps to solve, seed 0 / seed 1; 'no: x' = not solved, final loss / memoryless loss)",
            "",
            "| model | hidden | parameters | learning rate | " + " | ".join(f"{name} = {n}" for n in lengths) + " |",
            "|---" * (len(lengths) + 4) + "|",
        ]
        for kind in KINDS:
            cells = memory_report._main_runs(runs, task, kind, "params" if kind == "min-gru-blocks" else "hidden")
            if not cells:
                continue
            any_run = next(iter(cells.values()))
            row = [
                memory_tasks.LABELS[kind] + (", matched parameters" if kind == "min-gru-blocks" else ""),
                str(any_run.hidden),
                f"{any_run.parameters:,}",
                f"{any_run.learning_rate:g}",
            ]
            for length in lengths:
                row.append(" / ".join(memory_report._cell(cells.get((length, seed))) for seed in range(settings.seeds)))
            lines.append("| " + " | ".join(row) + " |")
    return lines


def _longest(runs, task, kind, settings) -> int:
    setting = "params" if kind == "min-gru-blocks" else "hidden"
    return memory_report.longest_solved(runs, task, kind, setting, settings.seeds, every_seed=True)


MODELS = {  # the minGRU models judged, with the setting of their runs
    "one layer": (("min-gru", "hidden"), ("min-gru", "params")),
    "blocks": (("min-gru-blocks", "params"),),
}


def _accuracy_verdict(by: Dict[tuple, List[float]]) -> List[str]:
    gru_acc = np.mean(by[("sentiment", "gru-after", "hidden")])
    gru_rmse = np.mean(by[("weather", "gru-after", "hidden")])
    parts, competitive = [], []
    for kind, setting in MODELS["one layer"] + MODELS["blocks"]:
        if ("sentiment", kind, setting) not in by or ("weather", kind, setting) not in by:
            continue
        acc, rmse = np.mean(by[("sentiment", kind, setting)]), np.mean(by[("weather", kind, setting)])
        label = memory_tasks.LABELS[kind] + (" at the GRU's parameter count" if setting == "params" else " at H = 64")
        parts.append(f"{label}: accuracy {acc:.3f} ({acc - gru_acc:+.3f}), RMSE {rmse:.3f} ({rmse - gru_rmse:+.3f})")
        if gru_acc - acc <= 0.01 and rmse - gru_rmse <= 0.02 * gru_rmse:
            competitive.append(label)
    verdict = f"holds for the {' and the '.join(competitive)}" if competitive else "does not hold"
    return [
        f"*Accuracy competitive with the GRU's* (rule: a minGRU model within 0.01 sentiment accuracy and 2 % "
        f"weather RMSE of the GRU, both): **{verdict}** here. GRU: accuracy {gru_acc:.3f}, RMSE {gru_rmse:.3f}; "
        + "; ".join(parts)
        + "."
    ]


def _memory_verdicts(runs: List[memory.Run], settings: memory.Settings) -> List[str]:
    lines = []
    for model, description in (
        ("one layer", "A minGRU (one layer, the GRU's hidden size) remembers"),
        ("blocks", "The paper's model body (3 minGRU blocks, at the GRU's parameter count) remembers"),
    ):
        kind = MODELS[model][0][0]
        if not any(r.kind == kind and r.purpose == "main" for r in runs):
            continue
        parts, wins, losses = [], 0, 0
        for task in MEMORY_TASKS:
            g, m = _longest(runs, task, "gru-after", settings), _longest(runs, task, kind, settings)
            parts.append(f"{task}: GRU {g or 'none'}, {memory_tasks.LABELS[kind]} {m or 'none'}")
            wins += m > g
            losses += m < g
        verdict = "holds" if losses == 0 else "does not hold" if wins == 0 else "holds on some tasks only"
        lines.append(
            f"*{description} as far as a GRU, selective copying included* "
            f"(rule: longest length solved by every seed, at least the GRU's on every task): **{verdict}**. "
            f"Longest solved by every seed: {'; '.join(parts)}."
        )
    return lines


def _speed_claim(results: List[Dict]) -> str:
    """The paper's speed claim: the kernels' measurement (bench/min_gru_speed.py), and the seconds per
    epoch of the task runs above."""
    epochs = []
    for task in TASK_INPUTS:
        gru = [r["seconds_per_epoch"] for r in results if r["task"] == task and r["kind"] == "gru-after"]
        for kind, setting in MODELS["one layer"] + MODELS["blocks"]:
            mine = [
                r["seconds_per_epoch"] for r in results if (r["task"], r["kind"], r["setting"]) == (task, kind, setting)
            ]
            if gru and mine:
                label = memory_tasks.LABELS[kind] + (", matched parameters" if setting == "params" else "")
                epochs.append(f"{task}, {label}: {np.mean(gru) / np.mean(mine):.2f}x")
    tasks = f" Per epoch on the tasks above (GRU's seconds / the model's): {'; '.join(epochs)}." if epochs else ""
    return (
        "*Trains many times faster than a GRU*: one layer's training against grukit's fused GRU and torch.nn.GRU "
        "at T 64-4096 is measured on this CPU by `python bench/min_gru_speed.py` (BENCHMARKS.md, the minGRU "
        "section)." + tasks
    )


def verdicts(results: List[Dict], runs: List[memory.Run], settings: memory.Settings) -> List[str]:
    """The paper's claims that these tasks test, each judged by a stated rule, numbered."""
    claims = []
    by: Dict[tuple, List[float]] = {}  # (task, kind, setting) -> the seeds' test metrics
    for r in results:
        by.setdefault((r["task"], r["kind"], r["setting"]), []).append(r["metric"])
    if ("sentiment", "gru-after", "hidden") in by and ("weather", "gru-after", "hidden") in by:
        claims += _accuracy_verdict(by)
    if runs:
        claims += _memory_verdicts(runs, settings)
    claims.append(_speed_claim(results))
    return ["", "### The paper's claims, judged here", ""] + [f"{n}. {claim}" for n, claim in enumerate(claims, 1)]


def markdown(results: List[Dict], runs: List[memory.Run], settings: memory.Settings, command: str, machine: str) -> str:
    # only the lengths of these settings (runs.jsonl may hold the GRU at other lengths too)
    runs = [r for r in runs if r.task in settings.lengths and r.length in settings.lengths[r.task]]
    lines = [
        '## minGRU against the GRU (Feng et al. 2024, "Were RNNs All We Needed?")',
        "",
        f"Made by `{command}` on {machine}. The minGRU's gates read only the input (z = sigmoid(x W_z), "
        "h~ = g(x W_h), h = (1 - z) h + z h~), so training computes every step at once by a scan; one layer "
        "here, as the GRU, and the paper's model body (MinGRUBlocks: an input projection, 3 pre-norm residual "
        "blocks of a minGRU layer and a GELU MLP of 4x width, a final LayerNorm) at the GRU's parameter count. "
        "The GRU's memory runs are those of the section above where the settings match "
        "(same code, budgets, learning-rate grid and seeds).",
        "",
    ]
    if results:
        lines += tasks_markdown(results)
    if runs:
        lines += memory_markdown(runs, settings)
    lines += verdicts(results, runs, settings)
    return "\n".join(lines) + "\n"
