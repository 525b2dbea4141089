"""``napari-medseg bench tracking --real``: tracking on real images that packages ship.

Images (both fundus photographs, dark vessels on a bright background, so they are
traced inverted, in green where there is colour):

- ``retina``: scikit-image's ``data.retina()`` (1411² RGB), at half size (705²) so
  its vessels are 1-8 px wide like the fibres the agent knows;
- ``microaneurysms``: scikit-image's ``data.microaneurysms()`` (102² grey).

Reference fibres (``benchmarks/tracking_real/fibres.json``) were made once by
:func:`make_references`: unbranched stretches of the skeleton of the thresholded Sato
ridge map give start and end points, and the reference trace is the minimal path
between them; ``overlay.png`` shows them over the images and was checked by eye. No
model is trained, tuned or selected on these images.

Every tracker gets the same start point and heading (the reference's first 6 px):

- ours: the current ``tracking`` model (deterministic policy);
- greedy: :func:`~napari_medseg.methods.tracking.greedy.greedy_follow` on a Sato ridge
  map;
- minimal path: :func:`~napari_medseg.methods.tracking.baseline.minimal_path`, given
  both ends (so its coverage is an upper reference, not a like-for-like tracker).

Metrics per fibre, start + heading only (no end): coverage (reference points with a
trace point within 3 px), mean error over the covered points, wrong branch (the
trace runs > 6 px from the reference for ≥ 10 consecutive px before the reference's
far end has been covered), time (each tracker's per-image ridge or cost map shared over
the image's fibres). With the end given: reached-end rate (the path passed within 3 px
of the end) and overshoot (trace length after its closest approach to the end, over the
traces that came within 10 px of it; one that never came near has missed its end). The
entropy overlay's mean on-fibre (within 3 px of the reference) and off it. Also, start
point only (``real_auto_*``): the tracker chooses the heading itself, no end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

REF_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "tracking_real"
HEADING_PX = 6.0
WRONG_OFF_PX, WRONG_RUN_PX = 6.0, 10.0


def real_images() -> dict[str, np.ndarray]:
    """The prepared (bright-on-dark, normalised) real images, by name."""
    from skimage import data
    from skimage.transform import downscale_local_mean

    from ..methods.tracking.prepare import prepare_image

    retina = downscale_local_mean(data.retina()[..., 1].astype(np.float32), (2, 2))
    micro = data.microaneurysms().astype(np.float32)
    return {"retina": prepare_image(retina, invert=True), "microaneurysms": prepare_image(micro, invert=True)}


# ----------------------------------------------------------------- references
def _field_of_view(name: str) -> np.ndarray:
    """Where the image shows the fundus (the black frame around it and a 15-px rim excluded)."""
    from scipy import ndimage as ndi
    from skimage import data
    from skimage.transform import downscale_local_mean

    if name != "retina":
        return np.ones(data.microaneurysms().shape, bool)
    g = downscale_local_mean(data.retina()[..., 1].astype(np.float32), (2, 2))
    return ndi.binary_erosion(g > 0.1 * np.percentile(g, 75), iterations=15)


def _segments(image: np.ndarray, min_len: int, threshold: float, fov: np.ndarray) -> list[tuple]:
    """Unbranched skeleton stretches of the ridge map inside ``fov``, longest first:
    ``(ends (2, 2), stretch mask)``."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    from ..methods.tracking.greedy import ridge_map

    mask = (ridge_map(image) > threshold) & fov
    skel = skeletonize(mask)
    nb = ndi.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
    junction = skel & (nb >= 3)
    parts, n = ndi.label(skel & ~ndi.binary_dilation(junction, iterations=2), structure=np.ones((3, 3)))
    out = []
    for k in range(1, n + 1):
        sub = parts == k
        if sub.sum() < min_len:
            continue
        deg = ndi.convolve(sub.astype(int), np.ones((3, 3), int), mode="constant") - 1
        ends = np.argwhere(sub & (deg == 1))
        if len(ends) != 2:
            continue
        out.append((np.stack([ends[0], ends[1]]).astype(np.float64), sub))
    out.sort(key=lambda e: -int(e[1].sum()))
    return out


