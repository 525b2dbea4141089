"""``napari-medseg bench reliability``: bad input, kills and races, counted.

Every probe runs in a forked child with a time limit (:mod:`.probe`) inside a scratch
user folder, so the user's own models and caches are never touched. Probes:

- the bad-input corpus (:mod:`.reliability_corpus`) through the reader, ``segment``
  and ``track``: a damaged file must be refused in one line, a good one read;
- output safety: ``--out`` on a folder of the user's files, on the input, in a missing
  folder, ``--batch-size 0``, a 2-D model on a 3-D image, a kill -9 during ``segment``;
- checkpoints and the registry: flipped bytes, bogus metadata, a sidecar that is not
  an object, a damaged ``current.json``, restoring a version that does not load;
- a kill -9 during ``train tissue`` (steps lost = last step reported - step saved);
- two processes saving 40 versions each of one model at once.

Each probe ends as ``clear_error``, ``crash`` (a traceback), ``hang`` (> 10 s),
``wrong`` (exit 0 where a refusal was due, or a wrong result) or fine; ``lost`` counts
probes after which a file the user had was gone or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .probe import CLEAR, CRASH, HANG, OK, cli, lost, run_probe, snapshot

TIMEOUT = 10.0


class Tally:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, group: str, name: str, kind: str, expect: str, lost_files=(), note: str = "") -> None:
        if kind == OK and expect == "error":
            verdict = "wrong"
        elif kind == CLEAR and expect == "ok":
            verdict = "wrong"
        else:
            verdict = kind
        self.rows.append({"group": group, "name": name, "outcome": verdict, "expect": expect,
                          "lost": len(list(lost_files)), "note": note[:300]})

    def counts(self) -> dict:
        c = {"tried": len(self.rows), "clear_error": 0, "crash": 0, "hang": 0, "wrong": 0, "lost": 0}
        for r in self.rows:
            if r["outcome"] in c:
                c[r["outcome"]] += 1
            c["lost"] += int(r["lost"] > 0)
        return c


def _exit_code(call) -> int:
    """Run ``call()`` like a CLI command: 0, or 2 with one ``napari-medseg: error:`` line."""
    import sys

    from ..core.errors import MedsegError

    try:
        call()
    except MedsegError as exc:
        print(f"napari-medseg: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _read(path: str) -> int:
    """Open like the napari reader does and decode the first tile of every level."""
    from ..core.io import read_image

    def read():
        levels, _ = read_image(path)
        for lv in levels:
            np.asarray(lv[tuple(slice(0, 64) for _ in lv.shape)])

    return _exit_code(read)


def _warm_imports() -> None:
    """Import what the probes use once, so each forked child starts in milliseconds."""
    import napari_medseg.cli  # noqa: F401
    import napari_medseg.methods.tracking.cli  # noqa: F401
    import napari_medseg.core.io  # noqa: F401
    import napari_medseg.core.registry  # noqa: F401
    import napari_medseg.core.segment  # noqa: F401
    import napari_medseg.methods.tracking.track  # noqa: F401


def _read_swc(path: str) -> int:
    from ..methods.tracking.swc import read_swc

    return _exit_code(lambda: read_swc(path))


def corpus_probes(tally: Tally, work: Path, quick: bool) -> None:
    """Each corpus file through its reader, and the damaged ones through the commands that take files."""
    from .reliability_corpus import make_input_corpus

    items = make_input_corpus(work / "corpus", bomb_mib=128 if quick else 512)
    keep = work / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("the user's notes\n")
    good_tif = next(str(it["path"]) for it in items if it["name"] == "good tiled TIFF")
    for i, item in enumerate(items):
        path = str(item["path"])
        before = snapshot(path, keep)
        if item["kind"] == "swc":
            probes = [("read", (_read_swc, path))]
            if item["expect"] == "error":
                probes.append(("finetune", (cli, "finetune", "--image", good_tif, "--swc", path, "--updates", "1")))
        else:
            probes = [("read", (_read, path))]
            if not quick or item["expect"] == "error":
                probes += [
                    ("segment", (cli, "segment", path, "--model", "tissue", "--tile", "256",
                                 "--out", str(keep / f"r{i}.zarr"))),
                    ("track", (cli, "track", path, "--starts", "8,8", "--max-steps", "20",
                               "--out", str(keep / f"t{i}.swc"))),
                ]
        for what, (func, *args) in probes:
            out = run_probe(func, *args, timeout=TIMEOUT, workdir=work)
            expect = item["expect"] if what == "read" else ("error" if item["expect"] == "error" else "any")
            tally.add("input", f"{item['name']} / {what}", out.kind, expect, lost(before, snapshot(path, keep)),
                      out.message)


def _rgb_tiff(path: Path, size: int, seed: int = 0) -> Path:
    import tifffile

    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 230, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = (180, 90, 160)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    tifffile.imwrite(path, img, tile=(256, 256) if size >= 256 else None)
    return path


def output_probes(tally: Tally, work: Path) -> None:
    import nibabel as nib

    img = _rgb_tiff(work / "slide.tif", 256)
    users = work / "user-folder"
    users.mkdir()
    (users / "notes.txt").write_text("keep me\n")
    vol = work / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 32, 32)).astype(np.float32), np.eye(4)), vol)
    done = work / "done.zarr"
    first = run_probe(cli, "segment", img, "--tile", "256", "--out", done, timeout=60, workdir=work)
    tally.add("output", "segment into a fresh path", first.kind, "ok", note=first.message)
    cases = [
        ("--out is a folder of the user's files", ("segment", img, "--tile", "256", "--out", users)),
        ("--out is the input", ("segment", done, "--tile", "256", "--out", done)),
        ("--out in a missing folder", ("segment", img, "--tile", "256", "--out", work / "no" / "such" / "r.zarr")),
        ("--batch-size 0", ("segment", img, "--tile", "256", "--batch-size", "0", "--out", work / "b0.zarr")),
        ("--tile 0", ("segment", img, "--tile", "0", "--out", work / "t0.zarr")),
        ("2-D model on a 3-D volume", ("segment", vol, "--out", work / "vol.zarr")),
        ("existing result without --overwrite", ("segment", img, "--tile", "256", "--out", done)),
        ("track --out onto an existing file", ("track", img, "--starts", "128,128", "--out", users / "notes.txt")),
    ]
    for name, argv in cases:
        before = snapshot(img, users, done, vol)
        out = run_probe(cli, *argv, timeout=60, workdir=work)
        tally.add("output", name, out.kind, "error", lost(before, snapshot(img, users, done, vol)), out.message)
    _kill_segment(tally, work, done)


def segment_and_kill(image, out, *extra) -> bool:
    """Start ``napari-medseg segment``, kill -9 it once it reports its second tile; True if it
    was still running then (so the kill really interrupted it)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "napari_medseg.cli", "segment", str(image), "--tile", "512",
                             "--out", str(out), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=os.environ.copy())
    os.set_blocking(proc.stderr.fileno(), False)
    seen, t0 = b"", time.time()
    while proc.poll() is None and time.time() - t0 < 120:
        seen += proc.stderr.read() or b""
        if b" 2/" in seen or b" 3/" in seen:
            break
        time.sleep(0.02)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


