"""``napari-medseg train METHOD`` and ``predict METHOD``, one subcommand per method.

Each method declares its options once, as dataclasses in ``methods/<slug>/options.py``
(``TrainOptions``, and what its prediction takes), and its commands there too
(``TRAIN_COMMANDS``, ``PREDICT_COMMANDS``: which module trains and predicts). The
subcommands here are built from those fields (:mod:`napari_medseg.core.options`), so
``napari-medseg train tracking --help`` lists the tracking options with their defaults
and nothing else. The slugs are the
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

def _commands(kind: str) -> dict:
    """Every method's ``TRAIN_COMMANDS`` or ``PREDICT_COMMANDS`` (declared in its ``options.py``),
    keyed by command name, each with the method package first: a new method edits nothing here."""
    from .methods import METHODS

    out = {}
    for spec in METHODS:
        for name, row in getattr(importlib.import_module(f"napari_medseg.methods.{spec.slug}.options"), kind).items():
            out[name] = (spec.slug, *row)
    return out


# command name -> (options package, the trainer's method name, aliases, help, trainer module)
TRAIN = {"tissue": ("tissue", "tissue", (), "the engine's reference model: tissue segmentation of synthetic slides",
                    None),
         **_commands("TRAIN_COMMANDS")}
# the trainer's method name -> (method package, trainer module)
TRAINERS = {row[1]: (row[0], row[4]) for row in TRAIN.values() if row[1] is not None and row[4] is not None}

STEPS_HELP = ("training steps (tissue: 400; box_iterative: 150 per round; despeckle: 2000; cyclegan: 2000 at 256 px; "
              "joint: 2000; the adversarial methods: 300)")


def _options(package: str, name: str):
    return getattr(importlib.import_module(f"napari_medseg.methods.{package}.options"), name)


def add_train_parser(sub) -> None:
    s = sub.add_parser("train", help="train a method's model (a new version; never overwrites)",
                       description="Train a method's model; `napari-medseg train METHOD --help` lists its options.")
    targets = s.add_subparsers(dest="target", required=True, metavar="METHOD")
    for name, (package, method, aliases, text, _trainer) in TRAIN.items():
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
    s = sub.add_parser("predict", help="run a method's model over images: one output per input, never over a file",
                       description="Run a method's model; `napari-medseg predict METHOD --help` lists its options.")
    targets = s.add_subparsers(dest="target", required=True, metavar="METHOD")
    for name, (package, classes, target, aliases, text) in _commands("PREDICT_COMMANDS").items():
        module, func = target.split(":")
        t = targets.add_parser(name, aliases=list(aliases), help=text, description=text)
        for cls in classes:
            add_options(t, _options(package, cls))
        t.set_defaults(func=getattr(importlib.import_module(module), func),
                       method=TRAIN[name][1] if name in TRAIN and TRAIN[name][1] else name)


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
        distributed.exit_process(code)  # never returns: skips the teardown that can abort a finished rank
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
    if args.method in TRAINERS:  # a paper method: its trainer module trains, its card module writes the card
        package, module = TRAINERS[args.method]
        trainer = importlib.import_module(module)
        write_model_card = importlib.import_module(f"napari_medseg.methods.{package}.card").write_model_card
        MODEL_NAME = trainer.model_name(args)
        entry = trainer.train(args, reg)
    else:
        from .methods.tissue import MODEL_NAME, train_tissue
        from .methods.tissue.card import write_model_card
        from .methods.tissue.options import TRAIN_DEFAULTS

        from .core.runstate import find_interrupted_runs
        from .methods.tissue.model import resume_settings

        resume, kwargs = None, {"steps": args.steps or TRAIN_DEFAULTS["steps"], "seed": args.seed, "adversarial": args.adversarial}
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


