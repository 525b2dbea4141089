"""The project's own training recipe on synthetic kidney slides (the shipped model, the bench).

The paper's split, scaled down, on the hard generator (``synthetic.HARD``): IS-train1 (slides with boxes, Stage 1), IS-train2
(unlabelled slides, Stage 2), six validation slides that pick the best round (one slide,
26 glomeruli, tied too often and picked early; three, 78 glomeruli, picked Stage-2 rounds that
the held-out slides ranked otherwise: see docs/benchmarks.md), and IS-test (held-out seeds,
only for the benchmark). The best round over both stages by
validation object F1 becomes the current version.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core import distributed
from ...core.jobs import Progress
from ...core.registry import Registry
from .metrics import best_round
from .resume import continue_session
from .stages import IterativeTraining, StageConfig
from .synthetic import HARD, synthetic_kidney

SEEDS = {"train1": (101, 102, 103, 104), "train2": (201, 202, 203, 204), "val": (301, 302, 303, 304, 305, 306),
         "test": (90401, 90402, 90403, 90404, 90405, 90406)}


@dataclass
class Recipe:
    size: int = 2048  # slide side in pixels
    n_train1: int = 4
    n_train2: int = 4
    rounds1: int = 6
    rounds2: int = 3
    stage0: bool = False  # also train the fully supervised upper baseline (on IS-train1's true masks)
    hard: bool = True  # the hard generator (touching, faint, sclerotic glomeruli, stain and focus per slide)
    config: StageConfig | None = None

    def slides(self, split: str, n: int | None = None):
        seeds = SEEDS[split][: n or len(SEEDS[split])]
        return [synthetic_kidney((self.size, self.size), seed, **(HARD if self.hard else {})) for seed in seeds]


def run_recipe(registry: Registry, recipe: Recipe, workdir=None, resume: dict | None = None):
    """Generator: Stage 0 (optional), Stage 1, Stage 2; returns the session (history inside).

    Every round is a registry version; at the end the best round by validation object F1
    (Stage 1 or Stage 2; Stage 0 never, it saw true masks; pixel F1 breaks ties) is made
    current. ``resume`` (:func:`~.resume.resume_point`): Stage 1 goes on from that version
    with the rounds left (a killed round from its last saved step); no Stage 0.
    """
    session = IterativeTraining(registry, recipe.config or StageConfig(), workdir=workdir)
    train1, train2 = recipe.slides("train1", recipe.n_train1), recipe.slides("train2", recipe.n_train2)
    val = recipe.slides("val")
    session.set_validation([v.rgb for v in val], [v.instances for v in val], instances=True)
    names1 = [f"IS-train1 {s}" for s in SEEDS["train1"][: len(train1)]]
    if recipe.stage0 and resume is None:
        session.set_stage0([s.rgb for s in train1], [s.instances for s in train1], names1)
        steps0 = recipe.rounds1 * session.config.steps  # the same budget as all Stage-1 rounds
        for p in session.stage0(steps0):
            yield Progress(p.step, p.total, "stage 0: " + p.message, p.metrics)
        session.model, session.model_version = None, None  # Stage 1 starts from scratch, as in the paper
    session.set_stage1([s.rgb for s in train1], [s.boxes for s in train1], names1)
    done = continue_session(session, resume) if resume is not None else 0
    yield from session.stage1(max(0, recipe.rounds1 - done))
    if recipe.rounds2 > 0 and train2:
        session.set_stage2([s.rgb for s in train2], [f"IS-train2 {s}" for s in SEEDS["train2"][: len(train2)]])
        yield from session.stage2(recipe.rounds2)
    best = best_version(session)
    if best is not None and distributed.is_main():  # under torchrun, rank 0 writes the registry
        registry.restore(session.name, best)
    return session


def best_version(session: IterativeTraining, stages=(1, 2)) -> int | None:
    """The round with the best validation object F1 (pixel F1 breaks ties), of ``stages``."""
    rec = [r for r in session.history if r.stage in stages and "object_f1" in r.metrics]
    if not rec:
        return None
    return rec[best_round([r.metrics for r in rec])].version
