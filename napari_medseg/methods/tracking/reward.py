"""The reward of Appendix B (Algorithm 1), batched over episodes."""

from __future__ import annotations

import torch

from .views import sample_segments


def step_reward(
    centreline_image: torch.Tensor,
    position: torch.Tensor,
    next_position: torch.Tensor,
    previous_action: torch.Tensor,
    reversals: torch.Tensor,
    n_samples: int = 100,
    still_threshold: float = 1e-3,
):
    """Reward for moving from ``position`` to ``next_position`` (B, 2).

    - Not moving (step shorter than ``still_threshold`` px): -1.
    - Otherwise the integral of the bilinearly resampled centreline image I_G
      (M, 1, H, W) along the straight step: the mean of ``n_samples`` samples times
      the step length. (A plain sum over a fixed number of samples would pay a tiny
      step as much as a long one.)
    - An action more than 90° from ``previous_action`` is a reversal; after an odd
      number of reversals the reward changes sign.

    Returns ``(reward (B,), reversals (B,))``.
    """
    action = next_position - position
    length = action.norm(dim=1)
    moved = length > still_threshold
    integral = sample_segments(centreline_image, position, next_position, n_samples).mean(1) * length
    cosine = (action * previous_action).sum(1) / (length * previous_action.norm(dim=1)).clamp_min(1e-12)
    reversal = moved & (cosine < -1e-6)  # exactly 90° is no reversal, despite rounding
    reversals = reversals + reversal.long()
    reward = torch.where(reversals % 2 == 1, -integral, integral)
    reward = torch.where(moved, reward, torch.full_like(reward, -1.0))
    return reward, reversals