def make_references(out_dir: Path = REF_DIR, per_image: dict | None = None) -> dict:
    """Pick the fibres and trace their references once; writes ``fibres.json`` and ``overlay.png``.

    The reference is the minimal path between the stretch's ends through the Sato cost,
    kept within 3 px of the stretch (so it cannot cut across to another vessel)."""
    from scipy import ndimage as ndi

    from ..methods.tracking.baseline import minimal_path, ridge_cost

    per_image = per_image or {"retina": (8, 50, 0.12), "microaneurysms": (3, 20, 0.15)}
    images = real_images()
    fibres = []
    for name, (n, min_len, thr) in per_image.items():
        img = images[name]
        cost = ridge_cost(img, sigmas=(1.0, 2.0, 3.0))
        picked = []
        for ends, stretch in _segments(img, min_len, thr, _field_of_view(name)):
            mid = ends.mean(0)
            if any(np.linalg.norm(mid - p) < 40 for p in picked):
                continue  # spread the fibres over the image
            near = ndi.binary_dilation(stretch, iterations=3)
            ref = minimal_path(None, ends[0], ends[1], cost=np.where(near, cost, 1e3))
            fibres.append({"image": name, "start": ends[0].tolist(), "end": ends[1].tolist(),
                           "reference": np.round(ref, 2).tolist()})
            picked.append(mid)
            if len(picked) == n:
                break
        if name == "retina":
            fibres += _through_junctions(img, cost, _segments(img, 30, thr, _field_of_view(name)), n_hard=5)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"made_by": "napari_medseg.bench.tracking_real.make_references", "fibres": fibres}
    (out_dir / "fibres.json").write_text(json.dumps(doc, indent=1))
    overlay(images, fibres, out_dir / "overlay.png")
    return doc


def _through_junctions(img, cost, stretches, n_hard: int) -> list[dict]:
    """Harder fibres: a stretch continued through a junction into the stretch that goes on
    most straight (the way the vessel continues), so the tracker must pass a branch point."""
    from scipy import ndimage as ndi

    from ..methods.tracking.baseline import minimal_path

    out, used = [], []
    for ends_a, a in stretches:
        for ia in (0, 1):
            tip, far_a = ends_a[ia], ends_a[1 - ia]
            dir_a = (tip - far_a) / (np.linalg.norm(tip - far_a) + 1e-9)
            best = None
            for ends_b, b in stretches:
                if b is a:
                    continue
                for ib in (0, 1):
                    gap = np.linalg.norm(ends_b[ib] - tip)
                    if gap > 12:
                        continue
                    dir_b = (ends_b[1 - ib] - ends_b[ib]) / (np.linalg.norm(ends_b[1 - ib] - ends_b[ib]) + 1e-9)
                    straight = float(dir_a @ dir_b)
                    if straight > 0.7 and (best is None or straight > best[0]):
                        best = (straight, ends_b[1 - ib], b)
            if best is None:
                continue
            mid = tip
            if any(np.linalg.norm(mid - u) < 60 for u in used):
                continue
            near = ndi.binary_dilation(a | best[2], iterations=3)
            yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
            near |= (yy - tip[0]) ** 2 + (xx - tip[1]) ** 2 <= 14**2  # the junction itself
            ref = minimal_path(None, far_a, best[1], cost=np.where(near, cost, 1e3))
            out.append({"image": "retina", "start": far_a.tolist(), "end": best[1].tolist(),
                        "reference": np.round(ref, 2).tolist(), "through_junction": True})
            used.append(mid)
            if len(out) == n_hard:
                return out
    return out


