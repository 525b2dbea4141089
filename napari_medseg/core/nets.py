"""Networks by name, so a checkpoint can say how to rebuild its model.

A checkpoint stores ``arch = {"name": ..., "kwargs": {...}}``; :func:`build` turns it
back into a module. Methods register the small nets MONAI lacks with
:func:`register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}


def register(name: str):
    def deco(fn):
        _BUILDERS[name] = fn
        return fn

    return deco


@register("monai.UNet")
def _monai_unet(**kwargs) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(**kwargs)


# networks that core's own modules register (the methods' are named in their MethodSpec.nets)
_CORE_NETWORK_MODULES = ("napari_medseg.core.adversarial.networks",)


def _import_registering_modules() -> None:
    """Import every module that registers a network: core's, and each method's ``nets``
    as listed once in ``METHODS`` (``methods/__init__.py``: the list, not a method)."""
    from .. import methods

    for module in _CORE_NETWORK_MODULES + methods.network_modules():
        importlib.import_module(module)


def build(arch: dict) -> torch.nn.Module:
    from .errors import NotACheckpointError

    name = arch.get("name")
    if name not in _BUILDERS:
        _import_registering_modules()
    if name not in _BUILDERS:
        raise NotACheckpointError(f"Unknown network {name!r}; known: {sorted(_BUILDERS)}.")
    return _BUILDERS[name](**arch.get("kwargs", {}))


def has_instance_norm(model: torch.nn.Module) -> bool:
    """Instance norm takes statistics over the whole input: tiling cannot reproduce it."""
    return any(isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in model.modules())


def bench_unet_arch(spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2) -> dict:
    """The reference U-Net of the foundation benchmarks and the shipped tissue model."""
    return {
        "name": "monai.UNet",
        "kwargs": {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "num_res_units": 2,
            "norm": "batch",
        },
    }


def fuse_conv_bn(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``model`` in which every 2D convolution that a batch norm
    directly follows inside a ``Sequential`` absorbs it (eval statistics): the same output
    up to float rounding, one pass over the data less per pair. ``model`` is unchanged."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for seq in [m for m in fused.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = torch.nn.Identity()
    return fused
