"""One fine-tuning round on corrected traces, judged before it counts (the dock's
**Fine-tune on corrected traces** and ``napari-medseg finetune``).

A fold of each image's corrected traces is held out; the current agent is scored on it
and on synthetic SI validation images (:func:`finetune.gate_score`); the agent is
fine-tuned on the remaining traces as a new version that is not made current; the new
version is scored the same way and becomes current only when it is not worse
(:func:`finetune.not_worse`). Otherwise it stays a version, and the note says so, with
the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_medseg.core.jobs import Progress
from napari_medseg.core.registry import Registry

from . import finetune
from .curves import arc_length
from .model import MODEL_NAME, policy_from_entry, train_tracking
from .ppo import PPOConfig
from .track import TrackConfig


def usable(traces: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The traces long enough to learn from (:data:`finetune.MIN_TRACE_PX`)."""
    return [p for p in traces if len(p) > 1 and arc_length(p)[-1] >= finetune.MIN_TRACE_PX]


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def finetune_round(registry: Registry, policy, images: Sequence[np.ndarray], traces: Sequence[Sequence[np.ndarray]],
                   config: PPOConfig, evaluate: TrackConfig, *, name: str = MODEL_NAME, env_config=None,
                   extra_meta: dict | None = None, seed: int = 0, report: dict | None = None):
    """Job generator: fine-tune ``policy`` on ``traces`` (one list per image) and gate the
    new version. Returns ``{"entry", "before", "after", "gate_before", "gate_after",
    "made_current", "held_out", "note", "train"}``: ``before``/``after`` are coverage and
    error on every usable trace, ``gate_*`` the held-out + synthetic scores that decide.
    When stopped during training, the best weights so far are saved as a version that is
    not current (the generator ends there); ``report``, if given, receives ``before`` and
    ``gate_before`` as soon as they are measured, so a stopped round can still be reported."""
    current = registry.get(name).version if name in registry.names() else 0
    splits = []
    for t in traces:
        train, held, held_out = finetune.split_heldout(usable(t))
        splits.append((train or list(t), held, held_out))

    def gate(p):
        return _mean([finetune.gate_score(p, img, held, evaluate) for img, (_t, held, _h) in zip(images, splits)
                      if held])

    def everything(p):
        return _mean([finetune.evaluate_traces(p, img, usable(t), evaluate) for img, t in zip(images, traces)
                      if usable(t)])

    yield Progress(0, config.updates, "measuring the model on your traces…", {})
    before, gate_before = everything(policy), gate(policy)
    if report is not None:
        report.update(before=before, gate_before=gate_before)
    episodes = finetune.trace_episodes(images, [tr for tr, _h, _o in splits], seed=seed)
    out = yield from train_tracking(registry, config.replace(val_episodes=episodes.n_traces), policy=policy,
                                    episodes=episodes, name=name, env_config=env_config, extra_meta=extra_meta,
                                    make_current=False)
    entry = out["entry"]
    new_policy = policy_from_entry(entry)[0]
    after, gate_after = everything(new_policy), gate(new_policy)
    made = finetune.not_worse(gate_after, gate_before)
    if made:
        registry.restore(entry.name, entry.version, source=entry.source)
    return {"entry": entry, "before": before, "after": after, "gate_before": gate_before, "gate_after": gate_after,
            "made_current": made, "held_out": all(h for _t, _held, h in splits), "train": out,
            "note": finetune.gate_note(entry.name, entry.version, current, gate_before, gate_after, made)}
