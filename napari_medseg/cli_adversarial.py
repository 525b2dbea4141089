"""``napari-medseg train|predict`` for the three adversarial methods: adversarial segmentation
with weak domain transfer (Chen et al. 2019), SegAN-style segmentation for modality transfer
(Giacomello et al. 2020) and adversarial normalization across sites (Delisle et al. 2019).

Training runs on the methods' own phantoms (a cardiac cohort, brain-tumour subjects, brain
scans from two sites) or, for site normalization, on the user's domain folders, and saves a
new registry version the docks use too. Prediction takes one image file or a folder of them
(NIfTI or TIFF stacks of 2-D slices: along the last axis in NIfTI, the first in TIFF, unless
``--slice-axis`` says otherwise) and writes one labels file per input into ``--out`` (same
grid, affine kept), never over an existing file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .core.errors import InputError

SLUGS = ("adversarial_segmentation", "modality_transfer", "site_normalization")
MODEL_NAMES = {"adversarial_segmentation": "chen_cardiac", "modality_transfer": "segan_tumour",
               "site_normalization": "delisle_normalization"}
VARIANTS = {"adversarial_segmentation": ("adversarial_transfer", "adversarial", "unet"),
            "modality_transfer": ("concat", "multiply"),
            "site_normalization": ("adversarial", "standardized", "none")}
PHANTOMS = {"adversarial_segmentation": 12, "modality_transfer": 8, "site_normalization": 4}
SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff")


def _variant(args, slug: str) -> str:
    v = args.variant or VARIANTS[slug][0]
    if v not in VARIANTS[slug]:
        raise InputError(f"--variant {v!r} is not one of {', '.join(VARIANTS[slug])} for {slug}.")
    return v


def _count(args, slug: str, least: int) -> int:
    n = PHANTOMS[slug] if args.phantoms is None else int(args.phantoms)
    if n < least:
        raise InputError(f"--phantoms must be at least {least} for {slug}, got {n}.")
    return n


def model_name(args) -> str:
    """The registry name ``train SLUG`` saves under (the segmentor; a SegAN critic ships with it)."""
    return MODEL_NAMES[args.method]


def _defaults(slug: str) -> dict:
    """The method's short-run defaults (``methods/<slug>/options.py: DEFAULTS``, shared with its dock)."""
    import importlib

    return importlib.import_module(f"napari_medseg.methods.{slug}.options").DEFAULTS


def train(args, registry):
    """Train ``args.method`` and return the saved registry entry (None when stopped first)."""
    from .core.device import select_device
    from .core.jobs import run_in_terminal

    slug, device = args.method, str(select_device(args.device))
    steps = int(args.steps or _defaults(slug)["source_steps" if slug == "modality_transfer" else "steps"])
    if slug == "adversarial_segmentation":
        gen, what = _train_chen(args, registry, steps, device)
    elif slug == "modality_transfer":
        gen, what = _train_segan(args, registry, steps, device)
    else:
        gen, what = _train_delisle(args, registry, steps, device)
    print(f"training {MODEL_NAMES[slug]} on {what}, {steps} steps on {device}", file=sys.stderr)
    job = run_in_terminal(gen, f"train {slug}")
    entry = (job.result or {}).get("entry") if job.result else None
    if entry is None and job.stopped:
        names = registry.list(MODEL_NAMES[slug])
        entry = names[-1] if names else None
        print("stopped; the best weights so far were saved" if entry else "stopped before anything was saved",
              file=sys.stderr)
    return entry


