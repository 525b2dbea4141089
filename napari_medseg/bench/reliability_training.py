"""kill -9 during training: how many steps does it cost, and does ``--resume`` finish the run?

A child process trains the tissue model (the real trainer, on small synthetic slides
so it takes seconds) and prints each step; it is killed with SIGKILL a few steps past
a checkpoint boundary. Steps lost = the last step it reported - the step held by the
run's ``last.pt``. The run is then continued in this process to its last step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SMALL = {"patch": 48, "batch_size": 2, "slide_size": 192, "lr": 2e-3}

_CHILD = """
import sys, torch
torch.set_num_threads(1)
from napari_medseg.core.registry import Registry
from napari_medseg.methods.tissue.model import train_tissue
gen = train_tissue(Registry(), steps={steps}, run_every={every}, **{small})
for p in gen:
    print("STEP", p.step, flush=True)
"""


def kill_training(work: Path, every: int = 10, steps: int = 40, kill_after: int | None = None,
                  resume: bool = True) -> dict:
    """Train, kill -9 at step ``kill_after`` (default: 2 × every + every // 2), resume; report."""
    from ..core.registry import Registry
    from ..core.runstate import find_interrupted_runs
    from ..methods.tissue.model import MODEL_NAME, resume_settings, train_tissue

    kill_after = kill_after or 2 * every + every // 2
    code = _CHILD.format(steps=steps, every=every, small=repr(SMALL))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=os.environ.copy(), cwd=work)
    reported, t0 = 0, time.time()
    for line in proc.stdout:
        if line.startswith("STEP"):
            reported = int(line.split()[1])
        if reported >= kill_after or time.time() - t0 > 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runs = find_interrupted_runs(MODEL_NAME)
    saved = runs[0]["step"] if runs else 0
    out = {"every": every, "killed_at_step": reported, "saved_step": saved, "steps_lost": reported - saved,
           "best_step_on_disk": runs[0]["best_step"] if runs else None, "resumed_to": None}
    if runs and resume:
        settings = resume_settings(runs[0])
        versions_before = len(Registry().list(MODEL_NAME))
        gen = train_tissue(Registry(), resume_run=runs[0]["folder"], **settings)
        steps_seen = [p.step for p in gen]
        out["resumed_from"] = steps_seen[0] if steps_seen else None
        out["resumed_to"] = steps_seen[-1] if steps_seen else None
        out["new_versions"] = len(Registry().list(MODEL_NAME)) - versions_before
        out["interrupted_after_resume"] = len(find_interrupted_runs(MODEL_NAME))
    return out
