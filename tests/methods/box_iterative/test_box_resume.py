"""kill -9 during a box-supervised round: the round goes on from its last saved step (every
10 steps) when the same stage runs again from the same version on the same slides and boxes,
and ends with the weights the uninterrupted round has."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.jobs import Job, collect
from napari_medseg.core.registry import Registry
from napari_medseg.core.runstate import TrainingRun, find_interrupted_runs, interrupted_note
from napari_medseg.methods.box_iterative.stages import IterativeTraining, StageConfig
from napari_medseg.methods.box_iterative.synthetic import synthetic_kidney

STEPS = 16


@pytest.fixture(scope="module")
def slide():
    return synthetic_kidney((384, 384), 11, density=3.0)


def _session(root):
    torch.set_num_threads(2)
    reg = Registry(shipped_root=root / "none", user_root=root / "models")
    return IterativeTraining(reg, StageConfig(steps=STEPS, patch=96, batch_size=2, tile=384), workdir=root / "w")


def _kill_round(s, at_step: int):
    """Run the session's next Stage-1 round up to ``at_step``, then leave it as a kill -9
    would: suspended, never closed, its run's process gone. Returns the suspended generator."""
    gen = s.stage1(1)
    for p in gen:
        if p.message.startswith("stage 1: step") and p.step >= at_step:
            break
    [folder] = (s.registry.user_root / "glomeruli" / "runs").iterdir()
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 97})
    return gen


def test_a_killed_round_goes_on_from_step_10_and_ends_as_the_uninterrupted_round(tmp_path, slide):
    """Round 1, from a new model (a round from a saved version, with labels from Cues 1, is
    continued in the command-line test below)."""
    ref = _session(tmp_path / "ref")
    ref.set_stage1([slide.rgb], [slide.boxes])
    collect(ref.stage1(1))
    s = _session(tmp_path / "run")
    s.set_stage1([slide.rgb], [slide.boxes])
    killed = _kill_round(s, 13)
    [run] = find_interrupted_runs("glomeruli", s.registry.user_root)
    assert run["step"] == 10 and run["settings"]["box_round"]["start_version"] is None
    assert "from a new model" in interrupted_note("glomeruli", s.registry.user_root)
    # a new session (napari started again): the same slide and boxes
    again = _session(tmp_path / "run")
    again.set_stage1([slide.rgb], [slide.boxes])
    progress, _ = collect(again.stage1(1))
    assert any("continuing an interrupted round from step 10" in p.message for p in progress)
    assert min(p.step for p in progress if p.message.startswith("stage 1: step")) == 11  # steps 11-16 only
    want = ref.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in again.model.state_dict().items())
    assert find_interrupted_runs("glomeruli", again.registry.user_root) == []  # the run ended
    killed.close()


def test_another_round_leaves_a_killed_run_alone_and_a_stopped_round_keeps_no_run(tmp_path, slide):
    s = _session(tmp_path)
    s.set_stage1([slide.rgb], [slide.boxes])
    killed = _kill_round(s, 12)  # round 1, from a new model
    other = _session(tmp_path)
    other.set_stage1([slide.rgb], [slide.boxes[:-1]])  # one box fewer: other labels, another round
    progress, _ = collect(other.stage1(1))
    assert not any("continuing" in p.message for p in progress)
    [left] = find_interrupted_runs("glomeruli", s.registry.user_root)
    assert left["step"] == 10 and left["settings"]["box_round"]["start_version"] is None
    stopped = _session(tmp_path)
    stopped.set_stage1([slide.rgb], [slide.boxes[:-1]])
    job = Job(stopped.stage1(1))
    for i, _p in enumerate(job):
        if i == 3:
            job.stop()
    assert job.stopped
    runs = list((s.registry.user_root / "glomeruli" / "runs").iterdir())
    assert runs == [left["folder"]]  # the finished and the stopped rounds left nothing behind
    killed.close()
    assert np.asarray(s.slides[1][0].labels).any()