def _kill_segment(tally: Tally, work: Path, done: Path) -> None:
    """kill -9 a ``segment --overwrite`` onto a finished result, and one onto a fresh path, mid-run."""
    big = _rgb_tiff(work / "big.tif", 3072, seed=1)
    before = snapshot(done)
    alive = segment_and_kill(big, done, "--overwrite")
    out = run_probe(_read_result, str(done), timeout=TIMEOUT, workdir=work)
    kind = "wrong" if not alive else (OK if out.kind == OK else out.kind)
    tally.rows.append({"group": "kill", "name": "kill -9 during segment --overwrite: the old result opens",
                       "outcome": kind, "expect": "ok", "lost": int(bool(lost(before, snapshot(done)))),
                       "note": out.message})
    fresh = work / "fresh.zarr"
    alive = segment_and_kill(big, fresh)
    out = run_probe(_read_result, str(fresh), timeout=TIMEOUT, workdir=work)
    # what is left must be refused as incomplete, never read as a finished result
    tally.add("kill", "kill -9 during segment to a new path: the remains are refused",
              out.kind if alive else "wrong", "error", note=out.message)


def _read_result(path: str) -> int:
    from ..core.tilestore import open_pyramid_output

    return _exit_code(lambda: open_pyramid_output(path))


def checkpoint_probes(tally: Tally, work: Path) -> None:
    """Damaged checkpoints and registry files in the scratch user folder."""
    import torch

    from ..core import paths
    from ..core.checkpoints import load_checkpoint, save_checkpoint
    from ..core.registry import Registry

    img = _rgb_tiff(work / "ck.tif", 128)
    reg = Registry()
    shipped = reg.get("tissue")
    state, meta = load_checkpoint(shipped.path)
    user = paths.user_models_dir()

    def variant(name: str, edit_meta=None, flip: bool = False):
        m = json.loads(json.dumps(meta))
        if edit_meta:
            edit_meta(m)
        folder = user / name
        folder.mkdir(parents=True, exist_ok=True)
        keep = {k: m[k] for k in ("method", "arch", "config", "metrics") if k in m}
        extra = {k: v for k, v in m.items() if k not in keep and k not in ("version", "sha256", "created", "torch")}
        p = folder / "v0001.pt"
        save_checkpoint(p, state, version=1, extra=extra, **keep)
        if flip:
            raw = bytearray(p.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            p.write_bytes(bytes(raw))
        return name

    def set_(path, value):
        def edit(m):
            d = m
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = value
        return edit

    cases = [
        ("flipped bytes in the weights", variant("flipped", flip=True)),
        ("bogus arch kwargs", variant("bogus_kwargs", set_(("arch", "kwargs"), {"no_such_argument": 3}))),
        ("arch of the wrong type", variant("arch_type", set_(("arch",), "unet"))),
        ("unknown io.input", variant("io_input", set_(("io", "input"), "hyperspectral"))),
        ("io.stride 0", variant("io_stride", set_(("io", "stride"), 0))),
    ]
    for name, model in cases:
        out = run_probe(cli, "segment", img, "--model", model, "--tile", "128", "--out", work / f"{model}.zarr",
                        timeout=60, workdir=work)
        tally.add("checkpoint", name, out.kind, "error", note=out.message)
    # a sidecar that is JSON but not an object: info still works
    (user / "flipped" / "v0001.json").write_text("[1, 2, 3]")
    out = run_probe(cli, "info", timeout=60, workdir=work)
    tally.add("checkpoint", "sidecar that is not an object: info", out.kind, "ok", note=out.message)
    # a damaged current.json never switches versions silently
    good = variant("pointer")
    save_checkpoint(user / good / "v0002.pt", state, version=2, method=meta["method"], arch=meta["arch"],
                    config=meta.get("config", {}), metrics=meta.get("metrics", {}), extra={"io": meta["io"]})
    (user / good / "current.json").write_text("{not json")
    out = run_probe(cli, "segment", img, "--model", good, "--tile", "128", "--out", work / "ptr.zarr",
                    timeout=60, workdir=work)
    tally.add("registry", "damaged current.json", out.kind, "error", note=out.message)
    # restoring a version that does not load is refused and changes nothing
    broken = user / good / "v0003.pt"
    broken.write_bytes(b"not a checkpoint")
    (user / good / "current.json").write_text(json.dumps({"version": 1, "source": "user"}))
    before = snapshot(user / good / "current.json")
    out = run_probe(cli, "models", "restore", good, "3", timeout=60, workdir=work)
    tally.add("registry", "restore a version that does not load", out.kind, "error",
              lost(before, snapshot(user / good / "current.json")), out.message)
    del torch


def _save_versions(name: str, n: int, tag: str) -> int:
    import torch

    from ..core.registry import Registry

    reg = Registry()
    for i in range(n):
        reg.save_new_version(name, {"w": torch.full((4,), float(i))}, method=name,
                             arch={"name": "none"}, extra={"writer": tag, "i": i}, make_current=True)
    return 0


def concurrent_probe(work: Path, saves: int = 40) -> dict:
    """Two processes save ``saves`` versions each of one model at once."""
    import multiprocessing as mp

    from ..core.checkpoints import file_sha256
    from ..core.registry import Registry

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_save_versions, args=("race", saves, t)) for t in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    found = [e for e in Registry().list("race") if e.source == "user"]
    mismatches = 0
    for e in found:
        if e.meta.get("sha256") != file_sha256(e.path):
            mismatches += 1
    return {"concurrent_versions_expected": 2 * saves, "concurrent_versions_found": len(found),
            "sidecar_mismatches": mismatches}