def _train_chen(args, registry, steps: int, device: str):
    from .methods.adversarial_segmentation.cardiac import cardiac_cohort
    from .methods.adversarial_segmentation.chen import ChenConfig, train_chen_model

    n, size = _count(args, "adversarial_segmentation", 2), (96, 96)
    train = cardiac_cohort(n, seed=1000 + args.seed, size=size)
    val = cardiac_cohort(3, seed=2000 + args.seed, size=size, n_fully_labelled=3, n_unlabelled=0)
    short = _defaults("adversarial_segmentation")
    cfg = ChenConfig(method=_variant(args, "adversarial_segmentation"), steps=steps, pretrain_steps=max(1, steps // 3),
                     batch_size=args.batch_size or short["batch_size"], lr=args.lr or short["lr"],
                     adv_weight=short["adv_weight"],
                     size=size, seed=args.seed, device=device, val_every=max(1, steps // 10))
    what = f"{n} phantom patients (MS-CMR proportions), validated on the LGE of 3 more"
    return train_chen_model(registry, train, val, cfg, name=MODEL_NAMES["adversarial_segmentation"],
                            data=what), what


def _train_segan(args, registry, steps: int, device: str):
    from .methods.modality_transfer.segan import SeganConfig, train_segan_model
    from .methods.modality_transfer.tumour import MODALITIES, tumour_slices

    if args.modality not in MODALITIES:
        raise InputError(f"--modality {args.modality!r} is not one of {', '.join(MODALITIES)}.")
    n = _count(args, "modality_transfer", 3)
    n_val = max(1, n // 4)
    data = tumour_slices(n, seed=1000 + args.seed, modalities=(args.modality,), split=(n - n_val, n_val, 0))
    short = _defaults("modality_transfer")
    cfg = SeganConfig(critic_input=_variant(args, "modality_transfer"), modality=args.modality, steps=steps,
                      batch_size=args.batch_size or short["batch_size"], optimizer=short["optimizer"],
                      lr=args.lr or short["lr"], seed=args.seed,
                      device=device, val_every=max(1, steps // 10))
    what = f"{args.modality} slices of {n - n_val} phantom subjects, validated on {n_val} more"
    return train_segan_model(registry, data["train"], data["val"], cfg, name=MODEL_NAMES["modality_transfer"],
                             data_name=what), what


def _domains(specs: list[str]) -> list[tuple[str, list[dict]]]:
    from .methods.site_normalization.data import check_domain_items, folder_files, read_folder_domain

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


def _train_delisle(args, registry, steps: int, device: str):
    import numpy as np

    from .methods.site_normalization.data import held_out_split, n_classes_of
    from .methods.site_normalization.delisle import train_normalization_model
    from .methods.site_normalization.delisle_config import short_run_config
    from .methods.site_normalization.sites import multi_site

    mode = _variant(args, "site_normalization")
    if args.domain:
        if len(args.domain) < (1 if mode == "none" else 2):
            raise InputError("Normalisation needs two or more --domain folders ('none' trains on one).")
        domains = _domains(args.domain)
        what = ", ".join(f"{n} ({len(items)} images)" for n, items in domains)
    else:
        n = _count(args, "site_normalization", 2)
        sites = multi_site(n, seed=1000 + args.seed, shape=(48, 56, 48), spacing=(3.0, 3.0, 3.0))
        axial = lambda a: np.ascontiguousarray(np.moveaxis(a, 2, 0))  # noqa: E731 - axial slices first, as the sample
        domains = [(site, [{"title": f"{site} {i + 1}", "raw": axial(img), "labels": axial(lab)} for i, (img, lab) in
                           enumerate(pairs)]) for site, pairs in sites.items()]
        what = f"phantom scans, {n} per site ({', '.join(sites)})"
    rescaled, short = True, _defaults("site_normalization")
    train, val, _notes = held_out_split(domains, 2, rescaled, 0)
    cfg = short_run_config(n_classes=n_classes_of(domains), spatial_dims=2, mode=mode, steps=steps,
                           warmup_steps=max(1, steps // 5), batch_size=args.batch_size or short["batch_size"],
                           lr=args.lr or short["lr"],
                           seed=args.seed, device=device)
    data = f"{what}; preprocessing " + '{"rescale": "brain percentile 1-99 -> [0, 1]", "slice_axis": 0}'
    return train_normalization_model(registry, train, val, cfg, name=MODEL_NAMES["site_normalization"],
                                     data=data), what


# ----------------------------------------------------------------------------- predict
def _inputs(path: str) -> list[Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES)
                       and "_labels." not in f.name.lower())
        if not files:
            raise InputError(f"{p} holds no NIfTI or TIFF images.")
        return files
    if not p.is_file():
        raise InputError(f"{p} is neither an image file nor a folder of them.")
    return [p]


def _stem(p: Path) -> str:
    low = p.name.lower()
    return p.name[: -len(next(s for s in SUFFIXES if low.endswith(s)))]


def predict(args) -> int:
    """``napari-medseg predict SLUG IMAGES --out DIR``: one ``<stem>_labels<suffix>`` per input;
    a failed image is reported and the others go on. ``--scheduler`` runs one image per
    task on a dask.distributed cluster."""
    from .core.batch import print_failures, run_in_terminal_on
    from .core.device import select_device
    from .core.registry import Registry

    slug = args.method
    if args.images is None:
        raise InputError(f"predict {slug} needs an image file or a folder of them.")
    files = _inputs(args.images)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"{_stem(f)}_labels{'.nii.gz' if f.name.lower().endswith(('.nii', '.nii.gz')) else '.tif'}"
               for f in files]
    taken = [t.name for t in targets if t.exists()]
    if taken:
        raise InputError(f"{out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; outputs are "
                         "never replaced: pick a new --out folder.")
    name, _, version = (args.model or MODEL_NAMES[slug]).partition(":")
    if version and not version.isdigit():
        raise InputError(f"--model takes NAME or NAME:VERSION, not {args.model!r}.")
    entry = Registry().get(name, int(version) if version else None)  # here: a wrong name fails before any task
    scheduler = getattr(args, "scheduler", None)
    device = "cpu" if scheduler else str(select_device(args.device))
    tasks = [(f.name, (slug, str(f), str(t), entry.name, entry.version, args.slice_axis, device))
             for f, t in zip(files, targets)]
    _rows, failed, stopped = run_in_terminal_on(predict_file, tasks, scheduler, f"predict {slug} with {entry.label}")
    print(f"wrote {sum(1 for t in targets if t.exists())} labels file(s) into {out} with {entry.label}")
    print_failures(failed)
    return 1 if failed or stopped else 0


_SEGMENTERS: dict = {}


def predict_file(slug: str, src: str, target: str, name: str, version: int, slice_axis: str | None,
                 device: str = "cpu") -> str:
    """Segment one image file into ``target`` (never replaced): the task ``predict SLUG``
    runs here or on a dask worker (which loads the model once and keeps it)."""
    import numpy as np

    from .core.io import read_image, write_labels
    from .core.registry import Registry

    f, t = Path(src), Path(target)
    key = (slug, name, version, device)
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = _segmenter(slug, Registry().get(name, version), device)
    levels, meta = read_image(f)
    stack = np.asarray(levels[0], np.float32)
    if stack.ndim not in (2, 3) or meta.get("rgb") or meta.get("channel_axis") is not None:
        raise InputError(f"{f.name}: expected one grey 2-D image or a stack of slices, got shape {stack.shape}.")
    if not np.isfinite(stack).all():
        raise InputError(f"{f.name} has NaN or infinite values.")
    nifti = f.name.lower().endswith((".nii", ".nii.gz"))
    last = stack.ndim == 3 and (slice_axis or ("last" if nifti else "first")) == "last"
    slices = np.moveaxis(stack, -1, 0) if last else stack
    labels = _SEGMENTERS[key](slices).reshape(slices.shape).astype(np.uint8)
    write_labels(t, np.moveaxis(labels, 0, -1) if last else labels, {**meta, "source_path": str(f)})
    return t.name


def _segmenter(slug: str, entry, device):
    """A function (N, H, W) or (H, W) float stack -> uint8 labels of the same shape, as the dock segments."""
    import numpy as np

    from .core.intensity import percentile_scale

    if slug == "adversarial_segmentation":
        from .methods.adversarial_segmentation import chen

        model, _ = entry.load(device)
        return lambda x: chen.predict_slices(model, x, device)
    if slug == "modality_transfer":
        from .methods.modality_transfer import segan

        model, _ = entry.load(device)
        return lambda x: segan.predict_slices(model, percentile_scale(x), device)
    from .methods.site_normalization.data import apply_model
    from .methods.site_normalization.delisle import load_normalization

    model, mode, meta = load_normalization(entry, device)
    return lambda x: np.asarray(apply_model(model, mode, meta, x, "segment", device))
