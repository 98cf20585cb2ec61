"""The `grukit` command as a console script, and the weather loader (tasks: test_tasks.py)."""

import os
import subprocess
import sys

import pytest
import torch

import grukit
from grukit.apps.datasets import seattle_weather


def test_weather_split_is_time_ordered_and_scaled_on_training_days_only():
    data = seattle_weather(window=7)
    n = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert n == 1461 - 7
    assert data.x_train.shape == (len(data.y_train), 7, 4)
    # persistence is the target of the day before: last_* of sample i+1 == y of sample i
    assert (data.last_test[1:] == data.y_test[:-1]).all()
    assert str(data.dates_test[-1])[:10] == "2015-12-31"
    assert abs(data.x_train[:, -1, 0].mean()) < 0.1  # standardised on the training days


def test_weather_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        seattle_weather(window=0)
    with pytest.raises(ValueError, match="features and target must be among"):
        seattle_weather(target="humidity")


def test_console_script_runs_and_rejects_bad_options():
    done = subprocess.run(
        [sys.executable, "-m", "grukit.apps.cli", "demo", "--epochs", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--epochs must be at least 1, got 0" in done.stderr
    done = subprocess.run([sys.executable, "-m", "grukit.apps.cli", "info"], capture_output=True, text=True)
    assert done.returncode == 0 and "backend torch: available" in done.stdout


class _TrainingMustNotStart:
    """Stands in for a task in the registry: the checks under test must stop before training."""

    takes_regularisers = False

    def train(self, options):
        raise AssertionError("training started before the output paths were checked")


@pytest.mark.parametrize("flag", ["--output", "--checkpoint", "--json"])
def test_unwritable_output_paths_are_refused_before_training(flag, tmp_path, monkeypatch, capsys):
    from grukit.apps import cli
    from grukit.apps.tasks import TASKS

    monkeypatch.setitem(TASKS, "weather", _TrainingMustNotStart())
    read_only = tmp_path / "read-only.pt"
    read_only.write_text("")
    read_only.chmod(0o444)
    bad_paths = [str(tmp_path / "missing-folder" / "m.pt"), str(tmp_path)]
    if os.geteuid() != 0:  # root writes anything
        bad_paths.append(str(read_only))
    for path in bad_paths:
        assert cli.main(["train", "weather", flag, path]) == 2
        message = capsys.readouterr().err.strip()
        assert message.count("\n") == 0 and flag in message and path in message


def test_a_negative_limit_is_refused(capsys):
    from grukit.apps import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "weather", "--limit", "-5"])
    assert stop.value.code == 2
    assert "--limit must be 0 or more, got -5" in capsys.readouterr().err


def test_ctrl_c_during_training_says_where_the_checkpoint_is_and_exits_130(tmp_path, monkeypatch, capsys):
    from grukit.apps import cli
    from grukit.apps.tasks import TASKS

    class Interrupted(_TrainingMustNotStart):
        def train(self, options):
            raise KeyboardInterrupt

    monkeypatch.setitem(TASKS, "weather", Interrupted())
    checkpoint = str(tmp_path / "ck.pt")
    assert cli.main(["train", "weather", "--checkpoint", checkpoint]) == 130  # before the first checkpoint
    message = capsys.readouterr().err.strip()
    assert message == f"grukit train: interrupted; before the first checkpoint ({checkpoint} was not written yet)"
    open(checkpoint, "wb").close()  # (what an earlier epoch wrote)
    assert cli.main(["train", "weather", "--checkpoint", checkpoint]) == 130
    message = capsys.readouterr().err.strip()
    assert message == f"grukit train: interrupted; the last complete checkpoint is {checkpoint} (--resume {checkpoint})"


