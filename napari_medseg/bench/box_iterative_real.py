"""``napari-medseg bench box_iterative --real``: box-supervised training on a real image.

The image: stardist's bundled fluorescence nuclei (``img2d.tif``, 512x512, 16-bit,
one channel) with its expert instance mask (``mask2d.tif``); real data an installed
package ships, not synthetic. Protocol (as in issue 17):

- the method gets the **left half** and boxes of the nuclei that lie wholly in it (the
  bounding boxes of the annotated instances); it never sees a mask;
- Stage 1 rounds train on it; each round predicts the **right half**, touching nuclei
  are split into instances (:mod:`..methods.box_iterative.instances`, object radius
  from the boxes) and scored against the right half's instances: object F1 at IoU 0.5
  and 0.75 (one-to-one matching), pixel Dice;
- the round reported is the last one (no validation labels exist on the left half to
  pick one honestly); per-round figures are kept;
- beside it, in the same run: **Otsu + watershed** (a Gaussian smoothing, Otsu's
  threshold, holes filled, specks removed, the same instance split) and a **supervised**
  U-Net: the same network and budget trained on the left half's true masks (Stage 0),
  the upper bound.

The image is never used to tune anything. The full run uses the method's defaults, as a
user gets them (``rounds1`` Stage-1 rounds of ``DEFAULTS["steps"]`` steps; patch 128, as the
image's half is 256 px wide); the quick run is a smaller budget.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .memory import peak_rss_mb

def _full_size() -> dict:
    """The method's own defaults: what ``train box_iterative`` and the dock run."""
    from ..core.options import defaults
    from ..methods.box_iterative.options import DEFAULTS, TrainOptions

    return {"rounds": int(defaults(TrainOptions)["rounds1"]), "steps": int(DEFAULTS["steps"]), "seeds": (0, 1, 2)}


SIZES = {True: {"rounds": 2, "steps": 40, "seeds": (0,)}, False: None}
KEYS = ("f1_iou50", "f1_iou75", "pixel_dice")


def nuclei():
    """(image uint16 (H, W), instance mask int (H, W)) from stardist's package data."""
    from importlib.util import find_spec

    import tifffile

    from ..core.errors import MedsegError

    spec = find_spec("stardist")
    if spec is None:
        raise MedsegError("bench box_iterative --real reads stardist's bundled nuclei image; install stardist.")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    return tifffile.imread(folder / "img2d.tif"), tifffile.imread(folder / "mask2d.tif")


def split_halves(mask: np.ndarray):
    """Left-half boxes of the instances wholly inside it, the left and right column ranges."""
    from skimage.measure import regionprops

    w = mask.shape[1] // 2
    boxes = np.array([p.bbox for p in regionprops(mask[:, :w])
                      if p.bbox[3] < w and p.bbox[1] > 0], np.int64).reshape(-1, 4)
    return boxes, slice(0, w), slice(w, mask.shape[1])


def score(instances, truth) -> dict:
    from ..methods.box_iterative.metrics import object_scores

    f50 = object_scores(instances, truth, iou=0.5, gt_instances=True, pred_instances=True)["f1"]
    f75 = object_scores(instances, truth, iou=0.75, gt_instances=True, pred_instances=True)["f1"]
    a, b = instances > 0, truth > 0
    dice = 2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1)
    return {"f1_iou50": float(f50), "f1_iou75": float(f75), "pixel_dice": dice}


