"""The ``predict`` options the three adversarial methods share: 2-D slice stacks in, labels out."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


def slice_predict_options(default_model: str):
    """A ``predict SLUG`` options dataclass whose ``--model`` defaults to ``default_model``."""

    @dataclass
    class PredictOptions:
        images: str = option(None, "a NIfTI or TIFF stack of 2-D slices, or a folder of them", positional=True,
                             required=True)
        out: str = option(None, "output folder (files in it are never replaced)", required=True)
        model: str = option(default_model, "NAME or NAME:VERSION")
        slice_axis: str | None = option(None, "which axis of a 3-D image runs through its 2-D slices (default: last "
                                              "for NIfTI, whose volumes are stored x, y, slice; first for TIFF stacks)",
                                        choices=["first", "last"])
        device: str | None = option(None, "auto, cpu, cuda, cuda:1, mps")
        scheduler: str | None = option(None, "one image per task on a dask.distributed cluster: a scheduler address, "
                                             "or local:N for N one-thread worker processes here (workers read their "
                                             "own files; CPU)")

    return PredictOptions
