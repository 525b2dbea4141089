"""Egocentric views and line samples by bilinear interpolation (``grid_sample``).

Positions are ``(y, x)`` pixel coordinates with pixel centres at integers; sampling
uses ``align_corners=True`` and zero padding, which equals
``scipy.ndimage.map_coordinates(order=1, mode="grid-constant", cval=0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_offsets(window: float, view_size: int = 11, scale: float = 1.0, device=None) -> torch.Tensor:
    """Offsets (px) of the ``view_size`` samples across a ``window``-px window.

    A 21-px window at 11 samples takes every second pixel: the same as resizing the
    21×21 window to 11×11 bilinearly with aligned corners. ``scale`` stretches the
    window (the paper uses 1.5× on real data).
    """
    half = scale * (window - 1) / 2
    return torch.linspace(-half, half, view_size, device=device)


def _normalise(points: torch.Tensor, shape) -> torch.Tensor:
    """``(..., 2)`` (y, x) pixel coordinates -> grid_sample's (x, y) in [-1, 1]."""
    h, w = shape
    scale = points.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return points.flip(-1) * scale - 1.0


def sample_points(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``maps`` (M, C, H, W) at ``points`` (B, P, Q, 2) (y, x).

    ``M`` is B (one map per episode) or 1 (one map shared by all episodes: its samples
    are taken in one call, without copying the map B times). Returns (B, C, P, Q).
    """
    b, p, q, _ = points.shape
    grid = _normalise(points, maps.shape[-2:])
    if maps.shape[0] == 1 and b > 1:
        out = F.grid_sample(maps, grid.reshape(1, b * p, q, 2), mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.reshape(maps.shape[1], b, p, q).transpose(0, 1)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def offset_grid(offsets: torch.Tensor) -> torch.Tensor:
    """The (S, S, 2) (y, x) offsets of a square view, rows along y, columns along x."""
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([oy, ox], -1)


def egocentric_views(maps: torch.Tensor, positions: torch.Tensor, grids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Several square views of the same ``maps`` at ``positions`` in one sampling call:
    ``grids`` are :func:`offset_grid` outputs (S, S, 2); returns one (B, C, S, S) each."""
    s = grids[0].shape[0]
    grid = positions[:, None, None, :] + torch.cat(grids, 0)[None]  # (B, k*S, S, 2)
    return list(sample_points(maps, grid).split(s, dim=2))


def sample_segments(maps: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` evenly spaced bilinear samples of ``maps`` (M, 1, H, W) on each straight
    segment ``p0 -> p1`` (B, 2), both ends included: (B, n)."""
    t = torch.linspace(0.0, 1.0, n, device=p0.device, dtype=p0.dtype)
    pts = p0[:, None, :] + t[None, :, None] * (p1 - p0)[:, None, :]
    return sample_points(maps, pts[:, None]).reshape(p0.shape[0], n)
