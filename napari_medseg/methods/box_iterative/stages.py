"""Stage 0, Stage 1 and Stage 2 of Gupta et al. (2019) as stoppable progress generators.

A :class:`IterativeTraining` session holds the slides of each stage, the current model
and the record of every round. One round = train on the current labels, segment the
stage's slides, score the validation slides, save a new registry version, and derive
the next round's labels with the stage's cues (Cues 1: the boxes; Cues 2: the size and
shape of the Stage-1 glomeruli). The widget, the console, the CLI and the benchmark all
drive this same object.

Under torchrun every rank runs the same session on the same slides: rounds train in DDP
(each rank draws its own patches), and the segmentations, cues and validations between
rounds come out the same on every rank because the weights are the same. Only rank 0
writes registry versions; the others keep each round's weights in memory.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ...core import distributed, nets
from ...core.checkpoints import data_fingerprint
from ...core.errors import InputError
from ...core.jobs import Progress, collect
from ...core.registry import Registry
from ...core.segment import POSTPROCESS, PREPROCESS, run_segmentation
from ...core.tiling import predict_whole
from ...core.training import train_supervised
from . import cues as cues_mod
from .boxes import boxes_from_instances, fill_boxes
from .metrics import best_round, pooled_scores
from .model import ARCH, IO, METHOD, MODEL_NAME, build_model, check_slide, has_boundary, head_spec, model_from_entry, \
    segmentation_loss
from .resume import open_round
from .rounds import RoundRecord, StageConfig, components, level0, new_labels, small_or_lazy
from .sampling import PatchSampler, TrainingSlide

class IterativeTraining:
    """The slides, model and round history of one box-supervised training."""

    def __init__(self, registry: Registry | None = None, config: StageConfig | None = None,
                 workdir: str | Path | None = None, name: str = MODEL_NAME):
        from ...core import paths

        self.registry = registry or Registry()
        self.config = config or StageConfig()
        root = Path(workdir) if workdir else paths.user_data_dir() / "box_iterative"
        root.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.name = name
        self.slides: dict[int, list[TrainingSlide]] = {0: [], 1: [], 2: []}
        self.validation: list[tuple[object, np.ndarray]] = []
        self.validation_instances = False
        self.history: list[RoundRecord] = []
        self.notes: list[str] = []
        self.model: torch.nn.Module | None = None
        self.model_version: int | None = None
        #: architecture and io of ``model``: new models have the instance head, a loaded one keeps its own
        self.arch, self.io = head_spec(self.config.head)
        self._predicted: dict[int, tuple[int | None, list]] = {}  # stage -> (model version, predictions)
        self._cues2: cues_mod.Cues2 | None = None
        #: how non-RGB or dark-background images are shown to the network: auto, keep or invert
        self.polarity = "auto"
        #: under torchrun, ranks other than 0 write no versions: they keep each round's weights here
        self._kept: dict[int, tuple[dict, dict, dict]] = {}

    # ------------------------------------------------------------------ data
    def _slide(self, image, name) -> TrainingSlide:
        rgb, note = check_slide(image, name, self.polarity)
        if note:
            self.notes.append(note)
        return TrainingSlide(rgb, name=name)

    def set_stage1(self, images, boxes, names=None) -> None:
        """Slides with their boxes ((N, 4) [y0, x0, y1, x1], e.g. from :func:`~.boxes.boxes_from_shapes`)."""
        names = names or [f"slide {i + 1}" for i in range(len(images))]
        if len(images) != len(boxes):
            raise InputError(f"{len(images)} slides but {len(boxes)} box sets; give one box set per slide.")
        slides = []
        for im, bx, nm in zip(images, boxes, names):
            s = self._slide(im, nm)
            bx = np.asarray(bx, np.int64).reshape(-1, 4)
            if len(bx) == 0:
                raise InputError(f"{nm} has no boxes; draw at least one box around a glomerulus on every Stage 1 slide.")
            s.boxes, s.objects = bx, bx
            slides.append(self._keep_fixed(1, s))
        self.slides[1] = slides

    def _keep_fixed(self, stage: int, slide: TrainingSlide) -> TrainingSlide:
        """A slide given again (same name and size) keeps the corrections made on it."""
        old = {o.name: o for o in self.slides[stage]}
        if slide.name in old and old[slide.name].shape == slide.shape:
            slide.fixed = old[slide.name].fixed
        return slide

    def set_stage2(self, images, names=None) -> None:
        names = names or [f"unlabelled {i + 1}" for i in range(len(images))]
        self.slides[2] = [self._keep_fixed(2, self._slide(im, nm)) for im, nm in zip(images, names)]

    def set_stage0(self, images, masks, names=None) -> None:
        """Slides with full masks (the fully supervised upper baseline)."""
        names = names or [f"annotated {i + 1}" for i in range(len(images))]
        slides = []
        for im, m, nm in zip(images, masks, names):
            s = self._slide(im, nm)
            m = np.asarray(m)
            if m.shape != s.shape:
                raise InputError(f"The mask of {nm} has shape {m.shape}; the slide is {s.shape}.")
            s.labels = (m > 0).astype(np.uint8)
            # a mask with several ids is an instance mask (touching objects stay apart); else its components
            s.instances = m.astype(np.int32) if m.max() > 1 else components(m)
            s.objects = boxes_from_instances(s.instances)
            slides.append(s)
        self.slides[0] = slides

    def set_validation(self, images, labels, instances: bool = False) -> None:
        """Slides with (partial or full) glomerulus masks: each round is scored on them.

        ``instances``: the labels are instance ids (0 background, every id one object, all
        of it annotated), so touching objects are scored apart."""
        val = []
        for im, lab in zip(images, labels):
            rgb, _ = check_slide(im, "validation slide", self.polarity)
            lab = np.asarray(lab)
            if lab.shape != tuple(rgb.shape[:2]):
                raise InputError(f"The validation labels ({lab.shape}) do not match the image ({tuple(rgb.shape[:2])}).")
            val.append((rgb, lab))
        self.validation, self.validation_instances = val, bool(instances)

    # ----------------------------------------------------------------- model
    def _ensure_model(self, stage: int) -> None:
        cfg = self.config
        if self.model is not None and not (cfg.restart_each_round and stage == 1):
            return
        self.model = build_model(cfg.seed, cfg.head)
        self.model_version, (self.arch, self.io) = None, head_spec(cfg.head)

    def use_version(self, version: int | None = None) -> None:
        """Continue from a registry version (current by default): rollback or a shipped model."""
        if version in self._kept:  # a round of this session, on a rank that writes no versions
            state, self.arch, self.io = self._kept[version]
            self.model = nets.build(self.arch)
            self.model.load_state_dict(state)
            self.model_version = version
            return
        entry = self.registry.get(self.name, version)
        model, meta = model_from_entry(entry)
        self.model, self.model_version = model, entry.version
        self.arch, self.io = meta.get("arch", ARCH), meta.get("io", IO)
        if version is not None and distributed.is_main():
            self.registry.restore(self.name, entry.version)

    def _save(self, stage: int, rnd: int, metrics: dict, extra: dict) -> int:
        version = None
        if distributed.is_main():
            cfg = asdict(self.config)
            cfg.update(stage=stage, round=rnd, slides=[s.name for s in self.slides[stage]])
            images = [s.image for s in self.slides[stage]]
            # parent_version: the version the round started from (None: a new model), so that a
            # session's rounds can be found again after a kill (resume.continue_session)
            version = self.registry.save_new_version(
                self.name, copy.deepcopy(self.model.state_dict()), method=METHOD, arch=self.arch, config=cfg,
                metrics=metrics, data_fingerprint=data_fingerprint(*images),
                extra={"io": self.io, "parent_version": self.model_version, **extra}).version
        version = distributed.from_main(version)  # every rank numbers the round as rank 0 saved it
        if not distributed.is_main():
            self._kept[version] = (copy.deepcopy(self.model.state_dict()), self.arch, self.io)
        self.model_version = version
        return version

    # ------------------------------------------------------------ one round
    def _adversary(self):
        """Adversarial mode (a conditional mask discriminator; unknown pixels ignored), or None."""
        if self.config.adversarial <= 0:
            return None
        from ...core.adversarial.mode import MaskAdversary
        from .labels import UNKNOWN

        return MaskAdversary(image_channels=3, n_classes=len(self.io["classes"]), weight=self.config.adversarial,
                             device=self.config.device, ignore=UNKNOWN)

    def _train(self, stage: int, steps: int, total: int, done: int, validate=None, keep=None, slides=None):
        patch, batch = self.config.patch_and_batch()
        sampler = PatchSampler(slides or self.slides[stage], patch, object_ratio=self.config.object_ratio,
                               fixed_weight=self.config.fixed_weight,
                               seed=distributed.rank_seed(self.config.seed + 1000 * stage + done),
                               boundary=has_boundary(self.io))
        # on disk every 10 steps; the same round, killed before, goes on from its last saved step
        run, last = open_round(self, stage, slides or self.slides[stage], steps)
        before, finished = copy.deepcopy(self.model.state_dict()), False
        gen = train_supervised(self.model, lambda _s: sampler.batch(batch), segmentation_loss, steps=steps,
                               device=self.config.device, lr=self.config.lr, validate=validate,
                               val_every=max(1, steps // 6), monitor="rank_score", save_best=keep, cpu_bf16=True,
                               grad_clip=5.0, cosine=True, adversary=self._adversary(), run=run, resume_from=last,
                               data_rng=sampler)
        try:
            if last is not None:
                yield Progress(done + int(last["step"]), total,
                               f"stage {stage}: continuing an interrupted round from step {int(last['step'])}", {})
            for p in gen:
                yield Progress(done + p.step, total, f"stage {stage}: {p.message}", p.metrics)
            finished = True
        except GeneratorExit:  # Stop: the round is dropped, and so is its run
            if run is not None:
                run.finish()
            raise
        except Exception:  # an error: the run stays, to be continued once its cause is fixed
            if run is not None:
                run.release()
            raise
        finally:
            gen.close()
            if not finished:  # stopped or failed mid-round: the model goes back to what the last version holds
                self.model.load_state_dict(before)
        return run  # ends (removed) once the round's version is saved; a failed round keeps it for a retry

    def _round(self, stage: int, rnd: int, steps: int, total: int, done: int, reports: list, slides=None):
        """Generator: train one round, then save and segment it (:meth:`_end_round`); returns its record."""
        run = yield from self._train(stage, steps, total, done, slides=slides)
        try:
            return (yield from self._end_round(stage, rnd, reports, total, done + steps, run))
        except GeneratorExit:
            if run is not None:
                run.finish()
            raise
        except Exception:
            if run is not None:
                run.release()  # not saved yet: the retry goes on from it (a no-op once it is saved)
            raise

    def segment(self, image, out_path, model=None, io: dict | None = None):
        """Generator: tiled segmentation of ``image`` into the zarr at ``out_path``; returns level 0.

        ``io``: that of ``model`` (default: the session's)."""
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)  # the session's own scratch folder
        io = io or self.io
        levels = yield from run_segmentation(model or self.model, {"io": io}, image, out_path, tile=self.config.tile,
                                             output="labels", device=self.config.device, rgb=True)
        return levels[0]

    def _segment_stage(self, stage: int, tag: str, total: int, done: int):
        preds = []
        for i, s in enumerate(self.slides[stage]):
            out = self.workdir / f"stage{stage}" / tag / f"slide{i}.zarr"
            for p in self.segment(s.image, out):
                yield Progress(done, total, f"stage {stage} {tag}: segmenting {s.name} ({p.message})", {})
            preds.append(str(out))
        self._predicted[stage] = (self.model_version, preds)
        return preds

    def _predictions(self, stage: int, total: int, done: int):
        version, preds = self._predicted.get(stage, (None, None))
        if preds is None or version != self.model_version or version is None:
            preds = yield from self._segment_stage(stage, f"v{self.model_version}", total, done)
        return [small_or_lazy(level0(p)) for p in preds]

    def _validate(self, model=None) -> dict:
        if not self.validation:
            return {}
        net = model or self.model
        net_io = self.io
        pairs = []
        for i, (rgb, lab) in enumerate(self.validation):
            if rgb.shape[0] * rgb.shape[1] <= 16 * 2**20:
                prob = predict_whole(net, rgb, stride=IO["stride"], channel_axis=-1, preprocess=PREPROCESS["rgb_uint8"],
                                     postprocess=POSTPROCESS[net_io.get("postprocess", "softmax")],
                                     device=self.config.device)
                pred = prob.argmax(0).astype(np.uint8)
            else:
                pred = np.asarray(collect(self.segment(rgb, self.workdir / "validation" / f"val{i}.zarr", net))[1][...])
            pairs.append((pred, lab))
        return pooled_scores(pairs, self.min_object_area(), gt_instances=self.validation_instances,
                             radius=self.object_radius())

    def object_radius(self) -> float | None:
        """The typical object radius (px) from the boxes (or true objects) given, else None."""
        from .instances import expected_radius

        objs = [sl.objects for st in (1, 0) for sl in self.slides[st] if len(sl.objects)]
        return expected_radius(np.concatenate(objs)) if objs else None

    def min_object_area(self) -> int:
        """Predicted objects smaller than this do not count as detections: a quarter of the
        smallest box (or true object) the user gave; 0 when there are none yet."""
        areas = [int(np.min((o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1])))
                 for st in (1, 0) for sl in self.slides[st] if len(o := sl.objects)]
        return int(0.25 * min(areas)) if areas else 0

    # ---------------------------------------------------------------- stages
    def stage1(self, rounds: int):
        """Generator: ``rounds`` more Stage-1 rounds (weakly supervised, from the boxes)."""
        if not self.slides[1]:
            raise InputError("Stage 1 needs at least one slide with boxes.")
        steps = self.config.steps
        total = rounds * steps
        done_rounds = sum(1 for r in self.history if r.stage == 1)
        for k in range(rounds):
            rnd = done_rounds + k + 1
            first = self.model is None or not any(r.stage == 1 for r in self.history)
            reports = []
            if first and self.model_version is None:
                for s in self.slides[1]:
                    s.labels = fill_boxes(s.shape, s.boxes, self.config.box_prior)  # round 1: the boxes
                    if s.fixed is not None:
                        s.labels = np.where(s.fixed[0], s.fixed[1], s.labels).astype(np.uint8)
                    reports.append({"labels": "filled boxes" if self.config.box_prior == "box" else
                                    f"boxes as their {self.config.box_prior}s"})
            else:
                preds = yield from self._predictions(1, total, k * steps)
                reports = self._apply_cues1(preds)
            self._ensure_model(1)
            yield from self._round(1, rnd, steps, total, k * steps, reports)

    def _apply_cues1(self, preds) -> list[dict]:
        reports = []
        for i, (s, pred) in enumerate(zip(self.slides[1], preds)):
            s.labels = new_labels(s.shape, self.workdir / "stage1" / "labels" / f"slide{i}.zarr")
            reports.append(cues_mod.cues_stage1(pred, s.boxes, s.labels, fixed=s.fixed, coverage=self.config.coverage,
                                                prior=self.config.box_prior).as_dict())
        return reports

    def _end_round(self, stage: int, rnd: int, reports: list, total: int, done: int, run=None):
        metrics = self._validate()
        version = self._save(stage, rnd, metrics, {"stage": stage, "round": rnd, "cues": reports,
                                                    **({"cues2": self._cues2.as_dict()} if stage == 2 and self._cues2 else {})})
        if run is not None:  # the round is a version now: its run has nothing left to continue
            run.finish()
        preds = yield from self._segment_stage(stage, f"round{rnd:02d}", total, done)
        record = RoundRecord(stage, rnd, version, metrics, reports, preds)
        self.history.append(record)
        yield Progress(done, total, f"stage {stage} round {rnd} done (v{version})",
                       {"stage": stage, "round": rnd, "version": version, **metrics})
        return record

    def cues2_statistics(self):
        """Cues 2: sizes and eccentricities of the Stage-1 glomeruli (Cues 1 applied to the
        current model's segmentation of the Stage-1 slides). Generator; returns :class:`Cues2`."""
        if not self.slides[1]:
            raise InputError("Cues 2 come from the Stage-1 slides and their boxes; give Stage 1 its slides first.")
        preds = yield from self._predictions(1, 1, 0)
        self._apply_cues1(preds)
        props = [o for s in self.slides[1] for o in cues_mod.objects(s.labels)]
        self._cues2 = cues_mod.shape_statistics(props)
        return self._cues2

    def best_stage1_version(self) -> int | None:
        rec = [r for r in self.history if r.stage == 1]
        if not rec:
            return None
        if all(r.metrics for r in rec):
            return rec[best_round([r.metrics for r in rec])].version
        return rec[-1].version  # without validation: the last round

    def restart_stage2(self) -> None:
        """Start Stage 2 again from the best Stage-1 round: its rounds leave the history (their
        registry versions stay), the Cues 2 are recomputed, and its files go to a new folder.
        Lets Stage 2 run a second time with other settings (e.g. ``stage2_replay``) from the
        same Stage-1 model."""
        self.history = [r for r in self.history if r.stage != 2]
        self._cues2 = None
        self._predicted.pop(2, None)
        self.workdir = Path(tempfile.mkdtemp(prefix="stage2-again-", dir=self.workdir))

    def stage2(self, rounds: int):
        """Generator: ``rounds`` Stage-2 rounds on the unlabelled slides, from the best Stage-1 model."""
        if not self.slides[2]:
            raise InputError("Stage 2 needs at least one unlabelled slide.")
        steps, total = self.config.steps, rounds * self.config.steps
        done_rounds = sum(1 for r in self.history if r.stage == 2)
        if done_rounds == 0:
            best = self.best_stage1_version()
            if best is not None and best != self.model_version:
                self.use_version(best)
            elif self.model is None:
                self.use_version()  # the current registry model (e.g. the shipped one)
            yield from self.cues2_statistics()
        for k in range(rounds):
            rnd = done_rounds + k + 1
            preds = yield from self._predictions(2, total, k * steps)
            reports = []
            for i, (s, pred) in enumerate(zip(self.slides[2], preds)):
                s.labels = new_labels(s.shape, self.workdir / "stage2" / "labels" / f"slide{i}.zarr")
                rep = cues_mod.cues_stage2(pred, self._cues2, s.labels, outliers=self.config.outliers, fixed=s.fixed)
                reports.append(rep.as_dict())
                s.objects = rep.kept_boxes  # the kept instances: touching ones keep apart in the target
            # replay: the Stage-1 slides keep their labels from the best Stage-1 model (Cues 1)
            replay = self.slides[1] if self.config.stage2_replay else []
            yield from self._round(2, rnd, steps, total, k * steps, reports, slides=self.slides[2] + replay)

    def stage0(self, steps: int | None = None):
        """Generator: the fully supervised upper baseline, trained from scratch on full masks."""
        if not self.slides[0]:
            raise InputError("Stage 0 needs slides with full masks.")
        steps = steps or self.config.steps
        self.model, self.model_version = build_model(self.config.seed, self.config.head), None
        self.arch, self.io = head_spec(self.config.head)
        best = {}

        def keep(state, metrics, step):
            best.update(state=state, metrics=metrics, step=step)

        validate = self._validate if self.validation else None
        run = yield from self._train(0, steps, steps, 0, validate=validate, keep=keep)
        if best.get("state") is not None:
            self.model.load_state_dict(best["state"])
        metrics = self._validate()
        version = self._save(0, 1, metrics, {"stage": 0, "round": 1, "best_step": best.get("step")})
        if run is not None:
            run.finish()
        self.history.append(RoundRecord(0, 1, version, metrics, [], []))
        yield Progress(steps, steps, f"stage 0 done (v{version})", {"stage": 0, "round": 1, "version": version, **metrics})

    def predict(self, image, out_path, version: int | None = None):
        """Check the slide now, then return the generator that segments it (tiled, into zarr).

        Uses the session's model, or a registry version (current by default) if given or
        if the session has not trained yet."""
        rgb, _note = check_slide(image, "slide", self.polarity)
        model, io = self.model, self.io
        if version is not None or model is None:
            model, meta = model_from_entry(self.registry.get(self.name, version))
            io = meta.get("io", IO)
        return self.segment(rgb, out_path, model, io)

    # ------------------------------------------------------------ corrections
    def correct(self, stage: int, index: int, corrected) -> dict:
        """Take the user's corrected segmentation of a slide as fixed ground truth.

        ``corrected`` is the edited label map of that slide's latest segmentation; every
        object the user touched, and every pixel changed, become fixed labels that the cues
        never overwrite and that weigh ``fixed_weight`` in the loss.
        """
        slides = self.slides[stage]
        if not 0 <= index < len(slides):
            raise InputError(f"Stage {stage} has {len(slides)} slide(s); there is no slide {index + 1}.")
        s = slides[index]
        rec = [r for r in self.history if r.stage == stage and r.predictions]
        if not rec:
            raise InputError(f"Stage {stage} has no segmentation to correct yet; run a round first.")
        original = np.asarray(level0(rec[-1].predictions[index])[...])
        corrected = np.asarray(corrected)
        mask, labels = cues_mod.fixed_from_correction(original, corrected)
        if s.fixed is not None:
            mask, labels = s.fixed[0] | mask, np.where(mask, labels, s.fixed[1]).astype(np.uint8)
        s.fixed = (mask, labels)
        return {"slide": s.name, "fixed_pixels": int(mask.sum()), "changed_pixels": int((original != corrected).sum())}