def overlay(images: dict, fibres: list[dict], path: Path, traces: dict | None = None) -> None:
    """The references (green, start red) over each image, side by side, as a PNG."""
    import imageio.v3 as iio
    from skimage.draw import line as draw_line
    from skimage.transform import resize

    panels = []
    for name, img in images.items():
        scale = 700 / max(img.shape)
        rgb = np.repeat((resize(img, np.round(np.array(img.shape) * scale).astype(int)) * 255)[..., None], 3, 2)
        rgb = rgb.astype(np.uint8)
        for f in (f for f in fibres if f["image"] == name):
            pts = np.asarray(f["reference"]) * scale
            for a, b in zip(pts[:-1], pts[1:]):
                rr, cc = draw_line(*np.round(a).astype(int), *np.round(b).astype(int))
                ok = (rr >= 0) & (rr < rgb.shape[0]) & (cc >= 0) & (cc < rgb.shape[1])
                rgb[rr[ok], cc[ok]] = (40, 220, 60)
            y, x = np.round(np.asarray(f["start"]) * scale).astype(int)
            rgb[max(0, y - 3): y + 4, max(0, x - 3): x + 4] = (230, 40, 40)
        panels.append(rgb)
    hmax = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, hmax - p.shape[0]), (0, 8), (0, 0))) for p in panels]
    iio.imwrite(path, np.concatenate(panels, axis=1))


def load_references(path: Path = REF_DIR / "fibres.json") -> list[dict]:
    return json.loads(Path(path).read_text())["fibres"]


# --------------------------------------------------------------------- scoring
END_NEAR_PX = 10.0  # overshoot counts for traces that came this close to the end: 2 x end radius + a 4-px step


def _score(points: np.ndarray, ref: np.ndarray) -> dict:
    """Coverage (% reference points with a trace point within 3 px), mean error over the
    covered points, and whether the trace took a wrong branch: a run of >= WRONG_RUN_PX
    of trace length more than WRONG_OFF_PX from the reference, before the trace has come
    within 3 px of the reference's far end."""
    from scipy.spatial import cKDTree

    from ..methods.tracking.metrics import distance_to_centreline

    pts = np.asarray(points, np.float64)
    d_ref, _ = cKDTree(pts).query(ref)
    covered = d_ref <= 3.0
    d_tr = distance_to_centreline(pts, ref)
    far_done = np.flatnonzero(np.linalg.norm(pts - ref[-1], axis=1) <= 3.0)
    upto = far_done[0] if len(far_done) else len(pts)
    run, wrong = 0.0, False
    for i in range(1, upto):
        run = run + float(np.linalg.norm(pts[i] - pts[i - 1])) if d_tr[i] > WRONG_OFF_PX else 0.0
        wrong = wrong or run >= WRONG_RUN_PX
    return {"coverage": 100.0 * float(covered.mean()),
            "error": float(d_ref[covered].mean()) if covered.any() else float("nan"), "wrong": wrong}


def _overshoot(points: np.ndarray, end: np.ndarray) -> float:
    """Trace length (px) after its closest approach to ``end``; NaN when it never came
    within END_NEAR_PX of it (then it missed the end: see the reached-end rate)."""
    pts = np.asarray(points, np.float64)
    d = np.linalg.norm(pts - end, axis=1)
    k = int(np.argmin(d))
    if d[k] > END_NEAR_PX:
        return float("nan")
    return float(np.linalg.norm(np.diff(pts[k:], axis=0), axis=1).sum()) if k < len(pts) - 1 else 0.0


