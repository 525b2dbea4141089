"""npe2 sample data: the same brain anatomy seen by two sites, for the Normalize across sites
widget (Delisle et al. 2019).

Per site (``infant``: isointense-phase contrast, low and inverted GM/WM contrast, more blur,
its own intensity units; ``adult``: adult T1 contrast, thick slices) a few small skull-stripped
T1-like volumes ``infant 1``, ``infant 2``, ... with their tissue labels ``infant 1 labels``
(0 background, 1 CSF, 2 grey matter, 3 white matter). Every subject is a different brain
(:func:`~napari_medseg.methods.site_normalization.sites.multi_site`, ``same_subjects=False``). The
volumes are stored axial slice first, so napari's slider moves through axial slices and a
2-D model sees axial slices. Layer metadata ``sites`` names the site, the subject and what
the layer is (``image`` or ``labels``). The seed is none of the benchmark's.
"""

from __future__ import annotations

import numpy as np

from .labels import CLASS_COLOURS, class_features

SPACING_MM = 3.0


def sites_sample(n_per_site: int = 3, seed: int = 2019, shape=(48, 56, 48), spacing: float = SPACING_MM):
    """Layer tuples: ``n_per_site`` volumes per site (infant, adult) with their labels; the
    labels start hidden. Images are float32 in each site's own units, labels uint8 0-3.
    ``spacing`` (mm): keep ``shape * spacing`` about 150 mm so that the whole brain fits."""
    from .sites import multi_site

    data = multi_site(int(n_per_site), sites=("infant", "adult"), seed=int(seed), shape=tuple(shape),
                      spacing=(float(spacing),) * 3)
    layers = []
    for site, pairs in data.items():
        for i, (img, lab) in enumerate(pairs, start=1):
            name = f"{site} {i}"

            def meta(what, site=site, i=i):
                return {"sites": {"site": site, "subject": i, "what": what, "seed": int(seed)}}

            img_ax, lab_ax = np.ascontiguousarray(np.moveaxis(img, 2, 0)), np.ascontiguousarray(np.moveaxis(lab, 2, 0))
            place = {"scale": (float(spacing),) * 3}
            layers.append((img_ax, {"name": name, "colormap": "gray", "metadata": meta("image"), **place}, "image"))
            layers.append((lab_ax.astype(np.uint8), {"name": f"{name} labels", "visible": False, "opacity": 0.5,
                                                      "colormap": dict(CLASS_COLOURS), "features": class_features(),
                                                      "metadata": meta("labels"), **place}, "labels"))
    return layers
