"""The ``grukit`` command line: the parser and the dispatch. Each family of commands adds its part of the
parser and what it runs: :mod:`.task_commands` (tasks), :mod:`.forecast_commands` (forecasting),
:mod:`.studies.commands` (comparisons, gates); this module adds ``build`` and ``info``, runs the chosen
command, and turns every failure into one line.

grukit demo                         the classic Keras review classifier on Rotten Tomatoes: accuracy
                                    next to the baselines, then a few sentences classified
grukit train TASK [options]         train sentiment | stocks | weather | speech | activity | textgen |
                                    music | translate, report the held-out
                                    metric next to baselines, optionally save the model
grukit predict MODEL [TEXT ...]     classify sentences (sentiment model; or --file F)
grukit predict MODEL --days N       forecast N days past the data (stocks / weather model)
grukit generate MODEL               write text (textgen model) or a melody to MIDI/MusicXML (music model)
grukit translate TEXT [--model F]   English number words -> French (translate model; --beam K)
grukit export MODEL OUT.onnx        a saved task model as ONNX (embedding, GRU, dense head)
grukit compare [--quick]            RNN vs LSTM vs GRU: the usual comparison table measured, plots
grukit compare --min-gru          the minGRU (Feng et al. 2024) against the GRU, same budgets
grukit gates MODEL [TEXT]           the update and reset gates at work: PNG + HTML
grukit forecast | backtest          one global GRU over one series or many (grukit.forecasting)
grukit evaluate | quantize MODEL    score a classifier on a labelled file; a model file in int8 / bfloat16
grukit build                        compile the fused CPU kernels now (otherwise on first use)
grukit info                         versions and the backends available here
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from typing import List, Optional

from .arguments import (
    attach_list_values,
)
from .forecast_commands import add_commands as add_forecasting_commands
from .studies.commands import add_commands as add_study_commands
from .task_commands import add_commands as add_task_commands
from .task_commands import check_before_running


def _build(args: argparse.Namespace) -> int:
    from ..backends import cpu_fused

    started = time.perf_counter()
    if not cpu_fused.is_available():
        print(f"the fused CPU kernels are unavailable: {cpu_fused.why_unavailable()}", file=sys.stderr)
        return 1
    manifest = cpu_fused.build_manifest()
    print(f"fused CPU kernels ready in {time.perf_counter() - started:.1f} s")
    print(f"  built for {manifest['level']} on {manifest['cpu']} (cache: {manifest['folder']})")
    gemm = cpu_fused.gemm_routines()
    print(f"  matrix products ({gemm['source']}): " + ", ".join(f"{k} {r}" for k, r in gemm["routines"].items()))
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__, backends

    print(f"grukit {__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in backends.names()[1:]:
        module = backends.get(name)
        state = "available" if module.is_available() else f"unavailable ({module.why_unavailable()})"
        print(f"  backend {name}: {state}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with errors worded as grukit words them: "--epochs must be at least 1, got 0"."""

    def error(self, message: str):
        super().error(re.sub(r"^argument ([^:]+): (must|invalid)", r"\1 \2", message))