def _heading_of(start: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The given direction: from the start towards the reference point HEADING_PX along it."""
    from ..methods.tracking.heading import heading_from_point

    s = np.cumsum(np.r_[0, np.linalg.norm(np.diff(ref, axis=0), axis=1)])
    return heading_from_point(start, ref[min(int(np.searchsorted(s, HEADING_PX)), len(ref) - 1)])


def _summarise(rows: list[dict], prefix: str) -> dict:
    over = [x["overshoot"] for x in rows if np.isfinite(x["overshoot"])]
    return {
        f"{prefix}real_coverage_pct": float(np.mean([x["coverage"] for x in rows])),
        f"{prefix}real_error_px": float(np.nanmean([x["error"] for x in rows])),
        f"{prefix}real_reached_end_rate": float(np.mean([x["reached"] for x in rows])),
        f"{prefix}real_overshoot_px": float(np.mean(over)) if over else 0.0,
        f"{prefix}real_overshoot_n": len(over),
        f"{prefix}real_wrong_branches_per_10": 10.0 * float(np.mean([x["wrong"] for x in rows])),
        f"{prefix}real_ms_per_fibre": float(np.mean([x["ms"] for x in rows])),
    }


def _goals(out: dict) -> tuple[dict, dict]:
    g = out["greedy_real_coverage_pct"]
    text = {
        "real_coverage_pct": f">= greedy ({g:.1f}) and >= 90",
        "real_reached_end_rate": ">= 0.8",
        "real_wrong_branches_per_10": "<= 1",
        "real_ms_per_fibre": f"<= 2 x minimal path ({2 * out['minpath_real_ms_per_fibre']:.0f})",
        "real_entropy_within": "< real_entropy_outside",
    }
    met = {
        "real_coverage_pct": out["real_coverage_pct"] >= max(g, 90.0),
        "real_reached_end_rate": out["real_reached_end_rate"] >= 0.8,
        "real_wrong_branches_per_10": out["real_wrong_branches_per_10"] <= 1.0,
        "real_ms_per_fibre": out["real_ms_per_fibre"] <= 2 * out["minpath_real_ms_per_fibre"],
        "real_entropy_within": out["real_entropy_within"] < out["real_entropy_outside"],
    }
    return text, {k: bool(v) for k, v in met.items()}


TIMING_REPEATS = 5


def _interleaved(fns: dict, repeats: int = TIMING_REPEATS) -> tuple[dict, dict]:
    """``(results, seconds)``: each ``fns[name]()``'s result and its wall time in each of
    ``repeats`` rounds; within a round the trackers run one after another, so that a slower
    or busier spell of this shared CPU falls on all of them alike rather than on one."""
    results, seconds = {}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - t0)
    return results, seconds


def run(quick: bool = False, json_path: str | None = None, model_version: int | None = None,
        symmetries: int = 1) -> dict:
    """Score the current ``tracking`` model, the greedy follower and the minimal path on
    the reference fibres (``quick``: every second fibre). Times are per fibre and include
    each tracker's per-image preparation (ridge map, cost map) shared over the image's
    fibres; ``prepare_image`` is common to all and not timed. ``model_version``: another
    version of the ``tracking`` model than the current one. ``symmetries``: our tracker averages each
    step over that many turned/mirrored views (``TrackConfig.symmetries``; 1, the default, is the
    agent alone)."""
    import torch

    from ..methods.tracking.baseline import minimal_path, ridge_cost
    from ..methods.tracking.greedy import greedy_follow, ridge_map
    from ..methods.tracking.metrics import distance_to_centreline
    from ..methods.tracking.model import load_tracker
    from dataclasses import replace

    from ..methods.tracking.heading import choose_heading
    from ..methods.tracking.track import TIP_RATIO, TrackConfig, track, traces_meet

    torch.set_num_threads(max(1, torch.get_num_threads()))
    images = real_images()
    fibres = load_references()
    if quick:
        fibres = fibres[::2]
    policy, meta = load_tracker(model_version)
    rows: dict[str, list[dict]] = {"ours": [], "greedy": [], "minpath": []}
    rounds: dict[str, list[list[float]]] = {"ours": [], "greedy": [], "minpath": []}  # per image, per round (s)
    auto_rows, ent_in, ent_out, labels = [], [], [], []
    for name in sorted({f["image"] for f in fibres}):  # ours: every fibre of an image in one batch, as the dock does
        group = [f for f in fibres if f["image"] == name]
        labels += [f"{name} #{fibres.index(f)}" + (" (through a junction)" if f.get("through_junction") else "")
                   for f in group]
        img, n = images[name], len(group)
        refs = [np.asarray(f["reference"], np.float64) for f in group]
        starts = np.stack([np.asarray(f["start"], np.float64) for f in group])
        ends = np.stack([np.asarray(f["end"], np.float64) for f in group])
        heads = np.stack([_heading_of(st, ref) for st, ref in zip(starts, refs)])
        cfg = TrackConfig(check_starts=False, max_steps=int(min(400, max(len(r) for r in refs) + 40)),
                          symmetries=symmetries)
        n_max = [int(3 * len(r)) for r in refs]

        def greedy_all():  # the ridge map once per image, then every fibre
            ridge = ridge_map(img)
            return ridge, [greedy_follow(ridge, starts[k], heads[k], None, max_steps=n_max[k]) for k in range(n)]

        def minpath_all():  # the cost map once per image, then every fibre's path
            cost = ridge_cost(img, sigmas=(1.0, 2.0))
            return [minimal_path(None, starts[k], ends[k], cost=cost) for k in range(n)]

        timed, seconds = _interleaved({
            "ours": lambda: track(img, starts, None, policy=policy, config=cfg, directions=heads),
            "greedy": greedy_all, "minpath": minpath_all})
        for who, secs in seconds.items():
            rounds[who].append(secs)
        free, (ridge, greedy_free), minpaths = timed["ours"], timed["greedy"], timed["minpath"]
        ms = {who: 1000 * min(secs) / n for who, secs in seconds.items()}  # per fibre, the image's best round
        ended = track(img, starts, ends, policy=policy, config=cfg, directions=heads)
        one_way = track(img, starts, ends, policy=policy, config=replace(cfg, both_ways=False), directions=heads)
        auto = track(img, starts, None, policy=policy, config=cfg)  # auto heading, no end
        for k in range(n):
            ref, start, end = refs[k], starts[k], ends[k]
            with_end = _score(ended[k].points, ref)
            raw = _score(free[k].raw_points, ref)  # the agent's own points, before the ridge fitting
            rows["ours"].append({**_score(free[k].points, ref), "ms": ms["ours"],
                                 "coverage_unfitted": raw["coverage"], "error_unfitted": raw["error"],
                                 "reached": bool(ended[k].meta["reached_end"]),
                                 "overshoot": _overshoot(ended[k].points, end),
                                 "reached_one_way": bool(one_way[k].meta["reached_end"]),
                                 "joined": bool(ended[k].meta["joined"]),
                                 "end_coverage": with_end["coverage"], "end_wrong": with_end["wrong"]})
            auto_rows.append({**_score(auto[k].points, ref),
                              "heading_ok": float(np.dot(auto[k].meta["heading"], heads[k])) > 0})
            d = distance_to_centreline(free[k].raw_points[:-1], ref)  # where the agent stood
            ent_in += list(free[k].entropy[d <= 3.0])
            ent_out += list(free[k].entropy[d > 3.0])
            g_free = greedy_free[k]
            g_end = greedy_follow(ridge, start, heads[k], end, max_steps=n_max[k])
            g_back = greedy_follow(ridge, end, choose_heading(img, end, start, tip_ratio=TIP_RATIO)[0], start,
                                   max_steps=n_max[k])  # the heading rule ours uses from an end
            rows["greedy"].append({**_score(g_free["points"], ref), "ms": ms["greedy"],
                                   "reached": g_end["reached_end"], "overshoot": _overshoot(g_end["points"], end),
                                   "reached_both_ways": bool(g_end["reached_end"] or g_back["reached_end"]
                                                             or traces_meet(g_end["points"], g_back["points"]))})
            rows["minpath"].append({**_score(minpaths[k], ref), "ms": ms["minpath"],
                                    "reached": True, "overshoot": 0.0})
    out: dict = {"fibres": len(fibres), "images": sorted({f["image"] for f in fibres}),
                 "model": f"tracking v{meta.get('version')}", "symmetries": symmetries}
    for who, prefix in (("ours", ""), ("greedy", "greedy_"), ("minpath", "minpath_")):
        out.update(_summarise(rows[who], prefix))
    # time, round by round: every image's trackers ran within the same spell of the CPU
    per_round = {who: np.sum(np.asarray(r), axis=0) for who, r in rounds.items()}
    ratios = per_round["ours"] / per_round["minpath"]
    out["real_time_ratio_to_minpath_by_round"] = [round(float(v), 3) for v in ratios]
    out["real_time_ratio_to_minpath_median"] = float(np.median(ratios))
    # with the end given: one way only (before the trace from the end), and the joined traces' own quality
    ours = rows["ours"]
    out["real_reached_end_rate_one_way"] = float(np.mean([x["reached_one_way"] for x in ours]))
    out["real_joined_rate"] = float(np.mean([x["joined"] for x in ours]))
    out["real_coverage_pct_unfitted"] = float(np.mean([x["coverage_unfitted"] for x in ours]))
    out["real_error_px_unfitted"] = float(np.nanmean([x["error_unfitted"] for x in ours]))
    out["real_end_coverage_pct"] = float(np.mean([x["end_coverage"] for x in ours]))
    out["real_end_wrong_branches_per_10"] = 10.0 * float(np.mean([x["end_wrong"] for x in ours]))
    out["greedy_real_reached_end_rate_both_ways"] = float(np.mean([x["reached_both_ways"] for x in rows["greedy"]]))
    out["real_entropy_within"] = float(np.nanmean(ent_in)) if ent_in else float("nan")
    out["real_entropy_outside"] = float(np.nanmean(ent_out)) if ent_out else float("nan")
    # start point only: the heading chosen by the tracker (no direction, no end)
    out["real_auto_coverage_pct"] = float(np.mean([x["coverage"] for x in auto_rows]))
    out["real_auto_wrong_branches_per_10"] = 10.0 * float(np.mean([x["wrong"] for x in auto_rows]))
    out["real_auto_heading_ok_rate"] = float(np.mean([x["heading_ok"] for x in auto_rows]))
    out["per_fibre"] = {
        "fibre": labels,  # image and index in fibres.json (of the fibres run)
        "coverage": {who: [round(x["coverage"], 1) for x in r] for who, r in rows.items()},
        "reached_end": {who: [bool(x["reached"]) for x in r] for who, r in rows.items()},
        "overshoot_px": {who: [None if not np.isfinite(x["overshoot"]) else round(x["overshoot"], 1) for x in r]
                         for who, r in rows.items()},
        "wrong_branch": {who: [bool(x["wrong"]) for x in r] for who, r in rows.items()},
        "auto_coverage": [round(x["coverage"], 1) for x in auto_rows],
        "joined": [bool(x["joined"]) for x in rows["ours"]],
        "end_coverage": [round(x["end_coverage"], 1) for x in rows["ours"]],
    }
    out["definitions"] = {
        "coverage": "reference points with a trace point within 3 px (%), start + given direction, no end",
        "error": "mean distance (px) of the covered reference points to the trace",
        "reached_end": "with the end given: the trace's path passed within the end radius (3 px); ours traces "
                       "from both ends and joins the two where they meet (*_one_way: from the start only); "
                       "greedy_*_both_ways: the greedy follower run from both ends, reached when either reaches "
                       "the other end or the two paths meet (the same rule as ours)",
        "end_coverage": "coverage and wrong branches of our trace with the end given (joined where it was)",
        "overshoot": f"with the end given: trace length (px) after its closest approach to the end, over the "
                     f"traces that came within {END_NEAR_PX:g} px of it (their number: *_overshoot_n)",
        "wrong_branch": f"the trace runs > {WRONG_OFF_PX:g} px from the reference for >= {WRONG_RUN_PX:g} px of its "
                        f"length before it reaches the reference's far end; per 10 fibres",
        "ms_per_fibre": f"wall time per fibre (no end): each image's fibres timed as one block per tracker (its "
                        f"ridge/cost map once, then every fibre; ours traces them in one batch), in {TIMING_REPEATS} "
                        "rounds that run the three trackers one after another; the best round per tracker and "
                        "image (this shared CPU's noise only ever adds time), over the image's fibres",
        "time_ratio_to_minpath": "ours over the minimal path's time, all images, round by round (the two measured "
                                 "within the same minute of the CPU); *_median is the median round",
        "direction": f"from the start towards the reference point {HEADING_PX:g} px along it",
        "auto": "start point only: the tracker chooses the heading (no direction, no end)",
    }
    out["goals"], out["goals_met"] = _goals(out)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
