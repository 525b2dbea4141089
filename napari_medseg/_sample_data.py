"""npe2 sample data of the Segment dock: a synthetic H&E slide (the engine's reference
model, not a paper's), written once as a pyramidal OME-TIFF and read lazily. Each paper
method's sample data is in ``methods/<slug>/sample.py``."""

from __future__ import annotations

import json

from .core import paths


def _settings() -> dict:
    return json.loads((paths.sample_data_dir() / "synthetic_slide.json").read_text())


def synthetic_slide_files():
    """Paths of the sample slide and its ground-truth tissue mask (generated on first use)."""
    import os

    from .core.io import write_ome_tiff
    from .methods.tissue.synthetic import synthetic_slide

    s = _settings()
    folder = paths.cache_dir() / "sample_data"
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{s['size']}_{s['seed']}_faded{s.get('faded', 0.0)}"
    slide = folder / f"synthetic_slide_{tag}.ome.tif"
    mask = folder / f"synthetic_slide_{tag}_tissue_mask.ome.tif"
    if not (slide.is_file() and mask.is_file()):
        rgb, tissue = synthetic_slide((s["size"], s["size"]), s["seed"], faded=s.get("faded", 0.0))
        tmp_mask = mask.with_name(f".{os.getpid()}.{mask.name}")
        write_ome_tiff(tmp_mask, tissue, axes="YX", pyramid_levels=s["pyramid_levels"])
        write_ome_tiff(slide, rgb, axes="YXS", pyramid_levels=s["pyramid_levels"])
        os.replace(tmp_mask, mask)
    return slide, mask


def synthetic_slide_sample():
    from ._reader import read_layers

    slide, mask = synthetic_slide_files()
    layers = read_layers(str(slide)) + read_layers(str(mask))
    data, kwargs, _ = layers[1]
    kwargs["name"] = "tissue ground truth"
    kwargs["visible"] = False
    layers[0][1]["name"] = "synthetic slide"
    return [layers[0], (data, kwargs, "labels")]
