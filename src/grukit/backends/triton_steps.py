"""The per-step design of the triton backend: its buffers, its time loops, and their CUDA graphs.

One layer-direction, forward (processing step s = 0 .. T-1, time t = s or T - 1 - s reversed)::

    reset after:   ghraw[s] = ~h W_hh^T                 (cuBLAS, [B, H] x [H, 3H])
                   step_forward_state_kernel            (r, z, n, h_t, out[t])
    reset before:  ghraw[s, :, :2H] = ~h W_hr,z^T        (cuBLAS)
                   step_forward_gates_kernel            (r, z, rhd[s] = r * ~h)
                   ghraw[s, :, 2H:] = rhd[s] W_hn^T      (cuBLAS)
                   step_forward_state_kernel            (n, h_t, out[t])

and backward in reverse, per step a kernel and d~h = P'(d g) W_hh by cuBLAS (reset before: two
products with ``step_backward_reset_kernel`` between them). ``~h = h * m`` is materialised in
``htilde`` when there is a recurrent-dropout mask m, so cuBLAS can read it.

Launching 2-4 kernels per step from Python costs more than the GPU's work at small sizes, so on
CUDA each loop is recorded once in a CUDA graph (per shape and option set) and replayed:
:class:`GraphedLoop`. A graph writes to the same buffers every time it runs, so a recorded loop is
lent to one call at a time: it stays busy while that call's autograd node (which reads its
buffers in the backward pass) is alive, and a second call of the same shape meanwhile records
its own copy (:class:`GraphCache`).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Callable, Optional

import torch
from torch import Tensor

from . import triton_step_kernels as kernels


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def step_launch(B: int, H: int, layer_norm: bool):
    """(grid, tile meta-parameters) of the element-wise step kernels. Few rows per program (they
    have no matrix product, so no 16-row minimum); without layer norm the units are split too
    (grid (row blocks, column blocks of 128)), so even a small batch spreads over many
    multiprocessors; with it a program walks whole rows (column blocks up to 512 wide)."""
    widest = 16
    while widest < H:
        widest *= 2
    block_b = 2 if B <= 2048 else 8
    block_n = min(widest, 512 if layer_norm else 128)
    grid = (_cdiv(B, block_b), 1 if layer_norm else _cdiv(H, block_n))
    return grid, dict(SPLIT_COLUMNS=not layer_norm, BLOCK_B=block_b, BLOCK_N=block_n, num_warps=4)


class LoopBuffers:
    """Every tensor one layer-direction's per-step loops read and write, forward and backward.

    ``static`` (for a CUDA graph): the inputs are copied into buffers of this object, whose
    addresses the graph recorded; otherwise the call's own tensors are used as they are.
    Shapes: gi [T, B, 3H], w_hh [3H, H], w_hh_t [H, 3H], b_hh / gamma / beta [3H], rmask [B, H],
    zmask [T, B, H], lengths [B] int64, seed [1] int64; saved for the backward pass: hs [T+1, B, H],
    gates / ghraw [T, B, 3H], rhd [T, B, H], stats [T, B, 4]; out [T, B, H]; the backward's:
    d_out [T, B, H], d_gi / d_gh / d_gh_post [T, B, 3H], d_direct / d_htilde [2, B, H], d_rhd /
    d_rhd_acc [B, H].
    """

    def __init__(self, config, like: Tensor, static: bool):
        T, B, H = config.T, config.B, config.H
        flags = config.flags
        self.static = static
        self.dummy = like.new_zeros(1)
        empty = like.new_empty
        self.gi = empty(T, B, 3 * H) if static else None
        self.w_hh = empty(3 * H, H) if static else None
        self.w_hh_t = empty(H, 3 * H) if static else None
        self.b_hh = empty(3 * H) if static and flags["HAS_BIAS"] else self.dummy
        self.gamma = empty(3 * H) if static and flags["HAS_LN"] else self.dummy
        self.beta = empty(3 * H) if static and flags["HAS_LN"] else self.dummy
        self.rmask = empty(B, H) if static and flags["HAS_RMASK"] else self.dummy
        self.zmask = empty(T, B, H) if static and config.zoneout_given else self.dummy
        self.lengths = like.new_zeros(B if static and flags["HAS_LENGTHS"] else 1, dtype=torch.int64)
        self.seed = like.new_zeros(1, dtype=torch.int64)
        self.hs = empty(T + 1, B, H)
        self.out = empty(T, B, H)
        self.gates = empty(T, B, 3 * H)
        self.ghraw = empty(T, B, 3 * H)
        self.rhd = empty(T, B, H) if not flags["RESET_AFTER"] else self.dummy
        self.stats = empty(T, B, 4) if flags["HAS_LN"] else self.dummy
        self.htilde = empty(B, H) if flags["HAS_RMASK"] else self.dummy
        self.has_backward = False

    def set(self, name: str, value: Optional[Tensor]) -> None:
        """Bind input ``name`` to ``value`` (copied into the buffer if static); None keeps the dummy."""
        if value is None:
            return
        if self.static:
            getattr(self, name).copy_(value)
        else:
            setattr(self, name, value.contiguous())

    def add_backward(self, config) -> None:
        """Allocate the backward pass's buffers (on the first backward: inference needs none)."""
        if self.has_backward:
            return
        T, B, H = config.T, config.B, config.H
        empty = self.hs.new_empty
        self.d_out = empty(T, B, H) if self.static else None  # else bound to the call's own (``set``)
        self.d_gi = empty(T, B, 3 * H)
        self.d_gh = empty(T, B, 3 * H)
        self.d_gh_post = empty(T, B, 3 * H) if config.flags["HAS_LN"] else self.dummy
        self.d_direct = empty(2, B, H)
        self.d_htilde = empty(2, B, H)
        self.d_rhd = empty(B, H) if not config.flags["RESET_AFTER"] else self.dummy
        self.d_rhd_acc = empty(B, H) if not config.flags["RESET_AFTER"] else self.dummy
        self.has_backward = True


