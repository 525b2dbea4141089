"""Every paper's method is whole: a dock in the manifest, sample data, train and predict
commands, a benchmark, a demo step, shipped models with cards, and docs pages (issue 18)."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest
import yaml

from napari_medseg.cli import build_parser
from napari_medseg.core import paths
from napari_medseg.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = yaml.safe_load((ROOT / "napari_medseg" / "napari.yaml").read_text())


def _subcommands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _choices(command: str) -> list:
    """The METHOD subcommands of ``command`` (train, predict), aliases included."""
    return list(next(a for a in _subcommands()[command]._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_the_list_names_every_method_package_once():
    packages = {p.name for p in (ROOT / "napari_medseg" / "methods").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(m.slug for m in METHODS) == sorted(packages - {"tissue"})  # tissue: the engine's reference model


@pytest.mark.parametrize("spec", METHODS, ids=lambda m: m.slug)
def test_every_entry_point_of_a_method_exists(spec):
    commands = {c["id"]: c for c in MANIFEST["contributions"]["commands"]}
    docked = {w["command"] for w in MANIFEST["contributions"]["widgets"]}
    assert spec.widget in commands and spec.widget in docked
    module, attr = commands[spec.widget]["python_name"].split(":")
    assert hasattr(importlib.import_module(module), attr)
    samples = {s["key"]: s["command"] for s in MANIFEST["contributions"]["sample_data"]}
    assert set(spec.samples) <= set(samples)
    # one folder, one name: the dock and the samples live in the method's own packages
    assert module == f"napari_medseg.widgets.{spec.slug}"
    for key in spec.samples:
        sample_module, sample_func = commands[samples[key]]["python_name"].split(":")
        assert sample_module == f"napari_medseg.methods.{spec.slug}.sample", key
        assert callable(getattr(importlib.import_module(sample_module), sample_func))
    assert set(spec.train) <= set(_choices("train"))
    subs = _subcommands()
    for p in spec.predict:
        words = p.split()
        if words[0] == "predict":
            assert words[1] in _choices("predict")
        else:
            assert words[0] in subs
    from napari_medseg.bench import BENCHMARKS
    from napari_medseg.demo import DEMOS

    assert spec.bench in BENCHMARKS and spec.demo in DEMOS
    for page in spec.docs:
        assert (ROOT / "docs" / page).is_file(), page
    for model in spec.models:
        folder = paths.models_dir() / model
        assert sorted(folder.glob("v*.pt")), f"no shipped {model} model"
        if not model.endswith("_critic"):
            assert (folder / "MODEL_CARD.md").is_file(), f"{model} has no model card"


@pytest.mark.parametrize("spec", METHODS, ids=lambda m: m.slug)
def test_one_slug_and_options_declared_once(spec):
    """`train SLUG` and `predict SLUG` exist under the package's name, and `train SLUG`
    takes exactly the options its TrainOptions dataclass declares, with those defaults."""
    import dataclasses

    from napari_medseg.core.options import TrainRun

    assert spec.train[0] == spec.slug and spec.predict[0] == f"predict {spec.slug}" and spec.demo == spec.slug
    assert spec.bench in (spec.slug, "adversarial")  # the three adversarial papers share one bench (issue 20)
    trainer = _subcommands()["train"]
    target = next(a for a in trainer._actions if isinstance(a, argparse._SubParsersAction)).choices[spec.slug]
    options = importlib.import_module(f"napari_medseg.methods.{spec.slug}.options").TrainOptions
    declared = {f.name: f for f in dataclasses.fields(options)} | {f.name: f for f in dataclasses.fields(TrainRun)}
    taken = {a.dest: a for a in target._actions if a.dest not in ("help", "network")}
    assert set(taken) == set(declared)
    for name, f in declared.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert taken[name].default == default, name


def test_a_fresh_process_rebuilds_every_shipped_network_from_the_method_list():
    """core.nets knows no method: the modules that register networks are named once, in
    each MethodSpec.nets; a fresh process (nothing imported yet) loads every shipped model."""
    import subprocess
    import sys

    names = sorted({m for spec in METHODS for m in spec.models})
    code = ("import sys; from napari_medseg.core.registry import Registry; r = Registry(); "
            "print(','.join(type(r.get(n).load('cpu')[0]).__name__ for n in sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, check=True)
    assert len(out.stdout.strip().split(",")) == len(names)
    source = (ROOT / "napari_medseg" / "core" / "nets.py").read_text()
    assert "napari_medseg.methods." not in source  # no method module named in core


#: dock settings that are hyperparameters of a run (not layers, display or UI state)
_HYPERPARAMETER = re.compile(r"(steps|updates|rounds|lr|batch_size|patch|warmup|seed|weight|features|threshold|"
                             r"fraction|radius|optimizer|phantom_shape|preview_size)")


@pytest.mark.parametrize("spec", METHODS, ids=lambda m: m.slug)
def test_the_dock_and_the_command_line_share_one_set_of_defaults(spec):
    """A dock's hyperparameter defaults are declared in its method package (options.DEFAULTS
    or an options dataclass), and a setting that shares a name with a command-line option
    starts at the option's default unless DEFAULTS says otherwise (issue 18: the defaults
    of the dock and the CLI had drifted apart)."""
    import dataclasses

    from napari_medseg.core.options import defaults

    options = importlib.import_module(f"napari_medseg.methods.{spec.slug}.options")
    module, cls = spec.settings.split(":")
    dock = defaults(getattr(importlib.import_module(module), cls))
    declared = {}
    for obj in vars(options).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == options.__name__:
            prefix = obj.__name__.removesuffix("Options").lower()
            for k, v in defaults(obj).items():
                if v is not None:
                    declared.setdefault(k, v)
                    declared[f"{prefix}_{k}"] = v  # e.g. the dock's train_updates is TrainOptions.updates
    short = options.DEFAULTS
    assert set(short) <= set(dock), f"DEFAULTS names settings the dock does not have: {set(short) - set(dock)}"
    for name, value in dock.items():
        if name in short:
            assert value == short[name], name
        elif name in declared and not isinstance(value, list) and value is not None:
            assert value == declared[name], f"{name}: the dock starts at {value!r}, the command line at {declared[name]!r}"
        if name != "device" and _HYPERPARAMETER.search(name):
            assert name in short or name in declared, f"the dock's {name} default is not declared in {options.__name__}"
