"""Shared by the tracking tests: ``napari-medseg track`` on one synthetic fibre, with every
TrackConfig the tracker received recorded."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture
def track_cli(tmp_path, monkeypatch):
    import tifffile

    from napari_medseg.cli import main
    from napari_medseg.methods.tracking import track as T
    from napari_medseg.methods.tracking.synthetic import generate_many

    r = generate_many("SI", 1, seed=80)[0]
    tif = tmp_path / "fibre.tif"
    tifffile.imwrite(tif, r.image)
    configs, real = [], T.track_iter

    def spy(policy, image, starts, ends=None, config=None, *a, **k):
        configs.append(config)
        return real(policy, image, starts, ends, config, *a, **k)

    monkeypatch.setattr(T, "track_iter", spy)
    start = f"{r.start[0]:.1f},{r.start[1]:.1f}"

    def run(out: str, *extra: str) -> int:
        return main(["track", str(tif), "--starts", start, "--max-steps", "20", *extra, "--out", str(tmp_path / out)])

    return SimpleNamespace(run=run, configs=configs, dir=tmp_path)
