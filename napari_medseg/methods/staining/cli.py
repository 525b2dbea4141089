"""``napari-medseg train despeckle|cyclegan``: the staining models (Combalia et al. 2019)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from .hne import IMAGE_SUFFIXES, read_images
from .options import TRAIN_DEFAULTS



def _std(text):
    from .models import BLIND_STD

    if text is None:
        return BLIND_STD
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InputError(f"--std takes a number or LOW,HIGH, not {text!r}.") from exc
    if len(values) not in (1, 2):
        raise InputError(f"--std takes a number or LOW,HIGH, not {text!r}.")
    return values[0] if len(values) == 1 else tuple(values)


def _data(args):
    from . import hne

    if args.method == "despeckle" and args.recipe == "real" and not args.images:
        d = hne.despeckle_split()
        return d.train, d.val, "bundled: " + d.sources["train"]
    if args.images:
        train = read_images(args.images)
        val = read_images(args.val_images) if args.val_images else train
        return train, val, f"user images from {args.images}"
    s = hne.split()
    return s.train, s.val, "bundled H&E: " + s.sources[0] + f", rows < {hne.CMU_VAL_ROWS} train, the rest val"


def model_name(args) -> str:
    """The registry name ``train despeckle`` / ``train cyclegan`` saves under."""
    from .card import MODEL_NAMES

    return MODEL_NAMES[args.method]


def train(args, registry):
    """Train the despeckler or the CycleGAN; returns the new registry entry."""
    from ...core.device import select_device
    from ...core.jobs import run_in_terminal

    device = select_device(args.device)
    train_rgb, val_rgb, data = _data(args)
    resume = None
    if args.method == "despeckle":
        from .despeckle import DISTILL_FILTERS
        from .models import REAL_VAL_STDS, train_despeckle_model
        from .training import MODEL_NAME

        if args.resume and args.distill:
            raise InputError("--distill trains a new, narrower network from the current version; it does not "
                             "resume it.")
        if args.filters is not None and not args.distill:
            raise InputError("--filters goes with --distill (a narrower network trained from the current version).")
        if args.teacher is not None and not args.distill:
            raise InputError("--teacher goes with --distill (the version to distil from).")
        dilations = None
        if args.dilations is not None:
            if not args.distill:
                raise InputError("--dilations goes with --distill (the distilled network's dilations).")
            try:
                dilations = [int(v) for v in args.dilations.split(",")]
            except ValueError:
                raise InputError(f"--dilations takes integers separated by commas, not {args.dilations!r}.") from None
        from .jobs import new_body

        if args.body == "unet" and (args.resume or args.distill):
            raise InputError("--body unet trains a new U-shaped network from scratch; it does not go with "
                             "--resume or --distill (a fine-tune keeps the resumed version's body).")
        arch = new_body(args.body)
        if args.resume:
            model, meta = registry.get(MODEL_NAME).load()
            resume = (model.state_dict(), meta)
        real = args.recipe == "real"
        if args.distill and not real:
            raise InputError("--distill uses the real-image recipe (--recipe real).")
        val_data = (args.val_images or "the training images") if args.images else (
            "bundled: slideflow norm_tile.jpg (luma and eosin density)" if real else "CMU-1 rows 1500-1900")
        gen = train_despeckle_model(registry, train_rgb, val_rgb, steps=args.steps or TRAIN_DEFAULTS["steps"],
                                    batch_size=args.batch_size or 8, crop=args.patch or (64 if real else 256),
                                    std=_std(args.std), seed=args.seed, device=device, resume=resume, data=data,
                                    augment=real, val_stds=REAL_VAL_STDS if real else None,
                                    val_crop=128 if real else None, cosine=real, lr=args.lr or (3e-4 if real else 5e-4),
                                    val_data=val_data, median="gated" if real else None,
                                    distill_filters=(args.filters or DISTILL_FILTERS) if args.distill else 0,
                                    distill_dilations=dilations, distill_teacher=args.teacher, arch=arch)
    else:
        from .models import train_cyclegan_model

        gen = train_cyclegan_model(registry, train_rgb, val_rgb, steps_small=args.steps or TRAIN_DEFAULTS["steps"],
                                   steps_large=(TRAIN_DEFAULTS["steps_large"] if args.steps_large is None
                                                else args.steps_large),
                                   batch_size=args.batch_size or 1, seed=args.seed, device=device,
                                   resume=args.resume, data=data, upsample=args.upsample,
                                   preview_every=args.preview_every)
    job = run_in_terminal(gen, f"train {args.method}")
    if job.stopped:  # the job saved its best state as it closed
        from .card import MODEL_NAMES

        print("stopped; the best model so far was saved", file=sys.stderr)
        return registry.get(MODEL_NAMES[args.method]) if registry.list(MODEL_NAMES[args.method]) else None
    return (job.result or {}).get("entry")


# ------------------------------------------------------------------ predict despeckle
DESPECKLE_SUFFIX = "_despeckled"


def _open_channel(path: Path):
    """Level 0 of a single-channel image: TIFF/OME-Zarr lazily, PNG/JPEG in memory."""
    from ...core.io import SUFFIXES, read_image

    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        from skimage import io

        try:
            return io.imread(path)
        except Exception as exc:  # noqa: BLE001 - one clear message for any unreadable file
            raise InputError(f"Could not read {path.name}: {exc}") from exc
    if not any(str(path).lower().endswith(s) for s in SUFFIXES):
        raise InputError(f"{path.name}: unsupported file type for despeckling.")
    levels, _meta = read_image(path)
    return levels[0]


def despeckle_inputs(spec: str) -> list[Path]:
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec} does not exist.")
    if path.is_dir() and path.suffix.lower() != ".zarr":
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and (
            p.suffix.lower() in IMAGE_SUFFIXES + (".zarr",)))
        if not files:
            raise InputError(f"No images found in {spec} (looked for {', '.join(IMAGE_SUFFIXES + ('.zarr',))}).")
        return files
    return [path]


def write_tiff_from(levels, path: Path) -> None:
    """Level 0 of a (1, H, W) float32 zarr result as a tiled float32 TIFF, atomically,
    one band of tiles at a time (memory stays flat)."""
    import tifffile

    from ...core.atomic import atomic_path

    arr = levels[0]
    h, w = arr.shape[1:]
    t = 512

    def tiles():
        for r in range(0, h, t):
            band = np.asarray(arr[0, r: r + t])
            for c in range(0, w, t):
                tile = np.zeros((t, t), np.float32)
                block = band[:, c: c + t]
                tile[: block.shape[0], : block.shape[1]] = block
                yield tile

    with atomic_path(path, suffix=".tmp.tif") as tmp:
        tifffile.imwrite(tmp, tiles(), shape=(h, w), dtype=np.float32, tile=(t, t), bigtiff=h * w * 4 > 2**31,
                         photometric="minisblack", metadata={"axes": "YX"})


def despeckle_job(src: str, target: str, model: str, version: int, *, tile: int, fmt: str, bf16: bool,
                  device: str = "cpu"):
    """Generator (tile progress): despeckle one image file into ``target``, never replacing a
    file. Loads the model and reads the file itself, so a dask worker can run it
    (:func:`despeckle_file`). Returns the target's name; :class:`InputError` for a bad input."""
    import tempfile

    from ...core.outputs import check_output_path
    from ...core.registry import Registry
    from .despeckling import despeckle_slide

    f, target = Path(src), Path(target)
    check_output_path(target, inputs=(f,))
    net = Registry().get(model, version).load(device)[0].eval()
    image = _open_channel(f)
    if fmt == "zarr":
        yield from despeckle_slide(net, image, target, tile=tile, device=device, inputs=(f,), pyramid_from=4096,
                                   cpu_bf16=bf16)
    else:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".despeckle-") as tmp:
            levels = yield from despeckle_slide(net, image, Path(tmp) / "r.zarr", tile=tile, device=device,
                                                pyramid_from=None, cpu_bf16=bf16)
            write_tiff_from(levels, target)
    return target.name


