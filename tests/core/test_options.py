"""Command-line options declared as dataclass fields (core/options.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from napari_medseg.core.options import add_options, defaults, option, positive_int


@dataclass
class Example:
    image: str = option(None, "input", positional=True, required=True)
    out: str = option(None, "output", required=True)
    steps: int | None = option(None, "steps")
    rate: float = option(0.5, "a rate")
    mode: str = option("a", "a mode", choices=["a", "b"])
    fast: bool = option(False, "go fast")
    domain: list = option([], "repeatable", metavar="NAME=DIR")
    tile: int = option(1024, "tile side", type=positive_int)


def _parser():
    p = argparse.ArgumentParser(prog="x", exit_on_error=False)
    add_options(p, Example)
    return p


def test_fields_become_typed_options_with_their_defaults():
    args = _parser().parse_args(["in.tif", "--out", "o", "--steps", "3", "--fast", "--domain", "a=1", "--domain", "b=2"])
    e = Example(**vars(args))  # the parsed names are the fields' names
    assert (e.image, e.out, e.steps, e.rate, e.mode, e.fast, e.domain, e.tile) == (
        "in.tif", "o", 3, 0.5, "a", True, ["a=1", "b=2"], 1024)
    assert isinstance(e.steps, int)
    assert defaults(Example)["rate"] == 0.5 and defaults(Example)["domain"] == []
    assert _parser().parse_args(["i", "--out", "o"]).domain == []  # no list shared between runs


@pytest.mark.parametrize("argv", [["i"], ["i", "--out", "o", "--mode", "c"], ["i", "--out", "o", "--tile", "0"],
                                  ["i", "--out", "o", "--steps", "2.5"]])
def test_bad_values_are_refused(argv):
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _parser().parse_args(argv)


def test_help_shows_each_default_once():
    text = _parser().format_help()
    assert "a rate (default: 0.5)" in text and "tile side (default: 1024)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
