"""``grukit gates``: the update and reset gates of a trained model, step by step and unit by unit.

Tutorials explain a GRU by what its gates decide ("which words are important",
"which earlier words to ignore"); this shows it. For a saved task model and an input
(a review, or a stretch of the weather or stock series) it computes, for one GRU
layer, the reset gate r_t and the update gate z_t at every step for every unit, and
writes a PNG (heatmaps aligned with the tokens or dates, and the mean per step) and a
self-contained HTML page where hovering a token shows its gate values.

Which update-gate meaning the model uses is printed on every figure: the literature
disagrees (Cho et al. 2014, PyTorch, Keras: z near 1 keeps the old state; Chung et al. 2014:
z near 1 takes the new candidate).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from ... import functional, reference
from ...files import write_atomically
from ..plotting import pyplot

MEANING = {
    "keeps_state": "z = share of the old state kept: h' = z*h + (1-z)*n (Cho et al. 2014, PyTorch, Keras)",
    "takes_candidate": "z = share of the new candidate taken: h' = (1-z)*h + z*n (Chung et al. 2014)",
}


def gate_values(gru, x: torch.Tensor, layer: int = 0) -> Dict[str, np.ndarray]:
    """r, z, n and h [T, H] of forward-direction ``layer`` of ``gru`` for one sequence x [T, I].

    Read from the float64 oracle's cache (``grukit.reference.gru_forward``): the gates are
    exactly what the equations give for these weights. For layer > 0 the layer's input is
    the previous layers' output, computed by ``grukit.gru``.
    """
    if hasattr(gru, "check_plain"):
        gru.check_plain("grukit gates")
    with torch.no_grad():
        seq = x.unsqueeze(1)  # [T, 1, I]
        if layer:
            D = 2 if gru.bidirectional else 1
            seq, _ = functional.gru(
                seq,
                gru.layer_weights()[: layer * D],
                bidirectional=gru.bidirectional,
                reset_after=gru.reset_after,
                update_gate=gru.update_gate,
            )
        weights = [w.detach().double().numpy() for w in gru.all_weights[layer * (2 if gru.bidirectional else 1)]]
    states, cache = reference.gru_forward(
        seq.double().numpy(),
        np.zeros((1, gru.hidden_size)),
        *weights,
        reset_after=gru.reset_after,
        update_gate=gru.update_gate,
    )
    steps = cache.steps
    return {
        "r": np.stack([s.r[0] for s in steps]),
        "z": np.stack([s.z[0] for s in steps]),
        "n": np.stack([s.n[0] for s in steps]),
        "h": states[:, 0],
    }


def figure_png(gates: Dict[str, np.ndarray], labels: List[str], meaning: str, title: str) -> bytes:
    plt = pyplot()

    T = len(labels)
    fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.35 * T + 2), 9), gridspec_kw={"height_ratios": [3, 3, 2]})
    for ax, key, name in ((axes[0], "z", "update gate z"), (axes[1], "r", "reset gate r")):
        image = ax.imshow(gates[key].T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel("unit")
        ax.set_title(name)
        ax.set_xticks(range(T), labels if T <= 80 else [""] * T, rotation=90, fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.02)
    axes[2].plot(gates["z"].mean(1), marker="o", label="mean z")
    axes[2].plot(gates["r"].mean(1), marker="s", label="mean r")
    axes[2].set_ylim(0, 1)
    axes[2].set_xticks(range(T), labels if T <= 80 else [""] * T, rotation=90, fontsize=7)
    axes[2].legend(fontsize=8)
    axes[2].set_title("mean over units, per step")
    fig.suptitle(f"{title}\n{meaning}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def page_html(gates: Dict[str, np.ndarray], labels: List[str], meaning: str, title: str, png: bytes) -> str:
    """One self-contained page: tokens coloured by mean z, a tooltip with each token's gate values."""
    spans = []
    for t, label in enumerate(labels):
        z, r = gates["z"][t], gates["r"][t]
        tip = (
            f"step {t}: {label}\nmean z = {z.mean():.3f}, mean r = {r.mean():.3f}\n"
            f"z by unit: {' '.join(f'{v:.2f}' for v in z)}\nr by unit: {' '.join(f'{v:.2f}' for v in r)}"
        )
        shade = int(255 * (1 - float(z.mean())))
        spans.append(
            f'<span class="tok" style="background: rgb(255,{shade},{shade})" title="{html.escape(tip)}" '
            f'data-z="{z.mean():.4f}" data-r="{r.mean():.4f}">{html.escape(label)}</span>'
        )
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; }}
.tok {{ display: inline-block; padding: 3px 5px; margin: 2px; border-radius: 4px; cursor: help; }}
.legend {{ color: #555; font-size: 0.9em; }}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="legend">{html.escape(meaning)}. Each token is shaded by its mean update gate (darker red = larger z);
hover over a token to see its mean z and r and the value of every unit.</p>
<p>{" ".join(spans)}</p>
<img alt="gate heatmaps" src="data:image/png;base64,{image}" style="max-width: 100%">
</body></html>
"""


def write(saved: Dict, task, text: Sequence[str], days: int, prefix: str, layer: int = 0):
    """Compute the gates of a task model file and write ``prefix``.png and ``prefix``.html.

    ``task`` is the file's :class:`~grukit.apps.tasks.task.Task`: it turns ``text`` or ``days``
    into the GRU's input. Returns (the two paths, the update-gate meaning of the model, as
    printed on the figures)."""
    model, x, labels = task.gates_input(saved, text, days)
    if not 0 <= layer < model.gru.num_layers:
        raise ValueError(f"--layer must be in 0..{model.gru.num_layers - 1}, got {layer}")
    gates = gate_values(model.gru, x, layer)
    meaning = MEANING[model.gru.update_gate]
    form = "reset after" if model.gru.reset_after else "reset before"
    title = f"GRU gates of the {saved['task']} model (layer {layer}, {form}, {model.gru.hidden_size} units)"
    png = figure_png(gates, labels, meaning, title)
    page = page_html(gates, labels, meaning, title, png)
    write_atomically(prefix + ".png", lambda temporary: Path(temporary).write_bytes(png))
    write_atomically(prefix + ".html", lambda temporary: Path(temporary).write_text(page, encoding="utf-8"))
    return [prefix + ".png", prefix + ".html"], meaning
