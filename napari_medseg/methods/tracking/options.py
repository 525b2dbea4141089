"""What ``napari-medseg train tracking`` and ``predict tracking`` take (defaults live here)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.options import option


@dataclass
class TrainOptions:
    updates: int = option(120, "PPO updates (32 episodes each)")
    setting: str = option("SI", "synthetic setting: SI, SI-RC, SI-W, SI-EN, SI-SN, crossing, DR (domain-randomised), "
                                "or several joined by '+' taken in turn (SI+DR, SI+DR+crossing)")
    start_stub: float = option(6.0, "px of visited path drawn behind each training start (0: the paper's empty path)")
    lr: float | None = option(None, "Adam learning rate (default: the paper's 5e-4)")
    init: str = option("scratch", "start from random weights, or fine-tune the current tracking version",
                       choices=["scratch", "current"])
    minutes: float | None = option(None, "stop after this many minutes, keeping the best")
    minibatches: int = option(4, "PPO minibatches per update")
    eval_every: int = option(5, "updates between validations")
    val_episodes: int = option(32, "validation episodes")
    imitation: int = option(0, "first imitate the centreline for this many updates (DAgger, not in the paper), "
                               "then PPO")
    imitation_steps: int = option(25, "actor minibatches (256 states) per imitation update")
    recovery: float = option(0.0, "share of the imitation episodes that start 2-7 px beside their fibre, at a random "
                                  "point along it, so the agent learns the way back onto it (not in the paper)")
    symmetry_augment: bool = option(False, "turn or mirror every imitation minibatch pair at random (a multiple of "
                                           "90 degrees, or a mirror), so the agent's step turns with the image "
                                           "(not in the paper)")
    agent_input: str | None = option(None, "what the agent sees: the image (the paper's), or image+ridge, the mean of "
                                           "the image and its Sato ridge map (default: the initial agent's, "
                                           "or image from scratch)", choices=["image", "image+ridge"])


@dataclass
class ImageOptions:
    channel: int | None = option(None, "channel of an RGB image (0 R, 1 G, 2 B)")
    project: str | None = option(None, "max projection of a 3D stack", choices=["max"])
    invert: bool = option(False, "dark structures on a bright background")
    model: str = option("tracking", "NAME or NAME:VERSION")
    pixel_size: float | None = option(None, "the image's pixel size (rows, columns): SWC files are in its --unit, "
                                            "not in pixels", nargs=2, metavar=("SY", "SX"))
    unit: str = option("micrometer", "unit of --pixel-size (default micrometer)")


@dataclass
class TrackOptions:
    image: str = option(None, "the image to trace in", positional=True, required=True)
    starts: str = option(None, "'y,x;y,x' or a CSV of y,x rows; 'y,x:y2,x2' heads from y,x towards y2,x2 "
                               "(otherwise the heading follows the ridge, towards the end when --ends gives one)",
                         required=True)
    ends: str | None = option(None, "optional end points, one per start: each fibre is then also traced from "
                                     "its end, and the two traces are joined where they meet")
    one_way: bool = option(False, "with --ends, trace from the starts only (the paper's protocol)")
    no_fit: bool = option(False, "keep the agent's own points (no fitting of the finished traces onto the ridge)")
    symmetries: int = option(1, "average each step over this many turns and mirrors of the agent's views "
                                "(1, 2, 4 or 8; slower)", choices=[1, 2, 4, 8])
    lookahead: bool = option(False, "where the agent is unsure (step entropy above -2), try turns of up to 45 "
                                    "degrees for 16 steps each and take the one it is surest of (slower)")
    out: str = option(None, "output .swc (a new file; see --overwrite)", required=True)
    overwrite: bool = option(False, "replace an existing --out (atomically)")
    scale: float = option(1.0, "window scale (1.5 on the paper's microscopy)")
    max_steps: int = option(200, "steps per trace at most")
    threshold: float | None = option(None, "stop when entropy stays above this")
    entropy_steps: int = option(5, "steps the entropy must stay above --threshold")


@dataclass
class FinetuneOptions:
    image: list = option([], "images with corrected traces", nargs="+", required=True)
    swc: list = option([], "corrected traces, one SWC per image", nargs="+", required=True)
    updates: int = option(20, "PPO updates")
    episodes: int = option(32, "episodes per PPO update (the paper: 32)")
    folds: int = option(0, "k-fold protocol of the paper: report, save nothing")
    seed: int = option(0, "random seed")
    json: str | None = option(None, "write the report here")


#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it)
TRAIN_COMMANDS = {"tracking": ("tracking", (), "the DRL axon tracker (Dai et al. 2019), PPO on synthetic images",
                               "napari_medseg.methods.tracking.cli")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"tracking": (("TrackOptions", "ImageOptions"), "napari_medseg.methods.tracking.cli:track_command", (),
                                 "trace fibres from start points (SWC out; = track)")}


#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them).
DEFAULTS = {
    "threshold": -3.0,  # the dock's entropy threshold (log): steps above it count as unsure
}