def otsu_watershed(image: np.ndarray, radius: float) -> np.ndarray:
    """The classical pipeline, as CellProfiler-style nuclei pipelines do it: Gaussian
    smoothing (sigma 1), Otsu's threshold, holes filled, specks removed, and a watershed of
    the negated distance transform from its local maxima at least 2/3 of the object
    radius apart (scikit-image's peak_local_max); the radius comes from the boxes, as
    for the method."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), 1.0, preserve_range=True)
    fg = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))
    fg = remove_small_objects(fg, max_size=int(np.pi * (radius / 3) ** 2))
    dist = ndimage.distance_transform_edt(fg)
    peaks = peak_local_max(dist, min_distance=max(1, int(round(2 * radius / 3))), labels=ndimage.label(fg)[0],
                           exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg)


def _one_seed(seed, cfg, rgb, mask, boxes, left, right, radius, head="binary"):
    """(scores by Stage-1 round, supervised scores) for one training seed."""
    from ..core.jobs import collect
    from ..core.registry import Registry
    from ..methods.box_iterative.instances import to_instances
    from ..methods.box_iterative.model import model_from_entry
    from ..methods.box_iterative.stages import IterativeTraining, StageConfig
    from .box_iterative import predict_labels

    truth, device = mask[:, right], "cpu"
    with tempfile.TemporaryDirectory(prefix="medseg-bench-box-real-") as tmp:
        tmp = Path(tmp)
        config = StageConfig(steps=cfg["steps"], patch=128, batch_size=4, seed=int(seed), head=head)
        registry = Registry(shipped_root=tmp / "none", user_root=tmp / "models")
        session = IterativeTraining(registry, config, workdir=tmp / "work")
        session.set_stage1([rgb[:, left]], [boxes], ["left half"])
        by_round = []
        for _ in range(cfg["rounds"]):
            collect(session.stage1(1))
            model, _ = model_from_entry(registry.get("glomeruli", session.history[-1].version), device)
            by_round.append(score(to_instances(predict_labels(model, rgb[:, right], device), radius), truth))
        # supervised bound: the same network and total budget on the left half's true masks
        sup_reg = Registry(shipped_root=tmp / "none", user_root=tmp / "sup-models")
        sup = IterativeTraining(sup_reg, config, workdir=tmp / "sup")
        sup.set_stage0([rgb[:, left]], [mask[:, left]], ["left half"])
        collect(sup.stage0(cfg["rounds"] * cfg["steps"]))
        model, _ = model_from_entry(sup_reg.get("glomeruli"), device)
        return by_round, score(to_instances(predict_labels(model, rgb[:, right], device), radius), truth)


def run(quick: bool = False, json_path: str | None = None, seeds=None, head: str = "binary") -> dict:
    from ..methods.box_iterative.inputs import as_rgb8
    from ..methods.box_iterative.instances import expected_radius

    t0 = time.perf_counter()
    cfg = dict(SIZES[bool(quick)] or _full_size())
    if seeds is not None:
        cfg["seeds"] = tuple(int(v) for v in seeds)
    image, mask = nuclei()
    boxes, left, right = split_halves(mask)
    radius = expected_radius(boxes)
    rgb, note = as_rgb8(image, "nuclei image")
    truth = mask[:, right]
    r: dict = {"quick": bool(quick), "image": "stardist img2d.tif (fluorescence nuclei, 512x512, uint16)",
               "n_boxes_left": int(len(boxes)), "n_nuclei_right": int(len(np.unique(truth)) - 1),
               "object_radius_px": radius, "input_note": note}
    ws = otsu_watershed(image[:, right], radius)
    r.update({f"otsu_ws_real_{k}": v for k, v in score(ws, truth).items()})
    runs = [_one_seed(seed, cfg, rgb, mask, boxes, left, right, radius, head) for seed in cfg["seeds"]]
    for k in KEYS:
        per_seed = [run[0][-1][k] for run in runs]
        r[f"real_{k}"] = float(np.mean(per_seed))
        r[f"real_{k}_by_seed"] = [round(v, 4) for v in per_seed]
        r[f"real_{k}_by_round"] = [round(float(np.mean([run[0][i][k] for run in runs])), 4)
                                   for i in range(cfg["rounds"])]
        sup = [run[1][k] for run in runs]
        r[f"supervised_real_{k}"] = float(np.mean(sup))
        r[f"supervised_real_{k}_by_seed"] = [round(v, 4) for v in sup]
    r["seeds"] = list(cfg["seeds"])
    r["head"] = head
    ok50 = r["real_f1_iou50"] >= r["otsu_ws_real_f1_iou50"]
    ok75 = r["real_f1_iou75"] >= r["otsu_ws_real_f1_iou75"]
    ok_sup = r["real_f1_iou50"] >= 0.9 * r["supervised_real_f1_iou50"]
    r["goals"] = {
        "real_vs_otsu_ws": f"F1@0.5 and F1@0.75 ≥ Otsu + watershed: {'met' if ok50 and ok75 else 'NOT met'} "
                           f"({r['real_f1_iou50']:.3f} vs {r['otsu_ws_real_f1_iou50']:.3f}, "
                           f"{r['real_f1_iou75']:.3f} vs {r['otsu_ws_real_f1_iou75']:.3f})",
        "real_vs_supervised": f"F1@0.5 ≥ 0.9 × supervised: {'met' if ok_sup else 'NOT met'} "
                              f"({r['real_f1_iou50']:.3f} vs 0.9 × {r['supervised_real_f1_iou50']:.3f})",
    }
    r.update(goal_real_vs_otsu_ws_met=bool(ok50 and ok75), goal_real_vs_supervised_met=bool(ok_sup),
             rounds=cfg["rounds"], steps_per_round=cfg["steps"], peak_rss_mb=peak_rss_mb(),
             seconds=time.perf_counter() - t0,
             notes=["boxes: bounding boxes of the annotated nuclei wholly inside the left half; the method never "
                    "sees a mask; scored on the right half's instances",
                    "instances: seeded distance watershed, object radius = half the median short box side",
                    "the round reported is the last (no labels on the training half to choose one); figures are "
                    "means over the seeds (training seed: weights, patches), per seed in *_by_seed",
                    "supervised: Stage 0, the same network and total step budget on the left half's true masks"])
    if json_path:
        from ..core.atomic import atomic_write_json

        atomic_write_json(json_path, r)
    return r