def test_cli_resume_continues_a_round_killed_by_sigkill(tmp_path, slide, monkeypatch, capsys):
    """``train box_iterative --image ... --boxes ... --resume`` after a real kill -9 in round 2:
    round 1 stays, round 2 goes on from its last saved step, both are in the history."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import tifffile

    from napari_medseg import cli

    home = tmp_path / "home"
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(home))
    tifffile.imwrite(tmp_path / "slide.tif", slide.rgb)
    (tmp_path / "boxes.csv").write_text("y0,x0,y1,x1\n" + "\n".join(",".join(map(str, b)) for b in slide.boxes))
    args = ["train", "box_iterative", "--image", str(tmp_path / "slide.tif"), "--boxes", str(tmp_path / "boxes.csv"),
            "--rounds1", "2", "--rounds2", "0", "--steps", "60", "--patch", "96", "--batch-size", "2", "--device", "cpu"]
    child = subprocess.Popen([sys.executable, "-c", "import sys, torch; torch.set_num_threads(1); "
                              "from napari_medseg import cli; sys.exit(cli.main(sys.argv[1:]))", *args],
                             env={**os.environ, "NAPARI_MEDSEG_HOME": str(home)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    runs, t0 = home / "models" / "glomeruli" / "runs", time.time()
    while time.time() - t0 < 240 and child.poll() is None:  # kill -9 once round 2 has a saved step
        if runs.is_dir():
            try:
                if any(TrainingRun.open(f).info["settings"]["box_round"]["start_version"] == 5
                       and (TrainingRun(f).last() or {}).get("step", 0) >= 10 for f in runs.iterdir()):
                    break  # round 2 (started from round 1's v5) has a saved step
            except Exception:  # noqa: BLE001 - a file being replaced as it is read: look again
                pass
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    [killed] = find_interrupted_runs("glomeruli")
    assert killed["settings"]["box_round"]["start_version"] == 5 and killed["step"] >= 10  # v1-v4 are shipped
    assert cli.main(args + ["--resume"]) == 0
    out, err = capsys.readouterr()
    assert f"Stage 1 goes on from v5; its killed round (saved at step {killed['step']})" in err
    assert f"continuing an interrupted round from step {killed['step']}" in err  # the round was claimed
    assert "stage 1 round 1: v5" in out and "stage 1 round 2: v6" in out  # round 1 is in the history again
    reg = Registry()
    v6 = reg.get("glomeruli", 6)
    assert (v6.meta["stage"], v6.meta["round"], v6.meta["parent_version"]) == (1, 2, 5)
    assert not (home / "models" / "glomeruli" / "v0007.pt").exists()
    assert find_interrupted_runs("glomeruli") == []
    # nothing killed now: --resume fine-tunes the current version with all the rounds asked for
    assert cli.main(args + ["--resume", "--steps", "4"]) == 0
    out, err = capsys.readouterr()
    assert "no killed round: fine-tuning the current version" in err
    assert [reg.get("glomeruli", v).meta["round"] for v in (7, 8)] == [1, 2]
    assert reg.get("glomeruli", 7).meta["parent_version"] in (5, 6) and reg.get("glomeruli", 8).meta["parent_version"] == 7


def test_a_round_that_fails_keeps_its_run_and_the_retry_goes_on_from_it(tmp_path, slide, monkeypatch):
    from napari_medseg.methods.box_iterative import sampling

    s = _session(tmp_path)
    s.set_stage1([slide.rgb], [slide.boxes])
    real_batch, calls = sampling.PatchSampler.batch, []

    def failing(self, n):
        calls.append(1)
        if len(calls) == 13:
            raise MemoryError("out of memory at step 13")
        return real_batch(self, n)

    monkeypatch.setattr(sampling.PatchSampler, "batch", failing)
    with pytest.raises(MemoryError):
        collect(s.stage1(1))
    [run] = find_interrupted_runs("glomeruli", s.registry.user_root)  # released, though this process lives
    assert run["step"] == 10
    progress, _ = collect(s.stage1(1))  # the retry, same session
    assert any("continuing an interrupted round from step 10" in p.message for p in progress)
    assert find_interrupted_runs("glomeruli", s.registry.user_root) == []
    assert [r.round for r in s.history] == [1]
