"""Where a trained model is written: never lost, never over something that is not a model file
(issue 31's audit: a failed final save, --output over devices, FIFOs and symlinks, file modes,
temporaries left by a killed save, a checkpoint on a full disk)."""

import os
import stat

import pytest
import torch

from grukit import files
from grukit.apps import cli
from grukit.apps.tasks import checkpoints, model_files

QUICK = ["--epochs", "1", "--limit", "60", "--quiet", "--hidden", "8"]


def test_a_long_output_name_is_saved(tmp_path, capsys):
    path = tmp_path / ("m" * 246 + ".pt")  # the old temporary name, ".NAME.PID.tmp", passed 255 characters
    assert cli.main(["train", "weather", *QUICK, "--output", str(path)]) == 0
    assert model_files.load(str(path))["task"] == "weather"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_final_save_keeps_the_model_and_the_report(tmp_path, monkeypatch, capsys):
    real = model_files.save_atomically
    asked = str(tmp_path / "m.pt")

    def fails_where_asked(obj, path):
        if path == asked:
            raise RuntimeError("File m.pt cannot be opened.")  # what torch.save raises
        real(obj, path)

    monkeypatch.setattr(model_files, "save_atomically", fails_where_asked)
    assert cli.main(["train", "weather", *QUICK, "--output", asked]) == 2
    captured = capsys.readouterr()
    assert "grukit GRU" in captured.out  # the report
    error = captured.err.strip()
    assert error.count("\n") == 0 and "could not save the model to" in error and "cannot be opened" in error
    kept = error.split("the trained model is kept in ")[1].split(" (move it")[0]
    try:
        assert model_files.load(kept)["task"] == "weather"
    finally:
        os.remove(kept)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_output_that_is_not_a_regular_file_is_refused_before_training(tmp_path, capsys, kind):
    path = tmp_path / "out"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    assert cli.main(["train", "weather", *QUICK, "--output", str(path)]) == 2  # refused before training
    assert ("is not a regular file" if kind == "fifo" else "is a folder") in capsys.readouterr().err
    with pytest.raises(ValueError, match="is not a regular file"):
        files.save_atomically({"x": 1}, str(path))
    assert stat.S_ISFIFO(os.stat(path).st_mode) if kind == "fifo" else path.is_dir()  # left as it was


def test_a_symlink_is_written_through_and_a_private_file_stays_private(tmp_path):
    target = tmp_path / "models" / "m.pt"
    target.parent.mkdir()
    files.save_atomically({"version": 1}, str(target))
    os.chmod(target, 0o600)
    link = tmp_path / "latest.pt"
    link.symlink_to(target)
    files.save_atomically({"version": 2}, str(link))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert files.load_tensors(str(target), "model file") == {"version": 2}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    fresh = tmp_path / "new.pt"
    files.save_atomically({"version": 1}, str(fresh))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask


def test_temporaries_of_a_killed_save_are_removed_by_the_next(tmp_path):
    stale = tmp_path / f"{files.TEMPORARY_PREFIX}999999999-abc.tmp"  # no such process
    stale.write_bytes(b"PK partial")
    mine = tmp_path / f"{files.TEMPORARY_PREFIX}{os.getpid()}-xyz.tmp"  # a save of a running process
    mine.write_bytes(b"PK partial")
    other = tmp_path / ".notes.tmp"
    other.write_text("not ours")
    files.save_atomically({"x": 1}, str(tmp_path / "m.pt"))
    assert not stale.exists() and mine.exists() and other.exists()


def test_a_checkpoint_that_cannot_be_written_does_not_stop_training(tmp_path, monkeypatch, capsys):
    real = checkpoints.save_atomically
    checkpoint, output = str(tmp_path / "c.pt"), str(tmp_path / "m.pt")

    def disk_full_for_checkpoints(obj, path):
        if path == checkpoint:
            raise OSError(28, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(checkpoints, "save_atomically", disk_full_for_checkpoints)
    arguments = ["train", "weather", "--epochs", "3", "--limit", "60", "--quiet", "--hidden", "8"]
    assert cli.main([*arguments, "--checkpoint", checkpoint, "--output", output]) == 0
    err = capsys.readouterr().err
    assert err.count("could not write the checkpoint") == 1 and "training goes on" in err  # said once, not per epoch
    assert model_files.load(output)["task"] == "weather" and not os.path.exists(checkpoint)
    assert torch.is_tensor(next(iter(model_files.load(output)["state_dict"].values())))
