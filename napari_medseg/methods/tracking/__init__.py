"""Deep-RL subpixel axon tracking (Dai et al. 2019): the synthetic environment.

- ``synthetic``: seeded synthetic axon images, settings SI, SI-RC, SI-W, SI-EN, SI-SN
  and ``crossing``.
- ``curves``: constrained random walks, polynomial splines, centreline images.
- ``views``: egocentric bilinear views with ``grid_sample``.
- ``reward``: the reward of Appendix B.
- ``env``: the batched environment (torch, on any device).
- ``policy``: the Beta actor and the asymmetric critic (Appendix A).
- ``ppo``: PPO with GAE and the ``train_tracker`` progress generator.
- ``metrics``: coverage, error (footnote 11) and entropy near/far from the centreline.
"""

from .env import EnvConfig, Observation, StepResult, TrackingEnv, beta_to_displacement
from .metrics import coverage, trace_metrics
from .policy import ActorNetwork, BetaPolicy, CriticNetwork, PolicyStep
from .ppo import PPOConfig, collect_rollout, compute_gae, train_tracker
from .synthetic import SETTINGS, SyntheticAxonImage, SyntheticSettings, generate, generate_many, settings

__all__ = [
    "ActorNetwork",
    "BetaPolicy",
    "CriticNetwork",
    "PPOConfig",
    "PolicyStep",
    "collect_rollout",
    "compute_gae",
    "coverage",
    "trace_metrics",
    "train_tracker",
    "EnvConfig",
    "Observation",
    "SETTINGS",
    "StepResult",
    "SyntheticAxonImage",
    "SyntheticSettings",
    "TrackingEnv",
    "beta_to_displacement",
    "generate",
    "generate_many",
    "settings",
]
