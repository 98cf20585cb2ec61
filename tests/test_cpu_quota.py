"""The default thread count respects the CPUs the process may use (issue 45): the affinity mask and
the cgroup v2 / v1 CPU quota, faked here; a count the user chose wins."""

import pytest

from grukit import cpu_quota


def _cgroup_v2(tmp_path, cpu_max, path="/docker/abc", parent_max=None):
    root = tmp_path / "cgroup"
    (root / path.strip("/")).mkdir(parents=True)
    if cpu_max is not None:
        (root / path.strip("/") / "cpu.max").write_text(cpu_max + "\n")
    if parent_max is not None:
        (root / path.strip("/").split("/")[0] / "cpu.max").write_text(parent_max + "\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"0::{path}\n")
    return str(root), str(proc)


def _cgroup_v1(tmp_path, quota, period=100000, path="/kubepods/pod1"):
    root = tmp_path / "cgroup"
    folder = root / "cpu,cpuacct" / path.strip("/")
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"12:memory:{path}\n4:cpu,cpuacct:{path}\n0::/\n")
    return str(root), str(proc)


SIXTY_FOUR = lambda: range(64)  # noqa: E731  an affinity mask of a 64-CPU host


@pytest.mark.parametrize(
    "cpu_max, expected",
    [("100000 100000", 1), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("max 100000", 64)],
)
def test_a_cgroup_v2_quota_bounds_the_usable_cpus(tmp_path, cpu_max, expected):
    root, proc = _cgroup_v2(tmp_path, cpu_max)
    assert cpu_quota.usable_cpus(SIXTY_FOUR, root, proc) == expected


def test_a_quota_on_a_parent_cgroup_binds_its_children(tmp_path):
    root, proc = _cgroup_v2(tmp_path, "max 100000", parent_max="300000 100000")
    assert cpu_quota.quota_cpus(root, proc) == 3.0
    assert cpu_quota.usable_cpus(SIXTY_FOUR, root, proc) == 3


@pytest.mark.parametrize("quota, expected", [(100000, 1), (400000, 4), (-1, 64)])
def test_a_cgroup_v1_quota_bounds_the_usable_cpus(tmp_path, quota, expected):
    root, proc = _cgroup_v1(tmp_path, quota)
    assert cpu_quota.usable_cpus(SIXTY_FOUR, root, proc) == expected


def test_the_affinity_mask_bounds_the_usable_cpus(tmp_path):
    root, proc = _cgroup_v2(tmp_path, "800000 100000")
    assert cpu_quota.usable_cpus(lambda: {3, 5}, root, proc) == 2  # taskset -c 3,5 under an 8-CPU quota
    assert cpu_quota.usable_cpus(lambda: {0}, str(tmp_path / "none"), str(tmp_path / "none")) == 1


class FakeTorch:
    def __init__(self, threads):
        self.threads = threads

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.threads = n


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(cpu_quota, "_APPLIED", False)


def test_under_a_one_cpu_quota_the_thread_count_is_one(tmp_path, fresh):
    root, proc = _cgroup_v2(tmp_path, "100000 100000")
    torch = FakeTorch(64)  # torch's default on the 64-core host
    usable = cpu_quota.usable_cpus(SIXTY_FOUR, root, proc)
    assert cpu_quota.apply_default_threads(torch, usable, default=64, environ={}) == 1
    assert torch.threads == 1
    assert cpu_quota.apply_default_threads(torch, 8, default=64, environ={}) is None  # once per process


def test_a_count_the_user_chose_wins(fresh, monkeypatch):
    torch = FakeTorch(16)  # torch.set_num_threads(16) before grukit loaded
    assert cpu_quota.apply_default_threads(torch, 2, default=64, environ={}) is None and torch.threads == 16
    monkeypatch.setattr(cpu_quota, "_APPLIED", False)
    torch = FakeTorch(64)
    assert cpu_quota.apply_default_threads(torch, 2, default=64, environ={"OMP_NUM_THREADS": "64"}) is None
    assert torch.threads == 64
    monkeypatch.setattr(cpu_quota, "_APPLIED", False)
    torch = FakeTorch(2)  # the quota does not bind
    assert cpu_quota.apply_default_threads(torch, 2, default=2, environ={}) is None and torch.threads == 2


def test_torchs_default_is_the_physical_cores(tmp_path):
    topology = tmp_path / "cpu"
    for cpu, (package, core) in enumerate([(0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 0)]):  # 2 threads a core
        folder = topology / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")
    (topology / "cpufreq").mkdir()
    assert cpu_quota.torch_default_threads(str(topology)) == 3


def test_this_machine_agrees_with_torch():
    """On this machine, with nobody having chosen a count, torch's count is the one predicted."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = (
        "import torch; from grukit import cpu_quota; print(torch.get_num_threads(), cpu_quota.torch_default_threads())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    threads, predicted = done.stdout.split()
    assert threads == predicted, done.stderr