def _step_time(config, s: int) -> int:
    return config.T - 1 - s if config.flags["REVERSE"] else s


def forward_steps(config, b: LoopBuffers) -> None:
    """Run the forward loop on ``b`` (hs[0] = h0 and the inputs already in place)."""
    T, B, H = config.T, config.B, config.H
    f = config.flags
    grid, tiles = step_launch(B, H, f["HAS_LN"])
    if f["HAS_RMASK"]:
        torch.mul(b.hs[0], b.rmask, out=b.htilde)
    for s in range(T):
        t = _step_time(config, s)
        h_in = b.htilde if f["HAS_RMASK"] else b.hs[s]
        if f["RESET_AFTER"]:
            torch.mm(h_in, b.w_hh_t, out=b.ghraw[s])  # ~h W_hh^T, all three gates
        else:
            torch.mm(h_in, b.w_hh_t[:, : 2 * H], out=b.ghraw[s, :, : 2 * H])  # ~h W_hr,z^T
            kernels.step_forward_gates_kernel[grid](
                b.gi, b.ghraw, b.stats, b.b_hh, b.gamma, b.beta, b.gates, b.rhd, b.rmask, b.hs, s, t, B, H,
                HAS_BIAS=f["HAS_BIAS"], HAS_LN=f["HAS_LN"], HAS_RMASK=f["HAS_RMASK"], **tiles,
            )  # fmt: skip
            torch.mm(b.rhd[s], b.w_hh_t[:, 2 * H :], out=b.ghraw[s, :, 2 * H :])  # (r * ~h) W_hn^T
        kernels.step_forward_state_kernel[grid](
            b.gi, b.ghraw, b.stats, b.b_hh, b.gamma, b.beta, b.gates, b.rmask, b.zmask, b.lengths, b.seed,
            b.hs, b.out, b.htilde, s, t, B, H, config.zoneout_p, config.zoneout_threshold,
            **_loop_flags(f), **tiles,
        )  # fmt: skip


