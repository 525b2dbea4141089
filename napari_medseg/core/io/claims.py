"""Which files the npe2 reader takes, and which it opens as labels (issue 19: a polite reader).

napari tries every plugin's reader on a file. Ours takes what only it reads well and leaves
healthy plain files to napari's own readers (a plain strip TIFF, a bare zarr array):

- NIfTI, always (napari has no NIfTI reader);
- TIFF that is OME-TIFF, BigTIFF, tiled or a pyramid (whole slides: read lazily, level by
  level);
- zarr with OME-NGFF multiscales, or a result written by napari-medseg;
- any TIFF or zarr that is damaged (cannot be parsed, truncated, complex or empty data,
  unreadable metadata, a file where a zarr folder should be): our reader refuses it in one
  message that names the file and the problem, instead of a traceback from another reader.

A file is opened as labels when its metadata says so, never because of its name: OME-NGFF
``image-label``, a napari-medseg result whose output is labels, or an OME-TIFF whose image
name is :data:`~.tiff.LABELS_NAME` (what :func:`~napari_medseg.core.io.write_labels` writes).
"""

from __future__ import annotations

from pathlib import Path

from .nifti import is_nifti
from .omezarr import group_attrs, is_zarr
from .tiff import LABELS_NAME, is_tiff


def _ome(attrs: dict) -> dict:
    """The OME-NGFF keys, whether at the top (0.4) or under "ome" (0.5)."""
    return {**attrs, **attrs["ome"]} if isinstance(attrs.get("ome"), dict) else attrs


def _damaged(tif, size: int) -> bool:
    """A TIFF another reader would fail on with a traceback: no image, data past the end of
    the file, or values that are not real numbers."""
    import numpy as np

    if not tif.series or not len(tif.pages):
        return True
    for page in tif.pages:
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
        if not ends or max(ends) > size or not np.issubdtype(np.dtype(page.dtype), np.number) or np.issubdtype(
                np.dtype(page.dtype), np.complexfloating):
            return True
    return False


def _tiff_structure(path: Path) -> tuple[bool, bool]:
    """(ours to read, a label image) for a TIFF file."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            levels = max((len(s.levels) for s in tif.series), default=1)
            structured = bool(tif.is_ome or tif.is_bigtiff or page.is_tiled or levels > 1)
            labels = bool(tif.is_ome and f'Name="{LABELS_NAME}"' in (tif.ome_metadata or ""))
            return structured or _damaged(tif, path.stat().st_size), labels
    except Exception:  # noqa: BLE001 - unparsable: ours, so that the user gets one clear message
        return True, False


def _healthy_bare_zarr(path: Path) -> bool:
    """A zarr folder with readable metadata that another reader can open."""
    if not path.is_dir():
        return False
    if (path / ".zarray").is_file() or (path / ".zgroup").is_file() or (path / "zarr.json").is_file():
        import json

        for name in (".zarray", ".zgroup", "zarr.json", ".zattrs"):
            f = path / name
            if f.is_file():
                try:
                    json.loads(f.read_text())
                except (OSError, ValueError):
                    return False
        return True
    return False


def claims(path) -> bool:
    """Whether our reader should open ``path`` (see the module docstring)."""
    path = Path(str(path).rstrip("/"))
    if is_nifti(path):
        return True
    if is_tiff(path):
        return path.is_file() and _tiff_structure(path)[0]
    if is_zarr(path):
        if not path.exists():
            return False
        from ..outputs import ATTR

        attrs = group_attrs(path)
        if attrs is not None and ("multiscales" in _ome(attrs) or isinstance(attrs.get(ATTR), dict)):
            return True
        return not _healthy_bare_zarr(path)
    return False


def is_label_image(path) -> bool:
    """Whether ``path``'s metadata says it holds labels (see the module docstring)."""
    path = Path(str(path).rstrip("/"))
    if is_tiff(path):
        return path.is_file() and _tiff_structure(path)[1]
    if is_zarr(path):
        from ..outputs import ATTR

        attrs = group_attrs(path) or {}
        ours = attrs.get(ATTR) if isinstance(attrs.get(ATTR), dict) else {}
        return "image-label" in _ome(attrs) or ours.get("output") == "labels"
    return False
