"""Command line for box-supervised training (Gupta et al. 2019).

``napari-medseg train box_iterative`` runs the project's recipe on synthetic kidney
slides (dispatched from ``cli._train``). Segmenting a slide file with the result is
``napari-medseg segment SLIDE --model glomeruli --out labels.zarr``.
"""

from __future__ import annotations

import sys


def add_train_options(s) -> None:
    g = s.add_argument_group("box_iterative")
    g.add_argument("--rounds1", type=int, default=6, help="Stage 1 rounds (the paper peaks at round 6 of 10)")
    g.add_argument("--rounds2", type=int, default=3, help="Stage 2 rounds")
    g.add_argument("--size", type=int, default=2048, help="side of the synthetic training slides")
    g.add_argument("--patch", type=int, default=None, help="patch side (default: 496 on a GPU, 256 on a CPU)")
    g.add_argument("--batch-size", type=int, default=None, help="default: 5 on a GPU, 4 on a CPU")


def train(args, registry):
    """The recipe: Stage 1 then Stage 2 on synthetic slides; returns the best round's entry."""
    from .core.device import select_device
    from .core.jobs import run_in_terminal
    from .methods.box_iterative.model import MODEL_NAME
    from .methods.box_iterative.recipe import Recipe, run_recipe
    from .methods.box_iterative.stages import StageConfig

    device = select_device(args.device)
    config = StageConfig(steps=args.steps or 150, patch=args.patch, batch_size=args.batch_size, seed=args.seed,
                         adversarial=args.adversarial,
                         device=str(device))
    recipe = Recipe(size=args.size, rounds1=args.rounds1, rounds2=args.rounds2, config=config)
    job = run_in_terminal(run_recipe(registry, recipe), "train box_iterative")
    session = job.result
    if session is not None:
        for r in session.history:
            f1 = r.metrics.get("object_f1", float("nan"))
            print(f"stage {r.stage} round {r.round}: v{r.version} validation object F1 {f1:.3f}")
    if job.stopped:
        print("stopped; every finished round was saved", file=sys.stderr)
    return registry.get(MODEL_NAME)
