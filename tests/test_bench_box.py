"""`bench box_iterative`'s whole-slide part: a pyramidal TIFF segmented lazily in a child."""

from __future__ import annotations

import numpy as np

from napari_medseg.core.registry import Registry
from napari_medseg.methods.box_iterative.model import ARCH, IO, METHOD, build_model


def test_wsi_study_segments_a_pyramid_in_a_child_and_reports_memory(tmp_path):
    from napari_medseg.bench.box_iterative import wsi_study

    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    entry = reg.save_new_version("glomeruli", build_model(0).state_dict(), method=METHOD, arch=ARCH, extra={"io": IO})
    rows = wsi_study([1024], str(entry.path), tmp_path)
    row = rows[1024]
    assert row["megapixels"] == 1024 * 1024 / 1e6 and row["megapixels_per_s"] > 0
    assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0 and row["n_glomeruli"] > 0
    assert not list(tmp_path.glob("kidney_1024*"))  # the slide and its labels are removed


def test_pooled_scores_count_objects_over_slides_and_skip_specks():
    from napari_medseg.methods.box_iterative.metrics import pooled_scores

    gt = np.zeros((64, 64), np.uint8)
    gt[10:30, 10:30] = 1
    pred = gt.copy()
    pred[50:52, 50:52] = 1  # a 4-px speck
    both = pooled_scores([(pred, gt), (np.zeros_like(gt), gt)])
    assert both["object_recall"] == 0.5 and both["object_precision"] == 0.5
    assert pooled_scores([(pred, gt)], min_area=10)["object_precision"] == 1.0
    assert pooled_scores([(pred, gt)], min_area=10)["pixel_precision"] < 1.0  # pixels keep every pixel
