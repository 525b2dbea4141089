"""Command line for the tracking method (Dai et al. 2019): train, track, fine-tune / k-fold.

``napari-medseg train tracking`` is dispatched here from ``cli._train``; ``track`` and
``finetune`` are commands of their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ...core.errors import InputError, MedsegError


def model_name(args) -> str:
    """The registry name ``train tracking`` saves under."""
    from .model import MODEL_NAME

    return MODEL_NAME


def train(args, registry):
    """Train from scratch on a synthetic setting; returns the new registry entry."""
    from ...core.device import select_device
    from ...core.jobs import run_in_terminal
    from ...core.runstate import find_interrupted_runs
    from .model import MODEL_NAME, resume_tracking, train_tracking
    from .ppo import PPOConfig

    interrupted = [r for r in find_interrupted_runs(MODEL_NAME) if r["settings"].get("resumable")]
    if args.resume and interrupted:  # continue the killed run with its own settings
        run = interrupted[0]
        print(f"resuming run {run['folder'].name} from update {run['step']} of {run['total_steps']}")
        job = run_in_terminal(resume_tracking(registry, run["folder"]), "train tracking (resumed)")
        return _result(job, registry)
    if args.resume:  # nothing to continue: fine-tune the current version, as --resume does for every method
        print("no interrupted tracking run to continue: fine-tuning the current version", file=sys.stderr)
        args.init = "current"
    elif interrupted:
        print(f"note: an interrupted run ({interrupted[0]['folder'].name}, update {interrupted[0]['step']} of "
              f"{interrupted[0]['total_steps']}) can be continued with --resume", file=sys.stderr)
    device = select_device(args.device)
    config = PPOConfig(seed=args.seed, updates=args.updates, num_minibatches=args.minibatches,
                       eval_every=args.eval_every, val_episodes=args.val_episodes, device=str(device),
                       imitation_updates=args.imitation, imitation_steps=args.imitation_steps,
                       imitation_recovery=args.recovery, imitation_symmetries=args.symmetry_augment,
                       **({"learning_rate": args.lr} if args.lr else {}))
    policy = None
    if args.init == "current":  # fine-tune the current agent (e.g. on the domain-randomised setting)
        from .model import load_tracker

        policy, _ = load_tracker()
        if args.agent_input is not None:  # the weights carry over; the views change (prepare.agent_input)
            policy.set_agent_input(args.agent_input)
    from .env import EnvConfig

    # the stub behind each start that inference draws (tracking.heading) is drawn in training too
    env_config = EnvConfig(max_steps=config.max_steps, start_stub=args.start_stub,
                           agent_input=args.agent_input or "image")
    gen = train_tracking(registry, config, setting=args.setting, minutes=args.minutes, policy=policy,
                         env_config=env_config,
                         extra_meta={"initialised_from": "current tracking version" if policy is not None else None})
    job = run_in_terminal(gen, f"train tracking ({args.setting})")
    return _result(job, registry)


def _result(job, registry):
    from .model import MODEL_NAME

    if job.stopped:
        print("stopped; the best agent so far was saved", file=sys.stderr)
        return registry.get(MODEL_NAME)
    return job.result["entry"] if job.result else None


def _points(text: str | None, what: str) -> np.ndarray | None:
    """``"y,x;y,x"`` or a CSV/text file of y,x rows."""
    if text is None:
        return None
    path = Path(text)
    try:
        if path.suffix.lower() in (".csv", ".txt") or path.is_file():
            a = np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            a = np.array([[float(v) for v in p.split(",")] for p in text.split(";") if p.strip()])
    except (OSError, ValueError) as exc:
        raise InputError(f"--{what}: give 'y,x;y,x' or a CSV file of y,x rows ({exc}).") from exc
    if a.ndim != 2 or a.shape[1] != 2:
        raise InputError(f"--{what}: expected y,x pairs, got shape {a.shape}.")
    return a


def _starts(text: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``"y,x:y2,x2;y,x"``: start points, each optionally with a point it heads towards
    (``:``); returns ``(starts, directions)``, a NaN direction row meaning "auto"."""
    from .heading import heading_from_point

    if ":" not in text:
        return _points(text, "starts"), None
    starts, dirs = [], []
    for part in (p for p in text.split(";") if p.strip()):
        head, _, towards = part.partition(":")
        st = _points(head, "starts")[0]
        starts.append(st)
        dirs.append(heading_from_point(st, _points(towards, "starts")[0]) if towards.strip()
                    else np.full(2, np.nan))
    return np.stack(starts), np.stack(dirs)


def _image(args) -> np.ndarray:
    from ...core.io import read_image
    from .prepare import prepare_image

    levels, meta = read_image(args.image)
    data = np.asarray(levels[0])
    return prepare_image(data, channel=args.channel, project=args.project, invert=args.invert,
                         rgb=bool(meta.get("rgb")) or None)


def _policy(spec: str):
    from ...core.registry import Registry
    from .model import policy_from_entry

    name, _, version = spec.partition(":")
    if version and not version.isdigit():
        raise MedsegError(f"--model takes NAME or NAME:VERSION, not {spec!r}.")
    return policy_from_entry(Registry().get(name, int(version) if version else None))


