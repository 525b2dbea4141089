"""The Confocal digital staining widget's controller: FCM/RCM layers in, H&E-like RGB out.

The dock's buttons call these methods and so can the napari console, e.g.
``w.controller.stain(block=True)``. The engine is
:mod:`napari_medseg.methods.staining`. See docs/widgets/staining.md.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image

from ...core import paths
from ...core.device import select_device
from ...core.errors import InputError
from ...core.jobs import Progress
from ...core.registry import Registry
from ...methods.staining import jobs, pipeline
from ...methods.staining.card import MODEL_NAMES
from ...methods.staining.despeckle import DISTILL_FILTERS
from ...methods.staining.options import DEFAULTS as _DEFAULTS
from .._common import layer_level
from .._controller import Controller
from .._runner import JobRunner

PREVIEW_LAYER, TRAINING_PREVIEW_LAYER = "staining preview", "training preview"
MAX_LAYER_PIXELS = 64_000_000  # an H&E layer is read whole for training
RANGE_PIXELS = 2_000_000  # a coarse level this small (or a subsample) gives the per-slide range


@dataclass
class StainingSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    fcm: Image | None = None  # fluorescence (nuclei) ...
    rcm: Image | None = None  # ... and reflectance, or:
    pair: Image | None = None  # one 2-channel layer (FCM first), channels first or last
    despeckle: bool = True
    cyclegan: bool = True
    normalisation: str = "slide"  # or "tile"
    tile: int = 1024
    preview_size: int = _DEFAULTS["preview_size"]  # longest side of the previewed field of view, in full-resolution pixels
    device: str = "auto"
    cpu_bf16: bool = False  # whole slide / Despeckle on a CPU with bfloat16: about 2x faster, within ~2/255
    speckled: Image | None = None  # "Despeckle": any single-channel layer (RCM), on its own
    # training
    train_model: str = "despeckle"  # or "cyclegan"
    he_layers: list = field(default_factory=list)  # RGB H&E Image layers to train on
    he_folder: str = ""  # ... or a folder of H&E images; neither: the bundled H&E
    finetune: bool = True  # start from the current version
    steps: int = _DEFAULTS["steps"]
    steps_large: int = _DEFAULTS["steps_large"]  # CycleGAN's 512-px stage
    confocal_domain: bool = False  # CycleGAN: domain A from the picked FCM/RCM (else derived from H&E)
    distill: bool = False  # despeckle: distil the current version into `filters` per layer (faster)
    filters: int = DISTILL_FILTERS
    body: str = "conv"  # despeckle, a new network (fine-tune off): "conv" the paper's, "unet" the U-shaped one


def _split_pair(layer: Image):
    data, _ = layer_level(layer, 0)
    shape = tuple(data.shape)
    if len(shape) == 3 and shape[0] == 2:
        return data[0], data[1]
    if len(shape) == 3 and shape[-1] == 2:
        return data[..., 0], data[..., 1]
    raise InputError(f"The layer '{layer.name}' has shape {shape}; a 2-channel confocal layer is (2, H, W) or "
                     "(H, W, 2), FCM first.")


class StainingController(Controller):
    """Scriptable state and actions of the Confocal digital staining widget."""

    def __init__(self, viewer, runner: JobRunner, registry: Registry | None = None):
        super().__init__()  # listeners get ("message", str), ("settings", None), ("preview", rgb), ("trained", entry)
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = StainingSettings()
        self._ranges: dict = {}  # (layer ids, normalisation) -> Normaliser
        self._pending = None  # a training preview waiting for the main thread

    # ------------------------------------------------------------------ inputs
    def channels(self):
        """(FCM, RCM, reference layer) at full resolution, lazy where the layers are."""
        s = self.settings
        if s.pair is not None:
            fcm, rcm = _split_pair(s.pair)
            return fcm, rcm, s.pair
        if s.fcm is None or s.rcm is None:
            raise InputError("Pick the FCM and RCM layers (or one 2-channel layer).")
        return layer_level(s.fcm, 0)[0], layer_level(s.rcm, 0)[0], s.fcm

    def _coarse(self, layer_or_none, full):
        """A small version of a channel for its intensity range: a pyramid level if any."""
        if layer_or_none is not None and getattr(layer_or_none, "multiscale", False):
            for level in layer_or_none.data:
                if np.prod(level.shape[:2]) <= RANGE_PIXELS:
                    return level
        return full

    def normaliser(self, fcm, rcm) -> pipeline.Normaliser:
        s = self.settings
        key = (id(s.pair), id(s.fcm), id(s.rcm), s.normalisation)
        if key not in self._ranges:
            pipeline.check_pair(fcm, rcm)
            if s.pair is not None:
                cf, cr = fcm, rcm
            else:
                cf, cr = self._coarse(s.fcm, fcm), self._coarse(s.rcm, rcm)
            norm = pipeline.prepare(cf, cr, "slide")  # checks the coarse pair and its content (NaN, constant)
            if s.normalisation == "tile":
                norm = pipeline.Normaliser(None, None)
            self._ranges[key] = norm
        return self._ranges[key]

    def net(self, device="cpu") -> pipeline.StainingNet:
        s = self.settings
        parts = {}
        for use, key, attr in ((s.despeckle, "despeckle", "despeckler"), (s.cyclegan, "cyclegan", "generator")):
            if not use:
                continue
            name = MODEL_NAMES[key]
            if not self.registry.list(name):
                raise InputError(f"There is no {name} model yet: train one, or untick '{key}'.")
            parts[attr] = self.registry.get(name).load(device)[0].eval()
        return pipeline.StainingNet(**parts).to(device).eval()

    def _device(self):
        return select_device(None if self.settings.device == "auto" else self.settings.device)

    def field_of_view(self, layer: Image, shape) -> tuple[slice, slice]:
        """The visible part of ``layer`` in full-resolution pixels, centred and capped at
        ``preview_size`` on its longest side."""
        size = self.settings.preview_size
        try:
            corners = np.asarray(layer.corner_pixels, float)[:, -2:]
            if getattr(layer, "multiscale", False):
                corners = corners * np.asarray(layer.downsample_factors[layer.data_level])[-2:]
        except (AttributeError, IndexError):
            corners = np.array([[0.0, 0.0], list(shape)])
        lo, hi = np.clip(corners[0], 0, shape), np.clip(corners[1], 0, shape)
        if np.any(hi - lo < 8):
            lo, hi = np.zeros(2), np.asarray(shape, float)
        centre, half = (lo + hi) / 2, np.minimum((hi - lo) / 2, size / 2)
        a = np.clip(np.round(centre - half), 0, None).astype(int)
        b = np.minimum(np.round(centre + half).astype(int), shape)
        return slice(int(a[0]), int(b[0])), slice(int(a[1]), int(b[1]))

    # ----------------------------------------------------------------- actions
    def preview(self, block: bool = False):
        """Button **Preview field of view**: stain what the canvas shows (at most
        ``preview_size`` px across) into the layer 'staining preview'."""
        return self._run(self._start_preview, block)

    def _start_preview(self):
        self._check_idle()
        fcm, rcm, ref = self.channels()
        norm = self.normaliser(fcm, rcm)
        device = self._device()
        net = self.net(device)
        rows, cols = self.field_of_view(ref, tuple(fcm.shape))
        # read a context of the receptive radius around the view, from a stride-aligned
        # corner, so the preview is exactly what the whole-slide stain gives there
        stride, radius = pipeline.geometry(net)
        (r0, r1), (c0, c1) = ((max(0, (sl.start - radius) // stride * stride), min(n, sl.stop + radius))
                              for sl, n in zip((rows, cols), fcm.shape))
        f, r = (np.asarray(c[r0:r1, c0:c1]) for c in (fcm, rcm))

        def job():
            yield Progress(0, 1, f"staining rows {rows.start}-{rows.stop}, columns {cols.start}-{cols.stop}")
            rgb = pipeline.stain_array(net, f, r, normaliser=norm, device=device)
            return rgb[rows.start - r0: rows.stop - r0, cols.start - c0: cols.stop - c0]

        def on_done(rgb):
            if rgb is None:
                return
            scale = np.asarray(ref.scale)[-2:]
            place = {"scale": tuple(scale), "translate": tuple(np.asarray(ref.translate)[-2:] + scale *
                                                              np.array([rows.start, cols.start]))}
            self._result = self._show(PREVIEW_LAYER, rgb, **place)
            self._say(f"Preview of {rgb.shape[0]}x{rgb.shape[1]} px at ({rows.start}, {cols.start}).")

        return self.runner.start(job(), on_done=on_done)

    def stain(self, block: bool = False):
        """Button **Stain whole slide**: the whole pair, tiled, into an RGB multiscale layer."""
        return self._run(self._start_stain, block)

    def _start_stain(self):
        self._check_idle()
        s = self.settings
        fcm, rcm, ref = self.channels()
        norm = self.normaliser(fcm, rcm)
        device = self._device()
        net = self.net(device)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = paths.user_data_dir() / "results" / f"staining-{stamp}.zarr"
        out.parent.mkdir(parents=True, exist_ok=True)
        gen = pipeline.stain_slide(net, fcm, rcm, out, normalisation=s.normalisation, tile=s.tile, device=device,
                                   normaliser=norm, pyramid_from=1024, cpu_bf16=s.cpu_bf16)
        parts = [k for k, on in (("despeckled", s.despeckle), ("CycleGAN", s.cyclegan)) if on]
        name = f"{ref.name} [H&E stain{': ' + ', '.join(parts) if parts else ': Gareau'}]"

        def on_done(levels):
            if levels is None:
                self._say("Stopped: the stained slide is incomplete and was not added.")
                return
            import dask.array as da

            data = [da.from_zarr(level).transpose(1, 2, 0) for level in levels]
            self._result = self.viewer.add_image(
                data if len(data) > 1 else data[0], name=name, rgb=True, multiscale=len(data) > 1,
                scale=tuple(np.asarray(ref.scale)[-2:]), translate=tuple(np.asarray(ref.translate)[-2:]),
                metadata={"medseg": {"method": "combalia2019", "result": str(out), "parts": parts}})
            self._say(f"Stained {fcm.shape[0]}x{fcm.shape[1]} px into {out.name}.")

        return self.runner.start(gen, on_done=on_done)

    def despeckle(self, block: bool = False):
        """Button **Despeckle**: the picked single-channel layer through the current
        despeckler alone, tiled and lazy, into a new layer in the same units (float32)."""
        return self._run(self._start_despeckle, block)

    def _start_despeckle(self):
        from ...methods.staining.despeckling import despeckle_slide, image_range
        from ...methods.staining.training import MODEL_NAME

        self._check_idle()
        layer = self.settings.speckled
        if layer is None:
            raise InputError("Pick the layer to despeckle (one reflectance channel).")
        if getattr(layer, "rgb", False):
            raise InputError(f"'{layer.name}' is RGB; despeckling takes one reflectance (RCM) channel.")
        image = layer_level(layer, 0)[0]
        value_range = image_range(self._coarse(layer, image), layer.name)
        if not self.registry.list(MODEL_NAME):
            raise InputError("There is no despeckle model yet: train one first.")
        device = self._device()
        entry = self.registry.get(MODEL_NAME)
        net = entry.load(device)[0].eval()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = paths.user_data_dir() / "results" / f"despeckle-{stamp}.zarr"
        out.parent.mkdir(parents=True, exist_ok=True)
        gen = despeckle_slide(net, image, out, value_range=value_range, tile=self.settings.tile, device=device,
                              pyramid_from=1024, cpu_bf16=self.settings.cpu_bf16)

        def on_done(levels):
            if levels is None:
                self._say("Stopped: the despeckled image is incomplete and was not added.")
                return
            import dask.array as da

            data = [da.from_zarr(level)[0] for level in levels]
            self._result = self.viewer.add_image(
                data if len(data) > 1 else data[0], name=f"{layer.name} [despeckled]", multiscale=len(data) > 1,
                colormap=layer.colormap.name, contrast_limits=tuple(layer.contrast_limits),
                scale=tuple(np.asarray(layer.scale)[-2:]), translate=tuple(np.asarray(layer.translate)[-2:]),
                metadata={"medseg": {"method": "combalia2019-despeckle", "result": str(out), "model": entry.label}})
            self._say(f"Despeckled {image.shape[0]}x{image.shape[1]} px with {entry.label} into {out.name}.")

        return self.runner.start(gen, on_done=on_done)

    def _show(self, name: str, rgb, **place):
        layer = next((lay for lay in self.viewer.layers if lay.name == name), None)
        if layer is not None and layer.data.shape == rgb.shape:
            layer.data = rgb
            for k, v in place.items():
                setattr(layer, k, v)
            return layer
        if layer is not None:
            self.viewer.layers.remove(layer)
        return self.viewer.add_image(rgb, name=name, rgb=True, **place)

    # ---------------------------------------------------------------- training
    def train(self, block: bool = False):
        """Button **Train**: train or fine-tune the picked model on the picked H&E images;
        each new best shows in the layer 'training preview'."""
        return self._run(self._start_training, block)

    def _he_arrays(self):
        """(RGB arrays, description) of the picked H&E layers, each read whole."""
        images = []
        for layer in self.settings.he_layers:
            data, _ = layer_level(layer, 0)
            if not getattr(layer, "rgb", False):
                raise InputError(f"'{layer.name}' is not an RGB layer; pick H&E images.")
            if np.prod(data.shape[:2]) > MAX_LAYER_PIXELS:
                raise InputError(f"'{layer.name}' is {data.shape[0]}x{data.shape[1]} px; crop a region of at most "
                                 f"{MAX_LAYER_PIXELS // 1_000_000} megapixels to train on.")
            images.append(np.asarray(data)[..., :3])
        return images, "layers " + ", ".join(lay.name for lay in self.settings.he_layers)

    def _start_training(self):
        self._check_idle()
        s = self.settings
        images, what = self._he_arrays()
        train, val, what = jobs.he_training_images(images, s.he_folder, what)
        device, name = self._device(), MODEL_NAMES[s.train_model]

        def on_preview(rgb):
            self._pending = rgb  # shown on the main thread by the next progress report

        if s.train_model == "despeckle":
            gen = jobs.despeckle_job(self.registry, train, val, steps=s.steps, device=device, finetune=s.finetune,
                                     data=what, on_preview=on_preview, distill_filters=s.filters if s.distill else 0,
                                     body=s.body)
        else:
            a_images = None
            if s.confocal_domain:
                fcm, rcm, _ = self.channels()
                if np.prod(fcm.shape) > MAX_LAYER_PIXELS:
                    raise InputError("The confocal pair is too large to train on whole; crop a region first.")
                a_images = [jobs.stained_confocal(self.registry, fcm, rcm, device)]
            gen = jobs.cyclegan_job(self.registry, train, val, steps=s.steps, steps_large=s.steps_large, device=device,
                                    finetune=s.finetune, a_images=a_images, data=what, on_preview=on_preview)

        def on_done(result):
            entry = (result or {}).get("entry") if result else None
            if entry is None and self.runner.job is not None and self.runner.job.stopped and self.registry.list(name):
                entry = self.registry.get(name)
            self._result = entry
            if entry is not None:
                m = entry.meta.get("metrics", {})
                score = (f"validation PSNR {m['psnr']:.2f} dB" if "psnr" in m else
                         f"validation colour distance {m.get('color_distance', float('nan')):.2f}")
                self._say(f"Saved {entry.label}: {score}. It is the current {name} model now.")
                self._emit("trained", entry)

        return self.runner.start(gen, on_done=on_done, on_progress=self._on_train_progress)

    def _on_train_progress(self, _p):
        if self._pending is not None:
            rgb, self._pending = self._pending, None
            self._show(TRAINING_PREVIEW_LAYER, rgb)
            self._emit("preview", rgb)
