"""The GRUKIT_* environment variables: every one declared once (grukit.settings), a bad value refused
with one line naming the allowed ones, and the settings page's table made from the registry."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grukit import backends, settings
from grukit.backends import cpu_build, gemm_choice, triton_backend

ROOT = Path(__file__).resolve().parent.parent


def test_every_variable_the_code_reads_is_declared_and_read_through_the_registry():
    read = set()
    for path in (ROOT / "src" / "grukit").rglob("*.py"):
        text = path.read_text()
        read |= set(re.findall(r"GRUKIT_[A-Z_]+", text))
        if path.name != "settings.py":
            assert not re.search(r"environ(\.get)?\(\s*[\"']GRUKIT_|environ\[[\"']GRUKIT_", text), path
    assert read <= set(settings.SETTINGS), read - set(settings.SETTINGS)


def test_the_allowed_values_are_the_ones_the_code_has():
    assert set(settings.BACKENDS) == {"auto", *backends.names()}
    assert settings.GEMM_ROUTINES == gemm_choice.ROUTINES
    assert set(cpu_build.X86_LEVELS) <= set(settings.CPU_LEVELS)
    assert settings.TRITON_DESIGNS == triton_backend.DESIGNS


@pytest.mark.parametrize("name", [n for n, s in settings.SETTINGS.items() if s.allowed is not None])
def test_a_bad_value_is_refused_naming_the_allowed_ones(name, monkeypatch):
    monkeypatch.setenv(name, "nonsense")
    allowed = [v for v in settings.SETTINGS[name].allowed if v]
    with pytest.raises(settings.SettingError, match=re.escape(f"${name} must be one of {', '.join(allowed)}")):
        settings.get(name)
    monkeypatch.setenv(name, "")
    assert settings.get(name) == settings.SETTINGS[name].default


@pytest.mark.parametrize(
    "name,code",
    [
        ("GRUKIT_BACKEND", "import grukit, torch; grukit.GRU(3, 4)(torch.zeros(2, 1, 3))"),
        ("GRUKIT_GEMM", "import grukit, torch; grukit.GRU(3, 4)(torch.zeros(2, 1, 3))"),
        ("GRUKIT_TRITON_DESIGN", "from grukit.backends import triton_backend; triton_backend.design(8, 128)"),
    ],
)
def test_a_bad_setting_stops_the_first_use_with_one_line(name, code):
    env = dict(os.environ, **{name: "nonsense"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"grukit.settings.SettingError: ${name} must be one of "), done.stderr[-2000:]
    assert "could not be built" not in done.stderr  # refused, not a quiet fallback to the portable path


@pytest.mark.parametrize("name", [n for n, s in settings.SETTINGS.items() if s.allowed is not None])
def test_every_setting_is_checked_when_grukit_is_imported(name):
    """Even one read only on a GPU (GRUKIT_TRITON_DESIGN) or at a build is refused on import, on any machine."""
    env = dict(os.environ, **{name: "nonsense"})
    done = subprocess.run([sys.executable, "-c", "import grukit"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"grukit.settings.SettingError: ${name} must be one of ")


@pytest.mark.parametrize(
    "command", [["-m", "grukit.apps.cli"], ["-c", "import sys; sys.argv = ['grukit']; import grukit"]]
)
def test_the_command_refuses_a_setting_at_import_in_one_line(command):
    env = dict(os.environ, GRUKIT_TRITON_DESIGN="nonsense")
    done = subprocess.run([sys.executable, *command, "--help"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert lines == [
        "grukit: error: $GRUKIT_TRITON_DESIGN must be one of persistent, stepwise (or unset), got 'nonsense'"
    ]


def test_the_command_line_says_it_in_one_line(tmp_path):
    env = dict(os.environ, GRUKIT_BACKEND="nonsense")
    done = subprocess.run(
        [sys.executable, "-m", "grukit.apps.cli", "train", "weather", "--epochs", "1", "--limit", "50", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "$GRUKIT_BACKEND must be one of auto, torch, cpu_fused" in lines[0], done.stderr


def test_the_settings_page_is_the_registry():
    page = (ROOT / "docs" / "settings.md").read_text()
    assert settings.markdown_table() in page, "docs/settings.md's table differs: python -m grukit.settings"