def track_command(args) -> int:
    from .swc import write_swc
    from .lookahead import Lookahead
    from .track import TrackConfig, track

    from ...core.outputs import check_file_output

    check_file_output(args.out, inputs=[args.image], overwrite=args.overwrite, what="SWC output")
    image = _image(args)
    starts, directions = _starts(args.starts)
    ends = _points(args.ends, "ends")
    policy, meta = _policy(args.model)
    config = TrackConfig(max_steps=args.max_steps, scale=args.scale, entropy_threshold=args.threshold,
                         entropy_steps=args.entropy_steps, both_ways=not args.one_way,
                         fit_ridge=not args.no_fit, lookahead=Lookahead() if args.lookahead else None,
                         symmetries=args.symmetries)
    traces = track(image, starts, ends, policy=policy, config=config, directions=directions)
    lines = [f"napari-medseg track {args.image} ({args.model})"]
    for i, t in enumerate(traces):
        hy, hx = t.meta["heading"]
        lines.append(f"trace {i}: heading ({hy:+.2f}, {hx:+.2f}) {t.meta['heading_chosen']}; "
                     f"stop: {t.stop_reason}; reached end: {'yes' if t.meta['reached_end'] else 'no'}"
                     f"{' (met the trace from its end)' if t.meta['joined'] else ''}")
    write_swc(args.out, [t.points for t in traces], header=lines, scale=args.pixel_size,
              unit=args.unit if args.pixel_size else None)
    for i, t in enumerate(traces):
        hy, hx = t.meta["heading"]
        print(f"trace {i}: {len(t.points)} points, {t.length_px:.1f} px, heading ({hy:+.2f}, {hx:+.2f}) "
              f"{t.meta['heading_chosen']}, stop: {t.stop_reason}"
              f"{', reached end' if t.meta['reached_end'] else ''}"
              f"{' (met the trace from its end)' if t.meta['joined'] else ''}, "
              f"mean entropy {np.nanmean(t.entropy) if len(t.entropy) else float('nan'):.3f}")
    print(f"wrote {args.out}")
    return 0


def finetune_command(args) -> int:
    from ...core.jobs import run_in_terminal
    from ...core.registry import Registry
    from .finetune import finetune_config, kfold_finetune
    from .model import MODEL_NAME
    from .swc import read_swc

    if len(args.image) != len(args.swc):
        raise InputError(f"{len(args.image)} images but {len(args.swc)} SWC files: give one SWC per image.")
    images, traces = [], []
    for img, swc in zip(args.image, args.swc):
        args.image = img
        images.append(_image(args))
        traces.append(read_swc(swc).in_pixels(args.pixel_size).traces)
    config = finetune_config(updates=args.updates, seed=args.seed, episodes_per_batch=args.episodes)
    if args.folds:
        gen = kfold_finetune(lambda: _policy(args.model)[0], images, traces, k=args.folds, config=config,
                             seed=args.seed)
        job = run_in_terminal(gen, f"{args.folds}-fold fine-tuning")
        if job.stopped or job.result is None:
            return 1
        out = job.result
        for row in out["folds"]:
            b, a = row["before"], row["after"]
            print(f"fold {row['fold']}: coverage {b['coverage_pct']:.1f} -> {a['coverage_pct']:.1f} %, "
                  f"error {b['error_px']:.2f} -> {a['error_px']:.2f} px ({row['n_test']} test traces)")
        print(f"mean: coverage {out['before']['coverage_pct']:.1f} -> {out['after']['coverage_pct']:.1f} %")
        if args.json:
            from ...core.atomic import atomic_write_json

            atomic_write_json(args.json, out, default=float)
        return 0
    from .finetune_round import finetune_round
    from .track import TrackConfig

    policy, _ = _policy(args.model)
    registry = Registry()
    tag = [str(s) for s in args.swc]
    gen = finetune_round(registry, policy, images, traces, config, TrackConfig(check_starts=False, max_steps=400),
                         extra_meta={"finetuned_on": tag}, seed=args.seed)
    job = run_in_terminal(gen, "fine-tune tracking")
    if job.stopped:
        saved = [e for e in registry.list(MODEL_NAME) if e.meta.get("finetuned_on") == tag]
        print(f"stopped; {'saved ' + saved[-1].label + ', not made current' if saved else 'nothing was saved'}",
              file=sys.stderr)
        return 1
    out = job.result
    b, a = out["before"], out["after"]
    print(f"saved {out['entry'].label}: coverage {b['coverage_pct']:.1f} -> {a['coverage_pct']:.1f} %, error "
          f"{b['error_px']:.2f} -> {a['error_px']:.2f} px on your traces. " + out["note"])
    return 0


def add_parsers(sub) -> None:
    from ...core.options import add_options
    from .options import FinetuneOptions, ImageOptions, TrackOptions

    s = sub.add_parser("track", help="trace structures from start points with the tracking agent (SWC out)")
    add_options(s, TrackOptions)
    add_options(s, ImageOptions)
    s.set_defaults(func=track_command)

    s = sub.add_parser("finetune", help="fine-tune the tracking agent on corrected traces (or k-fold evaluate)")
    add_options(s, FinetuneOptions)
    add_options(s, ImageOptions)
    s.set_defaults(func=finetune_command)
