"""Steps averaged over the pixel grid's symmetries (issue 15; not in the paper).

The agent's views are square and axis-aligned, centred on its position, and its action is a
displacement (dy, dx). Turning the views by a multiple of 90° or mirroring them is a
symmetry of the task: the fibre is the same fibre, and the right step turns or mirrors with
it. The training images are drawn at every orientation, so a well-trained agent is close
to equivariant; where it is not, its step depends on how the image happens to lie, and two
versions of the same agent can disagree at the same junction. ``steer(policy, obs, k)``
gives the agent the views under the first ``k`` of the eight symmetries of the square in
one batch, maps each step back and averages them (the entropy too: it does not change
under the symmetries). ``k = 1`` is the agent alone.
"""

from __future__ import annotations

import torch

# (transpose, flip rows, flip columns); the first two are the identity and the transpose
# (a mirror about the diagonal), the first four a group of their own (Klein four-group).
SYMMETRIES = ((False, False, False), (True, False, False), (False, True, True), (True, True, True),
              (False, True, False), (False, False, True), (True, True, False), (True, False, True))
CHOICES = (1, 2, 4, 8)


def check_k(k: int) -> int:
    if k not in CHOICES:
        raise ValueError(f"symmetries must be one of {CHOICES}, got {k!r}")
    return k


def apply(views: torch.Tensor, transpose: bool, flip_y: bool, flip_x: bool) -> torch.Tensor:
    """(B, C, S, S) views under one symmetry: transpose first, then the flips."""
    if transpose:
        views = views.transpose(-1, -2)
    dims = [d for d, f in ((-2, flip_y), (-1, flip_x)) if f]
    return views.flip(dims) if dims else views


def back(d: torch.Tensor, transpose: bool, flip_y: bool, flip_x: bool) -> torch.Tensor:
    """A displacement (B, 2) (dy, dx) in a transformed frame, in the original frame."""
    d = d * torch.tensor([-1.0 if flip_y else 1.0, -1.0 if flip_x else 1.0], dtype=d.dtype, device=d.device)
    return d.flip(-1) if transpose else d


def steer(policy, views: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(displacement (B, 2), entropy (B,))``: ``policy.steer`` averaged over ``k`` symmetries."""
    if check_k(k) == 1:
        return policy.steer(views)
    b = views.shape[0]
    syms = SYMMETRIES[:k]
    d, e = policy.steer(torch.cat([apply(views, *s) for s in syms]))
    d = torch.stack([back(d[i * b:(i + 1) * b], *s) for i, s in enumerate(syms)])
    return d.mean(0), e.reshape(k, b).mean(0)


def forward(d: torch.Tensor, transpose: bool, flip_y: bool, flip_x: bool) -> torch.Tensor:
    """A displacement (B, 2) in the original frame, in the frame :func:`apply` makes (undoes :func:`back`)."""
    d = d.flip(-1) if transpose else d
    return d * torch.tensor([-1.0 if flip_y else 1.0, -1.0 if flip_x else 1.0], dtype=d.dtype, device=d.device)


def augment(views: torch.Tensor, samples: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of B training pairs under one of the eight symmetries, drawn at random:
    ``views`` (B, C, S, S) and the expert's ``samples`` (B, 2), Beta samples in (0, 1) for
    displacements (2u − 1)·max, turned and mirrored with them (for imitation, ``PPOConfig.
    imitation_symmetries``)."""
    which = torch.randint(len(SYMMETRIES), (views.shape[0],), generator=generator).to(views.device)
    out_v, out_u = torch.empty_like(views), torch.empty_like(samples)
    for j, s in enumerate(SYMMETRIES):
        rows = which == j
        if bool(rows.any()):
            out_v[rows] = apply(views[rows], *s)
            out_u[rows] = 0.5 + 0.5 * forward(2.0 * samples[rows] - 1.0, *s)
    return out_v, out_u
