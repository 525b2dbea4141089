"""PPO training of the tracking agent (Dai et al. 2019, §3.2 and Appendix C).

Hand-written in the style of cleanrl's ``ppo_continuous_action`` (every hyperparameter
in :class:`PPOConfig`), with Beta policies, an asymmetric critic and whole episodes:
a batch is 32 episodes, each run to its end (far end reached, image edge) or to its
time limit (200 steps). GAE bootstraps from the critic on a time limit (truncation),
not on a real end (termination).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from napari_medseg.core import distributed
from napari_medseg.core.device import bf16_supported
from napari_medseg.core.errors import InputError, TrainingError
from napari_medseg.core.jobs import Progress
from napari_medseg.core.runstate import rng_state, set_rng_state

from .env import END_REACHED, MAX_STEPS, EnvConfig, TrackingEnv, check_agent_input
from .imitation import LabelBuffer, imitation_update
from .metrics import mean_metrics, trace_metrics
from .policy import BetaPolicy
from .synthetic import generate_many


@dataclass(frozen=True)
class PPOConfig:
    seed: int = 0
    updates: int = 500  # PPO updates, one batch of episodes each
    episodes_per_batch: int = 32  # M in Algorithm 2
    max_steps: int = 200  # N in Algorithm 2: the time limit of an episode
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    update_epochs: int = 10  # "each network is updated 10 times within PPO's internal loop"
    num_minibatches: int = 1  # 1: each of the 10 updates uses the whole batch
    learning_rate: float = 5e-4
    weight_decay: float = 3e-4  # Adam's L2 weight decay
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    norm_adv: bool = True
    reward_scale: float = 0.1  # rewards are px of centreline per step; scaled for the critic
    eval_every: int = 10  # deterministic validation (and save_best) every this many updates
    coverage_tie: float = 1.0  # validation coverages this close count as equal: then lower error wins
    val_episodes: int = 32
    device: str = "cpu"
    precision: str = "auto"  # "bf16": policy convs/linears in bfloat16 (auto: where the hardware has it)
    # not in the paper: the first ``imitation_updates`` updates imitate the centreline (DAgger,
    # tracking.imitation) instead of PPO; the expert acts with a probability that starts at
    # ``imitation_expert_start`` and decays by ``imitation_expert_decay`` per update
    imitation_updates: int = 0
    imitation_steps: int = 25  # actor minibatches per imitation update
    imitation_batch: int = 256
    imitation_buffer: int = 200_000  # labelled states kept (the newest)
    imitation_lookahead: float = 4.0  # px along the centreline the expert steps to
    imitation_expert_start: float = 0.5
    imitation_expert_decay: float = 0.97
    imitation_mean_weight: float = 50.0
    # not in the paper: this share of the imitation episodes starts 2-7 px beside its fibre, at a
    # random point along it (tracking.imitation.recovery_starts), to learn the way back onto it
    imitation_recovery: float = 0.0
    # not in the paper: every imitation minibatch pair turned by a multiple of 90° or mirrored at
    # random (tracking.symmetry.augment), so that the agent's step turns with the image
    imitation_symmetries: bool = False

    def replace(self, **changes) -> "PPOConfig":
        return dataclasses.replace(self, **changes)


def policy_precision(config: "PPOConfig") -> contextlib.AbstractContextManager:
    """The autocast context every policy forward pass runs in (rollouts and updates alike,
    so that the stored log-probs and the first PPO epoch agree exactly)."""
    device = torch.device(config.device)
    if config.precision == "fp32" or (config.precision == "auto" and not bf16_supported(device)):
        return contextlib.nullcontext()
    if config.precision not in ("auto", "bf16"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', not {config.precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


class Rollout(NamedTuple):
    """One batch of episodes, time-major (T, B, ...); ``valid`` marks real transitions."""

    actor_obs: torch.Tensor
    critic_obs: torch.Tensor
    samples: torch.Tensor  # unscaled Beta samples in [0, 1]
    log_probs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor  # V(s_t)
    next_values: torch.Tensor  # V(s_{t+1}), the final observation at an episode's end
    rewards: torch.Tensor
    valid: torch.Tensor  # the episode was running before step t
    terminated: torch.Tensor  # ended at step t by a real end: no bootstrap
    ended: torch.Tensor  # ended at step t (terminated or truncated)
    stop_reason: torch.Tensor  # (B,)
    traces: list


class Transitions(NamedTuple):
    """Flattened valid transitions with their advantages: what a PPO update sees."""

    actor_obs: torch.Tensor
    critic_obs: torch.Tensor
    samples: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


@torch.no_grad()
def collect_rollout(policy: BetaPolicy, env: TrackingEnv, images, centrelines, deterministic: bool = False,
                    precision: contextlib.AbstractContextManager | None = None) -> Rollout:
    """Run every episode of the batch to its end, all episodes stepping together.
    ``precision``: the autocast context of the policy's forward passes (default fp32)."""
    precision = precision or contextlib.nullcontext()
    check_agent_input(policy, env)
    obs = env.reset(images, centrelines)
    keys = ("actor_obs", "critic_obs", "samples", "log_probs", "entropy", "rewards", "valid", "terminated", "ended")
    buf: dict[str, list] = {k: [] for k in keys}
    with precision:
        values = [policy.value(obs.critic)]
    while not bool(env.done.all()):
        with precision:
            step = policy.act(obs.actor, deterministic)
        out = env.step(step.displacement)
        ended = out.stepped & out.done
        for k, v in zip(keys, (obs.actor, obs.critic, step.sample, step.log_prob, step.entropy, out.reward,
                               out.stepped, ended & (out.stop_reason != MAX_STEPS), ended)):
            buf[k].append(v)
        obs = out.observation
        with precision:
            values.append(policy.value(obs.critic))
    v = torch.stack(values)
    return Rollout(**{k: torch.stack(b) for k, b in buf.items()}, values=v[:-1], next_values=v[1:],
                   stop_reason=env.stop_reason.clone(), traces=env.traces())


