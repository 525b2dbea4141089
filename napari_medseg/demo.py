"""``napari-medseg demo``: napari with the sample data and every dock widget.

With a display it opens the viewer and waits. Without one (or with ``--gui headless``)
it runs under Xvfb, drives every available method end to end through its widget with
the shipped models, and writes screenshots and a metrics report to ``demo-output/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the same list as the Makefile's APT_PACKAGES (a test keeps them in step)
APT_PACKAGES = ("xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 libxcb-randr0 "
                "libxcb-render-util0 libxcb-shape0 libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3")
APT_LINE = f"apt-get update && apt-get install -y {APT_PACKAGES}"


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _wait(runner, app, timeout: float = 900.0) -> None:
    t0 = time.perf_counter()
    while runner.running:
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > timeout:
            runner.stop()
            raise TimeoutError("demo step took too long")
    app.processEvents()


def dock_all_widgets(viewer) -> dict:
    """Dock every widget the manifest declares; return {display name: widget}."""
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-medseg")
    docked = {}
    for w in manifest.contributions.widgets or []:
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", w.display_name)
        docked[w.display_name] = widget
    return docked


def _settle(app, seconds: float = 1.0) -> None:
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def _only(viewer, sample) -> dict:
    """Hide every layer, then add a sample's layers; returns them by name."""
    for layer in viewer.layers:
        layer.visible = False
    return {kw["name"]: getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in sample}


def _screenshot(viewer, path: Path) -> str:
    from skimage.io import imsave

    img = viewer.screenshot(canvas_only=False, flash=False)
    imsave(path, img, check_contrast=False)
    return path.name


def _heldout_dice(entry, settings: dict) -> float:
    """Dice of a model version on a held-out synthetic slide with the same stain shift."""
    from .core.metrics import dice
    from .core.segment import POSTPROCESS, PREPROCESS
    from .core.tiling import predict_whole
    from .methods.tissue import synthetic_slide

    rgb, mask = synthetic_slide((1024, 1024), settings["seed"] + 1000, faded=settings.get("faded", 0.0))
    model, _ = entry.load()
    prob = predict_whole(model, rgb, channel_axis=-1, preprocess=PREPROCESS["rgb_uint8"],
                         postprocess=POSTPROCESS["softmax"])
    return dice(prob.argmax(0), mask)


