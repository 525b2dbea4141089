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
    if "tissue" not in seg.controller.model_names():
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


def _method_demos() -> dict:
    """Each paper method's demo step, ``demos/<slug>.py``'s ``run``, by its MethodSpec's demo key."""
    import importlib

    from .methods import METHODS

    return {m.demo: importlib.import_module(f"{__package__}.demos.{m.slug}").run for m in METHODS}


DEMOS = {"tissue": demo_tissue, **_method_demos()}


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
