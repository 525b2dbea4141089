"""The Axon tracking widget, headless: track live, read the entropy, stop, branch,
correct and fine-tune, roll back, SWC round trip, and one clear message per bad input.

The agent here is untrained (a seeded random network nudged to move along +x): the
tests check what the widget does, never how well the agent tracks.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui

from napari_medseg.core.registry import Registry  # noqa: E402
from napari_medseg.methods.tracking.policy import BetaPolicy  # noqa: E402

FAST = {"episodes_per_batch": 4, "eval_every": 1, "max_steps": 40, "update_epochs": 2}


def test_agent(seed: int = 0) -> BetaPolicy:
    """A random agent whose steps head along +x and whose entropy depends on what it sees."""
    torch.manual_seed(seed)
    policy = BetaPolicy()
    with torch.no_grad():
        policy.actor.head.weight.mul_(1000.0)
        policy.actor.head.bias.copy_(torch.tensor([2.0, 2.0, 4.0, 2.0]))
    return policy


test_agent.__test__ = False  # a helper, not a test


def save_agent(metrics=None):
    p = test_agent()
    return Registry().save_new_version("tracking", p.state_dict(), method="dai2019-tracking", arch=p.arch,
                                       metrics=metrics or {})


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny nets run faster on one thread


@pytest.fixture
def messages(monkeypatch):
    seen = {"error": [], "info": []}
    import napari_medseg.widgets._runner as runner_mod
    import napari_medseg.widgets._controller as tracking_mod

    monkeypatch.setattr(tracking_mod, "show_error", seen["error"].append)
    monkeypatch.setattr(tracking_mod, "show_info", seen["info"].append)
    monkeypatch.setattr(runner_mod, "show_error", seen["error"].append)
    return seen


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer(show=True)


def dock(viewer):
    return viewer.window.add_plugin_dock_widget("napari-medseg", "Axon tracking")[1]


@pytest.fixture
def axon(viewer):
    """The synthetic axon sample, an agent in the registry, the widget docked."""
    save_agent()
    viewer.open_sample("napari-medseg", "synthetic_axon")
    w = dock(viewer)
    w.controller.set(stop_uncertain=False)
    return w


def shown(w, control) -> bool:
    """Shown in the dock (whether or not napari shows the dock itself right now)."""
    return control.native.isVisibleTo(w)


def snapshot(viewer):
    return {lay.name: [np.array(d, copy=True) for d in lay.data] if isinstance(lay.data, list)
            else np.array(lay.data, copy=True) for lay in viewer.layers}


def same_layers(a, b):
    if a.keys() != b.keys():
        return False
    return all(len(a[k]) == len(b[k]) and all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a)


def slow_agent(monkeypatch, seconds):
    """Each step takes at least ``seconds``: long enough to watch (or stop) a trace grow.
    Tracking steps the agent with ``BetaPolicy.steer`` (training with ``act``)."""
    steer = BetaPolicy.steer

    def slow_steer(self, *args, **kwargs):
        time.sleep(seconds)
        return steer(self, *args, **kwargs)

    monkeypatch.setattr(BetaPolicy, "steer", slow_steer)


def test_track_draws_live_with_entropy_threshold_and_branches(viewer, axon, messages, monkeypatch):
    w, c = axon, axon.controller
    slow_agent(monkeypatch, 0.005)
    assert w.image.value.name == "synthetic axon (SI)" and w.starts.value.name == "start points"
    assert w.ends.value.name == "end points" and not shown(w, w.channel) and not shown(w, w.project)
    lengths = []
    draw = c.layers.draw
    c.layers.draw = lambda ids: (draw(ids), lengths.append(len(c.records[ids[-1]].tracked)))
    w.track_button.clicked()
    c.wait(timeout=60)
    c.layers.draw = draw
    assert messages["error"] == []
    traces, overlay = viewer.layers["traces"], viewer.layers["trace entropy"]
    [rec] = [c.records[t] for t in c.last_batch]
    assert len(traces.data) == 1 and traces.shape_type == ["path"]
    np.testing.assert_allclose(traces.data[0][0], viewer.layers["start points"].data[0])
    assert rec.stop_reason in ("end reached", "image edge", "max steps") and len(rec.tracked) > 20
    assert len(lengths) >= 2 and lengths == sorted(lengths) and lengths[0] < lengths[-1]  # it grew while tracking
    # one overlay point per step, at the point the step left, with that step's entropy
    steps = len(rec.tracked) - 1
    assert len(rec.entropy) == steps == len(overlay.data)
    np.testing.assert_allclose(overlay.features["entropy"], rec.entropy)
    np.testing.assert_allclose(overlay.data, rec.tracked[:-1])
    c.fit_colours()  # fixed limits around these entropies: colours now spread over the map
    lo, hi = c.settings.limits
    assert (w.lo.value, w.hi.value) == (lo, hi) and w.colorbar.limits == (lo, hi) and lo < hi
    face = np.asarray(overlay.face_color)
    i, j = int(np.argmin(rec.entropy)), int(np.argmax(rec.entropy))
    assert rec.entropy[i] < rec.entropy[j] and not np.allclose(face[i], face[j])
    from napari.utils.colormaps import ensure_colormap

    expected = ensure_colormap(c.settings.colormap).map(np.clip((rec.entropy - lo) / (hi - lo), 0, 1))
    np.testing.assert_allclose(face, expected, atol=1e-6)  # the colour is a function of the entropy alone
    # the threshold picks the highlighted (red-bordered) points
    w.threshold.value = float(np.median(rec.entropy))
    high = c.layers.highlighted()
    assert high.tolist() == (rec.entropy > w.threshold.value).tolist() and 0 < high.sum() < steps
    np.testing.assert_allclose(np.asarray(overlay.border_color)[high], [[1.0, 0.1, 0.1, 1.0]] * int(high.sum()))
    w.threshold.value = float(rec.entropy.min()) - 1.0
    assert c.layers.highlighted().all() and w.colorbar.threshold == w.threshold.value
    # finished traces are fitted onto the ridge by default; the check box turns that off
    assert w.fit_ridge.value and "fit_shift_px" in rec.meta
    w.fit_ridge.value = False
    assert c.settings.fit_ridge is False
    # with "stop when uncertain", an agent above the threshold for k steps stops
    w.stop_uncertain.value, w.entropy_steps.value = True, 3
    [stopped] = c.track(block=True)
    assert stopped.stop_reason == "uncertain" and len(stopped.entropy) == 3
    assert "fit_shift_px" not in stopped.meta
    w.fit_ridge.value = True
    assert len(overlay.data) == len(rec.entropy) + 3
    traces.selected_data = {1}
    traces.remove_selected()  # deleting a trace takes its entropy points along
    assert len(traces.data) == 1 and len(overlay.data) == len(rec.entropy)
    # a start on the existing trace continues it as a branch
    w.stop_uncertain.value = False
    k = 3  # near the start, still on the axon (the untrained agent soon wanders off it)
    viewer.add_points(rec.tracked[k][None] + [0.8, 0.0], name="branch start")
    w.starts.value, w.ends.value = viewer.layers["branch start"], None
    out = c.track(block=True)
    assert out is not None, messages
    [branch] = out
    assert branch.parent is not None and branch.parent[0] == rec.id and abs(branch.parent[1] - k) <= 1
    assert len(viewer.layers["traces"].data) == 2 and f"branch of #{rec.id}" in w.trace_info.value
    assert messages["error"] == []


def test_stop_mid_track_keeps_the_partial_trace(viewer, axon, messages, monkeypatch, qtbot):
    slow_agent(monkeypatch, 0.03)
    w, c = axon, axon.controller
    w.max_steps.value = 1000
    c.track()
    qtbot.waitUntil(lambda: len(w.runner.history) >= 4, timeout=30_000)
    w.runner.stop_button.click()
    c.wait(timeout=30)
    [rec] = [c.records[t] for t in c.last_batch]
    assert rec.stop_reason == "stopped" and w.runner.status.text() == "stopped"
    assert 4 <= len(rec.entropy) < 60 and len(rec.tracked) == len(rec.entropy) + 1
    np.testing.assert_allclose(viewer.layers["traces"].data[0], rec.tracked)
    assert len(viewer.layers["trace entropy"].data) == len(rec.entropy) and messages["error"] == []


def test_edit_fine_tune_and_roll_back(viewer, axon, messages, medseg_home, monkeypatch):
    from napari_medseg.methods.tracking import finetune

    w, c = axon, axon.controller
    [rec] = c.track(block=True)
    before = Registry().current("tracking").version
    traces = viewer.layers["traces"]
    data = [np.array(d) for d in traces.data]
    data[0][5] += [1.5, -0.5]  # drag one vertex, as in direct-select mode
    traces.data = data
    assert c.layers.is_edited(rec.id, traces.data[0])
    w.finetune_updates.value = 1
    # a round that validates worse (held-out traces + synthetic validation) is kept, not made current
    monkeypatch.setattr(finetune, "not_worse", lambda after, before: False)
    info = c.finetune(block=True, **FAST)
    assert len(messages["error"]) == 1 and "not made current" in messages["error"][0]
    assert "models restore tracking" in messages["error"][0] and not info["made_current"]
    assert Registry().current("tracking").version == before and info["version"] == before + 1
    # a round that does not validate worse becomes current
    messages["error"].clear()
    monkeypatch.setattr(finetune, "not_worse", lambda after, before: True)
    info = c.finetune(block=True, **FAST)
    assert messages["error"] == [], messages["error"]
    assert {"score", "heldout_coverage_pct", "synthetic_coverage_pct"} <= info["gate_after"].keys()
    before = before + 1  # the kept-but-not-current round above took that number
    reg = Registry()
    assert reg.current("tracking").version == before + 1 and info["version"] == before + 1 and info["made_current"]
    assert info["edited"] == [rec.id] and info["n_traces"] == 1
    assert {"coverage_pct", "error_px"} <= info["before"].keys() & info["after"].keys()
    assert "coverage" in w.rounds.value and "→" in w.rounds.value and f"v{before + 1}" in w.rounds.value
    saved = sorted((medseg_home / "corrections" / "tracking").glob("traces_*.swc"))[-1]
    from napari_medseg.methods.tracking.swc import read_swc

    np.testing.assert_allclose(read_swc(saved).traces[0], data[0], atol=1e-6)  # autosaved before training
    assert reg.current("tracking").meta["finetuned_from"] == before - 1
    assert c.rollback().version == before - 1
    assert Registry().current("tracking").version == before - 1 and w.version.value == "current"
    assert "current again" in w.status.text()


def test_swc_export_import_and_a_broken_file(viewer, axon, messages, tmp_path):
    w, c = axon, axon.controller
    [main] = c.track(block=True)
    k = 4
    viewer.add_points(main.tracked[k][None] + [0.5, 0.0], name="branch start")
    w.starts.value, w.ends.value = viewer.layers["branch start"], None
    [branch] = c.track(block=True)
    assert branch.parent == (main.id, k)
    path = tmp_path / "traces.swc"
    assert c.export_swc(path) == path
    text = path.read_text()
    first_branch_node = [ln for ln in text.splitlines() if not ln.startswith("#")][len(main.tracked)]
    assert int(first_branch_node.split()[-1]) == k + 1  # the branch hangs from node k of the main trace
    exported = [np.array(d) for d in viewer.layers["traces"].data]
    viewer.layers.remove("traces")
    viewer.layers.remove("trace entropy")
    imported = c.import_swc(path)
    assert [r.parent for r in imported] == [None, (imported[0].id, k)]
    for a, b in zip(exported, viewer.layers["traces"].data):
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert messages["error"] == []
    # an image with a physical pixel size: the file is in its unit and comes back onto the same pixels
    img = c.layers.style.image
    img.scale, img.units = (0.5, 0.5), ("micrometer", "micrometer")
    um = tmp_path / "traces_um.swc"
    assert c.export_swc(um) == um
    text = um.read_text()
    assert "unit micrometer" in text
    node = [ln for ln in text.splitlines() if not ln.startswith("#")][0].split()
    assert float(node[2]) == pytest.approx(exported[0][0, 1] * 0.5, abs=1e-6)
    for name in ("traces", "trace entropy"):
        if name in viewer.layers:
            viewer.layers.remove(name)
    c.import_swc(um)
    for a, b in zip(exported, viewer.layers["traces"].data):
        np.testing.assert_allclose(b, a, atol=1e-6)
    broken = tmp_path / "broken.swc"
    broken.write_text("1 2 10 10 0 1 -1\n2 2 11 11 0 1 7\n")
    layers = snapshot(viewer)
    assert c.import_swc(broken) is None
    assert len(messages["error"]) == 1 and "broken.swc" in messages["error"][0] and "parent" in messages["error"][0]
    assert w.status.text() == messages["error"][0] and same_layers(layers, snapshot(viewer))


def test_bad_input_gets_one_clear_message_and_changes_nothing(viewer, messages):
    save_agent()
    viewer.open_sample("napari-medseg", "synthetic_axon")
    w = dock(viewer)
    c = w.controller
    viewer.add_points(np.zeros((0, 2)), name="no points")
    cases = [
        ({"starts": viewer.layers["no points"], "ends": None}, "No start points"),
        ({"starts": viewer.add_points([[40.0, 300.0]], name="outside"), "ends": None}, "outside the image"),
        ({"starts": viewer.layers["start points"], "model": "tissue"}, "is a tissue model, not a tracking agent"),
    ]
    for changes, expected in cases:
        before, n = snapshot(viewer), len(messages["error"])
        c.set(**changes)
        assert c.track(block=True) is None
        assert len(messages["error"]) == n + 1 and expected in messages["error"][-1], messages["error"]
        assert w.status.text() == messages["error"][-1] and same_layers(before, snapshot(viewer))
    assert messages["error"][-1].startswith("tissue v")  # names the model version picked
    c.set(model="tracking")
    # a 3D stack needs its max projection
    stack = np.stack([viewer.layers["synthetic axon (SI)"].data] * 3)
    viewer.add_image(stack, name="stack")
    w.image.value = viewer.layers["stack"]
    assert shown(w, w.project) and w.project.value  # ticked by default for stacks
    w.project.value = False
    before = snapshot(viewer)
    assert c.track(block=True) is None
    assert "3D stack" in messages["error"][-1] and "max projection" in messages["error"][-1]
    assert same_layers(before, snapshot(viewer))
    w.project.value = True
    n = len(messages["error"])
    assert c.track(block=True) is not None and len(messages["error"]) == n
    assert "traces" in viewer.layers


def test_retina_needs_a_channel_then_tracks_green_inverted(viewer, messages):
    save_agent()
    viewer.open_sample("napari-medseg", "retina")
    retina = viewer.layers["retina (fundus, RGB)"]
    w = dock(viewer)
    c = w.controller
    assert w.image.value is retina and shown(w, w.channel) and not shown(w, w.project)
    assert (c.settings.channel, c.settings.invert, c.settings.scale) == (1, True, 1.5)  # from the layer's metadata
    assert (w.channel.value, w.invert.value, w.scale.value) == (1, True, 1.5)
    from scipy import ndimage as ndi

    green = ndi.gaussian_filter(retina.data[..., 1].astype(float), 2)
    y, x = np.unravel_index(np.argmin(green[600:800, 600:800]), (200, 200))  # on a dark vessel
    viewer.add_points([[600.0 + y, 600.0 + x]], name="vessel start")
    w.starts.value, w.ends.value = viewer.layers["vessel start"], None
    w.max_steps.value, w.stop_uncertain.value = 15, False
    w.channel.value = -1  # "none (choose one)"
    before = snapshot(viewer)
    assert c.track(block=True) is None
    assert "RGB image" in messages["error"][-1] and "channel" in messages["error"][-1]
    assert same_layers(before, snapshot(viewer))
    w.channel.value = 1
    [rec] = c.track(block=True)
    assert len(messages["error"]) == 1 and len(rec.tracked) > 1
    np.testing.assert_allclose(viewer.layers["traces"].data[0][0], [600.0 + y, 600.0 + x])


def test_train_from_scratch_plots_reward_and_coverage(viewer, messages, monkeypatch, tmp_path):
    from napari_medseg.core import paths

    monkeypatch.setattr(paths, "models_dir", lambda: tmp_path / "no-shipped-models")  # a fresh install without them
    w = dock(viewer)
    c = w.controller
    assert c.track(block=True) is None and "Open or pick an image layer" in messages["error"][-1]
    viewer.open_sample("napari-medseg", "synthetic_axon")
    assert c.track(block=True) is None and "No model called 'tracking'" in messages["error"][-1]
    assert c.train(setting="SI+XY", block=True) is None and "Unknown synthetic setting 'SI+XY'" in messages["error"][-1]
    w.setting.value, w.train_updates.value = "SI+DR+crossing", 2  # the shipped agents' training mixes are offered too
    w.train_imitation.value = 1  # the first update imitates the centreline, the second is PPO
    w.train_recovery.value = 0.5  # half of the imitation episodes start beside their fibre
    w.train_symmetry_augment.value = True
    assert c.settings.train_imitation == 1 and c.settings.train_recovery == 0.5 and c.settings.train_symmetry_augment
    c.train(block=True, val_episodes=4, imitation_steps=2, **FAST)
    assert [e.version for e in Registry().list("tracking")] == [1]
    entry = Registry().current("tracking")
    assert entry.meta["config"]["setting"] == "SI+DR+crossing" and entry.meta["config"]["updates"] == 2
    assert [h["update"] for h in c.train_history] == [1, 2]
    assert entry.meta["config"]["imitation_updates"] == 1 and entry.meta["config"]["imitation_recovery"] == 0.5
    assert entry.meta["config"]["imitation_symmetries"] is True
    assert "imitation_nll" in c.train_history[0] and "pg_loss" in c.train_history[1]
    assert len(w.plot.series["mean_reward"]) == 2 and len(w.plot.series["coverage_pct"]) == 2
    assert [v for _, v in w.plot.series["coverage_pct"]] == [h["coverage_pct"] for h in c.train_history]
    assert "Trained tracking v1" in w.status.text() and w.version.choices[-1] == ("v1 (user)", 1)
    [rec] = c.track(block=True)  # the new model tracks
    assert len(rec.tracked) > 1


def test_a_killed_training_run_is_shown_and_continued_from_the_dock(viewer, messages):
    from napari_medseg.core.runstate import TrainingRun
    from napari_medseg.methods.tracking.model import train_tracking
    from napari_medseg.methods.tracking.ppo import PPOConfig

    cfg = PPOConfig(updates=4, episodes_per_batch=2, max_steps=6, update_epochs=1, val_episodes=2, eval_every=2)
    gen = train_tracking(Registry(), cfg, "DR", state_every=2)
    for p in gen:
        if p.step == 3:  # killed after update 3: update 2's state is on disk
            break
    folder = next((Registry().user_root / "tracking" / "runs").iterdir())
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 4321})  # its process died
    w = dock(viewer)  # the dock opened after the crash says so
    c = w.controller
    assert "step 2 of 4" in w.resumable.value and "Continue interrupted run" in w.resumable.value
    assert w.continue_button.enabled
    c.continue_training(block=True)
    entry = Registry().current("tracking")
    assert entry.meta["resumed_from_update"] == 2 and entry.meta["config"]["setting"] == "DR"
    assert [h["update"] for h in c.train_history] == [3, 4] and "Trained tracking v1" in w.status.text()
    assert w.resumable.value == "" and not w.continue_button.enabled and not folder.exists()
    assert c.continue_training(block=True) is None and "no interrupted tracking training" in messages["error"][-1]
    gen.close()


def test_hidden_overlay_is_redrawn_when_traces_shrink(axon, viewer):
    """Hiding the entropy overlay, then tracking shorter traces, must not break napari."""
    c = axon.controller
    c.set(max_steps=12)
    c.track(block=True)
    n_long = len(viewer.layers["trace entropy"].data)
    at = viewer.layers.index(viewer.layers["trace entropy"])
    viewer.layers["trace entropy"].visible = False
    viewer.layers["traces"].data = []
    c.set(max_steps=4)
    c.track(block=True)
    over = viewer.layers["trace entropy"]
    assert not over.visible and len(over.data) == 4 < n_long
    assert viewer.layers.index(over) == at  # replaced in place
    over.visible = True
    assert viewer.screenshot(canvas_only=True).std() > 0  # draws, without napari's IndexError


def test_a_direction_line_gives_the_start_its_heading_and_the_trace_list_says_so(viewer, axon, messages):
    """A short line from a start (Shapes, picked as direction lines) sets its heading; a
    line that starts elsewhere leaves the heading to the tracker (towards the end point)."""
    w, c = axon, axon.controller
    start = np.asarray(viewer.layers["start points"].data[0], float)
    elsewhere = viewer.add_shapes([np.array([start + 30.0, start + [30.0, 40.0]])], shape_type="line",
                                  name="direction lines")
    w.directions.value = elsewhere
    assert c.settings.directions is elsewhere
    assert np.isnan(c.start_directions(start[None])).all()  # not at a start: auto
    lines = viewer.add_shapes([np.array([start + [1.0, 0.0], start + [1.0, 8.0]])], shape_type="line",
                              name="direction lines 2")
    w.directions.value = lines
    assert c.settings.directions is lines
    np.testing.assert_allclose(c.start_directions(start[None])[0], heading_of(start, start + [1.0, 8.0]), atol=1e-5)
    c.track(block=True)
    assert messages["error"] == []
    [rec] = [c.records[t] for t in c.last_batch]
    hy, hx = heading_of(start, start + [1.0, 8.0])
    assert rec.meta["heading_chosen"] == "given"
    assert f"heading ({hy:+.2f}, {hx:+.2f}) given" in c.message
    assert ("reached its end" if rec.meta["reached_end"] else "did not reach its end") in c.message


def heading_of(a, b):
    d = np.asarray(b, float) - np.asarray(a, float)
    return d / np.linalg.norm(d)


def test_steps_averaged_over_turned_views_reach_the_tracker(viewer, axon, messages, monkeypatch):
    from napari_medseg.widgets.tracking import controller as C

    seen, real = [], C.track_iter

    def spy(policy, image, starts, ends, config, *a, **k):
        seen.append(config.symmetries)
        return real(policy, image, starts, ends, config, *a, **k)

    monkeypatch.setattr(C, "track_iter", spy)
    w, c = axon, axon.controller
    assert w.symmetries.value == 1 == c.settings.symmetries  # the agent alone by default
    [alone] = c.track(block=True)
    w.symmetries.value = 8
    assert c.settings.symmetries == 8
    [averaged] = c.track(block=True)
    assert seen == [1, 8] and messages["error"] == []
    n = min(len(alone.tracked), len(averaged.tracked), 5)
    assert not np.allclose(alone.tracked[:n], averaged.tracked[:n])  # the steps changed
