"""Any image a user has, as the 8-bit RGB brightfield view the network reads (issue 17).

The network was built for H&E-like slides (dark, coloured objects on a bright background,
8-bit RGB). A user may bring 16-bit or float fluorescence, a single grey channel, or
objects bright on a dark background. One code path turns all of them into that view:

1. channels: grey (H, W) or (H, W, 1) is repeated to three channels; RGBA drops alpha;
   (H, W, 2) and more than four channels are refused (pick the channel to use);
2. intensities: anything but uint8 is scaled per channel between its 0.5th and 99.5th
   percentiles (estimated on a strided subsample, so a gigapixel slide is never read
   whole) to 0..255;
3. polarity: with ``polarity="auto"``, a single-channel image whose background (its
   median) is darker than mid-range is inverted, so that objects are dark on bright as
   on a brightfield slide; ``"keep"`` and ``"invert"`` force it.

The conversion is lazy for dask and zarr inputs (block by block). The note says exactly
what was done, for the dock and the command line.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError

PERCENTILES = (0.5, 99.5)
SAMPLE_PIXELS = 2_000_000


def _sample(image, channels: int) -> np.ndarray:
    """About SAMPLE_PIXELS pixels on a regular stride: (N, channels) float32."""
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / SAMPLE_PIXELS))))
    sub = np.asarray(image[::step, ::step], np.float32)
    return sub.reshape(-1, channels)


def as_rgb8(image, name: str = "image", polarity: str = "auto") -> tuple[object, str | None]:
    """``(rgb, note)``: an (H, W, 3) uint8 view of ``image`` and what was done (None if nothing)."""
    if polarity not in ("auto", "keep", "invert"):
        raise InputError(f"polarity must be 'auto', 'keep' or 'invert', not {polarity!r}.")
    shape, dtype = tuple(getattr(image, "shape", ())), np.dtype(getattr(image, "dtype", np.float64))
    if len(shape) == 2:
        channels, grey = 1, True
    elif len(shape) == 3 and shape[-1] in (1, 3, 4):
        channels, grey = shape[-1], shape[-1] == 1
    else:
        raise InputError(f"The {name} has shape {shape}; give a 2-D image, (height, width, 1|3|4), not a stack "
                         "or a multi-channel image (pick the channel to use first).")
    if min(shape[:2]) < 32:
        raise InputError(f"The {name} is only {shape[0]}x{shape[1]} pixels; it needs at least 32x32.")
    if dtype.kind not in "uif" and dtype != np.bool_:
        raise InputError(f"The {name} has pixel type {dtype}; give integer or floating-point intensities.")
    done = []
    if channels == 4:
        image, channels = image[..., :3], 3
        done.append("alpha channel dropped")
    if dtype == np.uint8 and channels == 3 and polarity != "invert":
        return image, ("The " + name + ": " + "; ".join(done) + ".") if done else None
    sample = _sample(image, channels)
    if not np.isfinite(sample).all():
        raise InputError(f"The {name} has NaN or infinite values; fix or mask them first.")
    if dtype == np.uint8:
        lo, hi = np.zeros(channels, np.float32), np.full(channels, 255.0, np.float32)
    else:
        lo, hi = np.percentile(sample, PERCENTILES, axis=0).astype(np.float32)
        if np.any(hi - lo <= 0):
            raise InputError(f"The {name} is constant (or nearly so); there is nothing to segment.")
        done.append(f"{dtype} intensities scaled between their {PERCENTILES[0]}th and {PERCENTILES[1]}th "
                    "percentiles to 8 bits")
    invert = polarity == "invert"
    if polarity == "auto" and grey:
        scaled_median = (np.median(sample[:, 0]) - lo[0]) / max(hi[0] - lo[0], 1e-12)
        invert = bool(scaled_median < 0.5)
    if invert:
        done.append("inverted (objects bright on a dark background become dark on bright, as on a brightfield "
                    "slide)" if polarity == "auto" else "inverted")
    if grey:
        done.append("the grey channel repeated as R, G and B")

    def convert(block):
        b = np.asarray(block, np.float32)
        if b.ndim == 2:
            b = b[..., None]
        b = np.clip((b - lo) / (hi - lo), 0.0, 1.0)
        if invert:
            b = 1.0 - b
        b = np.rint(b * 255.0).astype(np.uint8)
        return np.repeat(b, 3, axis=-1) if b.shape[-1] == 1 else b

    if isinstance(image, np.ndarray):
        out = convert(image)
    else:
        import dask.array as da

        arr = image if isinstance(image, da.Array) else da.from_array(image, chunks=(2048, 2048) + shape[2:])
        if arr.ndim == 2:
            arr = arr[..., None]
        arr = arr.rechunk({2: -1})
        out = arr.map_blocks(convert, dtype=np.uint8, chunks=arr.chunks[:2] + ((3,),))
    return out, f"The {name}: " + "; ".join(done) + "."
