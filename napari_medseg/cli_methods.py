"""``napari-medseg train METHOD`` and ``predict METHOD``, one subcommand per method.

Each method declares its options once, as dataclasses in ``methods/<slug>/options.py``
(``TrainOptions``, and what its prediction takes); the subcommands here are built from
those fields (:mod:`napari_medseg.core.options`), so ``napari-medseg train tracking --help``
lists the tracking options with their defaults and nothing else. The slugs are the
method packages' names; ``joint``, ``despeckle`` and ``cyclegan`` stay as the names
they were first shipped under.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from .core.errors import MedsegError
from .core.options import SegmentOptions, TrainRun, add_options

# command name -> (options package, the trainer's method name, aliases, help)
TRAIN = {
    "tissue": ("tissue", "tissue", (), "the engine's reference model: tissue segmentation of synthetic slides"),
    "tracking": ("tracking", "tracking", (), "the DRL axon tracker (Dai et al. 2019), PPO on synthetic images"),
    "box_iterative": ("box_iterative", "box_iterative", (),
                      "iterative training from bounding boxes (Gupta et al. 2019): Stage 1 then Stage 2"),
    "staining": ("staining", None, (), "the confocal-to-H&E networks (Combalia et al. 2019): --network despeckle "
                                       "or cyclegan"),
    "despeckle": ("staining", "despeckle", (), "the despeckling CNN of the staining method (= staining --network "
                                                "despeckle)"),
    "cyclegan": ("staining", "cyclegan", (), "the staining CycleGAN (= staining --network cyclegan)"),
    "joint_lesion_tissue": ("joint_lesion_tissue", "joint", ("joint",),
                            "joint lesion + tissue segmentation from hetero-modal datasets (Dorent et al. 2019)"),
    "adversarial_segmentation": ("adversarial_segmentation", "adversarial_segmentation", (),
                                 "adversarial segmentation with weak domain transfer (Chen et al. 2019)"),
    "modality_transfer": ("modality_transfer", "modality_transfer", (),
                          "SegAN-style segmentation and modality transfer (Giacomello et al. 2020)"),
    "site_normalization": ("site_normalization", "site_normalization", (),
                           "adversarial normalization across sites (Delisle et al. 2019)"),
}

STEPS_HELP = ("training steps (tissue: 400; box_iterative: 150 per round; despeckle: 2000; cyclegan: 2000 at 256 px; "
              "joint: 2000; the adversarial methods: 300)")


def _options(package: str, name: str):
    return getattr(importlib.import_module(f"napari_medseg.methods.{package}.options"), name)


def add_train_parser(sub) -> None:
    s = sub.add_parser("train", help="train a method's model (a new version; never overwrites)",
                       description="Train a method's model; `napari-medseg train METHOD --help` lists its options.")
    targets = s.add_subparsers(dest="target", required=True, metavar="METHOD")
    for name, (package, method, aliases, text) in TRAIN.items():
        t = targets.add_parser(name, aliases=list(aliases), help=text, description=text)
        add_options(t, TrainRun)
        add_options(t, _options(package, "TrainOptions"), group=f"{package} options")
        if method is None:
            t.add_argument("--network", choices=["despeckle", "cyclegan"], required=True,
                           help="which of the method's two networks to train")
        t.set_defaults(func=_train, method=method)
        for action in t._actions:
            if action.dest == "steps":
                action.help = STEPS_HELP


def add_predict_parser(sub) -> None:
    from . import cli_adversarial, cli_joint, cli_staining, cli_tracking
    from .cli import _segment

    s = sub.add_parser("predict", help="run a method's model over images: one output per input, never over a file",
                       description="Run a method's model; `napari-medseg predict METHOD --help` lists its options.")
    targets = s.add_subparsers(dest="target", required=True, metavar="METHOD")
    table = {
        "tracking": ((_options("tracking", "TrackOptions"), _options("tracking", "ImageOptions")),
                     cli_tracking.track_command, (), "trace fibres from start points (SWC out; = track)"),
        "box_iterative": ((_options("box_iterative", "PredictOptions"),), _segment, (),
                          "tiled glomeruli segmentation of a slide (zarr out; = segment --model glomeruli)"),
        "staining": ((_options("staining", "StainOptions"),), cli_staining.predict_stain, (),
                     "digital H&E of an FCM + RCM pair (RGB zarr pyramid out)"),
        "despeckle": ((_options("staining", "DespeckleOptions"),), cli_staining.predict_despeckle, (),
                      "despeckle single-channel images on their own (one file per input)"),
        "joint_lesion_tissue": ((_options("joint_lesion_tissue", "PredictOptions"),), cli_joint.predict, ("joint",),
                                "lesion + tissue labels per subject (NIfTI on the input grid) and a volumes CSV"),
    }
    for slug in cli_adversarial.SLUGS:
        table[slug] = ((_options(slug, "PredictOptions"),), cli_adversarial.predict, (),
                       f"{TRAIN[slug][3]}: one labels file per input")
    for name, (classes, func, aliases, text) in table.items():
        t = targets.add_parser(name, aliases=list(aliases), help=text, description=text)
        for cls in classes:
            add_options(t, cls)
        t.set_defaults(func=func, method="joint" if name == "joint_lesion_tissue" else name)


def add_segment_parser(sub) -> None:
    from .cli import _segment

    s = sub.add_parser("segment", help="tiled segmentation of an image file with a registered model")
    add_options(s, SegmentOptions)
    s.set_defaults(func=_segment)


def _train(args) -> int:
    if args.method is None:  # train staining --network NAME
        args.method = args.network
    from .core import distributed
    from .core.device import select_device

    if distributed.launched():  # torchrun: every trainer runs data-parallel
        # one process group for the run; each rank on its own device (cuda:LOCAL_RANK on a GPU node)
        args.device = str(distributed.init_from_env(select_device(args.device)))
        with distributed.leaving_group_after():
            code = _train_one(args)
        return code
    return _train_one(args)


def _train_one(args) -> int:
    import tempfile

    from .core import distributed, paths
    from .core.device import select_device
    from .core.jobs import run_in_terminal
    from .core.registry import Registry

    if args.ship:
        if paths.models_dir().parent.name == "_bundled":
            raise MedsegError("--ship writes into a source checkout's models/; this is an installed copy.")
        # versions count on from the shipped ones; nothing shipped is ever overwritten
        tmp = Path(tempfile.mkdtemp(prefix="medseg-ship-"))
        reg = Registry(shipped_root=paths.models_dir(), user_root=tmp)
    else:
        reg = Registry()
    if args.make_current:
        reg.make_current = True
    if args.method == "joint":
        from . import cli_joint
        from .methods.joint_lesion_tissue.card import write_model_card
        from .methods.joint_lesion_tissue.models import BASELINE_NAMES

        MODEL_NAME = BASELINE_NAMES[args.mode]
        entry = cli_joint.train(args, reg)
    elif args.method in ("despeckle", "cyclegan"):
        from . import cli_staining
        from .methods.staining.card import MODEL_NAMES, write_model_card

        MODEL_NAME = MODEL_NAMES[args.method]
        entry = cli_staining.train(args, reg)
    elif args.method == "box_iterative":
        from . import cli_box
        from .methods.box_iterative.card import write_model_card
        from .methods.box_iterative.model import MODEL_NAME

        entry = cli_box.train(args, reg)
    elif args.method == "tracking":
        from . import cli_tracking
        from .methods.tracking.card import write_model_card
        from .methods.tracking.model import MODEL_NAME

        entry = cli_tracking.train(args, reg)
    elif args.method in ("adversarial_segmentation", "modality_transfer", "site_normalization"):
        import importlib

        from . import cli_adversarial

        write_model_card = importlib.import_module(f".methods.{args.method}.card", __package__).write_model_card
        MODEL_NAME = cli_adversarial.MODEL_NAMES[args.method]
        entry = cli_adversarial.train(args, reg)
    else:
        from .methods.tissue import MODEL_NAME, train_tissue
        from .methods.tissue.card import write_model_card

        from .core.runstate import find_interrupted_runs
        from .methods.tissue.model import resume_settings

        resume, kwargs = None, {"steps": args.steps or 400, "seed": args.seed, "adversarial": args.adversarial}
        interrupted = [r for r in find_interrupted_runs(MODEL_NAME) if r["settings"].get("resumable")]
        if args.resume and interrupted:
            run = interrupted[0]
            print(f"resuming run {run['folder'].name} from step {run['step']} of {run['total_steps']}")
            kwargs = {**resume_settings(run), "resume_run": run["folder"]}
        elif args.resume:
            resume = reg.get(MODEL_NAME).load()
            resume = (resume[0].state_dict(), resume[1])
        elif interrupted:
            print(f"note: an interrupted run ({interrupted[0]['folder'].name}, step {interrupted[0]['step']} of "
                  f"{interrupted[0]['total_steps']}) can be continued with --resume", file=sys.stderr)
        job = run_in_terminal(train_tissue(reg, device=select_device(args.device), resume=resume, **kwargs),
                              "train tissue")
        entry = (job.result or {}).get("entry") if job.result else None
        if entry is None and job.stopped:
            print("stopped; the best model so far was saved", file=sys.stderr)
            entry = reg.get(MODEL_NAME)
    if not distributed.is_main():  # under torchrun rank 0 saves, ships and reports
        return 0
    if entry is None:
        raise MedsegError("Training produced no model.")
    if args.ship:
        dest = paths.models_dir() / MODEL_NAME
        shipped = _ship(entry, dest, [e.version for e in reg.list(MODEL_NAME) if e.source == "shipped"])
        ref = entry.meta.get("critic")  # a SegAN segmentor is fine-tuned with its critic: it ships too
        if isinstance(ref, dict) and ref.get("name"):
            critic = reg.get(ref["name"], ref["version"])
            done = _ship(critic, paths.models_dir() / ref["name"],
                         [e.version for e in reg.list(ref["name"]) if e.source == "shipped"])
            if int(done.stem[1:]) != int(json.loads(shipped.with_suffix(".json").read_text())["critic"]["version"]):
                raise MedsegError(f"{done} was shipped as another version than {shipped} names for its critic; "
                                  "remove both and ship again.")
            print(f"shipped {done}")
        write_model_card(dest, json.loads(shipped.with_suffix(".json").read_text()),
                         command="napari-medseg " + " ".join(sys.argv[1:]))
        print(f"shipped {shipped}")
    else:
        print(f"saved {entry.label} at {entry.path}")
        if getattr(entry, "note", ""):
            print(entry.note)
    return 0


def _ship(entry, dest: Path, shipped_versions: list[int]) -> Path:
    """Copy ``entry`` into ``dest`` as the next shipped version (a run that kept, say, its
    round 6 of 9 ships as v1 when nothing was shipped before); never overwrites."""
    from .core.checkpoints import load_checkpoint, save_checkpoint

    version = max(shipped_versions, default=0) + 1
    target = dest / f"v{version:04d}.pt"
    if target.exists() or target.with_suffix(".json").exists():
        raise MedsegError(f"{target} exists already; shipped versions are never overwritten.")
    dest.mkdir(parents=True, exist_ok=True)
    state, meta = load_checkpoint(entry.path)
    keep = {k: meta[k] for k in ("method", "arch", "config", "metrics", "data_fingerprint") if k in meta}
    extra = {k: v for k, v in meta.items() if k not in keep and k not in ("version", "sha256")}
    if entry.version != version:
        extra["trained_as_version"] = entry.version
    save_checkpoint(target, state, version=version, extra=extra, **keep)
    return target


