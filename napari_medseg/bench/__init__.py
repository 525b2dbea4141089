"""Benchmarks behind ``napari-medseg bench NAME [--quick] --json FILE``.

Each benchmark measures ours and its baseline side by side in one run and reports
ratios; absolute times only mean something on a GPU. A method's benchmark is found from
its ``MethodSpec`` (``bench``, ``bench_module``), so adding one edits no file here.
"""

from __future__ import annotations

#: the engine's benchmarks; each paper method's come from its MethodSpec (see below)
ENGINE_BENCHMARKS = {
    "tiling": "napari_medseg.bench.tiling:run",
    "reliability": "napari_medseg.bench.reliability:run",
    "scaling": "napari_medseg.bench.scaling:run",
}
ALIASES = {"joint": "joint_lesion_tissue"}  # names benchmarks were first shipped under


def _method_benchmarks() -> dict:
    """``bench NAME`` of every paper method (``methods.METHODS``): its module's ``run``, and
    ``NAME_real`` (``bench NAME --real``) when a ``<module>_real`` module exists."""
    from importlib.util import find_spec

    from ..methods import METHODS

    out = {}
    for spec in METHODS:
        module = spec.bench_module or f"{__name__}.{spec.bench}"
        out[spec.bench] = f"{module}:run"
        if find_spec(f"{module}_real") is not None:
            out[f"{spec.bench}_real"] = f"{module}_real:run"
    return out


BENCHMARKS = {**ENGINE_BENCHMARKS, **_method_benchmarks()}
BENCHMARKS.update({alias: BENCHMARKS[name] for alias, name in ALIASES.items()})
