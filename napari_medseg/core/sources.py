"""Uniform, picklable read access to image regions, channels first.

Tiled inference reads through a :class:`TileSource`, so numpy, dask and zarr arrays
and image files on disk all look alike, and a ``dask.distributed`` worker can open a
file itself instead of receiving pixels from the client.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError


class TileSource:
    """``read(spatial_slices)`` returns a (C, *spatial) numpy block."""

    shape: tuple[int, ...]
    channel_axis: int | None
    dtype: np.dtype

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        if self.channel_axis is None:
            return tuple(self.shape)
        return tuple(s for i, s in enumerate(self.shape) if i != self.channel_axis)

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else int(self.shape[self.channel_axis])

    def _array(self):
        raise NotImplementedError

    def read(self, spatial_slices) -> np.ndarray:
        arr = self._array()
        if self.channel_axis is None:
            block = np.asarray(_materialise(arr[tuple(spatial_slices)]))
            return block[None]
        sl = list(spatial_slices)
        sl.insert(self.channel_axis, slice(None))
        block = np.asarray(_materialise(arr[tuple(sl)]))
        return np.moveaxis(block, self.channel_axis, 0)


def _materialise(x):
    compute = getattr(x, "compute", None)
    if compute is not None:
        return compute(scheduler="synchronous")
    return x


class ArraySource(TileSource):
    def __init__(self, array, channel_axis: int | None = None):
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.channel_axis = None if channel_axis is None else channel_axis % len(self.shape)

    def _array(self):
        return self.array


class PathSource(TileSource):
    """An image file (TIFF/NIfTI/zarr) opened lazily in whichever process reads it."""

    def __init__(self, path, level: int = 0, channel_axis: int | None = None):
        self.path, self.level = str(Path(path)), int(level)
        arr = self._array()
        self.shape = tuple(int(s) for s in arr.shape)
        self.dtype = np.dtype(arr.dtype)
        self.channel_axis = None if channel_axis is None else channel_axis % len(self.shape)

    def _array(self):
        cached = getattr(self, "_cached", None)
        if cached is None:
            from .io import read_image

            # level 0 needs no pyramid: do not make every worker build one
            levels, _meta = read_image(self.path, pyramid_min_size=None if self.level == 0 else 4096)
            cached = self._cached = levels[self.level]
        return cached

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cached", None)
        return state


def as_source(image, channel_axis: int | None = None) -> TileSource:
    if isinstance(image, TileSource):
        return image
    if isinstance(image, (str, Path)):
        return PathSource(image, channel_axis=channel_axis)
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        raise InputError(f"Expected an array or an image path, got {type(image).__name__}.")
    return ArraySource(image, channel_axis)
