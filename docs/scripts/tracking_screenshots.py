"""Retake docs/images/tracking_*.png with the current tracking model.

    xvfb-run -a .venv/bin/python docs/scripts/tracking_screenshots.py

Uses a throwaway NAPARI_MEDSEG_HOME, so the fine-tuning and training rounds it runs for
the dock screenshot never touch your own model versions.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)
import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images"
# on vessels, found with a ridge filter near hand-picked places
RETINA_STARTS = np.array([(700, 710), (631, 937), (506, 564), (895, 776), (787, 504), (562, 967)], float)
FAST = {"episodes_per_batch": 8, "eval_every": 1, "update_epochs": 4}


def _track_and_shoot(viewer, c, name: str, **layers) -> None:
    """Track from the given layers, show the traces with their entropy, save the canvas."""
    c.set(**layers)
    c.track(block=True)
    for layer in ("traces", "trace entropy"):
        viewer.layers[layer].visible = True
    viewer.reset_view()
    wait(300)
    viewer.screenshot(str(OUT / name), canvas_only=True)


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-medseg", "synthetic_axon")
    viewer.layers["ground-truth centreline"].visible = True
    w = dock_wide(viewer, "Axon tracking", 560)
    c = w.controller
    c.set(stop_uncertain=False)
    [rec] = c.track(block=True)
    c.fit_colours()
    viewer.layers.selection.active = viewer.layers["traces"]
    viewer.reset_view()
    wait(300)
    viewer.screenshot(str(OUT / "tracking_window.png"), canvas_only=False)
    viewer.camera.zoom *= 2.5
    viewer.camera.center = (0, *rec.tracked[len(rec.tracked) // 3])
    wait(300)
    viewer.screenshot(str(OUT / "tracking_entropy.png"), canvas_only=True)
    # the retina sample: vessels, a real image the agent never saw (green channel, inverted)
    for layer in viewer.layers:
        layer.visible = False
    viewer.layers["traces"].data = []
    viewer.open_sample("napari-medseg", "retina")
    retina = viewer.layers["retina (fundus, RGB)"]
    viewer.layers.move(viewer.layers.index(retina), 0)  # under the traces
    pts = viewer.add_points(RETINA_STARTS, name="retina starts", face_color="cyan", size=12)
    _track_and_shoot(viewer, c, "tracking_retina.png", image=retina, starts=pts, ends=None)
    # the benchmark's half-size retina, fibres through junctions, each with its end: traced from both ends
    from napari_medseg.bench.tracking_real import load_references, real_images

    for layer in viewer.layers:
        layer.visible = False
    viewer.layers.remove(retina)  # (its extent would keep the view at full size)
    viewer.layers.remove(pts)
    viewer.layers["traces"].data = []
    half = viewer.add_image(real_images()["retina"], name="retina, half size, prepared (bench tracking --real)",
                            colormap="gray")
    viewer.layers.move(viewer.layers.index(half), 0)
    junction = [f for f in load_references() if f["image"] == "retina" and f.get("through_junction")]
    s_pts = viewer.add_points([f["start"] for f in junction], name="junction starts", face_color="cyan", size=8)
    e_pts = viewer.add_points([f["end"] for f in junction], name="junction ends", face_color="magenta", size=8)
    _track_and_shoot(viewer, c, "tracking_retina_ends.png", image=half, starts=s_pts, ends=e_pts)
    for layer in viewer.layers:
        layer.visible = layer.name in ("synthetic axon (SI)", "ground-truth centreline", "traces", "trace entropy")
    viewer.layers["traces"].data = []
    c.set(image=viewer.layers["synthetic axon (SI)"], starts=viewer.layers["start points"],
          ends=viewer.layers["end points"])
    c.track(block=True)
    traces = viewer.layers["traces"]
    data = [np.array(d) for d in traces.data]
    data[0][6:12] += [1.0, 0.0]  # a correction, as if dragged in direct-select mode
    traces.data = data
    c.finetune(updates=3, block=True, **FAST)
    c.train(setting="SI", updates=6, block=True, val_episodes=8, **FAST)
    wait(300)
    w.scroll.widget().grab().save(str(OUT / "tracking_dock.png"))
    viewer.close()


if __name__ == "__main__":
    main()
