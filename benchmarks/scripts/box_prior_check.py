"""Stage 1 of the shipping recipe with a given round-1 box prior, rounds scored on validation and test.

    python benchmarks/scripts/box_prior_check.py --prior ellipse --seeds 0 1 --rounds 6 --json OUT.json

The recipe of ``bench box_iterative`` (full): 2048² hard slides, 4 IS-train1 slides with
boxes, rounds of 150 steps, the six validation slides (301-306) that pick the round, and
the six held-out IS-test slides (90401-90406) scored afterwards. Stage 0 and Stage 2 are
not run (Stage 1 does not depend on them: it starts from scratch with its own seed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    from napari_medseg.bench.box_iterative import FULL, _test_scores
    from napari_medseg.core.jobs import run_in_terminal
    from napari_medseg.core.registry import Registry
    from napari_medseg.methods.box_iterative.metrics import best_round
    from napari_medseg.methods.box_iterative.recipe import Recipe, run_recipe
    from napari_medseg.methods.box_iterative.stages import StageConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", default="box")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    out = {"prior": a.prior, "rounds": a.rounds, "recipe": FULL, "seeds": {}}
    for seed in a.seeds:
        work = Path(tempfile.mkdtemp(prefix=f"boxprior-{seed}-"))
        registry = Registry(shipped_root=work / "none", user_root=work / "models")
        recipe = Recipe(size=FULL["size"], n_train1=FULL["n_train1"], n_train2=0, rounds1=a.rounds, rounds2=0,
                        stage0=False, config=StageConfig(steps=FULL["steps"], patch=FULL["patch"], seed=seed,
                                                         box_prior=a.prior))
        t0 = time.perf_counter()
        session = run_in_terminal(run_recipe(registry, recipe, workdir=work / "work"), f"stage 1, seed {seed}").result
        recs = [r for r in session.history if r.stage == 1]
        test = _test_scores(registry, [r.version for r in recs], recipe.slides("test", FULL["n_test"]), "cpu",
                            session.min_object_area(), session.object_radius())
        best = best_round([r.metrics for r in recs])
        out["seeds"][str(seed)] = {
            "val_f1_by_round": [round(r.metrics["object_f1"], 4) for r in recs],
            "test_f1_by_round": [round(t["object_f1"], 4) for t in test],
            "test_f1_iou75_by_round": [round(t["object_f1_iou75"], 4) for t in test],
            "test_recall_by_round": [round(t["object_recall"], 4) for t in test],
            "best_round": best + 1, "val_f1_best": recs[best].metrics["object_f1"],
            "test_f1_best": test[best]["object_f1"], "minutes": (time.perf_counter() - t0) / 60}
        print(json.dumps(out["seeds"][str(seed)]), flush=True)
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
