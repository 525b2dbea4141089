"""``napari-medseg train|predict site_normalization`` (Delisle et al. 2019).

Training runs on the user's domain folders (``--domain NAME=DIR``, two or more) or on the
method's two-site brain phantom, and saves a new registry version the dock uses too;
prediction normalises and segments files of 2-D slices
(:mod:`napari_medseg.core.slice_commands`).
"""

from __future__ import annotations

from ...core import slice_commands
from ...core.errors import InputError
from .options import DEFAULTS

SLUG, MODEL_NAME = "site_normalization", "delisle_normalization"
VARIANTS = ("adversarial", "standardized", "none")  # the paper's, per-site z-scoring, no adaptation
PHANTOMS = 4


def model_name(args) -> str:
    """The registry name ``train site_normalization`` saves under."""
    return MODEL_NAME


def _domains(specs: list[str]) -> list[tuple[str, list[dict]]]:
    from .data import check_domain_items, folder_files, read_folder_domain

    out = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError(f"--domain takes NAME=DIR, not {spec!r}.")
        files = folder_files(folder)
        if len(files) < 2:
            raise InputError(f"Domain {name!r} ({folder}) has {len(files)} image(s); each domain needs at least 2.")
        out.append((name.strip(), read_folder_domain(name.strip(), files)))
    return check_domain_items(out)


def train(args, registry):
    """Train on domain folders or phantom sites; the saved registry entry (None when stopped first)."""
    import numpy as np

    from ...core.device import select_device
    from .data import held_out_split, n_classes_of
    from .delisle import train_normalization_model
    from .delisle_config import short_run_config
    from .sites import multi_site

    device, steps = str(select_device(args.device)), int(args.steps or DEFAULTS["steps"])
    mode = slice_commands.variant(args, SLUG, VARIANTS)
    if args.domain:
        if len(args.domain) < (1 if mode == "none" else 2):
            raise InputError("Normalisation needs two or more --domain folders ('none' trains on one).")
        domains = _domains(args.domain)
        what = ", ".join(f"{n} ({len(items)} images)" for n, items in domains)
    else:
        n = slice_commands.phantom_count(args, SLUG, PHANTOMS, 2)
        sites = multi_site(n, seed=1000 + args.seed, shape=(48, 56, 48), spacing=(3.0, 3.0, 3.0))
        axial = lambda a: np.ascontiguousarray(np.moveaxis(a, 2, 0))  # noqa: E731 - axial slices first, as the sample
        domains = [(site, [{"title": f"{site} {i + 1}", "raw": axial(img), "labels": axial(lab)} for i, (img, lab) in
                           enumerate(pairs)]) for site, pairs in sites.items()]
        what = f"phantom scans, {n} per site ({', '.join(sites)})"
    train_set, val, _notes = held_out_split(domains, 2, True, 0)
    cfg = short_run_config(n_classes=n_classes_of(domains), spatial_dims=2, mode=mode, steps=steps,
                           warmup_steps=max(1, steps // 5), batch_size=args.batch_size or DEFAULTS["batch_size"],
                           lr=args.lr or DEFAULTS["lr"], seed=args.seed, device=device)
    data = f"{what}; preprocessing " + '{"rescale": "brain percentile 1-99 -> [0, 1]", "slice_axis": 0}'
    gen = train_normalization_model(registry, train_set, val, cfg, name=MODEL_NAME, data=data)
    return slice_commands.run_training(registry, gen, SLUG, MODEL_NAME, what, steps, device)


def predict(args) -> int:
    return slice_commands.predict(args, MODEL_NAME, f"{__name__}:segmenter")


def segmenter(entry, device):
    """(N, H, W) or (H, W) float slices -> uint8 labels: normalised, then segmented, as the dock does."""
    import numpy as np

    from .data import apply_model
    from .delisle import load_normalization

    model, mode, meta = load_normalization(entry, device)
    return lambda x: np.asarray(apply_model(model, mode, meta, x, "segment", device))
