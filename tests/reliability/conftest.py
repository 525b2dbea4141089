from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rgb_tif(tmp_path):
    """A small RGB slide (tiled TIFF) that the shipped tissue model segments."""
    from napari_medseg.bench.reliability import _rgb_tiff

    return _rgb_tiff(tmp_path / "slide.tif", 256)


@pytest.fixture
def run_cli(capsys):
    """``napari-medseg ARGV`` in-process: ``(exit code, stdout, stderr)``."""
    from napari_medseg.cli import main

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def tiny_state(value: float = 0.0) -> dict:
    import torch

    return {"w": torch.full((4,), float(value))}


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)
