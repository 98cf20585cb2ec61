"""Data-parallel training: `grukit train TASK --nproc 2` (torchrun, gloo, loopback) against 1 process."""

import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow  # every test here starts torchrun processes

COMMON = ["train", "weather", "--limit", "256", "--batch-size", "32", "--quiet"]


def _grukit(*args, check_replicas=False):
    env = dict(os.environ)
    if check_replicas:
        env["GRUKIT_CHECK_REPLICAS"] = "1"  # all_gather the parameters after every step, raise if they differ
    done = subprocess.run(
        [sys.executable, "-m", "grukit.apps.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def _assert_same(a, b):
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    two, one = str(tmp_path / "two.pt"), str(tmp_path / "one.pt")
    out = _grukit(*COMMON, "--epochs", "2", "--nproc", "2", "--output", two, check_replicas=True)
    assert "(2 processes, DistributedDataParallel)" in out
    assert out.count("saved the model") == 1  # rank 0 alone reports and writes
    _grukit(*COMMON, "--epochs", "2", "--output", one)
    _assert_same(_weights(two), _weights(one))


@pytest.mark.parametrize("first,second", [("2", "1"), ("1", "2")])
def test_checkpoint_resumes_on_another_number_of_processes(tmp_path, first, second):
    ck, resumed, straight = (str(tmp_path / n) for n in ("ck.pt", "resumed.pt", "straight.pt"))
    _grukit(*COMMON, "--epochs", "1", "--nproc", first, "--checkpoint", ck)
    assert torch.load(ck, weights_only=False)["world_size"] == int(first)
    _grukit(*COMMON, "--epochs", "2", "--nproc", second, "--resume", ck, "--output", resumed)
    _grukit(*COMMON, "--epochs", "2", "--output", straight)
    _assert_same(_weights(resumed), _weights(straight))


def test_batch_size_must_split_evenly():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grukit.apps.cli",
            *COMMON[:-3],
            "--batch-size",
            "33",
            "--epochs",
            "1",
            "--nproc",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    # refused by the launcher, before any worker starts (the workers' own check says "number of processes")
    assert "--batch-size (33) must be divisible by --nproc (2)" in done.stderr
