"""The Normalize across sites widget, headless: domains found on the two-site sample, a few
adversarial training steps with live losses and per-site Dice, normalised layers next to the
raw ones, histograms and JSD, Segment; folder domains in 3-D from the console; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils._proxies import PublicOnlyProxy

from napari_medseg.methods.site_normalization import sample as _sample_sites
from napari_medseg.core.registry import Registry
from napari_medseg.methods.site_normalization.data import preprocessing_of
from napari_medseg.widgets.site_normalization.controller import MODEL_NAME

TINY = dict(steps=4, warmup_steps=2, patch=32, batch_size=2, features=4, device="cpu")


@pytest.fixture(scope="module")
def sample():
    return _sample_sites.sites_sample(n_per_site=3, shape=(32, 40, 32), spacing=4.5)


@pytest.fixture
def setup(make_napari_viewer, tmp_path, sample, one_thread):
    from napari_medseg.widgets.site_normalization import SiteNormalizationWidget

    viewer = make_napari_viewer()
    for data, kwargs, kind in sample:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    # as a plugin dock sees it: napari hands plugin widgets a proxy of the viewer (and of its layers)
    w = SiteNormalizationWidget(PublicOnlyProxy(viewer), registry=Registry(shipped_root=tmp_path / "none",
                                                                           user_root=tmp_path / "models"))
    return viewer, w


def test_train_show_normalized_histograms_and_segment(setup):
    viewer, w = setup
    c = w.controller
    w.find_button.changed.emit(True)  # the button: groups the layers by their site
    assert [d.name for d in c.settings.domains] == ["infant", "adult"]
    assert [lab.name for lab in c.settings.domains[0].labels] == ["infant 1 labels", "infant 2 labels",
                                                                  "infant 3 labels"]
    assert "adult: 3 image(s), 3 labelled" in w.domain_list.value
    c.set(**TINY)
    assert w.features.value == 4 and w.patch.value == 32  # the dock follows the console
    n = len(viewer.layers)
    entry = c.train(block=True)
    assert entry is not None and entry.version == 1 and entry.meta["mode"] == "adversarial", c.message
    assert entry.meta["sites"] == ["infant", "adult"] and entry.meta["config"]["optimizer"] == "adam"
    assert preprocessing_of(entry.meta)["rescale"] and preprocessing_of(entry.meta)["slice_axis"] == 0
    # live losses: identity and segmentation every step, adversarial and D after the 2 warm-up steps
    s = w.loss_plot.series
    assert len(s["loss_seg"]) == len(s["loss_identity"]) == 4 and len(s["loss_adv"]) == len(s["loss_d"]) == 2
    assert w.dice_plot.names == ["val_dice", "val_dice_infant", "val_dice_adult"]
    assert all(1 <= len(w.dice_plot.series[k]) <= 4 for k in w.dice_plot.names)
    # six normalised images, each placed like its raw layer and right after it in the list
    assert len(viewer.layers) == n + 6 and len(c.normalized_layers) == 6
    for out in c.normalized_layers:
        raw = viewer.layers[out.metadata["medseg"]["from"]]
        assert out.name == f"{raw.name} [normalized]" and out.data.shape == raw.data.shape
        assert tuple(out.scale) == tuple(raw.scale) and viewer.layers.index(out) == viewer.layers.index(raw) + 1
        assert np.isfinite(out.data).all() and out.data.std() > 0
    assert viewer.canvas.grid.enabled and all(viewer.layers[k].visible for k in ("infant 1", "infant 1 [normalized]"))
    assert not viewer.layers["infant 1 labels"].visible
    # histograms per domain before and after, and the JSD between the domains
    assert [p["stage"] for p in c.histograms] == ["raw", "rescaled", "normalized"]
    assert w.hist_plot.panels == c.histograms and set(c.histograms[0]["hist"]) == {"infant", "adult"}
    assert all(len(h) == 64 and abs(sum(h) - 1) < 1e-6 for p in c.histograms for h in p["hist"].values())
    assert all(0.0 <= v <= 1.0 for v in c.jsd.values())
    assert c.jsd["raw"] > c.jsd["rescaled"]  # the sites' units differ: rescaling alone brings them closer
    assert w.jsd.value.startswith("JSD: raw") and "held-out Dice infant" in c.message

    # Segment two picked layers; Normalize one again updates its layer instead of adding one
    c.set(apply_to=[viewer.layers["adult 3"], viewer.layers["infant 3"]])
    labels = c.segment(block=True)
    assert [lay.name for lay in labels] == ["adult 3 [segmented]", "infant 3 [segmented]"]
    assert labels[0].data.shape == viewer.layers["adult 3"].data.shape and labels[0].data.max() <= 3
    assert "Mean Dice against their labels: adult 3" in c.message
    c.set(apply_to=[viewer.layers["infant 1"]], side_by_side=False)
    n = len(viewer.layers)
    again = c.normalize(block=True)
    assert [lay.name for lay in again] == ["infant 1 [normalized]"] and len(viewer.layers) == n
    assert c.jsd["normalized"] is None  # one layer, one group: nothing to compare


def test_bad_input_one_message_each(setup):
    viewer, w = setup
    c = w.controller
    n, layers = len(viewer.layers), viewer.layers
    c.set(**TINY)
    assert c.train(block=True) is None and "two or more domains; 0 added" in c.message
    c.set(name="infant", images=[layers["infant 1"]])
    assert c.add_domain() is None and "'infant' has 1 image(s); each domain needs at least 2" in c.message
    c.set(images=[layers["infant 1"], layers["infant 2"]])
    assert c.add_domain() is not None and len(c.settings.domains) == 1
    assert c.train(block=True) is None and "two or more domains; 1 added" in c.message
    # labels on another grid: another shape, or the same shape placed elsewhere
    viewer.add_labels(np.asarray(layers["adult 1 labels"].data)[:, :-1], name="cropped")
    c.set(name="adult", images=[layers["adult 1"], layers["adult 2"]],
          labels=[layers["cropped"], layers["adult 2 labels"]])
    assert c.add_domain() is None and "labels must be on the image's grid" in c.message and "(32, 31, 40)" in c.message
    layers["adult 1 labels"].translate = (9.0, 0.0, 0.0)
    c.set(labels=[])
    assert c.add_domain() is None and "placed differently" in c.message
    layers["adult 1 labels"].translate = (0.0, 0.0, 0.0)
    assert c.add_domain() is not None and [d.name for d in c.settings.domains] == ["infant", "adult"]
    # NaN in an image of a domain: refused at Train, nothing trained
    data = np.array(layers["adult 2"].data)
    data[3, 4, 5] = np.nan
    layers["adult 2"].data = data
    assert c.train(block=True) is None and "'adult': 'adult 2' has NaN" in c.message
    layers["adult 2"].data = np.nan_to_num(data)
    c.set(advanced={"nope": 1})
    assert c.train(block=True) is None and "Unknown advanced setting(s) ['nope']" in c.message
    c.set(images=[layers["adult 1"], layers["adult 3"]], labels=[layers["adult 1 labels"]])
    assert c.add_domain() is None and "2 image(s) but 1 labels layer(s)" in c.message
    assert c.normalize(block=True) is None and "No model called 'delisle_normalization'" in c.message
    assert c.show_side_by_side() is None and "Nothing to show side by side" in c.message
    assert len(viewer.layers) == n + 1 and c.registry.list(MODEL_NAME) == []  # only the test's own layer
    assert len(c.settings.domains) == 2  # nothing lost


def test_folder_domains_in_3d_from_the_console(setup, tmp_path, sample):
    import nibabel as nib

    from napari_medseg.methods.site_normalization.delisle import standardize
    from napari_medseg.methods.site_normalization.data import rescale

    viewer, w = setup
    c = w.controller
    pairs = [(d, kw["name"]) for d, kw, kind in sample]
    for site in ("infant", "adult"):
        folder = tmp_path / site
        folder.mkdir()
        for data, name in pairs:
            if name.startswith(site):
                stem = name.replace(" labels", "_labels").replace(" ", "")
                arr = data.astype(np.uint8 if "labels" in name else np.float32)
                nib.save(nib.Nifti1Image(arr, np.diag([4.5, 4.5, 4.5, 1.0])), folder / f"{stem}.nii.gz")
        assert c.add_domain(folder=str(folder)) is not None, c.message
    assert "infant: 3 image(s), 3 labelled (folder" in c.domain_lines()[0]
    c.set(**{**TINY, "patch": 16, "steps": 2, "warmup_steps": 0}, dims="3-D", mode="standardized")
    assert w.dims.value == "3-D" and w.mode.value == "standardized"
    n = len(viewer.layers)
    entry = c.train(block=True)
    assert entry is not None and entry.meta["mode"] == "standardized" and entry.meta["config"]["spatial_dims"] == 3
    assert not w.loss_plot.series["loss_adv"] and len(w.loss_plot.series["loss_seg"]) == 2
    # the first file of each folder is shown raw and normalised (z-scored: what the segmenter sees)
    assert [lay.name for lay in viewer.layers[n:]] == ["infant: infant1.nii.gz", "infant: infant1.nii.gz [normalized]",
                                                        "adult: adult1.nii.gz", "adult: adult1.nii.gz [normalized]"]
    raw, z = viewer.layers[n], viewer.layers[n + 1]
    assert tuple(z.scale) == tuple(raw.scale) == (4.5, 4.5, 4.5)
    np.testing.assert_allclose(z.data, standardize(rescale(raw.data)), atol=1e-5)
    assert c.jsd["normalized"] < c.jsd["raw"]
