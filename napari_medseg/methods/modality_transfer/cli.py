"""``napari-medseg train|predict modality_transfer`` (Giacomello et al. 2020).

Training runs on the method's brain-tumour phantom subjects, one modality, and saves the
segmentor (with its critic) as a new registry version the dock uses too; prediction
segments files of 2-D slices (:mod:`napari_medseg.core.slice_commands`).
"""

from __future__ import annotations

from ...core import slice_commands
from ...core.errors import InputError
from .options import DEFAULTS

SLUG, MODEL_NAME = "modality_transfer", "segan_tumour"
VARIANTS = ("concat", "multiply")  # the critic's input: the paper's concatenation, SegAN's product
PHANTOMS = 8


def model_name(args) -> str:
    """The registry name ``train modality_transfer`` saves under (a SegAN critic ships with it)."""
    return MODEL_NAME


def train(args, registry):
    """Train a source model and return the saved registry entry (None when stopped first)."""
    from ...core.device import select_device
    from .segan import SeganConfig, train_segan_model
    from .tumour import MODALITIES, tumour_slices

    device, steps = str(select_device(args.device)), int(args.steps or DEFAULTS["source_steps"])
    if args.modality not in MODALITIES:
        raise InputError(f"--modality {args.modality!r} is not one of {', '.join(MODALITIES)}.")
    n = slice_commands.phantom_count(args, SLUG, PHANTOMS, 3)
    n_val = max(1, n // 4)
    data = tumour_slices(n, seed=1000 + args.seed, modalities=(args.modality,), split=(n - n_val, n_val, 0))
    cfg = SeganConfig(critic_input=slice_commands.variant(args, SLUG, VARIANTS), modality=args.modality, steps=steps,
                      batch_size=args.batch_size or DEFAULTS["batch_size"], optimizer=DEFAULTS["optimizer"],
                      lr=args.lr or DEFAULTS["lr"], seed=args.seed, device=device, val_every=max(1, steps // 10))
    what = f"{args.modality} slices of {n - n_val} phantom subjects, validated on {n_val} more"
    gen = train_segan_model(registry, data["train"], data["val"], cfg, name=MODEL_NAME, data_name=what)
    return slice_commands.run_training(registry, gen, SLUG, MODEL_NAME, what, steps, device)


def predict(args) -> int:
    return slice_commands.predict(args, MODEL_NAME, f"{__name__}:segmenter")


def segmenter(entry, device):
    """(N, H, W) or (H, W) float slices -> uint8 labels, as the dock segments (percentile-scaled)."""
    from ...core.intensity import percentile_scale
    from . import segan

    model, _ = entry.load(device)
    return lambda x: segan.predict_slices(model, percentile_scale(x), device)
