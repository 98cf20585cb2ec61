"""The package's shape: imports run one way, with no circle, and the library core imports nothing from
the applications (``grukit.apps``) or their dependencies.

The module list and the import graph are read from the source files (every ``import`` statement,
at the top of a file or inside a function), never written by hand, so a new module is covered the
day it is added."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "grukit"
APPLICATION_ONLY = ["grukit.apps", "tqdm", "pandas", "music21", "matplotlib", "vega_datasets", "num2words"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
CORE_MODULES = sorted(name for name in MODULES if not name.startswith("grukit.apps"))


def _imported(module: str, path: Path, node) -> list:
    """The grukit modules one import statement of ``module`` names (a package only where a name it
    imports is not a submodule)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
        targets = submodules if len(submodules) == len(node.names) else [target] + submodules
    found = []
    for target in targets:
        while target not in MODULES and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in MODULES and target != module and target.startswith("grukit"):
            found.append(target)
    return found


def import_graph() -> dict:
    """module -> the grukit modules it imports anywhere in its file."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[module] = sorted(
            {
                t
                for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for t in _imported(module, path, node)
            }
        )
    return graph


def circles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_module_list_is_read_from_the_package():
    for expected in ("grukit.nn", "grukit.min_gru", "grukit.onnx_translation", "grukit.settings", "grukit.apps.cli"):
        assert expected in MODULES


def test_no_import_circle_anywhere_in_the_package():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle_made_inside_a_function():
    graph = import_graph()
    graph["grukit.validation"] = graph["grukit.validation"] + ["grukit.nn"]  # as a function-level import would
    assert any("grukit.validation" in c and "grukit.nn" in c for c in circles(graph))
    tree = ast.parse("def f():\n    from .nn import GRU\n")
    node = tree.body[0].body[0]
    assert _imported("grukit.validation", MODULES["grukit.validation"], node) == ["grukit.nn"]


def test_the_layers_run_one_way():
    """Each module imports only modules below it: the module layer (nn above quantized above stream
    above functional above the backends), never the other way."""
    graph = import_graph()

    def reaches(start, goal):
        seen, todo = set(), [start]
        while todo:
            v = todo.pop()
            if v == goal:
                return True
            if v not in seen:
                seen.add(v)
                todo.extend(graph[v])
        return False

    order = ["grukit.nn", "grukit.quantized", "grukit.stream", "grukit.functional", "grukit.backends"]
    for higher, lower in zip(order, order[1:]):
        assert not reaches(lower, higher), f"{lower} imports {higher}, above it"
    for module in CORE_MODULES:
        assert not reaches(module, "grukit.apps"), f"{module} reaches the applications"


def test_core_runs_with_the_applications_unimportable():
    code = textwrap.dedent(f"""
        import importlib, sys

        for banned in {APPLICATION_ONLY!r}:  # None in sys.modules: every import of it fails, as if absent
            sys.modules[banned] = None
        for module in {CORE_MODULES!r}:
            try:
                importlib.import_module(module)
            except ImportError as error:  # an optional extra of the core itself (triton, keras) is fine
                assert error.name in ("triton", "keras"), (module, error)
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
