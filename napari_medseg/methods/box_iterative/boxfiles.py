"""Boxes from files (issue 17, item 3): napari Shapes CSV, a plain box table, or GeoJSON.

- **napari Shapes CSV** (File → Save Selected Layer on a Shapes layer): columns ``index``,
  ``shape-type``, ``vertex-index`` and one ``axis-N`` column per axis; the last two axes
  are (row, column) of the image.
- **Box table** CSV: one row per box with columns ``y0, x0, y1, x1`` (pixels, half-open),
  or ``x, y, width, height`` (the ImageJ / QuPath measurement style).
- **GeoJSON** (QuPath's "Export objects as GeoJSON"): Polygon / MultiPolygon features with
  ``[x, y]`` pixel coordinates; each feature's bounding box is one box.

Every format ends in :func:`boxes.boxes_from_shapes`, so the checks and messages are the
ones the widget gives (outside the image, rotated, duplicates, overlaps).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from .boxes import BoxSet, boxes_from_shapes

MAX_BYTES = 64 * 2**20


def _rect(y0, x0, y1, x1) -> np.ndarray:
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], np.float64)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"The box file {path} does not exist.")
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"The box file {path} is over {MAX_BYTES // 2**20} MiB; that is not a box list.")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"The box file {path} is not UTF-8 text ({exc.reason}).") from None


def _num(row: dict, key: str, path: Path, line: int) -> float:
    try:
        v = float(row[key])
    except (TypeError, ValueError):
        raise InputError(f"{path.name}, line {line}: {key} is {row.get(key)!r}, not a number.") from None
    if not np.isfinite(v):
        raise InputError(f"{path.name}, line {line}: {key} is not finite.")
    return v


def _from_csv(path: Path, text: str) -> tuple[list, list]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise InputError(f"{path.name} has no rows; give one box per row (or a napari Shapes CSV).")
    cols = {c.strip().lower(): c for c in rows[0] if c}
    if "shape-type" in cols and "index" in cols:  # napari's Shapes writer
        axes = sorted((c for c in cols if c.startswith("axis-")), key=lambda c: int(c.split("-")[1]))
        if len(axes) < 2:
            raise InputError(f"{path.name} looks like a napari Shapes CSV but has fewer than two axis-N columns.")
        shapes: dict[int, dict] = {}
        for i, r in enumerate(rows, 2):
            idx = int(_num(r, cols["index"], path, i))
            s = shapes.setdefault(idx, {"type": r[cols["shape-type"]].strip(), "v": []})
            s["v"].append([_num(r, cols[a], path, i) for a in axes[-2:]])
        order = sorted(shapes)
        return [np.asarray(shapes[k]["v"]) for k in order], [shapes[k]["type"] for k in order]
    if {"y0", "x0", "y1", "x1"} <= set(cols):
        data = [_rect(*(_num(r, cols[k], path, i) for k in ("y0", "x0", "y1", "x1"))) for i, r in enumerate(rows, 2)]
    elif {"x", "y", "width", "height"} <= set(cols):
        data = []
        for i, r in enumerate(rows, 2):
            x, y, w, h = (_num(r, cols[k], path, i) for k in ("x", "y", "width", "height"))
            if w <= 0 or h <= 0:
                raise InputError(f"{path.name}, line {i}: width and height must be positive.")
            data.append(_rect(y, x, y + h, x + w))
    else:
        raise InputError(f"{path.name} has columns {list(rows[0])}; a box table needs y0, x0, y1, x1 or x, y, "
                         "width, height (or save the Shapes layer from napari as CSV).")
    return data, ["rectangle"] * len(data)


def _from_geojson(path: Path, text: str) -> tuple[list, list]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path.name} is not valid JSON: {exc.msg} (line {exc.lineno}).") from None
    feats = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else (
        [doc] if isinstance(doc, dict) and doc.get("type") == "Feature" else doc if isinstance(doc, list) else None)
    if not feats:
        raise InputError(f"{path.name} holds no GeoJSON features; export the annotations as a FeatureCollection.")
    data = []
    for k, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        kind, coords = geom.get("type"), geom.get("coordinates")
        if kind not in ("Polygon", "MultiPolygon") or not coords:
            raise InputError(f"{path.name}: feature {k} is a {kind or 'feature without geometry'}; only polygons "
                             "(rectangles or outlines) give boxes.")
        try:
            pts = np.asarray([p for ring in (coords if kind == "Polygon" else [r for poly in coords for r in poly])
                              for p in ring], np.float64)[:, :2]
        except (TypeError, ValueError, IndexError):
            raise InputError(f"{path.name}: feature {k} has malformed coordinates.") from None
        if pts.size == 0 or not np.isfinite(pts).all():
            raise InputError(f"{path.name}: feature {k} has no finite coordinates.")
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        data.append(_rect(y0, x0, y1, x1))
    return data, ["rectangle"] * len(data)


def read_boxes(path, image_shape, *, clip: bool = False) -> BoxSet:
    """Boxes of one image from a file, checked against ``image_shape`` (H, W)."""
    path = Path(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        data, types = _from_geojson(path, text)
    elif suffix in (".csv", ".txt"):
        data, types = _from_csv(path, text)
    else:
        raise InputError(f"{path.name}: boxes are read from .csv (a box table or napari Shapes CSV) or .geojson.")
    return boxes_from_shapes(data, types, tuple(image_shape), clip=clip)
