"""Deep-RL subpixel axon tracking (Dai et al. 2019): the synthetic environment.

- ``synthetic``: seeded synthetic axon images, settings SI, SI-RC, SI-W, SI-EN, SI-SN
  and ``crossing``.
- ``curves``: constrained random walks, polynomial splines, centreline images.
- ``views``: egocentric bilinear views with ``grid_sample``.
- ``reward``: the reward of Appendix B.
- ``env``: the batched environment (torch, on any device).
"""

from .env import EnvConfig, Observation, StepResult, TrackingEnv, beta_to_displacement
from .synthetic import SETTINGS, SyntheticAxonImage, SyntheticSettings, generate, generate_many, settings

__all__ = [
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
