"""The agent of Dai et al. 2019 (§3.2, Appendix A): a Beta-policy actor and an
asymmetric critic, two separate CNNs.

Hand-written (MONAI and torch have no PPO-Beta agent). The actor sees the actor
observation of :class:`~.env.TrackingEnv` (3 views × 4 timesteps = 12 channels, 11×11);
the critic also sees the centreline view (16 channels). The actor outputs two pairs
(α, β) = softplus(x) + 1 > 1, one unimodal Beta distribution per axis (y, x); samples
in [0, 1] map to displacements in [-4, 4] px with :func:`~.env.beta_to_displacement`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta

from .env import beta_to_displacement

from napari_medseg.core import nets

ARCH_NAME = "dai2019.BetaPolicy"
SAMPLE_EPS = 1e-6  # samples are clamped to [eps, 1 - eps] before log_prob


def _trunk(in_channels: int, view_size: int, hidden: int = 512) -> nn.Sequential:
    """Conv 5×5/32 (pad 2) → Conv 3×3/32 → Lin 512, ReLU between all hidden layers."""
    # Table 3/4 list the 2nd conv as 3×3, padding 1, output 13×13 and Linear in 5408 =
    # 32·13·13: inconsistent; we keep 13×13 / 5408 and use padding 2 (one number changed).
    flat = 32 * (view_size + 2) ** 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, stride=1, padding=2),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=1, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(flat, hidden),
        nn.ReLU(),
    )


class ActorNetwork(nn.Module):
    """Table 3: the policy network. Output (B, 2, 2): per axis (y, x) the (α, β) > 1."""

    def __init__(self, in_channels: int = 12, view_size: int = 11):
        super().__init__()
        self.trunk = _trunk(in_channels, view_size)
        self.head = nn.Linear(512, 4)
        nn.init.orthogonal_(self.head.weight, 0.01)  # start near Beta(1.69, 1.69): no drift
        nn.init.zeros_(self.head.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (F.softplus(self.head(self.trunk(obs)).float()) + 1.0).reshape(-1, 2, 2)  # fp32 under autocast


class CriticNetwork(nn.Module):
    """Table 4: the value network, asymmetric (it also sees the centreline view)."""

    def __init__(self, in_channels: int = 16, view_size: int = 11):
        super().__init__()
        self.trunk = _trunk(in_channels, view_size)
        self.head = nn.Linear(512, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs)).float().squeeze(-1)


class PolicyStep(NamedTuple):
    sample: torch.Tensor  # (B, 2) unscaled Beta sample in [eps, 1 - eps]; stored for PPO
    displacement: torch.Tensor  # (B, 2) px (dy, dx) in [-max, max], for env.step
    log_prob: torch.Tensor  # (B,) summed over the two axes
    entropy: torch.Tensor  # (B,) policy entropy, summed over the two axes


class BetaPolicy(nn.Module):
    """Actor + critic. ``act`` samples (training) or takes the Beta means (test time)."""

    def __init__(self, actor_channels: int = 12, critic_channels: int = 16, view_size: int = 11,
                 max_displacement: float = 4.0, agent_input: str = "image"):
        super().__init__()
        self.actor = ActorNetwork(actor_channels, view_size)
        self.critic = CriticNetwork(critic_channels, view_size)
        self.max_displacement = float(max_displacement)
        self.arch = {
            "name": ARCH_NAME,
            "kwargs": {
                "actor_channels": actor_channels,
                "critic_channels": critic_channels,
                "view_size": view_size,
                "max_displacement": float(max_displacement),
            },
        }
        self.set_agent_input(agent_input)

    @property
    def agent_input(self) -> str:
        """What its views are sampled from (:func:`~.prepare.agent_input`); travels with the
        checkpoint's architecture, so a version is always tracked with the input it learned on."""
        return self.arch["kwargs"].get("agent_input", "image")

    def set_agent_input(self, mode: str) -> None:
        """Train (or fine-tune) this agent on another input; "image" keeps the paper's arch record."""
        from .prepare import AGENT_INPUTS

        if mode not in AGENT_INPUTS:
            raise ValueError(f"agent_input must be one of {AGENT_INPUTS}, got {mode!r}")
        if mode == "image":
            self.arch["kwargs"].pop("agent_input", None)
        else:
            self.arch["kwargs"]["agent_input"] = mode

    def distribution(self, actor_obs: torch.Tensor) -> Beta:
        """Independent Beta distributions, batch shape (B, 2) (axes y, x)."""
        c = self.actor(actor_obs)
        return Beta(c[..., 0], c[..., 1], validate_args=False)  # softplus + 1 > 1 always; the checks cost ~8 % of a tracking step

    def act(self, actor_obs: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        dist = self.distribution(actor_obs)
        sample = dist.mean if deterministic else dist.sample()
        sample = sample.clamp(SAMPLE_EPS, 1.0 - SAMPLE_EPS)
        return PolicyStep(
            sample,
            beta_to_displacement(sample, self.max_displacement),
            dist.log_prob(sample).sum(-1),
            dist.entropy().sum(-1),
        )

    def steer(self, actor_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The test-time step: ``(displacement (B, 2), entropy (B,))`` of the Beta means,
        exactly as ``act(deterministic=True)`` gives them, without the log-probability
        (which only PPO needs)."""
        dist = self.distribution(actor_obs)
        sample = dist.mean.clamp(SAMPLE_EPS, 1.0 - SAMPLE_EPS)
        return beta_to_displacement(sample, self.max_displacement), dist.entropy().sum(-1)

    def evaluate(self, actor_obs: torch.Tensor, sample: torch.Tensor):
        """``(log_prob, entropy)`` (B,) of stored unscaled samples under the current policy."""
        dist = self.distribution(actor_obs)
        sample = sample.clamp(SAMPLE_EPS, 1.0 - SAMPLE_EPS)
        return dist.log_prob(sample).sum(-1), dist.entropy().sum(-1)

    def value(self, critic_obs: torch.Tensor) -> torch.Tensor:
        return self.critic(critic_obs)


@nets.register(ARCH_NAME)
def _build_policy(**kwargs) -> BetaPolicy:
    return BetaPolicy(**kwargs)
