"""SWC import and export for traces.

An SWC file has one node per line, ``id type x y z radius parent``, ``#`` comment
lines, and parent -1 for a root. Traces are (N, 2) ``(y, x)`` pixel coordinates; in
the file ``x`` is the column (our index 1), ``y`` the row (index 0), and ``z`` is 0
unless given. On reading, ``z`` is kept apart (``SwcForest.z``); traces stay 2D.

Units: SNT, Vaa3D and the morphology libraries expect physical units. ``write_swc``
takes the image's pixel size (``scale``, (y, x) or (z, y, x), and a ``unit``) and writes
``x = column × sx``, ``y = row × sy``, ``z × sz``, radius × the mean in-plane pixel size,
recording both in a ``# napari-medseg: scale ... unit ...`` header line. ``read_swc``
returns the file's coordinates as they are (``SwcForest.unit`` says which unit the file
declared, ``"pixel"`` for our older pixel files); :meth:`SwcForest.in_pixels` divides
them by an image's pixel size to place them on that image.

Standard SWC type codes: 0 undefined, 1 soma, 2 axon, 3 basal dendrite, 4 apical
dendrite (higher codes are custom). Traces are written as axons (2) by default.

A forest of traces is described by ``parents``: ``parents[i]`` is ``None`` for a
root trace, or ``(j, k)`` when trace ``i`` branches off point ``k`` of trace ``j``;
the first node of trace ``i`` then has the node of that point as its SWC parent.
Reading splits the tree back into unbranched traces: the first child of a node (in
file order) continues its trace, every further child starts a branch trace. So a
trace that branches off the *last* point of another is read back as its
continuation (SWC cannot tell the two apart).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_medseg.core.atomic import atomic_path
from napari_medseg.core.errors import InputError

SWC_TYPES = {0: "undefined", 1: "soma", 2: "axon", 3: "basal dendrite", 4: "apical dendrite"}
AXON = 2
DEFAULT_RADIUS = 1.0
COLUMNS = "id type x y z radius parent"
MAX_COORD = 1e7  # px: far beyond any image, far below where distances overflow


@dataclass
class SwcForest:
    """Unbranched traces read from an SWC file (see the module docstring)."""

    traces: list[np.ndarray] = field(default_factory=list)  # (N, 2) float (y, x)
    parents: list[tuple[int, int] | None] = field(default_factory=list)  # (trace, point) or None
    types: list[int] = field(default_factory=list)  # SWC type of each trace
    radii: list[np.ndarray] = field(default_factory=list)  # (N,) per point
    z: list[np.ndarray] = field(default_factory=list)  # (N,) per point
    unit: str | None = None  # what the file declares: "pixel", a physical unit, or None (not said)
    scale: tuple | None = None  # the pixel size the file was written with (z, y, x), if it says

    def in_pixels(self, scale=None) -> "SwcForest":
        """The traces on an image with pixel size ``scale`` ((y, x) or (z, y, x); None: 1).

        A file that declares pixels is taken as it is (it was written in pixels)."""
        sz, sy, sx = _scale3(None if self.unit == "pixel" else scale)
        return SwcForest([t / [sy, sx] for t in self.traces], list(self.parents), list(self.types),
                         [r / ((sy + sx) / 2) for r in self.radii], [z / sz for z in self.z], "pixel",
                         (1.0, 1.0, 1.0))


def _scale3(scale) -> tuple[float, float, float]:
    """(sz, sy, sx) from None, (sy, sx) or (sz, sy, sx); positive and finite, else InputError."""
    if scale is None:
        return 1.0, 1.0, 1.0
    try:
        v = [float(x) for x in scale]
    except (TypeError, ValueError):
        raise InputError(f"The pixel size must be 2 or 3 numbers; got {scale!r}.") from None
    if len(v) not in (2, 3) or not all(np.isfinite(x) and x > 0 for x in v):
        raise InputError(f"The pixel size must be 2 or 3 positive numbers; got {scale!r}.")
    return (1.0, *v) if len(v) == 2 else tuple(v)


def _per_trace(values, traces, name: str, default) -> list[np.ndarray]:
    """Broadcast ``values`` (None, or per trace None, one number or one per point)."""
    values = [None] * len(traces) if values is None else list(values)
    if len(values) != len(traces):
        raise InputError(f"Got {len(values)} {name} for {len(traces)} traces.")
    out = []
    for i, (v, t) in enumerate(zip(values, traces)):
        a = np.asarray(default if v is None else v, np.float64)
        a = np.full(len(t), a) if a.ndim == 0 else a
        if a.shape != (len(t),) or not np.all(np.isfinite(a)):
            raise InputError(f"The {name} of trace {i} must be one finite number or {len(t)} of them.")
        out.append(a)
    return out


def _trace_order(parents: list) -> list[int]:
    """Traces with parents before children (input order otherwise); raises on cycles."""
    order, placed = [], set()
    for i in range(len(parents)):
        chain, seen, cur = [], set(), i
        while cur is not None and cur not in placed:
            if cur in seen:
                loop = " → ".join(str(c) for c in chain[chain.index(cur):] + [cur])
                raise InputError(f"The trace parent links form a cycle ({loop}); they must form a forest.")
            seen.add(cur)
            chain.append(cur)
            cur = None if parents[cur] is None else parents[cur][0]
        for c in reversed(chain):
            placed.add(c)
            order.append(c)
    return order


def _check_parents(parents, arrs) -> list[tuple[int, int] | None]:
    n = len(arrs)
    out = [None] * n if parents is None else list(parents)
    if len(out) != n:
        raise InputError(f"Got {len(out)} parent links for {n} traces.")
    for i, p in enumerate(out):
        if p is None:
            continue
        try:
            j, k = (int(v) for v in p)
        except (TypeError, ValueError):
            raise InputError(f"The parent of trace {i} must be None or (trace, point); got {p!r}.") from None
        if not (0 <= j < n) or j == i:
            raise InputError(f"Trace {i} branches off trace {j}, which is not another trace (0..{n - 1}).")
        if not 0 <= k < len(arrs[j]):
            raise InputError(f"Trace {i} branches off point {k} of trace {j}, which has {len(arrs[j])} points.")
        out[i] = (j, k)
    return out


def _check_types(types, n: int) -> list[int]:
    out = [AXON] * n if types is None else list(types)
    if len(out) != n:
        raise InputError(f"Got {len(out)} types for {n} traces.")
    for i, t in enumerate(out):
        try:
            ok = not isinstance(t, bool) and float(t).is_integer() and int(t) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"The SWC type of trace {i} must be a non-negative integer; got {t!r}.")
    return [int(t) for t in out]


def _fmt(v: float) -> str:
    return format(float(v), ".12g")


def write_swc(
    path: str | os.PathLike,
    traces: Sequence,
    parents: Sequence[tuple[int, int] | None] | None = None,
    types: Sequence[int] | None = None,
    radii: Sequence | None = None,
    header: str | Sequence[str] | None = None,
    *,
    z: Sequence | None = None,
    scale: Sequence[float] | None = None,
    unit: str | None = None,
) -> None:
    """Write ``traces`` ((N, 2) ``(y, x)`` arrays) as one SWC forest to ``path``.

    ``parents[i]`` is ``None`` (root) or ``(j, k)``: trace ``i`` branches off point
    ``k`` of trace ``j`` (any ``j != i``; the links must form a forest). ``types[i]``
    is the SWC type of trace ``i`` (default 2, axon). ``radii[i]`` and ``z[i]`` are a
    number or one number per point (defaults 1.0 and 0), all in pixels. ``scale`` is the
    pixel size, (y, x) or (z, y, x), in ``unit`` (e.g. ``"micrometer"``): coordinates and
    radii are written in that unit (default: pixels). ``header`` lines are written as
    ``#`` comments, followed by the scale line. Node ids run from 1 with parent traces written before their
    branches, so every parent id is smaller than its child's. Everything is checked
    before anything is written, and the file is replaced atomically: on any error an
    existing file at ``path`` is left as it was. Raises :class:`InputError` (also for
    a file that cannot be written).
    """
    if traces is None or len(traces) == 0:
        raise InputError("There are no traces to write.")
    arrs = []
    for i, t in enumerate(traces):
        a = np.asarray(t, np.float64)
        if a.size == 0:
            raise InputError(f"Trace {i} is empty; every trace needs at least one point.")
        if a.ndim != 2 or a.shape[1] != 2:
            raise InputError(f"Trace {i} must be an (N, 2) array of (y, x) points; got shape {a.shape}.")
        if not np.all(np.isfinite(a)):
            raise InputError(f"Trace {i} contains NaN or infinite coordinates.")
        arrs.append(a)
    parents = _check_parents(parents, arrs)
    type_list = _check_types(types, len(arrs))
    rad = _per_trace(radii, arrs, "radii", DEFAULT_RADIUS)
    zs = _per_trace(z, arrs, "z values", 0.0)
    order = _trace_order(parents)
    sz, sy, sx = _scale3(scale)
    physical = scale is not None
    unit = (str(unit).strip() or None) if unit is not None else None
    if physical and unit is None:
        raise InputError("Give the unit of the pixel size (e.g. 'micrometer') with the scale.")
    arrs = [a * [sy, sx] for a in arrs]
    rad = [r * ((sy + sx) / 2) for r in rad]
    zs = [v * sz for v in zs]

    sizes = [len(arrs[i]) for i in order]
    first_id = dict(zip(order, np.cumsum([1] + sizes[:-1]).tolist()))
    if header is None:
        header = ["SWC written by napari-medseg"]
    header = header.splitlines() if isinstance(header, str) else [str(h) for h in header]
    if physical:
        units = [f"x = column × {_fmt(sx)}, y = row × {_fmt(sy)}, z × {_fmt(sz)} ({unit}); z = 0 for 2D traces",
                 f"napari-medseg: scale {_fmt(sz)} {_fmt(sy)} {_fmt(sx)} unit {unit}"]
    else:
        units = ["x = column, y = row (pixels); z = 0 for 2D traces", "napari-medseg: scale 1 1 1 unit pixel"]
    lines = [h if h.startswith("#") else f"# {h}" for h in header + units] + [f"# {COLUMNS}"]
    for i in order:
        base = first_id[i]
        parent = -1 if parents[i] is None else first_id[parents[i][0]] + parents[i][1]
        for p, (y, x) in enumerate(arrs[i]):
            fields = [str(base + p), str(type_list[i]), _fmt(x), _fmt(y), _fmt(zs[i][p]), _fmt(rad[i][p])]
            lines.append(" ".join(fields + [str(parent if p == 0 else base + p - 1)]))
    text = "\n".join(lines) + "\n"
    try:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise InputError(f"Cannot write the SWC file {path}: {exc}") from None


#: SWC files above this size are refused (``NAPARI_MEDSEG_MAX_SWC_BYTES`` overrides; 0: no limit)
MAX_SWC_BYTES = 64 * 2**20  # ~1.5 M nodes; real reconstructions have 10^3-10^5


def _max_swc_bytes() -> float:
    raw = os.environ.get("NAPARI_MEDSEG_MAX_SWC_BYTES", "").strip()
    try:
        value = float(raw) if raw else float(MAX_SWC_BYTES)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise InputError(f"NAPARI_MEDSEG_MAX_SWC_BYTES={raw!r} is not a usable limit: give a number of "
                         f"bytes >= 0.")
    return value


def _row_problem(v: np.ndarray) -> str | None:
    """What is wrong with one parsed node row (id type x y z radius parent), or None."""
    if not np.isfinite(v).all():
        return "NaN or infinite values are not coordinates"
    if not all(float(v[c]).is_integer() for c in (0, 1, 6)) or v[0] < 0:
        return "id, type and parent must be integers (id ≥ 0)"
    if max(abs(v[2]), abs(v[3]), abs(v[4])) > MAX_COORD or not 0 <= v[5] <= MAX_COORD:
        return f"coordinates must lie within ±{MAX_COORD:g} px and the radius within 0..{MAX_COORD:g}"
    if max(abs(v[0]), abs(v[1]), abs(v[6])) > 2**53:
        return "id, type or parent is too large to be a node number"
    return None


def _parse(path: Path) -> list[tuple[int, int, float, float, float, float, int, int]]:
    """(id, type, x, y, z, radius, parent, line number) for each node line.

    Any damage raises one :class:`InputError` naming the file and the first bad line:
    not 7 numeric columns, NaN/inf, non-integer ids, coordinates beyond ±``MAX_COORD``,
    a negative radius; a file above ``MAX_SWC_BYTES`` is refused before it is read.
    Parsing is vectorised (a million nodes in about a second).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"SWC file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"Cannot read the SWC file {path}: {exc}") from None
    limit = _max_swc_bytes()
    if limit > 0 and size > limit:
        raise InputError(f"{path.name} is {size / 2**20:,.0f} MiB, more than the {limit / 2**20:,.0f} MiB of "
                         f"SWC napari-medseg reads at once; split it, or set NAPARI_MEDSEG_MAX_SWC_BYTES "
                         f"(0: no limit).")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"SWC file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the SWC file {path}: {' '.join(str(exc).split())}") from None
    lines = text.splitlines()
    del text
    tokens: list[str] = []
    numbers: list[int] = []  # line numbers (1-based) of the node lines
    for no, raw in enumerate(lines, start=1):
        parts = raw.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 7:
            raise InputError(f"{path.name}, line {no}: expected 7 numeric columns ({COLUMNS}), "
                             f"got {raw.strip()[:80]!r}.")
        tokens += parts
        numbers.append(no)
    if not numbers:
        raise InputError(f"{path.name}: the SWC file has no nodes (it is empty or only has comments).")
    try:
        vals = np.array(tokens, dtype=np.float64).reshape(-1, 7)
    except ValueError:
        for r, no in enumerate(numbers):
            try:
                [float(t) for t in tokens[7 * r: 7 * r + 7]]
            except ValueError:
                raise InputError(f"{path.name}, line {no}: expected 7 numeric columns ({COLUMNS}), "
                                 f"got {lines[no - 1].strip()[:80]!r}.") from None
        raise  # pragma: no cover - numpy and float() agree on what a number is
    del tokens
    with np.errstate(invalid="ignore"):
        ints = vals[:, [0, 1, 6]]
        bad = ~np.isfinite(vals).all(axis=1)
        bad |= (ints != np.floor(ints)).any(axis=1) | (vals[:, 0] < 0)
        bad |= (np.abs(vals[:, 2:5]) > MAX_COORD).any(axis=1) | ~((vals[:, 5] >= 0) & (vals[:, 5] <= MAX_COORD))
        bad |= (np.abs(ints) > 2**53).any(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        no = numbers[r]
        raise InputError(f"{path.name}, line {no}: {_row_problem(vals[r])}; got {lines[no - 1].strip()[:80]!r}.")
    ids, types, parents = (vals[:, c].astype(np.int64).tolist() for c in (0, 1, 6))
    coords = vals[:, 2:6].tolist()
    return [(i, t, *xyzr, p, no) for i, t, xyzr, p, no in zip(ids, types, coords, parents, numbers)]


def read_swc(path: str | os.PathLike) -> SwcForest:
    """Read an SWC file and split its tree(s) into unbranched traces.

    The first child of a node (in file order) continues the node's trace; every
    further child starts a branch trace, whose first point is that child and whose
    parent is ``(trace of the node, index of the node in it)``. Traces come in the
    file order of their first nodes; a trace's type is the most common type of its
    nodes. Raises :class:`InputError`, naming the line or node, for a missing or
    unreadable file, a line without 7 numeric columns, a duplicate id, a parent id
    that does not exist, a cycle, or a file without nodes.
    """
    path = Path(path)
    nodes = _parse(path)
    row = {}  # node id -> index into nodes
    for r, nd in enumerate(nodes):
        if nd[0] in row:
            first = nodes[row[nd[0]]][7]
            raise InputError(f"{path.name}, line {nd[7]}: duplicate node id {nd[0]} (first defined on line {first}).")
        row[nd[0]] = r
    children: list[list[int]] = [[] for _ in nodes]
    for r, nd in enumerate(nodes):
        if nd[6] != -1 and nd[6] not in row:
            raise InputError(
                f"{path.name}, line {nd[7]}: node {nd[0]} has parent {nd[6]}, which does not exist "
                "(broken parent link; roots use -1)."
            )
        if nd[6] != -1:
            children[row[nd[6]]].append(r)
    # every node must be reachable from a root; the rest lie on or below a cycle
    reached = np.zeros(len(nodes), bool)
    stack = [r for r, nd in enumerate(nodes) if nd[6] == -1]
    while stack:
        r = stack.pop()
        reached[r] = True
        stack.extend(children[r])
    if not reached.all():
        cur, seen = int(np.flatnonzero(~reached)[0]), {}
        while cur not in seen:
            seen[cur] = len(seen)
            cur = row[nodes[cur][6]]
        loop = list(seen)[seen[cur]:] + [cur]
        ids = " → ".join(str(nodes[r][0]) for r in loop)
        raise InputError(
            f"{path.name}: the parent links of nodes {ids} form a cycle (line {nodes[loop[0]][7]}); "
            "an SWC file must describe a tree."
        )
    heads = [r for r, nd in enumerate(nodes) if nd[6] == -1 or children[row[nd[6]]][0] != r]
    chains = []
    for h in heads:
        chains.append([h])
        while children[chains[-1][-1]]:
            chains[-1].append(children[chains[-1][-1]][0])
    where = {r: (t, idx) for t, chain in enumerate(chains) for idx, r in enumerate(chain)}
    out = SwcForest()
    out.unit, out.scale = _declared_units(path)
    for chain in chains:
        a = np.array([nodes[r][2:6] for r in chain], np.float64)  # x, y, z, radius
        out.traces.append(a[:, [1, 0]].copy())
        out.z.append(a[:, 2].copy())
        out.radii.append(a[:, 3].copy())
        kinds = [nodes[r][1] for r in chain]
        out.types.append(max(dict.fromkeys(kinds), key=kinds.count))
        pid = nodes[chain[0]][6]
        out.parents.append(None if pid == -1 else where[row[pid]])
    return out


def _declared_units(path: Path) -> tuple[str | None, tuple | None]:
    """(unit, (sz, sy, sx)) from a ``# napari-medseg: scale sz sy sx unit U`` line, or from
    our older files' "(pixels)" header; (None, None) when the file says nothing."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            words = line[1:].split()
            if words[:2] == ["napari-medseg:", "scale"] and len(words) >= 7 and words[5] == "unit":
                try:
                    return " ".join(words[6:]), _scale3(words[2:5])
                except InputError:
                    return None, None
            if "(pixels" in line and "x = column" in line:
                return "pixel", (1.0, 1.0, 1.0)
    return None, None