def backward_steps(config, b: LoopBuffers) -> None:
    """Run the backward loop on ``b`` (d_out, d_direct[0] = gradient of h_T already in place).
    Leaves d_gi, d_gh (and d_gh_post) filled and h0's gradient in d_direct / d_htilde[T % 2]."""
    T, B, H = config.T, config.B, config.H
    f = config.flags
    grid, tiles = step_launch(B, H, f["HAS_LN"])
    b.d_htilde[0].zero_()
    for step in range(T):
        s = T - 1 - step
        t = _step_time(config, s)
        into, out_of = step % 2, 1 - step % 2
        kernels.step_backward_state_kernel[grid](
            b.d_out, b.ghraw, b.stats, b.b_hh, b.gamma, b.beta, b.gates, b.rmask, b.zmask, b.lengths, b.seed,
            b.hs, b.d_direct[into], b.d_htilde[into], b.d_direct[out_of], b.d_gi, b.d_gh, b.d_gh_post,
            s, t, B, H, config.zoneout_p, config.zoneout_threshold,
            **_loop_flags(f), **tiles,
        )  # fmt: skip
        if f["RESET_AFTER"]:
            torch.mm(b.d_gh[s], b.w_hh, out=b.d_htilde[out_of])  # d~h = d g W_hh
        else:
            torch.mm(b.d_gh[s, :, 2 * H :], b.w_hh[2 * H :], out=b.d_rhd_acc)  # d(r ~h) = d g_n W_hn
            kernels.step_backward_reset_kernel[grid](
                b.d_rhd_acc, b.ghraw, b.stats, b.gamma, b.gates, b.rmask, b.hs, b.d_gi, b.d_gh, b.d_gh_post,
                b.d_rhd, s, t, B, H, HAS_LN=f["HAS_LN"], HAS_RMASK=f["HAS_RMASK"], **tiles,
            )  # fmt: skip
            # d~h = d g_rz W_hr,z + d(r ~h) r
            torch.addmm(b.d_rhd, b.d_gh[s, :, : 2 * H], b.w_hh[: 2 * H], out=b.d_htilde[out_of])


def _loop_flags(flags: dict) -> dict:
    names = ("RESET_AFTER", "KEEPS", "HAS_BIAS", "HAS_LN", "HAS_RMASK", "ZONEOUT", "HAS_LENGTHS")
    return {name: flags[name] for name in names}


class GraphedLoop:
    """Static buffers and the CUDA graphs of their forward and backward loops, recorded on first use."""

    def __init__(self, config, like: Tensor):
        self.buffers = LoopBuffers(config, like, static=True)
        self.graphs = {}
        self.busy = False

    def run(self, which: str, loop: Callable[[], None]) -> None:
        """Run ``loop`` ("forward" or "backward"): the first time eagerly on a side stream (Triton
        compiles, cuBLAS initialises), then records it; later by replaying the recording."""
        graph = self.graphs.get(which)
        if graph is not None:
            graph.replay()
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loop()  # this call's result
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # each graph has its own memory pool: a pool shared by graphs is released when the last of
        # them is freed, and a later capture into its handle fails inside torch's allocator
        with torch.cuda.graph(graph):
            loop()  # recorded, not run
        self.graphs[which] = graph


class _Lease:
    """Held by a call's autograd node: the loop it used stays busy until the node is freed."""

    __slots__ = ("__weakref__",)


class GraphCache:
    """Recorded loops by (device, dtype, sizes, options), at most ``capacity`` of them; the least
    recently used free one is dropped to make room, and a call finds none free: it runs eagerly."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self.loops: "OrderedDict[tuple, list]" = OrderedDict()
        self.lock = threading.Lock()

    def acquire(self, key: tuple, config, like: Tensor) -> Optional[GraphedLoop]:
        with self.lock:
            entries = self.loops.setdefault(key, [])
            self.loops.move_to_end(key)
            for entry in entries:
                if not entry.busy:
                    entry.busy = True
                    return entry
            if sum(len(e) for e in self.loops.values()) >= self.capacity and not self._drop_one_free():
                return None
            entry = GraphedLoop(config, like)
            entry.busy = True
            entries.append(entry)
            return entry

    def _drop_one_free(self) -> bool:
        for key, entries in self.loops.items():  # oldest first
            for entry in entries:
                if not entry.busy:
                    entries.remove(entry)
                    if not entries:
                        del self.loops[key]
                    return True
        return False

    @staticmethod
    def lease(entry: GraphedLoop) -> _Lease:
        """A token whose end (garbage collection) makes ``entry`` free again."""
        token = _Lease()
        weakref.finalize(token, setattr, entry, "busy", False)
        return token

    def clear(self) -> None:
        """Drop every free recorded loop (their buffers and graphs) and so free their memory."""
        with self.lock:
            while self._drop_one_free():
                pass
