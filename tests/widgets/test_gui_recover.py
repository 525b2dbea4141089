"""A killed training run's best weights, saved from the docks: the method's own dock (here the
joint one) and the Models dock name the run, save it as a version that is not made current,
and then no longer offer it."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.core.registry import Registry
from napari_medseg.core.runstate import TrainingRun
from napari_medseg.core.training import save_best_on_exit


def _killed_run(reg: Registry, name: str, method: str, value: float):
    """A training of ``name`` that kept a best state at step 2 and was then killed."""
    best: dict = {}
    dead = []  # after the "kill", the trainer's save on exit never runs

    def trainer():
        for step in range(1, 4):
            if step == 2:
                best.update(state={"w": torch.full((2,), value)}, metrics={"dice": 0.5}, step=step)
            yield step

    def save(b):
        if dead:
            return None
        return reg.save_new_version(name, b["state"], method=method, arch={"name": "toy"}, config={},
                                    metrics={**b["metrics"], "best_step": b["step"]})

    gen = save_best_on_exit(trainer(), best, save, name=name)
    for step in gen:
        if step == 3:
            dead.append(True)  # the process "dies" here: nothing after this step is saved
            break
    folder = next((reg.user_root / name / "runs").iterdir())
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 91})  # a pid that is gone
    return gen, folder


@pytest.fixture
def reg():
    return Registry()


def test_method_dock_saves_only_its_own_killed_runs(make_napari_viewer, reg):
    from napari_medseg.widgets.joint_lesion_tissue import JointWidget

    gen_j, joint_run = _killed_run(reg, "my_joint", "dorent2019-joint", 3.0)
    gen_o, other_run = _killed_run(reg, "my_segan", "giacomello2020-segan", 4.0)
    w = JointWidget(make_napari_viewer(), registry=reg)
    assert "my_joint" in w.killed_runs.value and "step 2" in w.killed_runs.value
    assert "my_segan" not in w.killed_runs.value  # another method's run is not this dock's to save
    assert not w.recover_button.native.isHidden() and not w.killed_runs.native.isHidden()
    [entry] = w.recover_killed()
    assert entry.name == "my_joint" and entry.meta["method"] == "dorent2019-joint"
    assert torch.equal(torch.load(entry.path, weights_only=True)["state_dict"]["w"], torch.full((2,), 3.0))
    assert not joint_run.exists() and other_run.exists()
    assert reg.list("my_joint") == [entry] and reg.get("my_joint").version == entry.version
    assert w.killed_runs.value == "" and w.recover_button.native.isHidden()
    gen_j.close(), gen_o.close()
    assert reg.list("my_joint") == [entry]  # the dead trainer saved nothing more


def test_models_dock_lists_and_saves_every_killed_run_without_making_it_current(make_napari_viewer, reg):
    from napari_medseg.widgets.models import ModelsWidget

    current = reg.save_new_version("my_segan", {"w": torch.zeros(2)}, method="giacomello2020-segan",
                                   arch={"name": "toy"}, config={})
    gen, folder = _killed_run(reg, "my_segan", "giacomello2020-segan", 4.0)
    w = ModelsWidget(make_napari_viewer(), registry=reg)
    assert "my_segan" in w.killed_runs.value and not w.recover_button.native.isHidden()
    [entry] = w.recover_killed()
    assert entry.version == current.version + 1 and entry.meta["recovered_from_run"] == folder.name
    assert reg.get("my_segan").version == current.version  # the user's current version stays current
    assert w.selected() == entry  # shown selected, one click from "Make selected version current"
    assert not folder.exists() and w.killed_runs.value == "" and w.recover_button.native.isHidden()
    assert w.recover_killed() == []  # nothing left: a message, no error
    gen.close()


def test_one_run_that_cannot_be_saved_does_not_stop_the_others(reg):
    from napari_medseg.core.recover import recover_killed

    gen_a, bad = _killed_run(reg, "model_a", "dorent2019-joint", 1.0)
    gen_b, good = _killed_run(reg, "model_b", "dorent2019-joint", 2.0)
    info = TrainingRun.open(bad).info
    info["settings"]["versions"][0]["part"] = "critic"  # names weights best.pt does not hold
    TrainingRun(bad)._write_info(info)
    entries, problems = recover_killed(reg, "dorent2019")
    assert [e.name for e in entries] == ["model_b"] and not good.exists()
    assert len(problems) == 1 and "model_a" in problems[0] and "no weights" in problems[0] and bad.exists()
    gen_a.close(), gen_b.close()