def kill_training_probe(work: Path, every: int) -> dict:
    """kill -9 ``train tissue`` once it has reported a few checkpoints; how many steps are lost."""
    from .reliability_training import kill_training

    return kill_training(work, every=every)


def run(quick: bool = False, json_path: str | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="medseg-reliability-"))
    old_home = os.environ.get("NAPARI_MEDSEG_HOME")
    os.environ["NAPARI_MEDSEG_HOME"] = str(work / "home")
    t0 = time.perf_counter()
    try:
        _warm_imports()
        tally = Tally()
        corpus_probes(tally, work, quick)
        output_probes(tally, work)
        checkpoint_probes(tally, work)
        counts = tally.counts()
        race = concurrent_probe(work, saves=40)
        kill = kill_training_probe(work, every=10)
    finally:
        if old_home is None:
            os.environ.pop("NAPARI_MEDSEG_HOME", None)
        else:
            os.environ["NAPARI_MEDSEG_HOME"] = old_home
        shutil.rmtree(work, ignore_errors=True)
    results = {
        **counts,
        "kill_training_steps_lost": kill["steps_lost"],
        "kill_training_checkpoint_every": kill["every"],
        **race,
        "seconds": round(time.perf_counter() - t0, 1),
        "goals": {
            "crash": "0", "hang": "0 (limit 10 s)", "wrong": "0", "lost": "0",
            "kill_training_steps_lost": f"<= {kill['every']}",
            "concurrent_versions_found": "= expected", "sidecar_mismatches": "0",
        },
        "rows": [r for r in tally.rows if r["outcome"] not in (OK, CLEAR) or r["lost"]],
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results


__all__ = ["run", "Tally", "HANG", "CRASH"]
