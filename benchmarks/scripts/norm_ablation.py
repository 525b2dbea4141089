"""Issue 20: ablations of the Delisle adversarial variant on bench adversarial's norm group
(full settings), 3 training seeds. A choice may use the validation Dice (the kept
checkpoint's); the held-out test Dice is printed beside it. The base is the adversarial term
at weight 1 with the resize-convolution generator; each variant changes what it names.

    python benchmarks/scripts/norm_ablation.py resize,resize_adv0.01 [OUT.json]

Results of 2026-12-05: benchmarks/adversarial-norm-ablation.json."""
import dataclasses, json, sys, time
import numpy as np, torch
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
}
names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(VARIANTS)
out = {}
for name in names:
    rows = []
    for seed in (0, 1, 2):
        t = time.perf_counter()
        cfg = NormalizationConfig(spatial_dims=2, patch_size=(p["patch"],) * 2, batch_size=p["batch_size"], steps=p["steps"],
                                  warmup_steps=p["warmup_steps"], optimizer="adam", lr_generator=p["lr"],
                                  lr_segmenter=p["lr"], lr_discriminator=p["lr"], val_every=p["val_every"],
                                  plateau_patience=None, mode="adversarial", seed=seed, amp=False,
                                  segmenter_features=p["segmenter_features"], generator_features=p["generator_features"],
                                  discriminator_features=p["discriminator_features"], generator_upsample="resize",
                                  adv_weight=1.0)
        cfg = dataclasses.replace(cfg, **VARIANTS[name])
        torch.manual_seed(seed)
        model, _, disc = build_networks(cfg, 2)
        best = {}
        gen = train_normalization(model.generator, model.segmenter, disc, data["train"], data["val"], cfg,
                                  keep=lambda state, metrics, step: best.update(state=state))
        try:
            while True: next(gen)
        except StopIteration as e:
            res = e.value
        model.load_state_dict(best["state"])
        ev = evaluate_sites(model.generator, model.segmenter, data["test"], "adversarial")
        row = {"val": res["best_metrics"]["dice"], "test": _per_class_mean(list(ev["dice"].values()))["mean"],
               "jsd_after": ev["jsd_after"], "checkerboard": ev["checkerboard_ratio"], "best_step": res["best_step"],
               "s": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(name, seed, json.dumps(row, default=float), flush=True)
    out[name] = rows
    print(f"== {name}: val {np.mean([r['val'] for r in rows]):.3f} test {np.mean([r['test'] for r in rows]):.3f} "
          f"jsd {np.mean([r['jsd_after'] for r in rows]):.3f} cb {np.mean([r['checkerboard'] for r in rows]):.2f}", flush=True)
if len(sys.argv) > 2:
    json.dump(out, open(sys.argv[2], "w"), indent=1, default=float)
