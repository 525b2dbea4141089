"""Fine-tuning on user-corrected traces (Dai et al. 2019, §4.4), and its k-fold protocol.

A corrected trace becomes the ground-truth centreline of an episode on the real
image: it gives the reward (Appendix B) and the critic's centreline view, exactly as
the synthetic centrelines do. Episodes run on crops around each trace (the trace plus
a margin), start from either end at random, and are augmented with flips and
90° rotations. The paper fine-tunes on a few labelled microscopy images and tests on
the rest (k-fold); :func:`kfold_finetune` does the same over the traces given.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Sequence

import numpy as np

from napari_medseg.core.errors import InputError

from .curves import arc_length
from .metrics import mean_metrics, trace_metrics
from .policy import BetaPolicy
from .ppo import PPOConfig, train_tracker
from .track import TrackConfig, track

MIN_TRACE_PX = 12.0  # shorter corrections teach nothing about following a structure


def _crop(image: np.ndarray, line: np.ndarray, margin: int):
    lo = np.maximum(np.floor(line.min(0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(line.max(0)).astype(int) + margin + 1, image.shape)
    return image[lo[0] : hi[0], lo[1] : hi[1]], line - lo


def _augment(img: np.ndarray, line: np.ndarray, k: int, flip: bool, reverse: bool):
    if reverse:
        line = line[::-1]
    if flip:
        img, line = img[:, ::-1], np.stack([line[:, 0], img.shape[1] - 1 - line[:, 1]], 1)
    for _ in range(k):  # 90° anticlockwise: (y, x) -> (W - 1 - x, y)
        img, line = np.rot90(img), np.stack([img.shape[1] - 1 - line[:, 1], line[:, 0]], 1)
    return np.ascontiguousarray(img), line


def _resample(line: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    s = arc_length(line)
    t = np.arange(0.0, s[-1] + 1e-9, spacing)
    return np.stack([np.interp(t, s, line[:, 0]), np.interp(t, s, line[:, 1])], 1)


def trace_episodes(images: Sequence[np.ndarray], traces: Sequence[Sequence[np.ndarray]], seed: int = 0,
                   margin: int = 24, val_fraction: float = 0.0):
    """``episodes(index, n)`` for :func:`~.ppo.train_tracker` from corrected traces.

    ``images[i]``: a prepared (H, W) image; ``traces[i]``: its corrected traces (N, 2).
    Index -1 (validation) returns every trace once, unaugmented.
    """
    items = []
    for img, lines in zip(images, traces):
        for line in lines:
            line = np.asarray(line, np.float64)
            if len(line) < 2 or arc_length(line)[-1] < MIN_TRACE_PX:
                continue
            items.append(_crop(np.asarray(img, np.float32), _resample(line), margin))
    if not items:
        raise InputError(f"No corrected trace to learn from: each needs at least {MIN_TRACE_PX:.0f} px of length.")

    def pad(batch):
        h = max(b[0].shape[0] for b in batch)
        w = max(b[0].shape[1] for b in batch)
        out = np.zeros((len(batch), h, w), np.float32)
        for i, (im, _) in enumerate(batch):
            out[i, : im.shape[0], : im.shape[1]] = im
        return out, [b[1] for b in batch]

    def episodes(index: int, n: int):
        if index < 0:
            return pad(items)
        rng = np.random.default_rng([seed, index])
        pick = rng.integers(len(items), size=n)
        return pad([_augment(*items[j], int(rng.integers(4)), bool(rng.integers(2)), bool(rng.integers(2)))
                    for j in pick])

    episodes.n_traces = len(items)
    return episodes


def finetune_config(updates: int = 20, **changes) -> PPOConfig:
    """PPO settings for fine-tuning: the paper's, fewer updates, validation every 5."""
    return PPOConfig(**{"updates": updates, "eval_every": 5, **changes})


def finetune_on_traces(policy: BetaPolicy, images, traces, config: PPOConfig | None = None, seed: int = 0):
    """Job generator: fine-tune ``policy`` on corrected traces (see :func:`trace_episodes`).
    Returns train_tracker's result dict."""
    config = config or finetune_config(seed=seed)
    episodes = trace_episodes(images, traces, seed=seed)
    result = yield from train_tracker(config.replace(val_episodes=episodes.n_traces), policy=policy,
                                      episodes=episodes)
    if result["best_state_dict"] is not None:  # keep the best round, not the last
        policy.load_state_dict(result["best_state_dict"])
    return result


def evaluate_traces(policy: BetaPolicy, image: np.ndarray, truths: Sequence[np.ndarray],
                    config: TrackConfig | None = None) -> dict:
    """Track from each true trace's first point towards its last; mean coverage/error."""
    truths = [np.asarray(t, np.float64) for t in truths]
    starts = np.stack([t[0] for t in truths])
    ends = np.stack([t[-1] for t in truths])
    config = config or TrackConfig(check_starts=False, max_steps=max(200, int(max(arc_length(t)[-1] for t in truths))))
    # the agent alone, one way from each start (no trace from the end to join): this scores a model
    found = track(image, starts, ends, policy=policy, config=dataclasses.replace(config, both_ways=False))
    return mean_metrics([trace_metrics(f.points, t, f.entropy) for f, t in zip(found, truths)])


