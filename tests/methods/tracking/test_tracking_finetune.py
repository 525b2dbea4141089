"""The tracking model in the registry, fine-tuning on corrected traces, k-fold, CLI."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_medseg.cli import main
from napari_medseg.core.errors import InputError, NotACheckpointError
from napari_medseg.core.registry import Registry
from napari_medseg.methods.tracking.finetune import finetune_on_traces, kfold_finetune, trace_episodes
from napari_medseg.methods.tracking.model import MODEL_NAME, load_tracker, policy_from_entry, train_tracking
from napari_medseg.methods.tracking.policy import BetaPolicy
from napari_medseg.methods.tracking.ppo import PPOConfig
from napari_medseg.methods.tracking.swc import read_swc
from napari_medseg.methods.tracking.synthetic import generate

TINY = PPOConfig(updates=2, episodes_per_batch=4, max_steps=15, update_epochs=2, num_minibatches=2,
                 eval_every=1, val_episodes=4)


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_train_saves_a_loadable_version_with_its_metrics():
    reg = Registry()
    gen = train_tracking(reg, TINY)
    reports = list(_drain(gen))
    assert len(reports) == 2 and "val_coverage_pct" in reports[-1].metrics
    entry = reg.current(MODEL_NAME)
    policy, meta = load_tracker(registry=reg)
    assert isinstance(policy, BetaPolicy) and meta["arch"]["name"] == "dai2019.BetaPolicy"
    m = meta["metrics"]
    assert 0.0 <= m["val_coverage_pct"] <= 100.0 and m["best_update"] in (1, 2)
    assert meta["config"]["setting"] == "SI" and len(meta["validation_curve"]) == 2
    # stopping after the first update still saves the best agent as a new version
    gen = train_tracking(reg, TINY.replace(updates=50))
    next(gen)
    gen.close()
    assert reg.current(MODEL_NAME).version == entry.version + 1


def test_a_model_of_another_method_is_refused_with_one_clear_message():
    from napari_medseg.core import nets

    reg = Registry()
    reg.save_new_version("tissue", nets.build(nets.bench_unet_arch()).state_dict(), arch=nets.bench_unet_arch())
    with pytest.raises(NotACheckpointError, match="not a tracking agent"):
        policy_from_entry(reg.current("tissue"))


def _drain(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def test_trace_episodes_keep_the_corrected_trace_on_the_structure():
    r = generate("SI", seed=5)
    img = np.pad(r.image, ((40, 0), (0, 60)))  # a bigger "real" image; the episode crops around the trace
    line = r.centreline + [40, 0]
    episodes = trace_episodes([img], [[line, line[:5]]], seed=1)  # the 5-px trace is too short to use
    assert episodes.n_traces == 1
    smooth = ndi.gaussian_filter(img, 1)
    on_line = ndi.map_coordinates(smooth, line.T, order=1).mean()
    for index in range(6):  # flips, rotations, reversed direction
        images, lines = episodes(index, 3)
        assert images.shape[0] == 3 and len(lines) == 3
        for im, ln in zip(images, lines):
            vals = ndi.map_coordinates(ndi.gaussian_filter(im, 1), ln.T, order=1)
            assert abs(vals.mean() - on_line) < 0.02  # the centreline still lies on the axon
            assert np.all(ln >= 0) and np.all(ln <= np.array(im.shape) - 1)
    with pytest.raises(InputError, match="No corrected trace"):
        trace_episodes([img], [[line[:5]]])


def test_finetune_changes_the_agent_and_kfold_reports_before_and_after():
    rs = [generate("SI", seed=s) for s in (1, 2)]
    policy = BetaPolicy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    gen = finetune_on_traces(policy, [rs[0].image], [[rs[0].centreline]], TINY)
    reports = list(_drain(gen))
    assert len(reports) == 2 and not _same_weights(before, policy.state_dict())
    traces = [[r.centreline, r.centreline[::-1]] for r in rs]
    gen = kfold_finetune(BetaPolicy, [r.image for r in rs], traces, k=2, config=TINY.replace(updates=1))
    out = None
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            out = stop.value
            break
    assert len(out["folds"]) == 2 and sum(f["n_test"] for f in out["folds"]) == 4
    for key in ("before", "after"):
        assert 0.0 <= out[key]["coverage_pct"] <= 100.0


def test_cli_track_writes_an_swc_with_one_trace_per_start(tmp_path):
    import tifffile

    torch.manual_seed(0)
    Registry().save_new_version(MODEL_NAME, BetaPolicy().state_dict(), method="dai2019-tracking",
                                arch=BetaPolicy().arch)
    r = generate("SI", seed=4)
    tif = tmp_path / "axon.tif"
    tifffile.imwrite(tif, (r.image * 65535).astype(np.uint16))
    out = tmp_path / "traces.swc"
    starts = f"{r.start[0]},{r.start[1]};{r.centreline[50][0]},{r.centreline[50][1]}"
    assert main(["track", str(tif), "--starts", starts, "--out", str(out), "--max-steps", "20"]) == 0
    forest = read_swc(out)
    assert len(forest.traces) == 2
    np.testing.assert_allclose(forest.traces[0][0], r.start, atol=1e-4)
    # with the image's pixel size the file is in micrometres, and reads back onto the same pixels
    um = tmp_path / "traces_um.swc"
    assert main(["track", str(tif), "--starts", starts, "--out", str(um), "--max-steps", "20",
                 "--pixel-size", "0.5", "0.25"]) == 0
    in_um = read_swc(um)
    assert in_um.unit == "micrometer"
    np.testing.assert_allclose(in_um.traces[0][0], np.asarray(r.start) * [0.5, 0.25], atol=1e-4)
    np.testing.assert_allclose(in_um.in_pixels((0.5, 0.25)).traces[0], forest.traces[0], atol=1e-4)
    assert main(["track", str(tif), "--starts", "500,5", "--out", str(tmp_path / "x.swc")]) == 2
    assert not (tmp_path / "x.swc").exists()


def test_cli_kfold_reports_each_fold_and_saves_no_model(tmp_path, capsys):
    import json

    import tifffile

    from napari_medseg.methods.tracking.swc import write_swc

    torch.manual_seed(0)
    before = Registry().save_new_version(MODEL_NAME, BetaPolicy().state_dict(), method="dai2019-tracking",
                                         arch=BetaPolicy().arch).version
    args = ["finetune", "--updates", "1", "--episodes", "4", "--folds", "2", "--json", str(tmp_path / "k.json"), "--image"]
    swcs = []
    for s in (1, 2):
        r = generate("crossing", seed=s)
        tifffile.imwrite(tmp_path / f"a{s}.tif", r.image)
        write_swc(tmp_path / f"a{s}.swc", [r.centreline, *r.distractors])
        args.append(str(tmp_path / f"a{s}.tif"))
        swcs.append(str(tmp_path / f"a{s}.swc"))
    assert main(args + ["--swc", *swcs]) == 0
    out = capsys.readouterr().out
    assert "fold 0: coverage" in out and "fold 1: coverage" in out and "mean: coverage" in out
    report = json.loads((tmp_path / "k.json").read_text())
    assert sum(f["n_test"] for f in report["folds"]) == 6
    assert Registry().current(MODEL_NAME).version == before  # k-fold only reports
    assert max(e.version for e in Registry().list(MODEL_NAME)) == before
    assert main(args[:-1] + ["--swc", *swcs]) == 2  # one SWC per image


def test_cli_finetune_makes_the_new_version_current_only_if_it_is_not_worse(tmp_path, capsys, monkeypatch):
    import tifffile

    from napari_medseg.methods.tracking import finetune
    from napari_medseg.methods.tracking.swc import write_swc

    r = generate("crossing", seed=1)
    tifffile.imwrite(tmp_path / "a.tif", r.image)
    write_swc(tmp_path / "a.swc", [r.centreline, *r.distractors])
    args = ["finetune", "--updates", "1", "--episodes", "4", "--image", str(tmp_path / "a.tif"),
            "--swc", str(tmp_path / "a.swc")]
    before = Registry().current(MODEL_NAME)
    monkeypatch.setattr(finetune, "not_worse", lambda after, b: False)
    assert main(args) == 0
    out = capsys.readouterr().out
    kept = max(e.version for e in Registry().list(MODEL_NAME))
    assert "was kept but not made current" in out and f"models restore tracking {kept}" in out
    assert "held-out coverage" in out and "synthetic coverage" in out
    assert Registry().current(MODEL_NAME).path == before.path
    monkeypatch.setattr(finetune, "not_worse", lambda after, b: True)
    assert main(args) == 0
    assert f"v{kept + 1} is current" in capsys.readouterr().out and Registry().current(MODEL_NAME).version == kept + 1
