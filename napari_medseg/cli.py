"""``napari-medseg``: the command line over the same engine the widgets use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_methods import _ship, _train  # noqa: F401 - the commands' home
from .core.errors import MedsegError
from .core.options import positive_int  # noqa: F401 - used by other commands' parsers


def _info(args) -> int:
    import platform

    import dask
    import monai
    import numpy
    import torch
    import zarr

    from . import __version__
    from .core.device import available_devices, select_device
    from .core.registry import Registry

    lines = {
        "napari-medseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "dask": dask.__version__,
        "zarr": zarr.__version__,
    }
    try:
        import napari

        lines["napari"] = napari.__version__
    except Exception as exc:  # the engine works without napari
        lines["napari"] = f"not importable ({type(exc).__name__})"
    lines["devices"] = ", ".join(available_devices())
    lines["selected device"] = str(select_device(args.device))
    reg = Registry()
    models = reg.list()
    for k, v in lines.items():
        print(f"{k:>16}: {v}")
    print(f"{'models':>16}: {len(models)} found (shipped: {reg.shipped_root}, yours: {reg.user_root})")
    for e in models:
        found = e.meta.get("metrics")
        metrics = ", ".join(f"{k}={v:.3g}" for k, v in (found if isinstance(found, dict) else {}).items()
                            if isinstance(v, float))
        damaged = f"  [damaged: {e.meta['damaged']}]" if "damaged" in e.meta else ""
        print(f"{'':>16}  {e.label}  {metrics}{damaged}")
    return 0


def _bench(args) -> int:
    import importlib

    from .bench import BENCHMARKS

    if getattr(args, "real", False):
        args.name = f"{args.name}_real"
    if args.name not in BENCHMARKS:
        raise MedsegError(f"Unknown benchmark {args.name!r}; available: {', '.join(sorted(BENCHMARKS))}.")
    module, func = BENCHMARKS[args.name].split(":")
    extra = {"seeds": [int(v) for v in args.seeds.split(",")]} if getattr(args, "seeds", None) else {}
    if getattr(args, "head", None):
        extra["head"] = args.head
    if getattr(args, "symmetries", None):
        if args.name != "tracking_real":
            raise MedsegError("--symmetries applies to `bench tracking --real` only.")
        extra["symmetries"] = args.symmetries
    results = getattr(importlib.import_module(module), func)(quick=args.quick, json_path=args.json, **extra)
    width = max(len(k) for k in results)
    for k, v in results.items():
        if k == "goals" or isinstance(v, (list, dict)):
            continue
        val = f"{v:.4g}" if isinstance(v, float) else str(v)
        goal = results.get("goals", {}).get(k, "")
        print(f"{k:<{width}}  {val:>12}  {goal}")
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _level_pixel_size(meta: dict, levels, level: int, rgb: bool):
    """The pixel size of pyramid ``level``'s spatial axes from the file's scale, or None."""
    scale = meta.get("scale")
    nd = len(levels[0].shape) - int(rgb)
    if scale is None or len(scale) < nd:
        return None
    factor = [a / b for a, b in zip(levels[0].shape[:nd], levels[level].shape[:nd])]
    return [float(s) * f for s, f in zip(list(scale)[-nd:], factor)]


def _segment_input(path, level: int, meta: dict, polarity: str, for_workers: bool = False):
    """``(image, rgb, pixel_size, note, file_rgb)``: pyramid ``level`` of the file at ``path``
    as the model ``meta`` reads it (a brightfield model on a grey, 16-bit or float image: the
    box method's one input path); ``file_rgb``: whether the file itself is RGB."""
    import numpy as np

    from .core.io import read_image
    from .core.segment import io_spec

    levels, img_meta = read_image(path)
    if not 0 <= level < len(levels):
        raise MedsegError(f"{path} has {len(levels)} pyramid level(s); --level must be 0 to {len(levels) - 1}.")
    image, rgb, note = levels[level], bool(img_meta.get("rgb")), ""
    file_rgb = rgb
    pixel_size = _level_pixel_size(img_meta, levels, level, rgb)
    if io_spec(meta)["input"] == "rgb_uint8" and not (rgb and np.dtype(image.dtype) == np.uint8):
        from .methods.box_iterative.inputs import as_rgb8

        if for_workers:
            raise MedsegError(f"The model reads 8-bit RGB and {path} is not; with --scheduler the workers read the "
                              "file themselves, so convert it first (or segment without --scheduler).")
        image, note = as_rgb8(image, Path(path).name, polarity)
        rgb = True
    return image, rgb, pixel_size, note, file_rgb


_SEGMENT_MODELS: dict = {}


def segment_file(src: str, target: str, model: str, version: int, *, level: int = 0, tile: int = 1024,
                 batch_size: int = 1, output: str = "labels", polarity: str = "auto", device: str = "cpu") -> str:
    """Segment one image file into the zarr result ``target`` (never over a file): one task
    of ``segment DIR`` / ``predict box_iterative DIR``, here or on a dask worker (which loads
    the model once and keeps it)."""
    from .core.jobs import collect
    from .core.registry import Registry
    from .core.segment import run_segmentation

    key = (model, version, device)
    if key not in _SEGMENT_MODELS:
        _SEGMENT_MODELS[key] = Registry().get(model, version).load(device)
    net, meta = _SEGMENT_MODELS[key]
    image, rgb, pixel_size, _note, _file_rgb = _segment_input(src, level, meta, polarity)
    collect(run_segmentation(net, meta, image, target, tile=tile, batch_size=batch_size, output=output, device=device,
                             rgb=rgb, inputs=[src], pixel_size=pixel_size))
    return Path(target).name


def _segment_folder(args, entry) -> int:
    """``segment DIR --out OUTDIR``: one ``<name>_labels.zarr`` per image in the folder; with
    ``--scheduler``, one image per task on the cluster. A failed image is reported and the
    others go on."""
    from .core.batch import print_failures, run_in_terminal_on
    from .core.device import select_device
    from .core.io import SUFFIXES

    src, out = Path(args.image), Path(args.out)
    files = sorted(p for p in src.iterdir() if not p.name.startswith(".")
                   and any(p.name.lower().endswith(x) for x in SUFFIXES))
    if not files:
        raise MedsegError(f"No images found in {src}.")
    if out.exists() and not out.is_dir():
        raise MedsegError(f"--out {out} is a file; for a folder of images give a folder (it is created).")
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"{f.name.split('.')[0]}_labels.zarr" for f in files]
    taken = [t.name for t in targets if t.exists()]
    if taken:
        raise MedsegError(f"{out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; results are "
                          "never replaced: pick a new --out folder.")
    device = "cpu" if args.scheduler else str(select_device(args.device))
    options = {"level": args.level, "tile": args.tile, "batch_size": args.batch_size, "output": args.output,
               "polarity": args.polarity, "device": device}
    import functools

    task = functools.partial(segment_file, **options)
    rows, failed, stopped = run_in_terminal_on(task, [(f.name, (str(f), str(t), entry.name, entry.version))
                                                      for f, t in zip(files, targets)], args.scheduler,
                                               f"segment with {entry.label}")
    print(f"{len(rows) - len(failed)} of {len(files)} images segmented with {entry.label} into {out}")
    print_failures(failed)
    return 1 if failed or stopped else 0


