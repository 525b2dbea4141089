"""The demo step of the Axon tracking dock (Dai et al. 2019)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..demo import _screenshot
from ._view import _zoom_to


def _traces_metrics(records, truths) -> dict:
    from ..methods.tracking.metrics import mean_metrics, trace_metrics

    return mean_metrics([trace_metrics(r.tracked, t, r.entropy) for r, t in zip(records, truths)])

def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Axon tracking: track the SI sample, then a wide-axon image (SI-W, a setting the
    shipped agent never saw), correct its traces (here: with the ground truth, as a
    researcher dragging vertices would), fine-tune, track again, and score both rounds
    on a held-out SI-W image."""
    from ..methods.tracking.sample import synthetic_axon_sample
    from ..methods.tracking.synthetic import generate

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