def test_predict_names_a_missing_file_flag(tmp_path, capsys):
    from grukit.apps import cli

    path = str(tmp_path / "w.pt")
    assert (
        cli.main(["train", "weather", "--epochs", "1", "--limit", "60", "--quiet", "--hidden", "8", "--output", path])
        == 0
    )
    capsys.readouterr()
    assert cli.main(["predict", path, "--file", str(tmp_path / "missing.txt")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--file {str(tmp_path / 'missing.txt')!r}: no such file")


def test_a_save_that_fails_after_training_still_prints_the_report(tmp_path, monkeypatch, capsys):
    from grukit.apps import cli
    from grukit.apps.tasks import model_files

    def disk_full(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_files, "save_atomically", disk_full)
    path = str(tmp_path / "m.pt")
    assert cli.main(["train", "weather", "--epochs", "1", "--limit", "40", "--quiet", "--output", path]) == 2
    captured = capsys.readouterr()
    assert "weather:" in captured.out and "grukit GRU" in captured.out  # the report
    assert captured.err.strip().count("\n") == 0 and "could not save the model" in captured.err


def test_a_backend_that_cannot_run_here_is_one_line():
    """GRUKIT_BACKEND=triton on a CPU machine printed a traceback (issue 31, audit 6)."""
    command = [sys.executable, "-m", "grukit.apps.cli", "train", "weather", "--epochs", "1", "--limit", "60", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # (the tests' interpreter runs it on CPU)
    done = subprocess.run(command, env=dict(env, GRUKIT_BACKEND="triton"), capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "$GRUKIT_BACKEND='triton'" in done.stderr, done.stderr[-2000:]
    assert "unset $GRUKIT_BACKEND" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ issue 31, audit 6: one line, not a traceback


def _one_line_error(capsys, args, *fragments):
    from grukit.apps.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_a_full_disk_during_export_json_or_gates_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    import errno

    from grukit.apps.tasks import forecast

    model = str(tmp_path / "w.pt")
    from grukit.apps.cli import main

    assert main(["train", "weather", "--epochs", "1", "--limit", "150", "--quiet", "--output", model]) == 0
    capsys.readouterr()

    def full_disk(self, saved, path):
        with open(path, "wb") as f:
            f.write(b"half an ONNX file")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(forecast.ForecastTask, "to_onnx", full_disk)
    onnx_file = str(tmp_path / "w.onnx")
    _one_line_error(capsys, ["export", model, onnx_file], "grukit export: error: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]  # no partial file, no temporary


def test_a_model_file_with_a_non_text_task_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"task": ["weather"], "state": {}}, bad)
    _one_line_error(capsys, ["predict", str(bad), "--days", "2"], "is not a grukit model file")


def test_a_model_too_large_for_memory_is_one_line(capsys, monkeypatch):
    """Refused from the arguments, before anything is allocated (issue 44); and where the estimate
    lets a run through that then fails to allocate, the allocator's failure is one line too."""
    command = ["train", "weather", "--hidden", "200000", "--epochs", "1", "--limit", "100", "--quiet"]
    _one_line_error(capsys, command, "--hidden 200000 needs about 1920.0 GB", "GB this machine has available")
    from grukit.apps import task_commands

    monkeypatch.setattr(task_commands, "check_gru_training", lambda hidden, layers: None)
    _one_line_error(capsys, command, "not enough memory for this model and batch", "--hidden")


def test_meta_device_input_names_the_device_mismatch():
    gru = grukit.GRU(3, 4)
    with pytest.raises(ValueError, match="must be on device meta"):
        gru(torch.randn(5, 2, 3, device="meta"))
    out, h_n = gru.to("meta")(torch.randn(5, 2, 3, device="meta"))  # a model on meta reads shapes
    assert out.shape == (5, 2, 4) and out.device.type == "meta" and h_n.shape == (1, 2, 4)


@pytest.mark.parametrize("presses", [1, 2], ids=["once", "twice"])
def test_ctrl_c_during_the_imports_is_one_line(presses):
    """Ctrl-C while the command still imports torch (or pressed again while the first is handled)
    printed a traceback (issue 31, audit 8); the command now starts without torch."""
    import signal
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = "import sys; from grukit.apps.cli import main; sys.exit(main())"  # as the console script
    command = subprocess.Popen(
        [sys.executable, "-c", code, "train", "weather", "--epochs", "1", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(0.2)  # the command module is loaded (about 30 ms), torch and the tasks are not (seconds)
    for _ in range(presses):
        command.send_signal(signal.SIGINT)
        time.sleep(0.05)
    _, err = command.communicate(timeout=120)
    assert command.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("interrupted"), err
    assert err.count("\n") == 1, err


def test_help_imports_no_task_and_no_torch():
    """`grukit --help` and `grukit train --help` answer without importing torch or a task module
    (seconds on a loaded machine), and `train --help` lists every task with its defaults."""
    code = (
        "import sys\n"
        "from grukit.apps.cli import main\n"
        "for argv in (['--help'], ['train', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('grukit.apps.tasks.') "
        "and m != 'grukit.apps.tasks.catalog')\n"
        "print('IMPORTED', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "IMPORTED []" in result.stdout, result.stdout[-500:]
    from grukit.apps.tasks import TASKS
    from grukit.apps.tasks.catalog import CATALOG

    assert list(CATALOG) == list(TASKS)
    for name, defaults in CATALOG.items():
        assert f"  {name} " in result.stdout
        assert f"--epochs {defaults.epochs} --hidden {defaults.hidden} --batch-size {defaults.batch_size}" in (
            result.stdout
        )


def test_the_tasks_train_with_the_defaults_the_help_lists(monkeypatch):
    """Each task module reads its defaults from the catalog the help prints (no second copy)."""
    from grukit.apps.tasks import classify, csv_series, csv_text, music, sentiment, textgen, translate
    from grukit.apps.tasks.catalog import CATALOG

    assert sentiment.DEFAULTS is CATALOG["sentiment"] and textgen.DEFAULTS is CATALOG["textgen"]
    assert music.DEFAULTS is CATALOG["music"] and translate.DEFAULTS is CATALOG["translate"]
    assert csv_text.DEFAULTS is CATALOG["classify-text"] and csv_series.DEFAULTS is CATALOG["classify-series"]
    seen = {}
    monkeypatch.setattr(classify, "train_on", lambda data, options, defaults: seen.setdefault("d", defaults))
    monkeypatch.setattr(classify, "load_data", lambda task, limit: None)
    from grukit.apps.tasks.options import Options

    classify.train(Options(task="activity"))
    assert seen["d"] is CATALOG["activity"]


def test_a_closed_pipe_ends_quietly():
    """`grukit ... | head`: when the reader stops, grukit stops without "error: Broken pipe"."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before anything is written
    result = subprocess.run(
        [sys.executable, "-m", "grukit.apps.cli", "info"], stdout=writer, stderr=subprocess.PIPE, text=True
    )
    os.close(writer)
    assert result.returncode == 141 and result.stderr == ""


def test_the_command_starts_without_numpy_or_torch():
    """The parser runs, and Ctrl-C is answered in one line, before the heavy imports (numpy took the
    first 0.2 s once a parser option came from the CSV reader's module)."""
    code = "import sys, grukit.apps.cli; print(sorted({'numpy', 'torch', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