def _segment(args) -> int:
    from .core.device import select_device
    from .core.jobs import run_in_terminal
    from .core.registry import Registry
    from .core.segment import run_segmentation

    name, _, version = args.model.partition(":")
    if version and not version.isdigit():
        raise MedsegError(f"--model takes NAME or NAME:VERSION with a whole-number version, not {args.model!r}.")
    entry = Registry().get(name, int(version) if version else None)
    if Path(args.image).is_dir() and Path(args.image).suffix.lower() != ".zarr":
        return _segment_folder(args, entry)
    out = Path(args.out)
    if not out.exists() and out.suffix.lower() != ".zarr":  # existing paths get the output checks' own messages
        raise MedsegError(f"segment writes a zarr result (a folder); give --out a name ending in .zarr, not "
                          f"{out.name!r}.")
    device = select_device(args.device)
    model, meta = entry.load(device)
    image, rgb, pixel_size, note, file_rgb = _segment_input(args.image, args.level, meta, args.polarity,
                                                            for_workers=bool(args.scheduler))
    if note:
        print(note, file=sys.stderr)
    client = None
    if args.scheduler:
        from distributed import Client

        from .core.sources import PathSource

        client = Client(args.scheduler)
        # the workers open the file themselves: no pixels travel through this process
        image = PathSource(args.image, level=args.level, channel_axis=-1 if file_rgb else None)
    gen = run_segmentation(model, meta, image, args.out, tile=args.tile, batch_size=args.batch_size,
                           output=args.output, device=device, client=client, rgb=rgb,
                           overwrite=args.overwrite, inputs=[args.image], pixel_size=pixel_size)
    try:
        job = run_in_terminal(gen, f"segment with {entry.label}")
    finally:
        if client is not None:
            client.close()
    if job.stopped:
        print(f"stopped: nothing was written to {args.out} (an earlier result there is unchanged)", file=sys.stderr)
        return 1
    levels = job.result
    print(f"wrote {args.out} ({len(levels)} level(s), full resolution {tuple(levels[0].shape)} in {args.out}/0)")
    return 0


def _models(args) -> int:
    from .core.registry import Registry

    reg = Registry()
    if args.action == "list":
        currents: dict[str, object] = {}
        for e in reg.list(args.name):
            if e.name not in currents:
                try:
                    currents[e.name] = reg.get(e.name).path
                except MedsegError as exc:  # a damaged pointer: say so, list the rest
                    currents[e.name] = None
                    print(f"{e.name}: {exc}", file=sys.stderr)
            current = " (current)" if currents[e.name] == e.path else ""
            damaged = f"  [damaged: {e.meta['damaged']}]" if "damaged" in e.meta else ""
            print(f"{e.label}{current}  {e.path}{damaged}")
        return 0
    if args.action == "recover":
        return _recover(reg, args.name)
    if not args.name or args.version is None:
        raise MedsegError("restore needs NAME and VERSION, e.g. `napari-medseg models restore tissue 1`.")
    e = reg.restore(args.name, args.version)
    print(f"current {args.name} is now {e.label}")
    return 0


