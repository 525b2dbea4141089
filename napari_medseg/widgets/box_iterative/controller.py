"""The Box-supervised training widget's controller: layers in, rounds out; no Qt widgets.

The dock's buttons call these methods and so can the napari console, e.g.
``w.controller.stage1(rounds=2, block=True)``. The training itself is
:class:`~napari_medseg.methods.box_iterative.stages.IterativeTraining`. See
docs/widgets/box_iterative.md.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image, Labels, Shapes

from ...core import paths
from ...core.corrections import autosave_corrections, corrections_dir
from ...core.device import select_device
from ...core.errors import InputError, MedsegError
from ...core.registry import Registry
from ...core.tiling import open_pyramid_output
from ...core.options import defaults
from ...methods.box_iterative.boxes import boxes_from_shapes
from ...methods.box_iterative.model import MODEL_NAME
from ...methods.box_iterative.options import DEFAULTS as _DEFAULTS, TrainOptions
from ...methods.box_iterative.stages import IterativeTraining, StageConfig
from .._common import layer_level, stored_labels
from .._controller import Controller
from .._runner import JobRunner

METRICS = ("object_precision", "object_recall", "object_f1")


_TRAIN = defaults(TrainOptions)  # the CLI's defaults: one source for both


@dataclass
class BoxSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    image: Image | None = None  # a Stage-1 slide ...
    boxes: Shapes | None = None  # ... and its rectangles around glomeruli
    more_stage1: list = field(default_factory=list)  # further (Image, Shapes) pairs
    unlabelled: list = field(default_factory=list)  # Image layers for Stage 2
    val_image: Image | None = None
    val_labels: Labels | None = None
    rounds1: int = _TRAIN["rounds1"]
    rounds2: int = _TRAIN["rounds2"]
    steps: int = _DEFAULTS["steps"]
    patch: int = _DEFAULTS["patch"]  # 0: by device (the paper's 492 -> 496 on a GPU, 256 on a CPU)
    batch_size: int = _DEFAULTS["batch_size"]  # 0: by device (5 on a GPU, 4 on a CPU)
    clip_boxes: bool = _TRAIN["clip_boxes"]  # boxes partly outside the slide: clip them instead of refusing
    polarity: str = _TRAIN["polarity"]  # grey images with a dark background are inverted (auto), or keep / invert
    instances: bool = True  # Predict: split touching objects into instances (in-memory results)
    object_radius: float = _DEFAULTS["object_radius"]  # typical object radius in pixels; 0: from the Stage 1 boxes
    device: str = "auto"
    adversarial: float = _TRAIN["adversarial"]  # > 0: adversarial mode (a mask discriminator's term with this weight)
    head: str = _TRAIN["head"]  # a new model's output: "binary", or "boundary" (the instance head)
    box_prior: str = _TRAIN["box_prior"]  # what a box stands for where no prediction does: "box" or "ellipse"
    predict_image: Image | None = None
    version: int | None = None  # for Predict: None = the current one


def _labels_name(slide: str, stage: int, rnd: int) -> str:
    return f"{slide} [stage {stage} round {rnd}]"


class BoxController(Controller):
    """Scriptable state and actions of the Box-supervised training widget."""

    def __init__(self, viewer, runner: JobRunner, registry: Registry | None = None):
        super().__init__()  # listeners get ("round", RoundRecord), ("message", str), ("settings", None)
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = BoxSettings()
        self.session: IterativeTraining | None = None
        self.round_layers: dict[tuple[int, int, int], Labels] = {}  # (stage, round, slide) -> layer

    def _config(self) -> StageConfig:
        s = self.settings
        device = select_device(None if s.device == "auto" else s.device)
        return StageConfig(steps=s.steps, patch=s.patch or None, batch_size=s.batch_size or None, device=str(device),
                           adversarial=float(s.adversarial), head=s.head, box_prior=s.box_prior)

    # ----------------------------------------------------------- layers in
    def stage1_pairs(self) -> list[tuple[Image, Shapes]]:
        s = self.settings
        pairs = [] if s.image is None else [(s.image, s.boxes)]
        pairs += [p for p in s.more_stage1 if p[0] is not s.image]
        if not pairs:
            raise InputError("Pick a slide (image layer) and the Shapes layer with your boxes.")
        return pairs

    def add_stage1_pair(self):
        """Button **Add slide**: keep the picked slide and boxes, to pick another pair."""
        s = self.settings
        if s.image is None or s.boxes is None:
            raise InputError("Pick a slide and its box layer first.")
        s.more_stage1 = [p for p in s.more_stage1 if p[0] is not s.image] + [(s.image, s.boxes)]
        self._say(f"Stage 1 has {len(s.more_stage1)} slide(s): " + ", ".join(p[0].name for p in s.more_stage1))

    def boxes_of(self, image: Image, shapes: Shapes | None):
        """The rectangles of ``shapes`` in ``image``'s pixel coordinates, validated."""
        if shapes is None:
            raise InputError(f"Pick the Shapes layer with the boxes of {image.name!r}.")
        data, _ = layer_level(image, 0)
        nd = 2
        sc, tr = np.asarray(shapes.scale)[-nd:], np.asarray(shapes.translate)[-nd:]
        isc, itr = np.asarray(image.scale)[:nd], np.asarray(image.translate)[:nd]
        verts = [((np.asarray(v)[:, -nd:] * sc + tr) - itr) / isc for v in shapes.data]
        boxset = boxes_from_shapes(verts, list(shapes.shape_type), tuple(data.shape[:2]), clip=self.settings.clip_boxes)
        return boxset

    def _image(self, layer: Image):
        data, _ = layer_level(layer, 0)
        if not layer.rgb and len(data.shape) != 2:
            raise InputError(f"{layer.name!r} is neither RGB nor a 2-D image (shape {tuple(data.shape)}); "
                             "box-supervised training needs one slide or image plane.")
        return data

    def _apply_corrections(self):
        """Read painted round layers, autosave them, and hand them to the session as fixed labels."""
        if self.session is None:
            return []
        done = []
        for (stage, rnd, idx), lay in list(self.round_layers.items()):
            if lay not in self.viewer.layers or lay.multiscale:
                continue
            latest = max((r for (st, r, i) in self.round_layers if st == stage and i == idx), default=rnd)
            if rnd != latest:
                continue
            original = np.asarray(open_pyramid_output(lay.metadata["medseg"]["prediction"])[0][...])
            edited = np.asarray(lay.data)
            if edited.shape != original.shape or not (edited != original).any():
                continue
            saved = autosave_corrections(edited, corrections_dir(MODEL_NAME),
                                         {"stage": stage, "round": rnd, "slide": lay.metadata["medseg"]["slide"]})
            info = self.session.correct(stage, idx, (edited > 0).astype(np.uint8))
            done.append({**info, "saved": str(saved)})
        if done:
            self._say("Corrections saved and fixed: " + "; ".join(f"{d['slide']}: {d['changed_pixels']} px changed"
                                                                   for d in done))
        return done

    def _sync(self):
        """Build or update the session from the layers (boxes are re-read every time)."""
        s = self.settings
        if self.session is None:
            self.session = IterativeTraining(self.registry, self._config())
        else:
            self.session.config = self._config()
        self.session.polarity = s.polarity
        pairs = self.stage1_pairs()
        boxsets = [self.boxes_of(im, sh) for im, sh in pairs]
        self.session.set_stage1([self._image(im) for im, _ in pairs], [b.boxes for b in boxsets],
                                [im.name for im, _ in pairs])
        notes = [f"{im.name}: {b.describe()}" for (im, _), b in zip(pairs, boxsets) if b.overlaps or b.duplicates or b.clipped]
        if s.unlabelled:
            self.session.set_stage2([self._image(im) for im in s.unlabelled], [im.name for im in s.unlabelled])
        if s.val_image is not None and s.val_labels is not None:
            val, _ = layer_level(s.val_labels, 0)
            self.session.set_validation([self._image(s.val_image)], [np.asarray(val)])
        else:
            self.session.validation = []
        notes += self.session.notes
        self.session.notes = []
        if notes:
            self._say(" ".join(notes))
        return self.session

    # -------------------------------------------------------------- actions
    def stage1(self, rounds: int | None = None, block: bool = False):
        """Button **Run Stage 1**: ``rounds`` more weakly supervised rounds from the boxes."""
        return self._run(lambda: self._start_stage(1, rounds or self.settings.rounds1), block)

    def stage2(self, rounds: int | None = None, block: bool = False):
        """Button **Run Stage 2**: rounds on the unlabelled slides, from the best Stage-1 model."""
        return self._run(lambda: self._start_stage(2, rounds or self.settings.rounds2), block)

    def _start_stage(self, stage: int, rounds: int):
        self._check_idle()
        if stage == 2 and not self.settings.unlabelled:
            raise InputError("Pick one or more unlabelled slides for Stage 2.")
        session = self._sync()
        self._apply_corrections()  # autosaved before any training starts
        gen = session.stage1(rounds) if stage == 1 else session.stage2(rounds)
        return self.runner.start(gen, on_progress=self._on_progress, on_done=self._on_done)

    def _on_progress(self, p):
        if "round" not in p.metrics or self.session is None or not self.session.history:
            return
        rec = self.session.history[-1]
        slides = self.session.slides[rec.stage]
        for idx, path in enumerate(rec.predictions):
            self._show_round(rec, idx, slides[idx].name, path)
        self._emit("round", rec)

    def _show_round(self, rec, idx: int, slide: str, path: str):
        data, multiscale = stored_labels(path)
        source = next((lay for lay in self.viewer.layers if lay.name == slide), None)
        place = {} if source is None else {"scale": tuple(source.scale)[:2], "translate": tuple(source.translate)[:2]}
        for (st, _r, i), old in self.round_layers.items():  # earlier rounds stay, hidden (toggle to compare)
            if st == rec.stage and i == idx and old in self.viewer.layers:
                old.visible = False
        lay = self.viewer.add_labels(data, name=_labels_name(slide, rec.stage, rec.round), multiscale=multiscale,
                                     opacity=0.5, metadata={"medseg": {"model": MODEL_NAME, "version": rec.version,
                                                                       "stage": rec.stage, "round": rec.round,
                                                                       "slide": slide, "prediction": path}},
                                     **place)
        self.round_layers[(rec.stage, rec.round, idx)] = lay

    def _on_done(self, result):
        self._result = self.session.history if self.session else None
        if self.session and self.session.history:
            rec = self.session.history[-1]
            m = rec.metrics
            score = f", object F1 {m['object_f1']:.3f}" if "object_f1" in m else ""
            self._say(f"Stage {rec.stage} round {rec.round} saved as {MODEL_NAME} v{rec.version}{score}.")

    def predict(self, block: bool = False):
        """Button **Predict**: segment the picked slide, tiled, into a (multiscale) Labels layer."""
        return self._run(self._start_predict, block)

    def _start_predict(self):
        self._check_idle()
        layer = self.settings.predict_image
        if layer is None:
            raise InputError("Pick the slide to segment.")
        session = self.session or IterativeTraining(self.registry, self._config())
        self.session = session
        session.config = self._config()
        session.polarity = self.settings.polarity
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = paths.user_data_dir() / "results" / f"glomeruli-{stamp}.zarr"
        version = self.settings.version
        gen = session.predict(self._image(layer), out, version=version)
        use = version if version is not None else (session.model_version or "current")
        name = f"{layer.name} [{MODEL_NAME} {('v' + str(use)) if isinstance(use, int) else use}]"

        def on_done(_levels):
            data, multiscale = stored_labels(out)
            note = ""
            if self.settings.instances and not multiscale:
                data, note = self._instances(np.asarray(data))
            self._result = self.viewer.add_labels(
                data, name=name, multiscale=multiscale, opacity=0.5,
                scale=tuple(layer.scale)[:2], translate=tuple(layer.translate)[:2],
                metadata={"medseg": {"model": MODEL_NAME, "version": use, "prediction": str(out)}})
            if note:
                self._say(note)

        return self.runner.start(gen, on_done=on_done)

    def _instances(self, binary: np.ndarray):
        """(instance labels, note): touching objects split by the boundary class (the instance
        head) or, for an older two-class model, by a seeded distance watershed."""
        from ...methods.box_iterative.instances import BOUNDARY, instances_from_classes, split_instances

        radius = float(self.settings.object_radius or 0.0)
        if radius <= 0 and self.session is not None:
            radius = self.session.object_radius() or 0.0  # from the Stage 1 boxes
        if (binary == BOUNDARY).any():
            inst = instances_from_classes(binary, radius=radius or None)
            return inst, f"{int(inst.max())} objects (touching ones split by the predicted boundaries)."
        if radius <= 0:
            return binary, ("Binary labels: give 'object radius' or Stage 1 boxes to split touching objects "
                            "into instances.")
        inst = split_instances(binary, radius)
        return inst, f"{int(inst.max())} objects (touching ones split; object radius {radius:.0f} px)."

    def rollback(self, version: int | None = None):
        """Button **Roll back**: make an earlier version current and continue from it."""
        try:
            if version is None:
                version = self.registry.previous_version(MODEL_NAME)
            if self.session is None:
                self.session = IterativeTraining(self.registry, self._config())
            self.session.use_version(version)
            self._say(f"Rolled back: {MODEL_NAME} v{version} is current; the next round continues from it.")
            return version
        except MedsegError as exc:
            self._say(str(exc), error=True)
            return None

    def history(self) -> list[dict]:
        return [r.as_dict() for r in self.session.history] if self.session else []