def build_parser() -> argparse.ArgumentParser:
    """The ``grukit`` command's parser. It imports no task (nor torch): ``--help`` answers at once."""

    parser = _Parser(prog="grukit", description="Gated Recurrent Units: applications and tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_task_commands(sub)
    add_study_commands(sub)
    add_forecasting_commands(sub)
    build = sub.add_parser("build", help="compile the fused CPU kernels now (otherwise on first use)")
    build.set_defaults(run=_build)
    info = sub.add_parser("info", help="versions and available backends")
    info.set_defaults(run=_info)
    return parser


def torch_out_of_memory() -> tuple:
    """torch's out-of-memory error type, for ``isinstance`` (a GPU's; CPU allocation failures are
    plain RuntimeErrors saying "can't allocate memory")."""
    import torch

    return tuple(t for t in (getattr(torch, "OutOfMemoryError", None),) if t is not None)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``grukit`` command; returns its exit status. Ctrl-C anywhere, during the imports or
    pressed again while the first is handled, ends it with one line and status 130."""
    exiting = argv is None  # the process's own command line: it ends when this returns
    if exiting:
        # while the command imports (torch, pandas: seconds) nothing is being written, so Ctrl-C
        # ends the process at once: a KeyboardInterrupt raised inside an extension module's import
        # can leave it half-loaded and surface later as another error
        signal.signal(signal.SIGINT, _exit_while_starting)
    try:
        return _run_command(argv, exiting)
    except KeyboardInterrupt:
        return _interrupted("grukit", "", exiting)
    except BrokenPipeError:  # `grukit predict ... | head`: the reader has what it wanted; stop quietly, as
        # cat does. stdout goes to /dev/null so that the interpreter's final flush does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file descriptor (tests capture it)
            pass
        return 128 + signal.SIGPIPE


def _exit_while_starting(signum, frame) -> None:
    os.write(2, b"grukit: interrupted\n")
    os._exit(130)


def _interrupted(command: str, where: str, exiting: bool) -> int:
    """Say that ``command`` was interrupted (``where``: what was kept), with a second Ctrl-C
    ignored while saying it and, when the process is ``exiting``, until it has exited; the
    shell's status for SIGINT."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to set
        previous = None
    try:
        print(f"{command}: interrupted{where}", file=sys.stderr)
    finally:
        if previous is not None and not exiting:
            signal.signal(signal.SIGINT, previous)
    return 130


REPLACED_TRAIN_FORECAST = (
    "grukit train: error: `grukit train forecast` is replaced by the panel forecaster, where a single series is "
    "a panel of one: grukit forecast --csv FILE --target COL --time COL --horizon N --output MODEL"
)


def _run_command(argv: Optional[List[str]], exiting: bool) -> int:
    parser = build_parser()
    argv = attach_list_values(sys.argv[1:] if argv is None else list(argv))
    if argv[:2] == ["train", "forecast"]:  # the one-series forecaster went: one forecasting path
        print(REPLACED_TRAIN_FORECAST, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)  # --help and usage errors end here, before torch is imported

    from ..backends import BackendError
    from ..files import first_line

    relaunched = check_before_running(parser, args, argv)
    if relaunched is not None:  # --nproc N: the workers ran the command
        return relaunched
    if exiting:  # started: Ctrl-C is a KeyboardInterrupt again (training keeps its checkpoint)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError) as error:  # bad input or missing data: one clear line
        print(f"grukit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BackendError as error:  # $GRUKIT_BACKEND names one that cannot run here: one line, what to do
        print(
            f"grukit {args.command}: error: {error} (unset $GRUKIT_BACKEND or name one that runs here)", file=sys.stderr
        )
        return 2
    except (KeyError, RuntimeError) as error:
        model = getattr(args, "model", None)
        if isinstance(error, torch_out_of_memory()) or "can't allocate memory" in str(error):
            print(
                f"grukit {args.command}: error: not enough memory for this model and batch (give a smaller "
                f"--hidden, --layers or --batch-size): {first_line(error)}",
                file=sys.stderr,
            )
            return 2
        if not model:
            raise  # not about a model file: a bug, shown with its traceback
        # a model file that loads but lacks a key, or holds weights of other sizes
        reason = first_line(error)
        print(
            f"grukit {args.command}: error: {model!r} is not a complete grukit model file for its task "
            f"({type(error).__name__}: {reason})",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # not a failing file: the reader of stdout has gone (main ends quietly)
        raise
    except OSError as error:  # a full disk, a read-only folder, a failing device: one line naming the file
        where = f" ({error.filename})" if error.filename else ""
        print(f"grukit {args.command}: error: {error.strerror or first_line(error)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, where to resume from, the shell's code for SIGINT
        checkpoint = getattr(args, "checkpoint", None)
        where = ""
        if checkpoint and os.path.exists(checkpoint):
            where = f"; the last complete checkpoint is {checkpoint} (--resume {checkpoint})"
        elif checkpoint:
            where = f"; before the first checkpoint ({checkpoint} was not written yet)"
        return _interrupted(f"grukit {args.command}", where, exiting)


if __name__ == "__main__":
    sys.exit(main())