def _recover(reg, name: str | None) -> int:
    """``models recover NAME``: the best weights of NAME's killed training runs as versions."""
    from .core.recover import recover_run, recoverable_runs
    from .core.runstate import find_interrupted_runs

    if not name:
        raise MedsegError("recover needs NAME, e.g. `napari-medseg models recover joint_lesion_tissue`.")
    runs = recoverable_runs(name)
    if not runs:
        resumable = [r for r in find_interrupted_runs(name) if r["settings"].get("resumable")]
        hint = f" Its killed run can be continued: `napari-medseg train {name} --resume`." if resumable else ""
        raise MedsegError(f"No killed training run of {name} holds best weights to save.{hint}")
    for r in runs:
        for e in recover_run(reg, r["folder"]):
            print(f"saved {e.label} from run {r['folder'].name} (best at step {r['best_step']}); not made current: "
                  f"`napari-medseg models restore {e.name} {e.version}` to use it")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(out_dir=Path(args.out), gui=args.gui, steps=args.steps)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="napari-medseg", description=__doc__)
    p.add_argument("--version", action="version", version=f"napari-medseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="versions, devices and models found")
    s.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps")
    s.set_defaults(func=_info)

    s = sub.add_parser("demo", help="open napari with the sample data and every widget; headless: run and report")
    s.add_argument("--out", default="demo-output")
    s.add_argument("--gui", choices=["auto", "open", "headless"], default="auto",
                   help="open: show napari and wait; headless: run, screenshot, report; auto: open if a display exists")
    s.add_argument("--steps", type=int, default=100, help="retraining steps in the headless run")
    s.set_defaults(func=_demo)

    s = sub.add_parser("bench", help="benchmarks: ours vs the baseline, side by side")
    s.add_argument("name")
    s.add_argument("--quick", action="store_true", help="small sizes, about a minute on 2 CPU cores")
    s.add_argument("--real", action="store_true", help="tracking, box_iterative: on real images that installed packages ship")
    s.add_argument("--json", default=None, help="write the results here")
    s.add_argument("--seeds", default=None, help="box_iterative: training seeds, comma-separated (quick 0,1,2; full 0,1)")
    s.add_argument("--head", choices=["binary", "boundary"], default=None,
                   help="box_iterative: the models' output (default binary; boundary: the instance head)")
    s.add_argument("--symmetries", type=int, choices=[1, 2, 4, 8], default=None,
                   help="tracking --real: our tracker averages each step over this many turned/mirrored views")
    s.set_defaults(func=_bench)

    from . import cli_methods
    from .methods.tracking import cli as tracking_cli

    cli_methods.add_train_parser(sub)
    cli_methods.add_predict_parser(sub)
    cli_methods.add_segment_parser(sub)
    tracking_cli.add_parsers(sub)

    s = sub.add_parser("models", help="list models, restore an earlier version, or recover the best weights of "
                                      "a killed training run")
    s.add_argument("action", choices=["list", "restore", "recover"])
    s.add_argument("name", nargs="?")
    s.add_argument("version", nargs="?", type=int)
    s.set_defaults(func=_models)

    s = sub.add_parser("export-model", help="a model as a bioimage.io package (deepImageJ, ilastik, QuPath, "
                                            "bioimageio.core)")
    s.add_argument("model", help="NAME or NAME:VERSION (tissue, glomeruli, stain_cyclegan)")
    s.add_argument("--out", required=True, help="the package to write, model.zip (never replaced)")
    s.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test of the written package")
    s.set_defaults(func=_export_model)

    s = sub.add_parser("import-model", help="a package exported by napari-medseg, as a new version of its model")
    s.add_argument("package", help="model.zip")
    s.add_argument("--name", default=None, help="register it under this model name (default: its own)")
    s.set_defaults(func=_import_model)
    return p


def _export_model(args) -> int:
    from .core.bioimageio import export_model, check_package
    from .core.registry import Registry

    name, _, version = args.model.partition(":")
    entry = Registry().get(name, int(version) if version.isdigit() else None)
    path = export_model(entry, args.out)
    print(f"wrote {path} ({entry.label}, bioimage.io model format 0.5)")
    if args.no_test:
        return 0
    result = check_package(path)
    print(("passed" if result["passed"] else "FAILED") + " bioimageio.core's model test")
    if not result["passed"]:
        print(result["details"], file=sys.stderr)
        return 1
    return 0


def _import_model(args) -> int:
    from .core.bioimageio import import_model
    from .core.registry import Registry

    entry = import_model(Registry(), args.package, name=args.name)
    print(f"imported {args.package} as {entry.label} at {entry.path} (not made current; "
          f"napari-medseg models restore {entry.name} {entry.version} to use it)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MedsegError as exc:
        print(f"napari-medseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
