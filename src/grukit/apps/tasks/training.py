"""The tasks' training loop: Adam over epochs with the best validation epoch kept, one process or many
(torchrun, ``DistributedDataParallel``), fewer threads when another process holds a core."""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

from ... import settings
from ...busy_cores import ThreadTuner
from ...files import first_line, load_tensors
from .checkpoints import write_checkpoint
from .options import Options


def distributed() -> Tuple[int, int]:
    """(rank, world size): (0, 1) unless running under torchrun with an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fit(
    model: torch.nn.Module,
    data: Sequence[torch.Tensor],
    loss_fn,
    evaluate: Callable[[], float],
    epochs: int,
    lr: float,
    batch_size: int,
    options: "Options",
    higher_is_better: bool,
) -> Dict:
    """Adam over ``epochs``: one progress bar per epoch, the best validation epoch's weights kept.

    ``data`` holds aligned training tensors (first dimension = samples); each global batch of
    ``batch_size`` samples comes from a ``DistributedSampler`` (seeded by ``options.seed`` and
    the epoch), so a run on N processes (torchrun, ``DistributedDataParallel``) takes exactly
    the optimiser steps of a 1-process run with the same batch size: each rank computes
    ``batch_size / N`` samples and DDP averages the gradients. Rank 0 alone prints and writes
    ``options.checkpoint`` after every epoch; ``options.resume`` continues from such a file,
    whatever the number of processes that wrote it. ``loss_fn(model, *batch) -> mean loss``.
    """
    rank, world = distributed()
    if batch_size % world:
        raise ValueError(f"--batch-size ({batch_size}) must be divisible by the number of processes ({world})")
    quiet = options.quiet or rank != 0
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    dataset = TensorDataset(*data)
    # the sampler shuffles epoch e with seed + e: space the seeds apart, or --seed 0 and --seed 1
    # would share all but one epoch's order
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=options.seed * 100_003, drop_last=False
    )
    best, best_state, history, start_epoch = None, None, [], 1
    if options.resume:
        state = load_tensors(options.resume, "checkpoint")
        path = options.resume
        needed = {"epoch", "model", "optimizer", "best", "best_state", "history"}
        if not isinstance(state, dict) or not needed <= state.keys():
            raise ValueError(f"--resume {path!r} is not a grukit checkpoint (write one with --checkpoint)")
        if state.get("task", options.task) != options.task:
            raise ValueError(f"--resume {path!r} is a checkpoint of the {state['task']} task, not of {options.task}")
        try:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            reason = first_line(exc, 160)
            raise ValueError(
                f"--resume {path!r} does not fit this model (the same --hidden, --layers and options as when "
                f"it was written?): {reason}"
            ) from None
        best, best_state, history, start_epoch = (
            state["best"],
            state["best_state"],
            state["history"],
            state["epoch"] + 1,
        )
    started = time.perf_counter()
    threads = ThreadTuner.for_training(world)  # fewer threads while another process holds a core
    try:
        for epoch in range(start_epoch, epochs + 1):
            model.train()
            sampler.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=batch_size // world, sampler=sampler)
            total, count = 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", file=sys.stdout, disable=quiet)
            for batch in bar:
                with threads.batch(len(batch[0])):
                    loss = loss_fn(net, *batch)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                if world > 1 and settings.is_on("GRUKIT_CHECK_REPLICAS"):
                    _check_replicas(model)
                total += loss.item()
                count += 1
                bar.set_postfix(loss=f"{total / count:.4f}")
            model.eval()
            with torch.no_grad():
                score = evaluate()  # every rank holds the same weights, so the same score
            history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val": score})
            if not quiet:
                print(f"  validation: {score:.4f}", flush=True)
            if best is None or (score > best if higher_is_better else score < best):
                best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
            if options.checkpoint and rank == 0:
                write_checkpoint(
                    options.checkpoint,
                    {
                        "task": options.task,
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(),
                        "best": best,
                        "best_state": best_state,
                        "history": history,
                        "world_size": world,
                    },
                )
    finally:
        threads.restore()
    if best_state is None:
        raise ValueError(f"nothing to train: --epochs {epochs} is not past the resumed epoch {start_epoch - 1}")
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_val": best, "train_seconds": time.perf_counter() - started, "processes": world}


def _check_replicas(model: torch.nn.Module) -> None:
    """Raise unless every rank holds bit-identical parameters (a test aid: GRUKIT_CHECK_REPLICAS=1)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    copies = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, flat)
    if not all(torch.equal(copies[0], c) for c in copies[1:]):
        raise RuntimeError("DDP replicas diverged: parameters differ between ranks after a step")
