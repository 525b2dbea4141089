"""A killed tracking training keeps its best agent and continues with ``--resume``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import collect
from napari_medseg.core.registry import Registry
from napari_medseg.core.runstate import TrainingRun, find_interrupted_runs
from napari_medseg.methods.tracking.model import resume_tracking, train_tracking
from napari_medseg.methods.tracking.ppo import PPOConfig, train_tracker

TINY = dict(episodes_per_batch=2, max_steps=6, update_epochs=1, val_episodes=2, eval_every=2)


def test_a_resumed_ppo_run_ends_with_the_weights_of_an_uninterrupted_one():
    cfg = PPOConfig(updates=6, **TINY)
    straight = collect(train_tracker(cfg, "SI"))[1]["state_dict"]
    kept = {}
    gen = train_tracker(cfg, "SI", keep_state=kept.__setitem__, state_every=2)
    for p in gen:
        if p.step == 5:  # "killed" after update 5: the last kept state is update 4's
            break
    assert sorted(kept) == [0, 2, 4]
    torch.manual_seed(123)  # a fresh process: another global RNG position
    resumed = train_tracker(cfg, "SI", resume={"update": 4, **kept[4], "best": None})
    reports, result = collect(resumed)
    assert [p.step for p in reports] == [5, 6] and [h["update"] for h in result["history"]] == list(range(1, 7))
    for k, v in straight.items():
        torch.testing.assert_close(result["state_dict"][k], v, rtol=0, atol=0)
    gen.close()


def test_train_tracking_keeps_its_run_on_disk_and_resume_tracking_finishes_it():
    cfg = PPOConfig(updates=6, **TINY)
    gen = train_tracking(Registry(), cfg, "SI", state_every=2)
    for p in gen:
        if p.step == 5:  # killed after update 5: the kept state is update 4's
            break
    runs = find_interrupted_runs("tracking")
    assert runs == []  # the process is alive: not interrupted yet
    folder = next((Registry().user_root / "tracking" / "runs").iterdir())
    assert TrainingRun.open(folder).last()["step"] == 4
    info = TrainingRun.open(folder).info
    TrainingRun(folder)._write_info({**info, "pid": 2**22 + 12345})  # as if its process had died
    runs = find_interrupted_runs("tracking")
    assert len(runs) == 1 and runs[0]["step"] == 4 and runs[0]["total_steps"] == 6
    assert runs[0]["best_step"] in (2, 4)  # validated at 2 and 4: the best agent is on disk too

    reports, result = collect(resume_tracking(Registry(), runs[0]["folder"]))
    assert [p.step for p in reports] == [5, 6]
    assert result["entry"].meta["resumed_from_update"] == 4
    assert [h["update"] for h in result["history"]] == [1, 2, 3, 4, 5, 6]
    assert [c["update"] for c in result["entry"].meta["validation_curve"]] == [2, 4, 6]
    assert find_interrupted_runs("tracking") == [] and not folder.exists()
    gen.close()


def test_a_run_on_the_users_own_episodes_keeps_its_best_but_cannot_be_continued():
    from napari_medseg.methods.tracking.ppo import synthetic_episodes

    gen = train_tracking(Registry(), PPOConfig(updates=4, **TINY), "SI", episodes=synthetic_episodes("SI", 0))
    for p in gen:
        if p.step == 2:
            break
    folder = next((Registry().user_root / "tracking" / "runs").iterdir())
    assert TrainingRun.open(folder).best()["step"] == 2
    with pytest.raises(InputError, match="cannot be continued"):
        resume_tracking(Registry(), folder)
    gen.close()  # Stop: saved as a version, the folder goes
    assert not folder.exists() and len(Registry().list("tracking")) >= 1


_CHILD = """
import torch
torch.set_num_threads(1)
from napari_medseg.core.registry import Registry
from napari_medseg.methods.tracking.model import train_tracking
from napari_medseg.methods.tracking.ppo import PPOConfig, train_tracker
cfg = PPOConfig(updates=40, episodes_per_batch=2, max_steps=6, update_epochs=1, val_episodes=2, eval_every=2)
for p in train_tracking(Registry(), cfg, "SI", state_every=3):
    print("UPDATE", p.step, flush=True)
"""


def test_kill_9_loses_at_most_state_every_updates_and_train_resume_finishes(tmp_path, medseg_home):
    """A real SIGKILL of a training process, then ``napari-medseg train tracking --resume``."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "NAPARI_MEDSEG_HOME": str(medseg_home)}, cwd=tmp_path)
    reported, t0 = 0, time.time()
    for line in proc.stdout:
        if line.startswith("UPDATE"):
            reported = int(line.split()[1])
        if reported >= 8 or time.time() - t0 > 240:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reported >= 8
    runs = find_interrupted_runs("tracking")
    assert len(runs) == 1 and runs[0]["settings"]["resumable"]
    assert runs[0]["step"] % 3 == 0 and 0 <= reported - runs[0]["step"] <= 3  # at most state_every lost
    assert runs[0]["best_step"] is not None and runs[0]["best_step"] >= 2

    proc_out = subprocess.run([sys.executable, "-m", "napari_medseg", "train", "tracking", "--resume"],
                              capture_output=True, text=True, env={**os.environ, "NAPARI_MEDSEG_HOME": str(medseg_home)},
                              cwd=tmp_path, timeout=600)
    assert proc_out.returncode == 0, proc_out.stderr
    assert f"resuming run {runs[0]['folder'].name} from update {runs[0]['step']} of 40" in proc_out.stdout
    entry = Registry().list("tracking")[-1]
    assert entry.meta["resumed_from_update"] == runs[0]["step"]
    assert entry.meta["config"]["updates"] == 40 and entry.meta["validation_curve"][-1]["update"] == 40
    assert find_interrupted_runs("tracking") == []


def test_a_run_killed_in_its_imitation_phase_resumes_with_its_data_set_exactly():
    """The DAgger data set is kept chunk by chunk; chunks that newer states have overwritten go."""
    cfg = PPOConfig(updates=7, imitation_updates=6, imitation_buffer=30, imitation_steps=2, imitation_batch=8,
                    **TINY)
    straight = train_tracking(Registry(), cfg, "SI", state_every=2)
    _, plain = collect(straight)
    gen = train_tracking(Registry(), cfg, "SI", state_every=2)
    for p in gen:
        if p.step == 5:  # killed after update 5: the kept state is update 4's
            break
    folder = max((Registry().user_root / "tracking" / "runs").iterdir())
    chunks = sorted((folder / "imitation").glob("*.pt"))
    total = int(TrainingRun.open(folder).last()["extra"]["buffer_total"])
    assert total > 30 and chunks and int(chunks[0].stem) > 0  # the oldest chunk, overwritten, is gone
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 4321})
    torch.manual_seed(7)  # a fresh process: another global RNG position
    reports, resumed = collect(resume_tracking(Registry(), folder))
    assert [p.step for p in reports] == [5, 6, 7]
    curve = {c["update"]: c for c in resumed["entry"].meta["validation_curve"]}
    want = {c["update"]: c for c in plain["entry"].meta["validation_curve"]}
    assert sorted(curve) == sorted(want) == [2, 4, 6, 7]
    for u in (6, 7):  # validated on the weights after the resumed imitation updates: the same to the bit
        same = {k: v for k, v in curve[u].items() if "minutes" not in k}
        assert same == {k: v for k, v in want[u].items() if "minutes" not in k} and len(same) >= 3
    assert not folder.exists()
    gen.close()
