"""Tiles on a two-worker dask.distributed cluster give the same result as one machine."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_medseg.core import tiling
from napari_medseg.core.jobs import collect
from napari_medseg.core.sources import PathSource

distributed = pytest.importorskip("distributed")


def softmax(y):
    return torch.softmax(y, 1)


@pytest.mark.slow
def test_two_worker_cluster_matches_local(unet2d, rng, tmp_path):
    img = (rng.random((700, 520)) * 255).astype(np.uint8)
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, img, tile=(128, 128))
    cfg = tiling.TileConfig(tile=256, margin=48, blend=16, batch_size=2)
    local = tiling.create_output(tmp_path / "local.zarr", img.shape, 2, cfg)
    collect(tiling.tiled_inference(unet2d, img, local, cfg, postprocess=softmax))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = tiling.create_output(tmp_path / "remote.zarr", img.shape, 2, cfg)
            source = PathSource(path)  # workers open the file themselves
            reports, _ = collect(tiling.tiled_inference(unet2d, source, remote, cfg, postprocess=softmax, client=client))
            workers_used = {w for w, info in client.scheduler_info()["workers"].items()}
    assert len(workers_used) == 2 and reports[-1].step == cfg.plan(img.shape).n_tiles
    np.testing.assert_allclose(remote[...], local[...], atol=1e-5)
    whole = tiling.predict_whole(unet2d, img, postprocess=softmax)
    assert np.abs(remote[...] - whole).max() <= 1e-5
