"""Issue 20: Giacomello et al.'s transfer (FLAIR -> T2) with a small target set. The
bench's segan group fine-tunes on the target slices of all 8 training subjects; here the
target training set is the slices of the first K subjects only (the source model still
trains on all 8 FLAIR subjects). Frozen critic, full fine-tuning and from scratch each get
the same steps and seed; held-out test subjects as in the bench.

    python benchmarks/scripts/segan_small_target.py 2,8 [OUT.json]
"""
import sys

import _ablation
import numpy as np
import torch

torch.set_num_threads(1)  # as the bench
from napari_medseg.bench import adversarial_groups as groups
from napari_medseg.bench.adversarial import SEGAN as p
from napari_medseg.methods.modality_transfer import segan

data = groups.tumour_data(p)
feats = dict(seg_features=p["seg_features"], critic_features=p["critic_features"])


def first_subjects(part: dict, k: int) -> dict:
    """The slices of the first ``k`` subjects of a split (every per-slice array indexed)."""
    keep = np.isin(part["subject"], np.unique(part["subject"])[:k])
    n = len(part["subject"])
    def cut(v):
        if isinstance(v, dict):  # {"images": {modality: slices}}
            return {m: cut(a) for m, a in v.items()}
        return v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else v

    return {key: cut(v) for key, v in part.items()}


def run_one(overrides: dict, seed: int) -> dict:
    seg, critic = segan.build_segan("concat", 1, seed=seed, **feats)
    cfg = groups._segan_config(p, seed, critic_input="concat", modality=p["source"], steps=p["source_steps"])
    groups._drain(segan.train_segan(seg, critic, data["train"], data["val"], cfg))
    target = first_subjects(data["train"], overrides["subjects"])
    scores = groups._drain(segan.compare_transfer({"segmentor": seg, "critic": critic}, p["target"], target,
                                                  data["val"], data["test"], groups._segan_config(p, seed),
                                                  spacing=data["spacing"]))
    row = {how: s["dice"] for how, s in scores.items()}
    return {**row, "target_slices": int(len(target["subject"]))}


VARIANTS = {f"{k}": {"subjects": int(k)} for k in (sys.argv[1].split(",") if len(sys.argv) > 1 else ("2", "8"))}
_ablation.run(VARIANTS, run_one, sys.argv, keys=("frozen_critic", "full", "scratch", "source_only"))