def kfold_finetune(policy_factory, images, traces, k: int = 5, config: PPOConfig | None = None, seed: int = 0):
    """The paper's protocol: split the (image, trace) pairs into ``k`` folds; for each,
    fine-tune a fresh copy of the agent on the other folds and test before/after on it.
    Job generator; returns ``{"folds": [...], "before": {...}, "after": {...}}``."""
    pairs = [(i, np.asarray(t)) for i, lines in enumerate(traces) for t in lines]
    if len(pairs) < k or k < 2:
        raise InputError(f"k-fold needs k >= 2 and at least k traces; got k={k} and {len(pairs)} traces.")
    order = np.random.default_rng(seed).permutation(len(pairs))
    folds = np.array_split(order, k)
    rows = []
    for f, test_idx in enumerate(folds):
        train, held = [[] for _ in images], set(test_idx.tolist())
        for j in order:
            if j not in held:
                train[pairs[j][0]].append(pairs[j][1])
        policy = policy_factory()
        before = _eval_fold(policy, images, [pairs[j] for j in test_idx])
        yield from finetune_on_traces(policy, images, train, config, seed=seed + f)
        after = _eval_fold(policy, images, [pairs[j] for j in test_idx])
        rows.append({"fold": f, "n_test": len(test_idx), "before": before, "after": after})
    mean = {w: mean_metrics([r[w] for r in rows]) for w in ("before", "after")}
    return {"folds": rows, **mean}


def _eval_fold(policy, images, pairs) -> dict:
    rows = []
    for i in sorted({p[0] for p in pairs}):
        rows.append(evaluate_traces(policy, images[i], [t for j, t in pairs if j == i]))
    return mean_metrics(rows)


# ------------------------------------------------------- never worse silently
GATE_SYNTHETIC_SEED = 4242  # synthetic validation images for the gate (not the bench's seed)
GATE_SYNTHETIC_N = 16


def split_heldout(truths: Sequence[np.ndarray], every: int = 5) -> tuple[list, list, bool]:
    """``(train, held, held_out)``: every ``every``-th corrected trace is held out of
    training to judge the round; with a single trace it is used for both (``held_out``
    False), and the synthetic validation carries the judgement."""
    truths = list(truths)
    if len(truths) < 2:
        return truths, truths, False
    held = truths[::every] if len(truths) >= every else truths[:1]
    train = [t for t in truths if not any(t is h for h in held)]
    return train, held, True


def gate_score(policy: BetaPolicy, image: np.ndarray, held: Sequence[np.ndarray], config: TrackConfig) -> dict:
    """Coverage and error on the held-out traces and on synthetic SI validation images."""
    from .synthetic import generate_many

    real = evaluate_traces(policy, image, held, config)
    syn = generate_many("SI", GATE_SYNTHETIC_N, seed=GATE_SYNTHETIC_SEED)
    found = track(np.stack([r.image for r in syn]), np.stack([r.start for r in syn]), np.stack([r.end for r in syn]),
                  policy=policy, config=TrackConfig(check_starts=False, both_ways=False))
    synth = mean_metrics([trace_metrics(f.points, r.centreline) for f, r in zip(found, syn)])
    return {"heldout_coverage_pct": real["coverage_pct"], "heldout_error_px": real["error_px"],
            "synthetic_coverage_pct": synth["coverage_pct"], "synthetic_error_px": synth["error_px"],
            "score": 0.5 * (real["coverage_pct"] + synth["coverage_pct"])}


def not_worse(after: dict, before: dict, tie: float = 0.5) -> bool:
    """The new version's mean coverage (held-out + synthetic) is at least the current's, within
    ``tie`` points; on a tie, its held-out error must not be larger."""
    if after["score"] < before["score"] - tie:
        return False
    if after["score"] > before["score"] + tie:
        return True
    return not (after["heldout_error_px"] > before["heldout_error_px"] + 1e-9)


def gate_note(name: str, new_version: int, current_version: int, before: dict, after: dict, made: bool) -> str:
    b, a = before, after
    nums = (f"held-out coverage {b['heldout_coverage_pct']:.1f} → {a['heldout_coverage_pct']:.1f} %, error "
            f"{b['heldout_error_px']:.2f} → {a['heldout_error_px']:.2f} px; synthetic coverage "
            f"{b['synthetic_coverage_pct']:.1f} → {a['synthetic_coverage_pct']:.1f} %")
    if made:
        return f"v{new_version} is current ({nums})."
    return (f"v{new_version} was kept but not made current: it validates worse than v{current_version} ({nums}). "
            f"To use it anyway: napari-medseg models restore {name} {new_version}")

