"""The Normalize across sites widget's controller (Delisle et al. 2019): domains of layers or
folders in, a normalisation model, normalised images, histograms and JSD out; no Qt widgets.

The dock's buttons call these methods and so can the napari console, e.g.
``c.find_domains(); c.set(steps=300); c.train(block=True); c.segment(block=True)``. The method
itself is :mod:`napari_medseg.methods.site_normalization.delisle`. See docs/widgets/site_normalization.md.

A *domain* is a named set of images from one site or protocol: image layers (each with its
labels layer, matched by the name "<image> labels" or by order), or a folder of NIfTI/TIFF
files where ``<stem>_labels.<ext>`` holds the labels of ``<stem>.<ext>``. Raw intensities come
in arbitrary units, so by default every image is rescaled before the generator: its brain
(non-zero) voxels' 1st-99th percentile range to [0, 1]. The last image of each domain is held
out to validate on (the best validation Dice decides which weights are kept).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels

from ...core.device import select_device
from ...core.errors import InputError
from ...core.jobs import Progress
from ...core.registry import Registry
from ...methods.site_normalization.data import (PERCENTILES, PREP_TAG, apply_to_groups, check_domain_items,
                                               folder_files, held_out_split, mean_class_dice, n_classes_of,
                                               read_folder_domain)
from ...methods.site_normalization.delisle import NormalizationConfig, train_normalization_model
from ...methods.site_normalization.delisle_config import short_run_config
from ...core.options import defaults
from ...methods.site_normalization.options import DEFAULTS as _DEFAULTS, TrainOptions
from .._common import check_on_image_grid
from .._controller import Controller, said as _said
from .display import NormalizationDisplay

MODEL_NAME = "delisle_normalization"
LOSSES = ("loss_seg", "loss_identity", "loss_adv", "loss_d")
DIMS = ("2-D slices", "3-D")


@dataclass
class Domain:
    """One site: image layers with their labels (one per image, or None), or a folder."""

    name: str
    layers: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    folder: str = ""
    files: list = field(default_factory=list)  # (image path, labels path or None)

    def __len__(self) -> int:
        return len(self.files) if self.folder else len(self.layers)

    def describe(self) -> str:
        n, lab = len(self), sum(x is not None for x in (self.labels if not self.folder else [f[1] for f in self.files]))
        where = f"folder {self.folder}" if self.folder else ", ".join(lay.name for lay in self.layers)
        return f"{self.name}: {n} image(s), {lab} labelled ({where})"


@dataclass
class NormalizationSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    name: str = ""  # the domain being added: its name ...
    images: list = field(default_factory=list)  # ... its image layers ...
    labels: list = field(default_factory=list)  # ... their labels layers (empty: by name "<image> labels") ...
    folder: str = ""  # ... or a folder of NIfTI/TIFF files instead of layers
    domains: list = field(default_factory=list)  # the added domains (Domain)
    mode: str = defaults(TrainOptions)["variant"]  # "adversarial", "standardized" or "none"
    dims: str = "2-D slices"  # or "3-D"
    slice_axis: int = 0  # 2-D: 3-D images are cut along this axis (0: napari's slider axis)
    rescale: bool = True  # brain 1st-99th percentile -> [0, 1], per image, before the generator
    steps: int = _DEFAULTS["steps"]
    warmup_steps: int = _DEFAULTS["warmup_steps"]  # the generator learns the identity (MSE) first
    patch: int = _DEFAULTS["patch"]  # side of the square / cubic patches; a multiple of 8
    batch_size: int = _DEFAULTS["batch_size"]  # patches per domain and step
    adv_weight: float = _DEFAULTS["adv_weight"]
    identity_weight: float = _DEFAULTS["identity_weight"]  # MSE(G(x), x) kept after the warm-up (the paper: 0)
    lr: float = _DEFAULTS["lr"]  # Adam, all three networks (the paper's SGD rates learn little in short runs)
    features: int = _DEFAULTS["features"]  # network width: features of the first level of G, S and D (doubled per level)
    seed: int = _DEFAULTS["seed"]
    device: str = "auto"
    advanced: dict = field(default_factory=dict)  # any other NormalizationConfig field, e.g. identity_weight
    apply_to: list = field(default_factory=list)  # image layers for Normalize / Segment (empty: the domains')
    version: int | None = None  # for Normalize / Segment: None = the current version
    side_by_side: bool = True  # grid view: each raw image next to its normalised one




class NormalizationController(NormalizationDisplay, Controller):
    """Scriptable state and actions of the Normalize across sites widget."""

    def __init__(self, viewer, runner, registry: Registry | None = None):
        super().__init__()  # listeners get ("domains", lines), ("training", sites), ("progress", metrics),
        # ("histograms", panels), ("message", str), ("settings", None)
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = NormalizationSettings()
        self.histograms: list[dict] = []
        self.jsd: dict = {}
        self.last_training: dict | None = None
        self.normalized_layers: list = []
        self.segmented_layers: list = []

    def device(self):
        s = self.settings.device
        return select_device(None if s in (None, "auto") else s)

    # ------------------------------------------------------------ domains
    def _labels_for(self, images: list, labels: list, name: str) -> list:
        """Each image's labels layer: by the name "<image> labels" (among ``labels``, or among all
        Labels layers when none are picked), else by order."""
        pool = labels or [lay for lay in self.viewer.layers if isinstance(lay, Labels)]
        by_name = {lay.name: lay for lay in pool}
        found = [by_name.get(f"{img.name} labels") for img in images]
        if labels and any(f is None for f in found):
            if len(labels) != len(images):
                raise InputError(f"Domain {name!r}: {len(images)} image(s) but {len(labels)} labels layer(s), and not "
                                 "every image has one named '<image> labels'; pick one labels layer per image (in "
                                 "the same order) or none.")
            found = list(labels)
        return found

    def _check_pair(self, dom: str, img: Image, lab: Labels | None) -> None:
        for what, lay in (("image", img), ("labels", lab)):
            if lay is not None and lay not in self.viewer.layers:
                raise InputError(f"Domain {dom!r}: the {what} layer {lay.name!r} is no longer in the viewer; add the "
                                 "domain again.")
        if img.multiscale or img.rgb or img.ndim not in (2, 3):
            kind = "multiscale" if img.multiscale else "RGB" if img.rgb else f"{img.ndim}-D"
            raise InputError(f"Domain {dom!r}: {img.name!r} is {kind}; each image must be one grey 2-D or 3-D image "
                             "(one layer per image).")
        if lab is None:
            return
        check_on_image_grid(lab, img, f"Domain {dom!r}: the")

    def _in_list_order(self, layers) -> list:
        """Layers in layer-list order (a multi-select gives them in the order they were clicked)."""
        names = [lay.name for lay in self.viewer.layers]
        return sorted(layers or [], key=lambda lay: names.index(lay.name) if lay.name in names else len(names))

    @_said
    def add_domain(self, name: str | None = None, images=None, labels=None, folder: str | None = None) -> Domain:
        """Button **Add domain**: the name, image layers and labels (or folder) set above (or given)."""
        s = self.settings
        images = self._in_list_order(s.images if images is None else images)
        labels = self._in_list_order(s.labels if labels is None else labels)
        folder = str(s.folder if folder is None else folder or "").strip()
        folder = "" if folder in (".",) else folder
        if folder and images:
            raise InputError("Pick image layers or a folder for a domain, not both.")
        name = str(name if name is not None else s.name).strip() or (Path(folder).name if folder else "")
        if not name:
            raise InputError("Name the domain (the site or protocol its images come from).")
        if folder:
            files = folder_files(folder)
            dom = Domain(name, folder=str(Path(folder).expanduser()), files=files)
        else:
            if not images:
                raise InputError(f"Domain {name!r}: pick its image layers (two or more) or a folder.")
            dom = Domain(name, list(images), self._labels_for(images, labels, name))
            for img, lab in zip(dom.layers, dom.labels):
                self._check_pair(name, img, lab)
        if len(dom) < 2:
            raise InputError(f"Domain {name!r} has {len(dom)} image(s); each domain needs at least 2 (one to train "
                             "on and one to check the normalisation on).")
        if folder:
            read_folder_domain(dom.name, dom.files)  # every file read and checked now, one message for the first problem
        replaced = any(d.name == name for d in s.domains)
        s.domains = [d for d in s.domains if d.name != name] + [dom]
        self._emit("domains", self.domain_lines())
        self._say(f"{'Replaced' if replaced else 'Added'} domain {dom.describe()}. {len(s.domains)} domain(s).")
        return dom

    @_said
    def find_domains(self) -> list[Domain]:
        """Button **Find domains**: group the image layers by their ``sites`` metadata (the
        sample's) or by name ("infant 1", "infant 2" -> "infant"); labels by "<image> labels"."""
        groups: dict[str, list] = {}
        for lay in self.viewer.layers:
            if not isinstance(lay, Image) or "[" in lay.name or lay.rgb or lay.multiscale:
                continue
            site = ((lay.metadata or {}).get("sites") or {}).get("site")
            m = re.match(r"^(.*?\S)[\s_-]*\d+$", lay.name)
            key = site or (m.group(1) if m else None)
            if key:
                groups.setdefault(str(key), []).append(lay)
        groups = {k: v for k, v in groups.items() if len(v) >= 2}
        if not groups:
            raise InputError("No domains found: name image layers '<site> 1', '<site> 2', ... (or add each domain "
                             "by hand).")
        self.settings.domains = []
        for name, layers in groups.items():
            dom = Domain(name, layers, self._labels_for(layers, [], name))
            for img, lab in zip(dom.layers, dom.labels):
                self._check_pair(name, img, lab)
            self.settings.domains.append(dom)
        self._emit("domains", self.domain_lines())
        self._say(f"Found {len(groups)} domain(s): " + "; ".join(d.describe() for d in self.settings.domains) + ".")
        return self.settings.domains

    def clear_domains(self):
        """Button **Clear domains**: forget the added domains (the layers stay)."""
        self.settings.domains = []
        self._emit("domains", [])
        self._say("No domains: add two or more.")

    def domain_lines(self) -> list[str]:
        return [d.describe() for d in self.settings.domains]

    def read_domains(self) -> list[tuple[str, list[dict]]]:
        """Every domain's images (raw arrays) and labels, checked: one message for the first problem."""
        s = self.settings
        need = 1 if s.mode == "none" else 2
        if len(s.domains) < need:
            raise InputError(f"Normalisation needs two or more domains; {len(s.domains)} added. Add a domain per "
                             "site (name + image layers, or a folder), or press Find domains."
                             + (" ('none' trains on one domain too.)" if s.mode != "none" else ""))
        for dom in s.domains:
            if len(dom) < 2:
                raise InputError(f"Domain {dom.name!r} has {len(dom)} image(s); each domain needs at least 2.")
        return self._read_all(s.domains)

    def _read_all(self, domains) -> list[tuple[str, list[dict]]]:
        out = []
        for dom in domains:
            if dom.folder:
                items = read_folder_domain(dom.name, dom.files)
            else:
                items = []
                for img, lab in zip(dom.layers, dom.labels):
                    self._check_pair(dom.name, img, lab)
                    items.append({"title": img.name, "raw": np.asarray(img.data), "layer": img,
                                  "labels": None if lab is None else np.asarray(lab.data)})
            out.append((dom.name, items))
        return check_domain_items(out)

    # ------------------------------------------------------------ training
    def config(self, n_classes: int, spatial_dims: int) -> NormalizationConfig:
        s = self.settings
        return short_run_config(n_classes=n_classes, spatial_dims=spatial_dims, mode=s.mode, steps=s.steps,
                                warmup_steps=s.warmup_steps, patch=s.patch, batch_size=s.batch_size,
                                adv_weight=s.adv_weight, identity_weight=s.identity_weight, lr=s.lr,
                                features=s.features, seed=s.seed, device=str(self.device()), advanced=s.advanced)

    def training_set(self) -> dict:
        """What a Train press uses, checked: ``{"domains", "train", "val", "config", "notes"}``."""
        s = self.settings
        domains = self.read_domains()
        if s.dims not in DIMS:
            raise InputError(f"Unknown dims {s.dims!r}; choose one of {list(DIMS)}.")
        dims = domains[0][1][0]["raw"].ndim
        sd = 3 if s.dims == "3-D" else 2
        if sd == 3 and dims == 2:
            raise InputError("'3-D' needs volumes; these images are 2-D. Pick '2-D slices'.")
        if sd == 2 and dims == 3 and not 0 <= int(s.slice_axis) < 3:
            raise InputError(f"slice axis must be 0, 1 or 2, got {s.slice_axis}.")
        cfg = self.config(n_classes_of(domains), sd)
        train, val, notes = held_out_split(domains, sd, bool(s.rescale), int(s.slice_axis))
        return {"domains": domains, "train": train, "val": val, "config": cfg, "notes": notes}

    def train(self, block: bool = False):
        """Button **Train**: train in the picked mode, save the best validation Dice as a new
        version, then show the domains' images normalised, their histograms and the JSD."""
        return self._run(self._start_train, block)

    def _start_train(self):
        self._check_idle()
        s = self.settings
        ts = self.training_set()
        cfg = ts["config"]
        prep = {"rescale": f"brain percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g} -> [0, 1]" if s.rescale else False,
                "slice_axis": int(s.slice_axis)}
        data = ("napari: " + ", ".join(f"{n} ({len(items)} images)" for n, items in ts["domains"])
                + PREP_TAG + json.dumps(prep))
        gen = train_normalization_model(self.registry, ts["train"], ts["val"], cfg, name=MODEL_NAME, data=data)
        domains, device = ts["domains"], self.device()

        def job():
            result = yield from gen
            entry = (result or {}).get("entry")
            if entry is None:
                return result
            yield Progress(cfg.steps, cfg.steps, "normalising the domains' images")
            return {**result, "shown": apply_to_groups(entry, domains, "normalize", device)}

        n_val = sum(len(v) for v in ts["val"].values())
        unit = "slices" if cfg.spatial_dims == 2 else "volumes"
        self._emit("training", [n for n, _ in domains])
        self._say(f"Training {MODEL_NAME} ({s.mode}, {cfg.spatial_dims}-D, {cfg.steps} steps) on "
                  f"{', '.join(f'{n} {len(v)}' for n, v in ts['train'].items())} {unit}; validating on {n_val} "
                  f"held-out {unit}" + (f" ({'; '.join(ts['notes'])})" if ts["notes"] else "") + ".")
        before = {e.version for e in self.registry.list(MODEL_NAME)}
        return self.runner.start(job(), on_done=lambda r: self._trained(r, before, cfg),
                                 on_progress=lambda p: self._emit("progress", {"step": p.step, **p.metrics}))

    def _trained(self, result, before: set, cfg):
        entry = (result or {}).get("entry")
        if entry is None:  # stopped: the best weights may still have been saved
            new = [e for e in self.registry.list(MODEL_NAME) if e.version not in before]
            self._result = new[-1] if new else None
            self._say(f"Stopped: saved {new[-1].label}; press Normalize to see it." if new else
                      "Stopped before anything was saved.")
            return
        self.last_training = result
        self._result = entry
        best = result.get("best_metrics") or {}
        sites = [n for n, _ in result["shown"]["groups"]]
        dice = ", ".join(f"{n} {best[f'dice_{n}']:.3f}" for n in sites if f"dice_{n}" in best)
        shown = self._show(result["shown"], entry, "normalize")
        self._say(f"Trained {entry.label} ({cfg.mode}, best at step {result.get('best_step')}): held-out Dice "
                  f"{dice or 'n/a'}. {self._jsd_text()} Showing {len(shown)} '[normalized]' layer(s).")

    # ------------------------------------------------------- normalise, segment
    def model_entry(self):
        return self.registry.get(MODEL_NAME, self.settings.version)

    def _targets(self) -> list[tuple[str, list[dict]]]:
        """Groups of images for Normalize / Segment: the picked layers (grouped by their domain),
        or every domain's images."""
        s = self.settings
        if not s.apply_to:
            if not s.domains:
                raise InputError("Pick the image layers to apply the model to, or add domains.")
            return self._read_all(s.domains)
        owner = {lay.name: (d, i) for d in s.domains if not d.folder for i, lay in enumerate(d.layers)}
        labels = {lay.name: lay for lay in self.viewer.layers if isinstance(lay, Labels)}
        groups: dict[str, list] = {}
        for lay in s.apply_to:
            if lay not in self.viewer.layers:
                raise InputError(f"The layer {lay.name!r} is no longer in the viewer; pick it again.")
            if not isinstance(lay, Image) or lay.multiscale or lay.rgb or lay.ndim not in (2, 3):
                raise InputError(f"{lay.name!r} is not a grey 2-D or 3-D image layer.")
            raw = np.asarray(lay.data)
            if not np.isfinite(raw).all():
                raise InputError(f"{lay.name!r} has NaN or infinite values; fix or mask them first.")
            dom, i = owner.get(lay.name, (None, None))
            lab = dom.labels[i] if dom is not None else labels.get(f"{lay.name} labels")
            if lab is not None and np.shape(lab.data) != raw.shape:
                lab = None
            groups.setdefault(dom.name if dom else lay.name, []).append(
                {"title": lay.name, "raw": raw, "layer": lay, "labels": None if lab is None else np.asarray(lab.data)})
        return list(groups.items())

    def normalize(self, block: bool = False):
        """Button **Normalize**: the picked layers (or the domains' images) through the current
        version: '<layer> [normalized]' image layers, histograms and JSD per domain."""
        return self._run(lambda: self._start_apply("normalize"), block)

    def segment(self, block: bool = False):
        """Button **Segment**: tissue labels from the trained segmenter on the picked layers
        (or the domains' images), '<layer> [segmented]' labels layers."""
        return self._run(lambda: self._start_apply("segment"), block)

    def _start_apply(self, what: str):
        self._check_idle()
        entry = self.model_entry()
        groups = self._targets()
        sd = int((entry.meta.get("config") or {}).get("spatial_dims", 2))
        flat = [it for _, items in groups for it in items if it["raw"].ndim < sd]
        if flat:
            raise InputError(f"{entry.label} is a 3-D model and {flat[0]['title']!r} is 2-D; apply it to volumes, or "
                             "train on '2-D slices'.")
        device = self.device()

        def job():
            yield Progress(0, 1, f"{what.replace('normalize', 'normalising').replace('segment', 'segmenting')} "
                                 f"with {entry.label}")
            res = apply_to_groups(entry, groups, what, device)
            yield Progress(1, 1, "done")
            return res

        def done(res):
            if res is None:
                return
            shown = self._show(res, entry, what)
            self._result = shown
            if what == "normalize":
                self._say(f"Normalised {len(shown)} image(s) with {entry.label} ({res['mode']}). {self._jsd_text()}")
            else:
                n = int(res["meta"].get("n_classes", 4))
                scores = [(it["title"], mean_class_dice(it["result"], it["labels"], n)) for _, items in res["groups"]
                          for it in items if it["labels"] is not None]
                scored = ", ".join(f"{t} {d:.3f}" for t, d in scores if d is not None)
                self._say(f"Segmented {len(shown)} image(s) with {entry.label} ({res['mode']})."
                          + (f" Mean Dice against their labels: {scored}." if scored else ""))

        return self.runner.start(job(), on_done=done)

    def _jsd_text(self) -> str:
        j = self.jsd
        if not j or all(v is None for v in j.values()):
            return "JSD: one domain only."
        parts = [f"{k} {v:.3f}" for k, v in j.items() if v is not None]
        return "JSD between the domains' brain histograms: " + " -> ".join(parts) + "."
