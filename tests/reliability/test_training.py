"""A kill -9 during training loses at most ``every`` steps, and --resume finishes the run."""

from __future__ import annotations

import numpy as np
import torch

from napari_medseg.core.registry import Registry
from napari_medseg.core.runstate import TrainingRun, find_interrupted_runs, rng_state, set_rng_state
from napari_medseg.core.training import save_best_on_exit, train_supervised


def test_kill_9_during_training_loses_at_most_every_steps_and_resume_finishes(tmp_path):
    from napari_medseg.bench.reliability_training import kill_training

    got = kill_training(tmp_path, every=5, steps=24, kill_after=13)
    assert got["killed_at_step"] >= 13
    assert 0 <= got["steps_lost"] <= 5
    assert got["saved_step"] % 5 == 0 and got["saved_step"] >= 10
    assert got["best_step_on_disk"] is not None  # validated before the kill: the best weights are on disk
    assert got["resumed_from"] == got["saved_step"] + 1 and got["resumed_to"] == 24
    assert got["new_versions"] == 1 and got["interrupted_after_resume"] == 0


def test_cli_train_resume_continues_the_killed_run(tmp_path, run_cli):
    """``train tissue --resume`` picks the interrupted run up (and says so)."""
    from napari_medseg.bench.reliability_training import kill_training

    got = kill_training(tmp_path, every=3, steps=12, kill_after=7, resume=False)
    runs = find_interrupted_runs("tissue")
    assert len(runs) == 1 and runs[0]["step"] == got["saved_step"] >= 6
    code, out, err = run_cli("train", "tissue", "--resume")
    assert code == 0, err
    assert f"resuming run {runs[0]['folder'].name} from step {runs[0]['step']} of 12" in out
    assert "saved tissue v" in out and find_interrupted_runs("tissue") == []


def _toy(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Conv2d(1, 2, 3, padding=1)
    data = np.random.default_rng(seed)

    def next_batch(_step):
        x = torch.from_numpy(data.random((2, 1, 8, 8)).astype(np.float32))
        return x, (x > 0.5).long()[:, 0]

    return model, data, next_batch


def test_a_resumed_run_sees_the_same_batches_and_weights_as_an_uninterrupted_one():
    loss = torch.nn.functional.cross_entropy
    model, data, nb = _toy()
    for _ in train_supervised(model, nb, loss, steps=8, amp=False):
        pass
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model, data, nb = _toy()
    run = TrainingRun.start("toy", {}, 8, every=4)
    gen = train_supervised(model, nb, loss, steps=8, amp=False, run=run, data_rng=data)
    for p in gen:
        if p.step == 5:
            break  # "killed" after step 5: last.pt holds step 4
    last = run.last()
    assert last["step"] == 4
    model, data, nb = _toy(seed=1)  # a fresh process: other weights, other RNG position
    for _ in train_supervised(model, nb, loss, steps=8, amp=False, run=run, resume_from=last, data_rng=data):
        pass
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, straight[k])


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    import random

    data = np.random.default_rng(3)
    state = rng_state(data)
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    expected = (torch.rand(3), np.random.rand(3), random.random(), data.random(3))
    set_rng_state(loaded, data)
    got = (torch.rand(3), np.random.rand(3), random.random(), data.random(3))
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    np.testing.assert_array_equal(got[3], expected[3])


def test_custom_trainers_put_each_new_best_on_disk_at_once():
    best: dict = {}

    def trainer():
        for step in range(1, 4):
            best.update(state={"g": {"w": torch.full((2,), float(step))}}, metrics={"dice": step / 10}, step=step)
            yield step

    saved = []
    gen = save_best_on_exit(trainer(), best, lambda b: saved.append(b["step"]) or "entry", name="custom")
    next(gen)  # step 1 reported: its best is on disk already
    folder = next((Registry().user_root / "custom" / "runs").iterdir())
    on_disk = torch.load(folder / "best.pt", weights_only=True)
    assert on_disk["step"] == 1 and torch.equal(on_disk["state"]["g.w"], torch.full((2,), 1.0))
    next(gen)
    assert torch.load(folder / "best.pt", weights_only=True)["step"] == 2
    gen.close()  # Stop: the best is saved as a version and the run folder goes
    assert saved == [1, 2] and not folder.exists()  # 1: the save described at the first best (see core.recover)


def test_a_killed_custom_run_is_recovered_as_the_version_its_save_describes():
    from napari_medseg.core.recover import recover_run, recoverable_runs

    reg = Registry()
    best: dict = {}

    def trainer():
        for step in range(1, 5):
            if step % 2 == 0:  # a new best every second step
                best.update(state={"w": torch.full((3,), float(step))}, metrics={"dice": step / 10}, step=step)
            yield step

    def save(b):
        return reg.save_new_version("custom", b["state"], method="toy", arch={"name": "toy"}, config={"lr": 1e-3},
                                    metrics={**b["metrics"], "best_step": b["step"]}, extra={"sites": ["a", "b"]})

    gen = save_best_on_exit(trainer(), best, save, name="custom")
    for step in gen:
        if step == 4:  # killed after step 4: no save, the run stays
            break
    assert reg.list("custom") == []  # describing the save wrote nothing
    folder = next((reg.user_root / "custom" / "runs").iterdir())
    versions = TrainingRun.open(folder).info["settings"]["versions"]
    assert [v["name"] for v in versions] == ["custom"] and versions[0]["kwargs"]["extra"] == {"sites": ["a", "b"]}
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 77})
    assert [r["best_step"] for r in recoverable_runs("custom")] == [4]
    [entry] = recover_run(reg, folder)
    assert entry.meta["method"] == "toy" and entry.meta["sites"] == ["a", "b"] and entry.meta["config"] == {"lr": 1e-3}
    assert entry.meta["metrics"]["best_step"] == 4 and entry.meta["metrics"]["dice"] == 0.4
    assert torch.equal(torch.load(entry.path, weights_only=True)["state_dict"]["w"], torch.full((3,), 4.0))
    assert recoverable_runs("custom") == [] and not folder.exists()
    gen.close()


def test_a_killed_runs_checkpoints_are_read_again_only_when_they_change(monkeypatch):
    """Docks list killed runs at every registry event: the (large) checkpoints are loaded once,
    and again only after they are rewritten."""
    run = TrainingRun.start("listed", {"resumable": False}, 10)
    run.save_best({"w": torch.zeros(2)}, {"dice": 0.1}, 3)
    run._write_info({**run.info, "pid": 2**22 + 93})  # its process is gone
    loads = []
    real_load = TrainingRun._load
    monkeypatch.setattr(TrainingRun, "_load", lambda self, name: loads.append(name) or real_load(self, name))
    assert [r["best_step"] for r in find_interrupted_runs("listed")] == [3]
    assert [r["best_step"] for r in find_interrupted_runs("listed")] == [3]
    assert sorted(loads) == ["best.pt", "last.pt"]  # the second listing read no checkpoint
    run.save_best({"w": torch.ones(2)}, {"dice": 0.2}, 7)
    assert [r["best_step"] for r in find_interrupted_runs("listed")] == [7]
    assert loads.count("best.pt") == 2
