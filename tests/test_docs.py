"""The README's Python examples run as written, in order, in one namespace (as a reader pasting them
into one session would), in a fresh folder; and the settings page is the registry."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_every_page_the_readme_links_exists():
    for target in re.findall(r"\]\(([^)#]+)[^)]*\)", (ROOT / "README.md").read_text()):
        assert (ROOT / target).exists(), target


@pytest.mark.slow
def test_the_readme_python_examples_run_as_written(tmp_path):
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 6
    program = "\n".join(blocks)
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, KERAS_BACKEND="torch"),
    )
    assert done.returncode == 0, textwrap.shorten(done.stderr[-3000:], 3000)
    assert (tmp_path / "gru.onnx").exists() and (tmp_path / "model.onnx").exists()