def despeckle_file(src: str, target: str, model: str, version: int, **kwargs) -> str:
    """:func:`despeckle_job` run to the end: the task ``predict despeckle --scheduler`` sends
    to a worker, one per image (see :func:`napari_medseg.core.batch.run_files`)."""
    from ...core.jobs import collect

    return collect(despeckle_job(src, target, model, version, **kwargs))[1]


def _despeckle_task(options: dict):
    """``despeckle_file`` with the tile/format options bound, picklable for the workers."""
    import functools

    return functools.partial(despeckle_file, **{k: v for k, v in options.items() if k not in ("model", "version")})


def predict_despeckle(args) -> int:
    """``napari-medseg predict despeckle IMG|DIR --out DIR``: each image to
    ``NAME_despeckled.tif`` (or ``.zarr``), never replacing a file; one line per failure.
    ``--scheduler ADDR|local:N`` runs one image per task on a dask.distributed cluster."""

    from ...core.device import select_device
    from ...core.jobs import run_in_terminal
    from ...core.registry import Registry

    if args.images is None:
        raise InputError("predict despeckle needs an image file or a folder of them.")
    if args.tile < 64:
        raise InputError(f"--tile must be 64 px or more, not {args.tile}.")
    files = despeckle_inputs(args.images)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, _, version = (args.model or "despeckle").partition(":")
    entry = Registry().get(name, int(version) if version.isdigit() else None)
    device = select_device(args.device)
    net = entry.load(device)[0].eval()
    if not hasattr(net, "inverse_speckle"):
        raise InputError(f"{entry.label} is not a despeckling model.")
    jobs = [(f, out_dir / f"{f.name.split('.')[0]}{DESPECKLE_SUFFIX}.{args.format}") for f in files]
    kwargs = {"model": entry.name, "version": entry.version, "tile": args.tile, "fmt": args.format,
              "bf16": args.bf16}
    done, failed = 0, []
    scheduler = getattr(args, "scheduler", None)
    if scheduler:
        from ...core.batch import close_cluster, open_cluster, run_files

        client = open_cluster(scheduler)
        tasks = [(f.name, (str(f), str(t), kwargs["model"], kwargs["version"])) for f, t in jobs]
        try:
            job = run_in_terminal(run_files(_despeckle_task(kwargs), tasks, client), "despeckle")
        finally:
            close_cluster(client, scheduler)
        for row in job.result or []:
            if row["error"] is None:
                done += 1
                print(f"{row['input']} -> {row['output']}")
            else:
                failed.append((row["input"], row["error"]))
    else:
        for f, target in jobs:
            try:
                job = run_in_terminal(despeckle_job(str(f), str(target), **kwargs, device=str(device)),
                                      f"despeckle {f.name}")
                if job.stopped:
                    print("stopped; the image being despeckled was not written", file=sys.stderr)
                    return 1
                done += 1
                print(f"{f.name} -> {target.name}")
            except InputError as exc:
                failed.append((f.name, str(exc)))
    print(f"{done} of {len(files)} images despeckled with {entry.label} into {out_dir}")
    for n, why in failed:
        print(f"  {n}: {why}", file=sys.stderr)
    return 1 if failed else 0


