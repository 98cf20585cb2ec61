"""``grukit compare`` and ``grukit gates``: the comparison studies' commands. The parser's part for each,
and what each runs; ``grukit.apps.cli`` only adds these to its parser."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..arguments import positive_int

# the study modules import torch (seconds): each command imports them when it runs, so the parser does not


def add_commands(sub) -> None:
    """Add ``compare`` and ``gates`` to the command line's subcommands ``sub``."""
    comp = sub.add_parser("compare", help="RNN vs LSTM vs GRU on the tasks and long-memory problems")
    comp.add_argument(
        "--quick", action="store_true", help="tiny settings (seconds; for tests), written to comparison-quick/"
    )
    comp.add_argument(
        "--out", help="folder for COMPARISON.md, the plots and runs.jsonl (default comparison, or comparison-quick)"
    )
    comp.add_argument("--memory", action="store_true", help="run only the long-memory experiment (adding, copy)")
    comp.add_argument("--seeds", type=positive_int, default=2, help="seeds per model and setting (default 2)")
    comp.add_argument(
        "--steps",
        type=positive_int,
        help="step budget per memory run, every task (default 10,000 adding, 20,000 copy and selective copying)",
    )
    comp.add_argument("--adding-lengths", type=positive_int, nargs="+", help="adding-problem lengths T")
    comp.add_argument("--copy-delays", type=positive_int, nargs="+", help="copy-task delays T")
    comp.add_argument(
        "--selective-lengths", type=positive_int, nargs="+", help="selective-copying lengths T (with --min-gru)"
    )
    comp.add_argument("--jobs", type=positive_int, default=2, help="memory runs trained at once, one core each")
    comp.add_argument(
        "--min-gru",
        action="store_true",
        help="the minGRU (Feng et al. 2024) against the GRU: tasks, adding, copy and selective copying",
    )
    comp.set_defaults(run=run_compare)
    gate = sub.add_parser("gates", help="plot a trained model's update and reset gates (PNG + hover HTML)")
    gate.add_argument("model", help="a model file from `grukit train TASK --output FILE`")
    gate.add_argument("text", nargs="*", help="the sentence (sentiment models)")
    gate.add_argument("--days", type=int, default=60, help="days of the series to show (forecast models; default 60)")
    gate.add_argument("--layer", type=int, default=0, help="which GRU layer (default 0)")
    gate.add_argument("--out", default="gates", help="file name prefix: writes OUT.png and OUT.html")
    gate.set_defaults(run=run_gates)


def _task_budget(args: argparse.Namespace):
    """(seeds, epochs per task, example limit) of the sentiment and weather runs of ``grukit compare``."""
    if args.quick:
        return 1, {"sentiment": 1, "weather": 1}, 300
    return args.seeds, {"sentiment": 6, "weather": 20}, 0


def _memory_settings(args: argparse.Namespace):
    """The long-memory experiment's settings, with --steps and the length options applied."""
    from . import memory, memory_tasks

    settings = memory.Settings.quick() if args.quick else memory.Settings(seeds=args.seeds)
    if args.steps and not args.quick:
        settings.steps = {task: args.steps for task in settings.steps}
    options = (("adding", args.adding_lengths), ("copy", args.copy_delays), ("selective", args.selective_lengths))
    for task, lengths in options:
        if lengths:
            settings.lengths[task] = tuple(lengths)
    if args.selective_lengths and min(args.selective_lengths) < memory_tasks.COPY_LENGTH:
        shortest = memory_tasks.COPY_LENGTH
        raise SystemExit(f"grukit: --selective-lengths must be at least {shortest} (the symbols to copy)")
    return settings


def _compare_min_gru(args: argparse.Namespace, command: str, report: str) -> int:
    """``grukit compare --min-gru``: its own section of COMPARISON.md (min_gru_comparison)."""
    from ...files import write_json
    from . import memory_report, min_gru_comparison
    from .report_file import write_section

    seeds, epochs, limit = _task_budget(args)
    saved = os.path.join(args.out, "min_gru_results.json")
    results = []
    if os.path.exists(saved):  # --memory keeps the last task table; a full run keeps its runs of these budgets
        with open(saved) as f:
            results = json.load(f)
    if not args.memory:
        results = min_gru_comparison.run_tasks(seeds, epochs, limit, log=print, done=results)
        write_json(saved, results)
    settings = _memory_settings(args)
    runs = min_gru_comparison.run_memory(settings, args.out, args.jobs, log=print)
    text = min_gru_comparison.markdown(results, runs, settings, command, memory_report.machine(args.jobs))
    write_section(report, "min-gru", text)
    print(text)
    print(f"wrote {report} and {args.out}/runs.jsonl")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """The task comparison (unless ``--memory``), then the long-memory experiment; each writes
    its own section of COMPARISON.md."""
    from . import compare, memory, memory_report
    from .report_file import write_section

    command = ("grukit compare " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["compare"] else "grukit compare").strip()
    if args.out is None:  # a quick run never writes over the full comparison's report and runs
        args.out = "comparison-quick" if args.quick else "comparison"
    report = os.path.join(args.out, "COMPARISON.md")
    os.makedirs(args.out, exist_ok=True)
    if args.min_gru:
        return _compare_min_gru(args, command, report)
    if not args.memory:
        seeds, epochs, limit = _task_budget(args)
        results = compare.run(seeds, epochs, limit, 20 if args.quick else 400, args.out, log=print)
        text = compare.markdown(results, command)
        write_section(
            report,
            "tasks",
            text + "\n![sentiment loss](sentiment_loss.png)\n![gradient flow](gradient_flow.png)\n",
        )
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f)
        print(text)
    settings = _memory_settings(args)
    started = time.perf_counter()
    runs = memory.run_experiment(settings, args.out, jobs=args.jobs, log=print)
    wall = time.perf_counter() - started
    memory_report.plot(runs, settings, args.out)
    text = memory_report.markdown(runs, settings, command, wall, memory_report.machine(args.jobs))
    write_section(report, "memory", text)
    print(text)
    print(f"wrote {report}, {args.out}/runs.jsonl and the PNG plots")
    return 0


def run_gates(args: argparse.Namespace) -> int:
    from ..model_kinds import kind_of
    from . import gates

    saved, task = kind_of(args.model, "grukit gates")
    paths, meaning = gates.write(saved, task, args.text, args.days, args.out, args.layer)
    print(f"wrote {paths[0]} and {paths[1]} ({meaning})")
    return 0