def compute_gae(rewards, values, next_values, terminated, ended, gamma: float = 0.99, lam: float = 0.95):
    """Generalised advantage estimation over (T, B) tensors; returns (advantages, returns).

    ``next_values[t]`` is V(s_{t+1}). At a termination the next value is 0; at a
    truncation (time limit) it is bootstrapped. Either way the trace stops at ``ended``.
    """
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * (~terminated[t]).float() - values[t]
        last = delta + gamma * lam * (~ended[t]).float() * last
        adv[t] = last
    return adv, adv + values


def rollout_transitions(r: Rollout, config: PPOConfig) -> Transitions:
    adv, ret = compute_gae(r.rewards * config.reward_scale, r.values, r.next_values, r.terminated, r.ended,
                           config.gamma, config.gae_lambda)
    m = r.valid
    return Transitions(r.actor_obs[m], r.critic_obs[m], r.samples[m], r.log_probs[m], r.values[m], adv[m], ret[m])


def ppo_loss(policy: BetaPolicy, b: Transitions, config: PPOConfig):
    """The clipped surrogate + value loss (cleanrl). Returns (loss, stats of floats)."""
    log_prob, entropy = policy.evaluate(b.actor_obs, b.samples)
    value = policy.value(b.critic_obs)
    log_ratio = log_prob - b.log_probs
    ratio = log_ratio.exp()
    adv = b.advantages
    if config.norm_adv and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_unclipped = -adv * ratio
    pg_loss = torch.max(pg_unclipped, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
    v_loss = 0.5 * ((value - b.returns) ** 2).mean()
    loss = pg_loss - config.ent_coef * entropy.mean() + config.vf_coef * v_loss
    with torch.no_grad():
        stats = {
            "pg_loss": float(pg_loss), "pg_loss_unclipped": float(pg_unclipped.mean()), "v_loss": float(v_loss),
            "ratio": float(ratio.mean()), "approx_kl": float(((ratio - 1) - log_ratio).mean()),
            "clipfrac": float(((ratio - 1).abs() > config.clip_coef).float().mean()),
        }
    return loss, stats


def ppo_update(policy: BetaPolicy, optimizer, b: Transitions, config: PPOConfig, generator=None) -> dict:
    """``update_epochs`` passes over the batch in ``num_minibatches`` shuffled minibatches."""
    n = b.samples.shape[0]
    size = max(1, math.ceil(n / config.num_minibatches))
    ranks = distributed.active()
    if ranks and n < config.num_minibatches:
        raise TrainingError(f"A rank collected {n} transitions, fewer than the {config.num_minibatches} minibatches "
                            "every rank must step through together; use more episodes per batch.")
    stats: dict = {}
    for _ in range(config.update_epochs):
        order = torch.randperm(n, generator=generator).to(b.samples.device)
        # under torchrun every rank takes exactly num_minibatches steps (their batch sizes differ)
        chunks = order.tensor_split(config.num_minibatches) if ranks else order.split(size)
        for idx in chunks:
            with policy_precision(config):
                loss, stats = ppo_loss(policy, Transitions(*(t[idx] for t in b)), config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(policy)  # the ranks' mean gradient (nothing on one process)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
    return stats


def is_better(coverage: float, error: float, best: dict, tie: float) -> bool:
    """Coverage first, then accuracy: among validations whose coverage is within ``tie``
    points of the highest seen, the lowest error wins (a 0.3-point coverage gain is not
    worth a 0.2-px error loss)."""
    top = max(best["max_coverage"], coverage)
    if coverage < top - tie:
        return False
    return best["coverage"] < top - tie or error < best["error"]


def synthetic_episodes(setting="SI", seed: int = 0) -> Callable[[int, int], tuple]:
    """``episodes(index, n) -> (images (n, H, W), centrelines)``: fresh, seeded images for
    training batch ``index`` >= 0; ``index`` -1 is the validation set (its own seeds)."""

    def episodes(index: int, n: int):
        key = [seed, 1] if index < 0 else [seed, 0, index]
        batch_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        imgs = generate_many(setting, n, seed=batch_seed)
        return np.stack([r.image for r in imgs]), [r.centreline for r in imgs]

    return episodes


def rollout_metrics(r: Rollout, centrelines) -> dict:
    """Mean episode return (unscaled), length, coverage and error of a batch of episodes."""
    ent = r.entropy.float().cpu().numpy()
    rows = [trace_metrics(t, c, entropy=ent[: len(t) - 1, i]) for i, (t, c) in enumerate(zip(r.traces, centrelines))]
    valid = r.valid.float()
    return {
        "mean_reward": float(r.rewards.sum(0).mean()),
        **{k: v for k, v in mean_metrics(rows).items() if k in ("coverage_pct", "error_px", "entropy_within", "entropy_outside")},
        "episode_length": float(valid.sum(0).mean()),
        "end_reached_pct": 100.0 * float((r.stop_reason == END_REACHED).float().mean()),
        "entropy": float((r.entropy * valid).sum() / valid.sum().clamp_min(1)),
    }


def train_tracker(config: PPOConfig | None = None, setting="SI", *, env_config: EnvConfig | None = None,
                  policy: BetaPolicy | None = None, episodes: Callable[[int, int], tuple] | None = None,
                  save_best: Callable[[dict, dict, int], None] | None = None, record: dict | None = None,
                  keep_state: Callable[[int, dict], None] | None = None, state_every: int = 10,
                  resume: dict | None = None):
    """Train (or, given ``policy``, fine-tune) the agent; yield :class:`Progress` every update.

    ``episodes(index, n)`` gives the images and centrelines of batch ``index`` (default:
    the synthetic ``setting``, seeded by ``config.seed``; -1 is the validation set).
    ``save_best(state, metrics, step)`` is called when the deterministic validation
    coverage improves. Returns ``{"state_dict", "best_state_dict", "best_metrics",
    "best_step", "history"}``; ``record`` (a dict), if given, holds the same keys at all
    times, so a caller that stops the generator still has them.

    Resuming after a kill: ``keep_state(update, state)`` receives, before the first update
    and after every ``state_every``-th (once its report has been taken), what continuing
    needs: ``{"model", "optimizer", "rng", "history", "max_coverage"}`` (weights-only
    loadable). ``resume={"update", **that state, "best": {"state", "metrics", "step"} or
    None}`` continues from the update after ``update``. Batches are a function of their
    index, so a resumed run repeats an uninterrupted one exactly (CPU). The imitation
    phase's aggregated data set comes in each state as ``buffer_chunks``, the states added
    since the previous one (with ``buffer_total``, the count ever added): the caller keeps
    them (see ``methods.tracking.model``), and ``resume["buffer_chunks"]``, every chunk not
    yet overwritten in order, rebuilds the data set as it was.
    """
    torch.set_flush_denormal(True)  # otherwise updates slow down ~6x after a few minutes
    config = config or PPOConfig()
    if not 0.0 <= config.imitation_recovery <= 1.0:
        raise InputError(f"The share of recovery starts (--recovery) is a fraction of the imitation episodes, "
                         f"between 0 and 1; got {config.imitation_recovery}.")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    env_config = env_config or EnvConfig(max_steps=config.max_steps)
    h = env_config.history
    policy = policy or BetaPolicy(3 * h, 4 * h, env_config.view_size, env_config.max_displacement,
                                  env_config.agent_input)
    env_config = dataclasses.replace(env_config, agent_input=policy.agent_input)  # it learns on its own input
    policy.to(device).train()
    # under torchrun: rank 0's weights everywhere, each rank its own actions and episodes
    rank, world = distributed.rank(), distributed.world_size()
    if world > 1:
        distributed.broadcast_weights(policy)
        torch.manual_seed(distributed.rank_seed(config.seed))
        save_best = save_best if rank == 0 else None
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    env = TrackingEnv(env_config, device)
    episodes = episodes or synthetic_episodes(setting, config.seed)
    val_images, val_lines = episodes(-1, config.val_episodes) if config.eval_every > 0 else (None, None)
    best = {"coverage": -math.inf, "error": math.inf, "max_coverage": -math.inf, "metrics": {}, "step": 0,
            "state": None}
    history: list[dict] = []
    update = 0
    record = {} if record is None else record
    # the imitation data set is journalled, so that a kept state can rebuild it (rank 0 keeps states)
    buffer = LabelBuffer(config.imitation_buffer, journal=keep_state is not None and config.imitation_updates > 0)
    recovery_rng = np.random.default_rng([config.seed, rank, 1])  # the recovery starts' draws
    first = 1
    if resume is not None:
        first = _restore(resume, policy, optimizer, best, history, recovery_rng, restore_rng=rank == 0)
        if rank == 0 and resume.get("buffer_chunks"):
            buffer.replay(resume["buffer_chunks"])
            buffer.take_journal()  # on disk already

    def snapshot(at: int) -> None:
        if keep_state is not None:
            keep_state(at, {"model": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
                            "optimizer": copy.deepcopy(optimizer.state_dict()), "rng": rng_state(recovery_rng),
                            "history": json.dumps(history), "max_coverage": float(best["max_coverage"]),
                            "buffer_total": buffer.total, "buffer_chunks": buffer.take_journal()})

    def result() -> dict:
        record.update(state_dict=copy.deepcopy(policy.state_dict()), best_state_dict=best["state"],
                      best_metrics=best["metrics"], best_step=best["step"], history=history)
        return record

    def validate_and_keep(at: int) -> dict:
        r = collect_rollout(policy, env, val_images, val_lines, deterministic=True, precision=policy_precision(config))
        m = {f"val_{k}": v for k, v in rollout_metrics(r, val_lines).items()}
        cov, err = m["val_coverage_pct"], m["val_error_px"] if math.isfinite(m["val_error_px"]) else math.inf
        if is_better(cov, err, best, config.coverage_tie):
            best.update(coverage=cov, error=err, metrics=m, step=at, state=copy.deepcopy(policy.state_dict()))
        best["max_coverage"] = max(best["max_coverage"], cov)
        if best["step"] == at and save_best is not None:
            save_best(best["state"], m, at)
        return m

    t0 = time.perf_counter()
    if first == 1:
        snapshot(0)  # a run killed before its first saved update continues from its initial weights
    try:
        for update in range(first, config.updates + 1):
            # batch b's episodes on one process; under torchrun rank r takes batch b * world + r
            images, lines = episodes((update - 1) * world + rank, config.episodes_per_batch)
            if update <= config.imitation_updates:
                metrics = imitation_update(
                    policy, optimizer, env, images, lines, buffer, steps=config.imitation_steps,
                    expert_fraction=config.imitation_expert_start * config.imitation_expert_decay ** (update - 1),
                    batch=config.imitation_batch, lookahead=config.imitation_lookahead,
                    mean_weight=config.imitation_mean_weight, max_grad_norm=config.max_grad_norm,
                    precision=policy_precision(config), recovery=config.imitation_recovery, rng=recovery_rng,
                    symmetries=config.imitation_symmetries)
            else:
                rollout = collect_rollout(policy, env, images, lines, precision=policy_precision(config))
                metrics = rollout_metrics(rollout, lines)
                metrics.update(ppo_update(policy, optimizer, rollout_transitions(rollout, config), config))
                metrics["transitions"] = float(rollout.valid.sum())
            metrics = distributed.mean_metrics(metrics)  # validation below is the same on every rank
            metrics["updates_per_min"] = 60.0 * (update - first + 1) / (time.perf_counter() - t0)
            if val_images is not None and (update % config.eval_every == 0 or update == config.updates):
                metrics.update(validate_and_keep(update))
            history.append({"update": update, **metrics})
            msg = f"update {update}/{config.updates}: coverage {metrics['coverage_pct']:.1f} %"
            yield Progress(update, config.updates, msg, metrics)
            if update % state_every == 0 and update < config.updates:
                snapshot(update)
    finally:
        # stopped before the first validation: still keep what was learned
        if best["state"] is None and update > 0 and val_images is not None and history:
            validate_and_keep(update)
        policy.eval()
        result()
    return dict(record)


def _restore(resume: dict, policy, optimizer, best: dict, history: list, data_rng, restore_rng: bool) -> int:
    """Load a kept state (see :func:`train_tracker`) into a fresh run; the first update to run."""
    policy.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    history[:] = json.loads(resume["history"])
    best["max_coverage"] = float(resume["max_coverage"])
    kept = resume.get("best")
    if kept is not None:
        m = dict(kept["metrics"])
        best.update(coverage=float(m.get("val_coverage_pct", -math.inf)), error=float(m.get("val_error_px", math.inf)),
                    metrics=m, step=int(kept["step"]), state=kept["state"])
    if restore_rng:  # under torchrun the other ranks draw from their own seeds
        set_rng_state(resume["rng"], data_rng)
    return int(resume["update"]) + 1