# ------------------------------------------------------------------ predict staining
STAIN_SUFFIX = "_stained"
_CHANNEL_TAGS = ("_fcm", "_rcm", "-fcm", "-rcm")


def _pair_key(path: Path) -> tuple[str, str | None]:
    """A file's slide name and channel tag: ``s1_fcm.tif`` -> ("s1", "fcm"), ``s1.tif`` -> ("s1", None)."""
    stem = path.name.split(".")[0]
    for tag in _CHANNEL_TAGS:
        if stem.lower().endswith(tag):
            return stem[: -len(tag)], tag[1:]
    return stem, None


def _by_slide(files, channel: str, where: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        key, tag = _pair_key(f)
        if tag not in (None, channel):
            continue
        if key in out:
            raise InputError(f"{where} holds two {channel.upper()} images for slide {key!r}: {out[key].name} and "
                             f"{f.name}; keep one.")
        out[key] = f
    return out


def stain_pairs(fcm_spec: str, rcm_spec: str) -> list[tuple[str, Path, Path]]:
    """``(slide, fcm, rcm)`` for a pair of files, or for two folders (or one folder) of
    them. Folders pair files by name: the same name in both, or ``NAME_fcm.*`` with
    ``NAME_rcm.*`` (also ``-fcm``/``-rcm``). A file without its partner is an error
    that names it, before anything runs."""
    fcm, rcm = Path(fcm_spec), Path(rcm_spec)
    for p in (fcm, rcm):
        if not p.exists():
            raise InputError(f"{p} does not exist.")
    is_dir = [p.is_dir() and p.suffix.lower() != ".zarr" for p in (fcm, rcm)]
    if is_dir[0] != is_dir[1]:
        raise InputError("--fcm and --rcm take two files (one slide) or two folders (one slide per file name), "
                         "not a file and a folder.")
    if not is_dir[0]:
        return [(_pair_key(fcm)[0], fcm, rcm)]
    same = fcm.resolve() == rcm.resolve()
    f_files, r_files = despeckle_inputs(str(fcm)), despeckle_inputs(str(rcm))
    if same:  # one folder: the channel tags tell the files apart
        f_files = [f for f in f_files if _pair_key(f)[1] == "fcm"]
        r_files = [f for f in r_files if _pair_key(f)[1] == "rcm"]
    fs, rs = _by_slide(f_files, "fcm", str(fcm)), _by_slide(r_files, "rcm", str(rcm))
    lonely = sorted(set(fs) ^ set(rs))
    if lonely or not fs:
        names = ", ".join((fs.get(k) or rs[k]).name for k in lonely) or "(no images)"
        raise InputError(f"Every FCM image needs its RCM partner (same name, or NAME_fcm / NAME_rcm): none for "
                         f"{names}.")
    return [(k, fs[k], rs[k]) for k in sorted(fs)]


def stain_job(fcm: str, rcm: str, target: str, model: str, version: int | None, *, stain: str,
              normalisation: str, tile: int, bf16: bool, device: str = "cpu"):
    """Generator (tile progress): one FCM/RCM pair through the whole pipeline into the
    zarr pyramid ``target``, never over an existing path. Loads the models and opens the
    files itself, so a dask worker can run it (:func:`stain_file`). Returns a line that
    says what was written."""
    from ...core.outputs import check_output_path
    from ...core.registry import Registry
    from .pipeline import StainingNet, stain_slide

    from .gareau import check_pair

    fcm, rcm, target = Path(fcm), Path(rcm), Path(target)
    check_output_path(target, inputs=(fcm, rcm))
    a, b = _open_channel(fcm), _open_channel(rcm)
    check_pair(a, b)  # before the models load
    reg = Registry()
    entry = reg.get(model, version)
    despeckler = entry.load(device)[0].eval()
    if not hasattr(despeckler, "inverse_speckle"):
        raise InputError(f"{entry.label} is not a despeckling model.")
    labels, generator = [entry.label], None
    if stain == "cyclegan":
        g_entry = reg.get("stain_cyclegan")
        generator = g_entry.load(device)[0].eval()
        labels.append(g_entry.label)
    net = StainingNet(despeckler=despeckler, generator=generator).to(device).eval()
    levels = yield from stain_slide(net, a, b, target, normalisation=normalisation, tile=tile, device=device,
                                    cpu_bf16=bf16, pyramid_from=4096)
    return f"{target.name} (RGB {tuple(levels[0].shape)}, {len(levels)} level(s)) with {' + '.join(labels)}"


def stain_file(fcm: str, rcm: str, target: str, model: str, version: int | None, **kwargs) -> str:
    """:func:`stain_job` run to the end: the task ``predict staining --scheduler`` sends to
    a worker, one per slide."""
    from ...core.jobs import collect

    return collect(stain_job(fcm, rcm, target, model, version, **kwargs))[1]


def predict_stain(args) -> int:
    """``napari-medseg predict staining --fcm F --rcm R --out X.zarr``: the whole pipeline
    (despeckle RCM → Gareau → CycleGAN) over a pair of any size, tiled and lazy, into a
    uint8 RGB zarr pyramid; never over an existing path. With two folders (or one),
    ``--out`` is a folder that gets ``NAME_stained.zarr`` per slide, and ``--scheduler
    ADDR|local:N`` runs one slide per task on a dask.distributed cluster."""
    import functools

    from ...core.batch import print_failures, run_in_terminal_on
    from ...core.device import select_device
    from ...core.jobs import run_in_terminal
    from ...core.registry import Registry

    if args.tile < 64:
        raise InputError(f"--tile must be 64 px or more, not {args.tile}.")
    pairs = stain_pairs(args.fcm, args.rcm)
    folder = Path(args.fcm).is_dir() and Path(args.fcm).suffix.lower() != ".zarr"
    out = Path(args.out)
    if not folder and out.suffix.lower() != ".zarr":
        raise InputError(f"predict staining writes a zarr pyramid (a folder); give --out a name ending in .zarr, "
                         f"not {out.name!r}.")
    name, _, version = args.model.partition(":")
    entry = Registry().get(name, int(version) if version.isdigit() else None)  # a wrong name fails here, once
    options = {"stain": args.stain, "normalisation": args.normalisation, "tile": args.tile, "bf16": args.bf16}
    if not folder:
        if getattr(args, "scheduler", None):
            raise InputError("--scheduler spreads a folder of slides over a cluster; give --fcm and --rcm folders.")
        _key, fcm, rcm = pairs[0]
        job = run_in_terminal(stain_job(str(fcm), str(rcm), str(out), entry.name, entry.version, **options,
                                        device=str(select_device(args.device))), "stain")
        if job.stopped:
            print(f"stopped: nothing was written to {out}", file=sys.stderr)
            return 1
        print(f"wrote {out.parent / job.result}")
        return 0
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; for folders of slides give a folder (it is created).")
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"{key}{STAIN_SUFFIX}.zarr" for key, _f, _r in pairs]
    taken = [t.name for t in targets if t.exists()]
    if taken:
        raise InputError(f"{out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; results are "
                         "never replaced: pick a new --out folder.")
    scheduler = getattr(args, "scheduler", None)
    device = "cpu" if scheduler else str(select_device(args.device))  # workers: their own CPU
    tasks = [(key, (str(f), str(r), str(t), entry.name, entry.version)) for (key, f, r), t in zip(pairs, targets)]
    rows, failed, stopped = run_in_terminal_on(functools.partial(stain_file, **options, device=device), tasks,
                                               scheduler, "stain")
    for row in rows:
        if row["error"] is None:
            print(f"{row['input']} -> {row['output']}")
    print(f"{len(rows) - len(failed)} of {len(pairs)} slides stained into {out}")
    print_failures(failed)
    if stopped:
        print("stopped: the slide being stained was not written", file=sys.stderr)
    return 1 if failed or stopped else 0
