"""The ``grukit`` command line.

    grukit demo            train the seed 001 model on Seattle weather and report its error
    grukit build           compile the fused CPU kernels now (otherwise: on first use)
    grukit info            versions and the backends available here
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .datasets import seattle_weather
    from .nn import GRU

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    data = seattle_weather(window=args.window)
    print(
        f"Seattle daily weather (vega_datasets): predict tomorrow's {data.target} (deg C) "
        f"from {args.window} days of {', '.join(data.features)}\n"
        f"  train {len(data.y_train)} / validation {len(data.y_val)} / test {len(data.y_test)} windows, "
        f"split in time order (test = {str(data.test_dates[0])[:10]} .. {str(data.test_dates[-1])[:10]})"
    )

    class SeedModel(torch.nn.Module):
        """Seed 001: ``Sequential([GRU(50, input_shape=(timesteps, features)), Dense(1)])``."""

        def __init__(self, features: int, hidden: int):
            super().__init__()
            self.gru = GRU(features, hidden, batch_first=True, reset_after=args.reset_after)
            self.dense = torch.nn.Linear(hidden, 1)

        def forward(self, x):
            _, h_n = self.gru(x)  # Keras' GRU returns the last state by default
            return self.dense(h_n[-1]).squeeze(1)

    model = SeedModel(len(data.features), args.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)  # Keras' 'adam' default
    scale = lambda y: (torch.from_numpy(y) - data.target_mean) / data.target_std  # noqa: E731
    x_train, y_train = torch.from_numpy(data.x_train), scale(data.y_train)
    x_val, x_test = torch.from_numpy(data.x_val), torch.from_numpy(data.x_test)

    def rmse_deg(x, y) -> float:
        model.eval()
        with torch.no_grad():
            pred = model(x).numpy() * data.target_std + data.target_mean
        model.train()
        return float(np.sqrt(np.mean((pred - y) ** 2)))

    started = time.perf_counter()
    best_val, best_state = float("inf"), None
    bar = tqdm(range(args.epochs), desc="training", unit="epoch", file=sys.stdout, disable=args.quiet)
    for _ in bar:
        order = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            batch = order[i : i + args.batch_size]
            loss = torch.nn.functional.mse_loss(model(x_train[batch]), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        val = rmse_deg(x_val, data.y_val)
        if val < best_val:  # keep the weights of the best validation epoch
            best_val = val
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        bar.set_postfix(train_mse=f"{total / len(order):.3f}", val_rmse=f"{val:.2f}")
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - started

    test = rmse_deg(x_test, data.y_test)
    persistence = float(np.sqrt(np.mean((data.last_test - data.y_test) ** 2)))
    print(f"\nheld-out test RMSE of tomorrow's {data.target}, {len(data.y_test)} days:")
    print(f"  grukit GRU({args.hidden}) + Dense(1), reset_after={args.reset_after}: {test:.2f} deg C")
    print(f"  persistence (tomorrow = today):            {persistence:.2f} deg C")
    print(f"  trained {args.epochs} epochs in {seconds:.1f} s (best validation RMSE {best_val:.2f} deg C)")
    if args.output:
        torch.save(model.state_dict(), args.output)
        print(f"  saved the model's state_dict to {args.output}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__, backends

    print(f"grukit {__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in backends.names()[1:]:
        module = backends._BACKENDS[name]
        state = "available" if module.is_available() else f"unavailable ({module.why_unavailable()})"
        print(f"  backend {name}: {state}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from .backends import cpu_fused

    started = time.perf_counter()
    if not cpu_fused.is_available():
        print(f"the fused CPU kernels are unavailable: {cpu_fused.why_unavailable()}", file=sys.stderr)
        return 1
    print(f"fused CPU kernels ready in {time.perf_counter() - started:.1f} s (cache: {cpu_fused._build_dir()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grukit", description="Gated Recurrent Units: demo and tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train the seed 001 model (GRU(50) + Dense(1), adam, MSE) on Seattle weather",
        description="Train GRU(50) + Dense(1) with adam on mean squared error (the seed 001 "
        "Keras example) to forecast tomorrow's maximum temperature in Seattle, then report "
        "the held-out RMSE next to the persistence baseline.",
    )
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--hidden", type=int, default=50, help="GRU units (default 50, as seed 001)")
    demo.add_argument("--window", type=int, default=14, help="days of history per sample (default 14)")
    demo.add_argument("--batch-size", type=int, default=32, help="batch size (default 32, Keras' default)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument(
        "--reset-after", action=argparse.BooleanOptionalAction, default=True,
        help="reset gate after the recurrent matmul (PyTorch/Keras default) or before it (--no-reset-after, the seed notes' equations)",
    )
    demo.add_argument("--output", help="save the trained model's state_dict here")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    build = sub.add_parser("build", help="compile the fused CPU kernels now (otherwise on first use)")
    build.set_defaults(run=_build)
    info = sub.add_parser("info", help="versions and available backends")
    info.set_defaults(run=_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("epochs", "hidden", "window", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            build_parser().error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
