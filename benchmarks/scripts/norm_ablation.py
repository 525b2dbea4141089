"""Issue 20: ablations of the Delisle adversarial variant on bench adversarial's norm group
(full settings), 3 training seeds. A choice may use the validation Dice (the kept
checkpoint's); the held-out test Dice is printed beside it. The base is the adversarial term
at weight 1 with the resize-convolution generator; each variant changes what it names.

    python benchmarks/scripts/norm_ablation.py resize,resize_adv0.01 [OUT.json]

Results of 2026-12-05: benchmarks/adversarial-norm-ablation.json."""
import dataclasses
import sys

import _ablation
import torch

torch.set_num_threads(2)
from napari_medseg.bench import adversarial_groups as groups
from napari_medseg.bench.adversarial import NORM, _per_class_mean
from napari_medseg.methods.site_normalization.delisle import NormalizationConfig, build_networks, train_normalization
from napari_medseg.methods.site_normalization.delisle_eval import evaluate_sites
data = groups.site_data(NORM)
p = NORM
VARIANTS = {
  "resize": {},
  "resize_steps900": {"steps": 900, "val_every": 60},
  "resize_identity1": {"identity_weight": 1.0},
  "resize_lrD_quarter": {"lr_discriminator": p["lr"] / 4},
  "resize_adv0.1": {"adv_weight": 0.1},
  "resize_warmup150": {"warmup_steps": 150},
  "transposed": {"generator_upsample": "transposed"},
  "resize_adv0": {"adv_weight": 0.0},
  "resize_adv0.03": {"adv_weight": 0.03},
  "resize_adv0.1_identity1": {"adv_weight": 0.1, "identity_weight": 1.0},
  "resize_adv0.1_steps900": {"adv_weight": 0.1, "steps": 900, "val_every": 60},
  "resize_adv0.3": {"adv_weight": 0.3},
  "resize_adv0.01": {"adv_weight": 0.01},
  "resize_adv0.03_steps900": {"adv_weight": 0.03, "steps": 900, "val_every": 60},
  "resize_adv0.01_identity0.1": {"adv_weight": 0.01, "identity_weight": 0.1},
  "resize_adv0.01_identity1": {"adv_weight": 0.01, "identity_weight": 1.0},
  "linear_adv0.01": {"adv_weight": 0.01, "generator_upsample": "linear"},
  "linear_adv0.1": {"adv_weight": 0.1, "generator_upsample": "linear"},
  "linear": {"generator_upsample": "linear"},
  "linear_adv0.03": {"adv_weight": 0.03, "generator_upsample": "linear"},
  "linear_adv0.01_identity0.1": {"adv_weight": 0.01, "identity_weight": 0.1, "generator_upsample": "linear"},
  "linear_adv0.01_warmup30": {"adv_weight": 0.01, "warmup_steps": 30, "generator_upsample": "linear"},
  "linear_adv0": {"adv_weight": 0.0, "generator_upsample": "linear"},
}


def run_one(overrides: dict, seed: int) -> dict:
    cfg = NormalizationConfig(spatial_dims=2, patch_size=(p["patch"],) * 2, batch_size=p["batch_size"], steps=p["steps"],
                              warmup_steps=p["warmup_steps"], optimizer="adam", lr_generator=p["lr"],
                              lr_segmenter=p["lr"], lr_discriminator=p["lr"], val_every=p["val_every"],
                              plateau_patience=None, mode="adversarial", seed=seed, amp=False,
                              segmenter_features=p["segmenter_features"], generator_features=p["generator_features"],
                              discriminator_features=p["discriminator_features"], generator_upsample="resize",
                              adv_weight=1.0)
    cfg = dataclasses.replace(cfg, **overrides)
    torch.manual_seed(seed)
    model, _, disc = build_networks(cfg, 2)
    best = {}
    res = groups._drain(train_normalization(model.generator, model.segmenter, disc, data["train"], data["val"], cfg,
                                            keep=lambda state, metrics, step: best.update(state=state)))
    model.load_state_dict(best["state"])
    ev = evaluate_sites(model.generator, model.segmenter, data["test"], "adversarial")
    ev_val = evaluate_sites(model.generator, model.segmenter, data["val"], "adversarial")
    return {"val": res["best_metrics"]["dice"], "test": _per_class_mean(list(ev["dice"].values()))["mean"],
            "jsd_after": ev["jsd_after"], "checkerboard": ev["checkerboard_ratio"],
            "checkerboard_val": ev_val["checkerboard_ratio"], "best_step": res["best_step"]}


_ablation.run(VARIANTS, run_one, sys.argv, keys=("val", "test", "jsd_after", "checkerboard", "checkerboard_val"))
