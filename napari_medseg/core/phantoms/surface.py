"""Real cortical folding for the brain phantom: FreeSurfer's *fsaverage5* white and pial
surfaces, which nilearn bundles, turned into signed-distance volumes.

The phantom's own cortex (a ribbon, or a random gyrification) has folds that no brain
has. fsaverage is a surface atlas: the average of 40 adults' cortical surfaces after
spherical registration (Fischl et al. 1999), decimated to 10,242 vertices per hemisphere
in fsaverage5. Its white surface bounds the white matter, its pial surface the grey
matter, so the region between the two is a cortex with real gyri and sulci, of real
thickness. :func:`cortex_distances` voxelises both surfaces once per process (about 10 s at
1 mm) into signed distances in mm, negative inside; the phantom samples them at its own,
randomly warped coordinates (see ``brain._anatomy``).

It is one average brain, in MNI305 space (FreeSurfer's Talairach), built from other
subjects and another registration than the MNI152 template the joint method is tested
on; none of MNI152's images or tissue maps is read here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError

STEP_MM = 1.0  # grid of the signed-distance volumes
MARGIN_MM = 8.0


def nilearn_data_folder(what: str) -> Path:
    """nilearn's bundled data folder (no download: the files are part of the package), found
    without importing nilearn, which would cost seconds for a folder name. ``what`` names
    the data in the one error a missing nilearn gives."""
    from importlib.util import find_spec

    spec = find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"nilearn, which provides {what}, is not installed: "
                         "pip install 'napari-medseg[samples]' (or pip install nilearn).")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def surface_folder() -> Path:
    """nilearn's bundled fsaverage5 folder."""
    return nilearn_data_folder("the fsaverage5 cortical surfaces") / "fsaverage5"


def read_mesh(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices in mm, triangles)`` of one bundled surface, e.g. ``"pial_left"``."""
    import nibabel as nib

    path = surface_folder() / f"{name}.gii.gz"
    if not path.is_file():
        raise InputError(f"{path} is missing: this nilearn installation lacks the fsaverage5 surfaces.")
    gii = nib.load(str(path))
    return np.asarray(gii.darrays[0].data, np.float64), np.asarray(gii.darrays[1].data, np.int64)


def _shell(vertices, triangles, origin, shape, step) -> np.ndarray:
    """Voxels that the triangles pass through: points on every triangle, closer together
    than half a voxel, rounded to the grid."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    longest = max(float(np.linalg.norm(b - a, axis=1).max()), float(np.linalg.norm(c - a, axis=1).max()),
                  float(np.linalg.norm(c - b, axis=1).max()))
    n = int(np.ceil(longest / (0.4 * step)))
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    u, v = i[keep] / n, j[keep] / n  # barycentric samples of a triangle
    out = np.zeros(shape, bool)
    for k in range(0, len(triangles), 2048):  # bounded memory
        sl = slice(k, k + 2048)
        pts = (a[sl, None] + u[None, :, None] * (b[sl, None] - a[sl, None])
               + v[None, :, None] * (c[sl, None] - a[sl, None]))
        idx = np.rint((pts.reshape(-1, 3) - origin) / step).astype(np.int64)
        idx = np.clip(idx, 0, np.asarray(shape) - 1)
        out[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return out


def _inside(vertices, triangles, origin, shape, step) -> np.ndarray:
    """Voxels inside a closed surface (its shell included)."""
    shell = _shell(vertices, triangles, origin, shape, step)
    inside = ndimage.binary_fill_holes(shell)
    if inside.sum() < 2 * shell.sum():  # a leak: the surface did not close on the grid
        raise InputError("A cortical surface did not close when voxelised; the bundled mesh may be damaged.")
    return inside


@lru_cache(maxsize=2)
def cortex_distances(step: float = STEP_MM):
    """``(white, pial, origin, step)``: signed distances (mm, float32, negative inside) to the
    white and pial surfaces of both hemispheres on a grid of ``step`` mm whose first voxel
    centre is ``origin`` (RAS mm)."""
    meshes = {f"{s}_{h}": read_mesh(f"{s}_{h}") for s in ("white", "pial") for h in ("left", "right")}
    allv = np.concatenate([v for v, _ in meshes.values()])
    origin = np.floor(allv.min(0) - MARGIN_MM)
    shape = tuple(int(n) for n in np.ceil((allv.max(0) + MARGIN_MM - origin) / step) + 1)
    out = []
    for surface in ("white", "pial"):
        inside = np.zeros(shape, bool)
        for hemi in ("left", "right"):  # one closed surface each
            inside |= _inside(*meshes[f"{surface}_{hemi}"], origin, shape, step)
        d = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
        out.append((d * step).astype(np.float32))
    return out[0], out[1], origin, float(step)


@lru_cache(maxsize=2)
def pial_hull_distance(step: float = STEP_MM) -> np.ndarray:
    """Signed distance (mm) to the pial surfaces' *hull*: the brain with its sulci and the
    fissure between the hemispheres closed (a morphological closing of 6 mm), which is
    roughly where the skull's inner table follows the brain."""
    _, pial, _, step = cortex_distances(step)
    inside = pial <= 0
    r = int(round(6.0 / step))
    ball = np.sum(np.square(np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]), 0) <= r * r
    hull = ndimage.binary_closing(np.pad(inside, r), ball)[r:-r, r:-r, r:-r] | inside
    d = ndimage.distance_transform_edt(~hull) - ndimage.distance_transform_edt(hull)
    return (d * step).astype(np.float32)


@lru_cache(maxsize=2)
def cerebrum_box(step: float = STEP_MM) -> tuple[np.ndarray, np.ndarray]:
    """``(centre, half extent)`` in mm of the pial surfaces' bounding box."""
    _, pial, origin, step = cortex_distances(step)
    idx = np.argwhere(pial <= 0)
    lo, hi = origin + idx.min(0) * step, origin + idx.max(0) * step
    return (lo + hi) / 2, (hi - lo) / 2


def sample(volume: np.ndarray, mm, origin, step: float) -> np.ndarray:
    """``volume`` at points ``mm`` (three broadcastable arrays, RAS mm), linearly; far outside
    the grid reads as outside every surface (a large positive distance)."""
    coords = [np.asarray((m - o) / step, np.float32) for m, o in zip(mm, origin)]
    coords = np.broadcast_arrays(*coords)
    return ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=50.0).astype(np.float32)
