"""Issue 20: ablations of Chen et al.'s U+A+D+T on bench adversarial's cardiac group (full
settings), 3 training seeds, same data. A choice may use the validation Dice (mean LV,
myo, RV on the validation patients' LGE, the kept checkpoint's); the held-out test Dice is
printed beside it.

    python benchmarks/scripts/chen_ablation.py unet,uadt,uadt_adv0.1 [OUT.json]
"""
import dataclasses, json, sys, time
import numpy as np, torch
torch.set_num_threads(1)  # as the bench
from napari_medseg.bench import adversarial_groups as groups
from napari_medseg.bench.adversarial import CARDIAC as p
from napari_medseg.core.adversarial.networks import ConditionalMaskDiscriminator
from napari_medseg.methods.adversarial_segmentation.chen import ChenConfig, evaluate_target, train_chen
from napari_medseg.methods.adversarial_segmentation.chen_data import chen_training_data, chen_validation_data
from napari_medseg.methods.adversarial_segmentation.networks import DilatedResUNet

VARIANTS = {
    "unet": {"method": "unet"},
    "uadt": {},
    "uadt_adv0.1": {"adv_weight": 0.1},
    "uadt_adv0.01": {"adv_weight": 0.01},
    "uadt_adv0": {"adv_weight": 0.0},
    "uadt_lr2e-4": {"lr": 2e-4},
    "uadt_pretrain200": {"pretrain_steps": 200},
    "uadt_adv0.03": {"adv_weight": 0.03},
    "uad": {"method": "adversarial"},
    "uad_adv0.01": {"method": "adversarial", "adv_weight": 0.01},
}
data = groups.cardiac_data(p)
names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(VARIANTS)
out = {}
for name in names:
    rows = []
    for seed in (0, 1, 2):
        t = time.perf_counter()
        cfg = ChenConfig(method="adversarial_transfer", steps=p["steps"], pretrain_steps=p["pretrain_steps"],
                         batch_size=p["batch_size"], lr=p["lr"], seed=seed, val_every=p["val_every"], amp=False)
        cfg = dataclasses.replace(cfg, **VARIANTS[name])
        train, val = chen_training_data(data["train"], cfg), chen_validation_data(data["val"], cfg)
        torch.manual_seed(seed)
        model = DilatedResUNet(2, 1, cfg.n_classes, features=p["features"], dilations=p["dilations"])
        disc = None if cfg.method == "unet" else ConditionalMaskDiscriminator(2, 1, cfg.n_classes, features=p["d_features"])
        best = {}
        gen = train_chen(model, disc, train, val, cfg, keep=lambda state, metrics, step: best.update(state=state))
        try:
            while True:
                next(gen)
        except StopIteration as e:
            res = e.value
        model.load_state_dict(best["state"])
        test = evaluate_target(model, data["test"], "cpu", cfg.target)["dice"]
        row = {"val": res["best_metrics"].get("val_dice", res["best_metrics"].get("dice")),
               "test": float(np.mean([v for v in test.values() if v is not None])),
               "test_by_class": test, "best_step": res["best_step"], "s": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(name, seed, json.dumps(row, default=float), flush=True)
    out[name] = rows
    print(f"== {name}: val {np.mean([r['val'] for r in rows]):.3f} test {np.mean([r['test'] for r in rows]):.3f}",
          flush=True)
if len(sys.argv) > 2:
    json.dump(out, open(sys.argv[2], "w"), indent=1, default=float)