def demo_tissue(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Tissue model: segment the sample slide, correct it, retrain, segment again.

    The sample's weakly stained tissue is a domain shift the shipped model misses. The
    "researcher" paints the missed tissue (here: from the sample's ground truth); a
    held-out slide with the same shift, never shown to the model, measures whether
    retraining generalised.
    """
    from ._sample_data import _settings
    from .core.metrics import dice

    seg = widgets["Segment"]
    slide, truth = viewer.layers["synthetic slide"], viewer.layers["tissue ground truth"]
    gt = np.asarray(truth.data[0] if truth.multiscale else truth.data)
    seg.image.value = slide
    if "tissue" not in seg._model_names():
        raise RuntimeError("No shipped tissue model found in models/.")
    seg.model.value = "tissue"
    seg.version.value = "current"
    used = seg.entry()
    t0 = time.perf_counter()
    seg.run()
    _wait(seg.runner, app)
    seconds = time.perf_counter() - t0
    first = seg.last_result
    before = dice(np.asarray(first.data), gt)
    heldout_before = _heldout_dice(used, _settings())
    shots = [_screenshot(viewer, out / "tissue-1-segmented.png")]
    changed = int((gt != np.asarray(first.data)).sum())
    first.data = gt.astype(np.asarray(first.data).dtype).copy()  # the corrections
    seg.labels.value = first
    seg.steps.value = steps
    seg.retrain()
    _wait(seg.runner, app)
    new = seg.entry()
    seg.run()
    _wait(seg.runner, app)
    after = dice(np.asarray(seg.last_result.data), gt)
    first.visible = False
    shots.append(_screenshot(viewer, out / "tissue-2-retrained.png"))
    return {
        "method": "tissue (engine reference model)",
        "model": used.label,
        "segment_seconds": seconds,
        "dice_before": before,
        "pixels_corrected": changed,
        "retrain_steps": steps,
        "retrained_version": new.version,
        "retrain_metrics": seg.history[-1] if seg.history else {},
        "dice_after": after,
        "dice_heldout_slide_before": heldout_before,
        "dice_heldout_slide_after": _heldout_dice(new, _settings()),
        "screenshots": shots,
    }


def _zoom_to(viewer, shape) -> None:
    """Fill the canvas with a (H, W) image at the origin (reset_view would also fit the
    hidden slide layers, leaving the 128-px axon image a speck)."""
    ch, cw = viewer.screenshot(canvas_only=True, flash=False).shape[:2]
    viewer.camera.center = (0.0, (shape[0] - 1) / 2, (shape[1] - 1) / 2)
    viewer.camera.zoom = 0.95 * min(ch / shape[0], cw / shape[1])


def _traces_metrics(records, truths) -> dict:
    from .methods.tracking.metrics import mean_metrics, trace_metrics

    return mean_metrics([trace_metrics(r.tracked, t, r.entropy) for r, t in zip(records, truths)])


def demo_tracking(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Axon tracking: track the SI sample, then a wide-axon image (SI-W, a setting the
    shipped agent never saw), correct its traces (here: with the ground truth, as a
    researcher dragging vertices would), fine-tune, track again, and score both rounds
    on a held-out SI-W image."""
    from ._sample_data import synthetic_axon_sample
    from .methods.tracking.synthetic import generate

    w = widgets["Axon tracking"]
    c = w.controller
    for layer in [lay for lay in viewer.layers]:
        layer.visible = False
    sample = synthetic_axon_sample()
    for data, kwargs, kind in sample:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    image, starts, ends = (viewer.layers[sample[k][1]["name"]] for k in (0, 2, 3))
    truth = sample[1][0][0]
    c.set(image=image, starts=starts, ends=ends)
    used = c.entry().label
    t0 = time.perf_counter()
    records = c.track(block=True)
    seconds = time.perf_counter() - t0
    si = _traces_metrics(records, [truth])
    _zoom_to(viewer, image.data.shape)
    shots = [_screenshot(viewer, out / "tracking-1-si.png")]
    # a shifted domain: wide axons, three per image (one to correct, one held out)
    train, held = (generate("SI-W", seed=s, n_distractors=2) for s in (501, 502))
    for layer in (image, starts, ends):
        layer.visible = False

    def run_on(r, name):
        lines = [r.centreline, *r.distractors]
        inside = np.array(r.image.shape) - 1.0  # distractors run to the edge: keep their ends on the image
        firsts, lasts = (np.clip(np.stack([ln[k] for ln in lines]), 0.0, inside) for k in (0, -1))
        img = viewer.add_image(r.image, name=name, colormap="gray")
        viewer.layers.move(viewer.layers.index(img), 0)  # under the traces and their entropy
        pts = viewer.add_points(firsts, name=f"{name} starts", face_color="cyan", size=4)
        end = viewer.add_points(lasts, name=f"{name} ends", face_color="magenta", size=4)
        c.set(image=img, starts=pts, ends=end)
        return c.track(block=True), lines

    before = _traces_metrics(*run_on(held, "SI-W held out"))
    traces = viewer.layers["traces"]
    traces.data = []  # start the corrections afresh
    found, lines = run_on(train, "SI-W")
    n_traces = len(found)
    # correct: each trace becomes its ground truth, as if dragged in direct-select mode
    traces.data = []
    traces.add_paths([np.asarray(ln) for ln in lines])
    c.finetune(updates=max(2, min(steps, 15)), block=True, episodes_per_batch=16)
    rnd = c.rounds[-1] if c.rounds else {}
    for layer in viewer.layers:
        layer.visible = layer.name.startswith("SI-W held out") or layer.name in ("traces", "trace entropy")
    traces.data = []
    after = _traces_metrics(*run_on(held, "SI-W held out (fine-tuned)"))
    _zoom_to(viewer, held.image.shape)
    shots.append(_screenshot(viewer, out / "tracking-2-finetuned.png"))
    return {
        "method": "axon tracking (Dai et al. 2019)",
        "model": used,
        "track_seconds": seconds,
        "si_coverage_pct": si["coverage_pct"],
        "si_error_px": si["error_px"],
        "si_entropy_within": si.get("entropy_within"),
        "si_entropy_outside": si.get("entropy_outside"),
        "traces_corrected": n_traces,
        "finetuned_version": rnd.get("version"),
        "finetune_round": c.round_text(rnd) if rnd else c.message,
        "heldout_si_w_coverage_before": before["coverage_pct"],
        "heldout_si_w_error_before": before["error_px"],
        "heldout_si_w_coverage_after": after["coverage_pct"],
        "heldout_si_w_error_after": after["error_px"],
        "screenshots": shots,
    }


def demo_box(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Box-supervised training: the kidney sample's boxes, two Stage-1 rounds, a correction
    of round 2 (the true outlines painted in, as a researcher would), one more round; then
    the model segments the unlabelled slide."""
    from ._sample_data import kidney_sample

    w = widgets["Box-supervised training"]
    c = w.controller
    for layer in viewer.layers:
        layer.visible = False
    added = {kw["name"]: getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in kidney_sample()}
    slide, boxes = added["kidney A"], added["kidney A boxes"]
    slide.visible = boxes.visible = True
    c.set(image=slide, boxes=boxes, val_image=added["kidney validation"], val_labels=added["kidney validation labels"],
          steps=max(3, steps), rounds1=2)
    c.stage1(block=True)
    rounds = [lay for lay in viewer.layers if lay.name.startswith("kidney A [stage 1 round")]
    _zoom_to(viewer, slide.data.shape[:2])
    shots = [_screenshot(viewer, out / "box-1-two-rounds.png")]
    latest = rounds[-1]
    latest.data = added["kidney A true glomeruli"].data.astype(latest.data.dtype)  # the painted correction
    c.stage1(rounds=1, block=True)
    history = c.history()
    c.set(predict_image=added["kidney B (unlabelled)"])
    pred = c.predict(block=True)
    for layer in viewer.layers:
        layer.visible = layer is pred or layer.name == "kidney B (unlabelled)"
    shots.append(_screenshot(viewer, out / "box-2-predicted.png"))
    return {
        "method": "box-supervised training (Gupta et al. 2019)",
        "rounds": [{"stage": h["stage"], "round": h["round"], "version": h["version"],
                    "object_f1": h["metrics"].get("object_f1")} for h in history],
        "corrected_pixels": int(c.session.slides[1][0].fixed[0].sum()) if c.session.slides[1][0].fixed else 0,
        "predicted_layer": pred.name if pred is not None else None,
        "screenshots": shots,
    }


def demo_staining(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Confocal digital staining: the confocal-like sample pair, a preview of the field of
    view, then the whole sample slide with the shipped despeckler and CycleGAN; the colour
    distance of the result to the H&E the pair came from, against Gareau's stain alone."""
    import numpy as np

    from ._sample_data import confocal_sample
    from .methods.staining.metrics import color_distance

    w = widgets["Confocal digital staining"]
    c = w.controller
    added = _only(viewer, confocal_sample())
    he = added["H&E (the truth the pair was derived from)"]
    c.set(fcm=added["FCM (nuclei)"], rcm=added["RCM (reflectance)"], preview_size=512, tile=512)
    _zoom_to(viewer, he.data.shape[:2])
    c.preview(block=True)
    shots = [_screenshot(viewer, out / "staining-1-preview.png")]
    stained = c.stain(block=True)
    for layer in viewer.layers:
        if layer is not stained:
            layer.visible = False
    # napari 0.9.2: a multiscale RGB layer can stay black after the layers around it are
    # hidden, until its own visibility is toggled
    stained.visible = False
    _settle(app, 0.2)
    stained.visible = True
    _settle(app)
    shots.append(_screenshot(viewer, out / "staining-2-whole-slide.png"))
    full = np.asarray(stained.data[0])
    c.set(despeckle=False, cyclegan=False)
    gareau = c.stain(block=True)
    gareau.visible = False
    return {
        "method": "confocal digital staining (Combalia et al. 2019)",
        "stained_layer": stained.name, "levels": len(stained.data),
        "color_distance_full_pipeline": color_distance(full, he.data),
        "color_distance_gareau_only": color_distance(np.asarray(gareau.data[0]), he.data),
        "screenshots": shots,
    }


def demo_joint(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Joint lesion + tissue: the brain phantom sample (T1 + FLAIR), segmented by the
    shipped model into named classes with a volume table; one slab of corrections, a
    short retraining into a new version, and the export of the labels as NIfTI."""
    import numpy as np

    from ._sample_data import brain_phantom_sample
    from .methods.joint_lesion_tissue.labels import REDUCED
    from .methods.joint_lesion_tissue.metrics import dice_per_class

    w = widgets["Joint lesion + tissue"]
    c = w.controller
    added = _only(viewer, brain_phantom_sample())
    truth = added["true labels"]
    viewer.dims.order = (2, 1, 0)  # axial slices
    viewer.dims.set_point(2, float(truth.data.shape[2] // 2 * truth.scale[2] + truth.translate[2]))
    c.set(t1=added["T1"], flair=added["FLAIR"], retrain_steps=max(2, min(steps, 20)))
    labels = c.segment(block=True)
    viewer.reset_view()
    _settle(app)
    shots = [_screenshot(viewer, out / "joint-1-segmented.png")]
    dice = dice_per_class(labels.data, truth.data, REDUCED)
    edited = np.array(labels.data)
    mid = edited.shape[2] // 2
    edited[:, :, mid - 3:mid + 3] = truth.data[:, :, mid - 3:mid + 3]
    labels.data = edited
    entry = c.retrain(block=True)
    path = c.export(out / "joint-labels.nii.gz")
    return {"method": "joint lesion + tissue (Dorent et al. 2019)", "labels_layer": labels.name,
            "dice": {k: float(v) for k, v in dice.items()}, "volumes_ml": dict(c.volume_table()),
            "retrained_version": None if entry is None else entry.version, "exported": Path(path).name,
            "screenshots": shots}


from .demo_adversarial import demo_adversarial_segmentation, demo_modality_transfer, demo_site_normalization  # noqa: E402

DEMOS = {"tissue": demo_tissue, "tracking": demo_tracking, "box_iterative": demo_box, "staining": demo_staining,
         "joint_lesion_tissue": demo_joint, "adversarial_segmentation": demo_adversarial_segmentation,
         "modality_transfer": demo_modality_transfer, "site_normalization": demo_site_normalization}


def _rerun_under_xvfb(argv) -> int:
    if shutil.which("xvfb-run") is None:
        print(f"napari-medseg demo: no display and no Xvfb. Install it with:\n  {APT_LINE}", file=sys.stderr)
        return 2
    return subprocess.call(["xvfb-run", "-a", sys.executable, "-m", "napari_medseg.cli", *argv])


def run_demo(out_dir: Path = Path("demo-output"), gui: str = "auto", steps: int = 60) -> int:
    if gui == "auto":
        gui = "open" if _has_display() else "headless"
    if not _has_display():
        return _rerun_under_xvfb(["demo", "--out", str(out_dir), "--gui", gui, "--steps", str(steps)])
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if gui == "headless":  # keep the demo's model versions away from the user's own
        os.environ["NAPARI_MEDSEG_HOME"] = str(out_dir / "home")
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title="napari-medseg demo")
    viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-medseg", "synthetic_slide")
    widgets = dock_all_widgets(viewer)
    if gui == "open":
        napari.run()
        return 0
    app = QApplication.instance()
    app.processEvents()
    report = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "widgets_docked": sorted(widgets),
        "screenshots": [_screenshot(viewer, out_dir / "0-opened.png")],
        "methods": {},
    }
    from .core.device import select_device

    report["device"] = str(select_device())
    failures = 0
    for name, fn in DEMOS.items():
        t_method = time.perf_counter()
        try:
            report["methods"][name] = fn(viewer, widgets, app, out_dir, steps)
            report["methods"][name]["demo_seconds"] = round(time.perf_counter() - t_method, 1)
        except Exception as exc:  # report and go on with the other methods
            failures += 1
            import traceback

            report["methods"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc()[-3000:]}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "report.md").write_text(_markdown(report))
    viewer.close()
    print(f"wrote {out_dir / 'report.md'}")
    return 1 if failures else 0


def _markdown(report: dict) -> str:
    lines = ["# napari-medseg demo report", "", f"- created: {report['created']}", f"- device: {report['device']}",
             f"- widgets docked: {', '.join(report['widgets_docked'])}", "", "![opened](0-opened.png)", ""]
    for name, res in report["methods"].items():
        lines += [f"## {name}", ""]
        for k, v in res.items():
            if k == "screenshots":
                continue
            lines.append(f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}")
        lines += [""] + [f"![{s}]({s})" for s in res.get("screenshots", [])] + [""]
    return "\n".join(lines)
