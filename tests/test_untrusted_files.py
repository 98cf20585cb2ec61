"""Model files and checkpoints: nothing in a file runs code, and nothing is left half-written."""

import os
import subprocess
import sys

import pytest
import torch

from grukit import files
from grukit.apps.tasks import model_files


class WritesAMarker:
    """Unpickling this would create ``path``: what a crafted model file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.pt"
    torch.save({"task": "sentiment", "options": {}, "state_dict": {}, "payload": WritesAMarker(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_crafted_model_file_is_refused_and_runs_nothing(crafted):
    path, marker = crafted
    with pytest.raises(
        ValueError, match="is not a grukit model file: it is not a torch file of tensors and plain data"
    ):
        model_files.load(str(path))
    with pytest.raises(
        ValueError, match="is not a grukit checkpoint: it is not a torch file of tensors and plain data"
    ):
        files.load_tensors(str(path), "checkpoint")
    assert not marker.exists()


def test_crafted_model_file_through_the_cli_is_one_line_and_runs_nothing(crafted):
    path, marker = crafted
    done = subprocess.run(
        [sys.executable, "-m", "grukit.apps.cli", "predict", str(path), "a fine film"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "is not a grukit model file" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not marker.exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    files.save_atomically({"version": 1}, str(path))
    real_save = torch.save

    def dies_midway(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # as a Ctrl-C (or a kill) in the middle of the write

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        files.save_atomically({"version": 2}, str(path))
    monkeypatch.setattr(torch, "save", real_save)
    assert files.load_tensors(str(path), "model file") == {"version": 1}  # the previous file, whole
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary file left


MALFORMED = {
    "empty": lambda p: p.write_bytes(b""),
    "random-bytes": lambda p: p.write_bytes(bytes(range(256)) * 3),
    "json": lambda p: p.write_text('{"task": "weather"}'),
    "folder": lambda p: p.mkdir(),
    "unknown-task": lambda p: torch.save({"task": "nope", "config": {}}, p),
    "missing-keys": lambda p: torch.save({"task": "weather"}, p),
    "truncated": lambda p: (torch.save({"task": "weather", "w": torch.randn(500)}, p), _truncate(p)),
}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("command", [["predict"], ["gates"], ["export", "{out}"]])
def test_every_malformed_model_file_gets_one_line_not_a_traceback(kind, command, tmp_path, capsys):
    from grukit.apps.cli import main

    path = tmp_path / "model.pt"
    MALFORMED[kind](path)
    argv = [command[0], str(path)] + [a.format(out=tmp_path / "m.onnx") for a in command[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_predict_file_that_is_a_folder_is_one_line(tmp_path, capsys):
    from grukit.apps.cli import main

    path = tmp_path / "model.pt"
    torch.save({"task": "weather"}, path)
    assert main(["predict", str(path), "--file", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_resume_from_a_checkpoint_of_another_task_or_size_is_one_line(tmp_path, capsys):
    from grukit.apps.cli import main

    checkpoint = str(tmp_path / "ck.pt")
    quick = ["--epochs", "1", "--limit", "40", "--quiet"]
    assert main(["train", "weather", "--hidden", "8", "--checkpoint", checkpoint] + quick) == 0
    capsys.readouterr()
    cases = [
        (["train", "stocks", "--hidden", "8", "--epochs", "2"], "is a checkpoint of the weather task, not of stocks"),
        (["train", "weather", "--hidden", "16", "--epochs", "2"], "does not fit this model"),
    ]
    for argv, message in cases:
        assert main(argv + ["--resume", checkpoint, "--limit", "40", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    torch.save({"epoch": 1}, tmp_path / "partial.pt")
    assert main(["train", "weather", "--resume", str(tmp_path / "partial.pt"), "--epochs", "2", "--quiet"]) == 2
    assert "is not a grukit checkpoint" in capsys.readouterr().err


def test_a_checkpoint_write_killed_midway_leaves_the_previous_one_to_resume_from(tmp_path, capsys):
    """SIGKILL during the write (no Python cleanup runs): the previous checkpoint stays whole."""
    from grukit.apps.cli import main

    checkpoint = str(tmp_path / "ck.pt")
    quick = ["--hidden", "8", "--limit", "40", "--quiet"]
    assert main(["train", "weather", "--epochs", "1", "--checkpoint", checkpoint] + quick) == 0
    before = open(checkpoint, "rb").read()
    killer = (
        "import os, signal, torch\n"
        "from grukit import files\n"
        "def dies_midway(obj, f):\n"
        "    open(f, 'wb').write(b'PK partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "torch.save = dies_midway\n"
        f"files.save_atomically({{'epoch': 99}}, {checkpoint!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", killer], capture_output=True, timeout=120)
    assert done.returncode == -9
    assert open(checkpoint, "rb").read() == before
    capsys.readouterr()
    assert main(["train", "weather", "--epochs", "2", "--resume", checkpoint, "--checkpoint", checkpoint] + quick) == 0
    assert files.load_tensors(checkpoint, "checkpoint")["epoch"] == 2  # resumed at epoch 2 and wrote it
