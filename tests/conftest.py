"""pytest set-up: the test helpers (``oracle``, ``backend_params``) importable from this folder
under any import mode. (The ``slow`` marker is declared in pyproject.toml.)

``make test`` runs every test; ``pytest -m "not slow"`` leaves out the end-to-end training,
torchrun and ``grukit compare`` runs for a quick local check (a few minutes).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Without a GPU, the triton backend's kernels run under Triton's interpreter on CPU tensors
# (set before anything imports triton: the interpreter is chosen when a kernel is defined).
import os  # noqa: E402

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402

from grukit.backends import triton_backend  # noqa: E402


@pytest.fixture(autouse=True)
def _triton_design_from_the_test_id(request, monkeypatch):
    """A test parametrised with id "triton-persistent" or "triton-stepwise" (backend_params.param_ids)
    runs the triton backend in that design."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None:
        return
    for design in triton_backend.DESIGNS:
        if f"triton-{design}" in callspec.id:
            monkeypatch.setenv(triton_backend.DESIGN_ENV_VAR, design)


@pytest.fixture
def routines():
    """Set every kind of product to one routine for the test (``routines("brgemm")``), then restore
    the machine's measured choice (grukit.backends.gemm_choice)."""
    from grukit.backends import cpu_fused, gemm_choice

    extension = cpu_fused.extension()
    saved = extension.gemm_routines()

    def use(routine):
        extension.set_gemm_routines([gemm_choice.ROUTINES.index(routine)] * len(gemm_choice.PRODUCTS))

    yield use
    extension.set_gemm_routines(saved)
