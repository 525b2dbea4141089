"""``napari-medseg train|predict adversarial_segmentation`` (Chen et al. 2019).

Training runs on the method's cardiac phantom cohort (MS-CMR proportions) and saves a new
registry version the dock uses too; prediction segments files of 2-D slices
(:mod:`napari_medseg.core.slice_commands`).
"""

from __future__ import annotations

from ...core import slice_commands
from .options import DEFAULTS

SLUG, MODEL_NAME = "adversarial_segmentation", "chen_cardiac"
VARIANTS = ("adversarial_transfer", "adversarial", "unet")  # U+A+D+T (the paper's), U+A+D, the U-Net
PHANTOMS = 12


def model_name(args) -> str:
    """The registry name ``train adversarial_segmentation`` saves under."""
    return MODEL_NAME


def train(args, registry):
    """Train on phantom patients and return the saved registry entry (None when stopped first)."""
    from ...core.device import select_device
    from .cardiac import cardiac_cohort
    from .chen import ChenConfig, train_chen_model

    device, steps = str(select_device(args.device)), int(args.steps or DEFAULTS["steps"])
    n, size = slice_commands.phantom_count(args, SLUG, PHANTOMS, 2), (96, 96)
    train_set = cardiac_cohort(n, seed=1000 + args.seed, size=size)
    val = cardiac_cohort(3, seed=2000 + args.seed, size=size, n_fully_labelled=3, n_unlabelled=0)
    cfg = ChenConfig(method=slice_commands.variant(args, SLUG, VARIANTS), steps=steps,
                     pretrain_steps=max(1, steps // 3), batch_size=args.batch_size or DEFAULTS["batch_size"],
                     lr=args.lr or DEFAULTS["lr"], adv_weight=DEFAULTS["adv_weight"], d_warmup=DEFAULTS["d_warmup"],
                     size=size, seed=args.seed, device=device, val_every=max(1, steps // 10))
    what = f"{n} phantom patients (MS-CMR proportions), validated on the LGE of 3 more"
    gen = train_chen_model(registry, train_set, val, cfg, name=MODEL_NAME, data=what)
    return slice_commands.run_training(registry, gen, SLUG, MODEL_NAME, what, steps, device)


def predict(args) -> int:
    return slice_commands.predict(args, MODEL_NAME, f"{__name__}:segmenter")


def segmenter(entry, device):
    """(N, H, W) or (H, W) float slices -> uint8 labels, as the dock segments."""
    from . import chen

    model, _ = entry.load(device)
    return lambda x: chen.predict_slices(model, x, device)
