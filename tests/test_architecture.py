"""The library core imports nothing from the applications (``grukit.apps``) or their dependencies."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "grukit"
CORE_MODULES = [
    "grukit",
    "grukit.reference",
    "grukit.functional",
    "grukit.nn",
    "grukit.stream",
    "grukit.quantized",
    "grukit.backends",
    "grukit.backends.torch_ops",
    "grukit.backends.cpu_fused",
    "grukit.convert",
    "grukit.export",
    "grukit.validation",
    "grukit.keras",
]
APPLICATION_ONLY = ["grukit.apps", "tqdm", "pandas", "music21", "matplotlib", "vega_datasets", "num2words"]


def test_core_runs_with_the_applications_unimportable():
    code = textwrap.dedent(f"""
        import importlib, sys

        for banned in {APPLICATION_ONLY!r}:  # None in sys.modules: every import of it fails, as if absent
            sys.modules[banned] = None
        for module in {CORE_MODULES!r}:
            importlib.import_module(module)
        import torch, grukit
        gru = grukit.GRU(3, 4, num_layers=2, bidirectional=True)
        out, h_n = gru(torch.randn(5, 2, 3))
        out.sum().backward()
        stream = grukit.GRU(3, 4).stream()
        print(tuple(out.shape), tuple(h_n.shape), tuple(stream.step(torch.randn(1, 3)).shape))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(5, 2, 8) (4, 2, 4) (1, 4)"


def test_no_core_file_names_the_applications():
    for path in PACKAGE.rglob("*.py"):
        if "apps" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert "apps" not in name.split(".") and not name.startswith("grukit.apps"), f"{path}: imports {name}"
