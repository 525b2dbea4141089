"""Models that leave the plugin: bioimage.io (model format 0.5) export and import.

An exported package holds TorchScript weights that take what a user's image gives and
return what the plugin shows, so deepImageJ, ilastik, QuPath or ``bioimageio.core`` run
it without napari-medseg:

- segmentation models (``io.input == "rgb_uint8"``, e.g. ``tissue``, ``glomeruli``):
  RGB values 0-255 in (float32, batch, channel, y, x), class probabilities out (the
  scaling and the softmax are inside the weights);
- the CycleGAN staining generator: RGB in [-1, 1] in and out;
- the despeckler: one reflectance channel scaled to [0, 1] in, the despeckled channel out
  (batch norms folded into the convolutions);
- the joint lesion + tissue networks: 3-D, one channel per modality (resampled and
  z-normalised inside the brain, as the description says), class probabilities out.
  The tracker is left out: it is a policy acting on a moving window, which the format
  cannot describe.

Tile sizes are multiples of the network's stride; the output is as large as the input,
with a halo of the receptive-field margin the plugin's own tiling trusts. The package
also carries the PyTorch state dict and the registry metadata as attachments, so
:func:`import_model` gives back an identical registry version (same weights, same
architecture, same settings). Each package contains a test input and the expected
output, which ``bioimageio.core``'s ``test_model`` checks.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .nets import fuse_conv_bn

#: the staining generator's architecture name (RGB in [-1, 1] in and out)
GENERATOR_ARCH = "combalia2019.ResnetGenerator"
#: architectures exported by name (core imports no method): what kind of package each makes
_KINDS = {GENERATOR_ARCH: "rgb_generator", "combalia2019.DespeckleNet": "grey_restoration",
          "combalia2019.UDespeckleNet": "grey_restoration", "dorent2019.HeteroModalNet": "brain_segmentation"}


class _Softmax(torch.nn.Module):
    """Class probabilities of ``net`` on ``x * scale``: the plugin's input scaling and softmax
    inside the weights (0-255 RGB for the segmentation models, normalised volumes as they are)."""

    def __init__(self, net: torch.nn.Module, scale: float = 1.0):
        super().__init__()
        self.net, self.scale = net, float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x * self.scale), dim=1)


def kind_of(meta: dict) -> str:
    io = meta.get("io") or {}
    if io.get("input") == "rgb_uint8" and io.get("postprocess") == "softmax":
        return "segmentation"
    arch = (meta.get("arch") or {}).get("name")
    if arch in _KINDS:
        return _KINDS[arch]
    raise InputError(f"{meta.get('name', 'This model')} cannot be exported to bioimage.io yet: only RGB "
                     "segmentation models (tissue, glomeruli), the staining generator, the despeckler and the "
                     "joint lesion + tissue networks can. (The axon tracker is a policy that acts step by step "
                     "on a moving window, which the bioimage.io model format cannot describe.)")


@dataclass
class _Plan:
    """What the package says about the model's tensors."""

    wrapped: torch.nn.Module
    x: np.ndarray
    in_names: list
    out_names: list
    in_desc: str
    out_desc: str
    value_range: tuple | None
    space: tuple
    stride: int
    halo: int
    tags: list
    notes: str = ""  # how to prepare the input, in the package's README (descriptions hold 128 characters)


def _plan(model, meta: dict, kind: str, test_size: int | None) -> _Plan:
    rng = np.random.default_rng(0)
    if kind == "brain_segmentation":  # 3-D, one channel per modality
        halo = int(model.receptive_radius)
        stride = int(model.total_stride)
        size = test_size or max(32, -(-(2 * halo + 8) // stride) * stride)
        mods = list(model.modalities)
        names = list((meta.get("label_set") or {}).get("names") or [f"class{i}" for i in range(5)])
        spacing = " x ".join(f"{v:g}" for v in meta.get("spacing") or [1, 1, 1])
        x = rng.standard_normal((1, len(mods), size, size, size)).astype(np.float32)
        return _Plan(_Softmax(model).eval(), x, mods, names,
                     f"{' + '.join(mods)}, RAS, {spacing} mm, z-normalised inside the brain (see README)",
                     ("class probabilities: " + ", ".join(names))[:128], None, ("z", "y", "x"), stride, halo,
                     ["napari-medseg", "brain", "mri", "3d"],
                     f"Input: one channel per modality ({', '.join(mods)}, every one present), the volumes "
                     f"reoriented to RAS and resampled to {spacing} mm; each modality clipped to its 1st-99th "
                     "percentile inside the brain mask, then z-normalised there (zero mean, unit variance) and set "
                     "to 0 outside it. napari-medseg does this itself, maps the result back onto the scan's grid "
                     "and refines it at native resolution; the package holds the network alone.")
    stride, halo = _geometry(model, meta, kind)
    size = test_size or max(64, -(-(2 * halo + 32) // stride) * stride)
    if kind == "segmentation":
        classes = list(meta["io"].get("classes") or [f"class{i}" for i in range(2)])
        return _Plan(_Softmax(model, 1 / 255.0).eval(), (rng.random((1, 3, size, size)) * 255).astype(np.float32),
                     ["red", "green", "blue"], classes, "RGB image, values 0-255 (8-bit colour)",
                     "class probabilities (softmax): " + ", ".join(classes), (0.0, 255.0), ("y", "x"), stride, halo,
                     ["napari-medseg", "histology", "2d"])
    if kind == "grey_restoration":
        x = (rng.random((1, 1, size, size)) * rng.gamma(1.0 / 0.04, 0.04, (1, 1, size, size))).astype(np.float32)
        return _Plan(fuse_conv_bn(model.eval()), x, ["reflectance"], ["reflectance"],
                     "one reflectance (RCM) channel scaled to [0, 1] (see README)",
                     "the despeckled channel on the same scale", None, ("y", "x"), stride, halo,
                     ["napari-medseg", "confocal", "denoising", "2d"],
                     "Input: one reflectance (RCM) channel scaled so that the background level (the median "
                     "below the image's Otsu threshold) is 0 and the bright tissue level (the 99.5th percentile "
                     "above it) is 1. Scale the output back the same way. napari-medseg does both itself.")
    return _Plan(model, (rng.random((1, 3, size, size)) * 2 - 1).astype(np.float32), ["red", "green", "blue"],
                 ["red", "green", "blue"], "Gareau digital stain, RGB scaled to [-1, 1]", "H&E-like RGB in [-1, 1]",
                 (-1.0, 1.0), ("y", "x"), stride, halo, ["napari-medseg", "confocal", "2d"])


def _geometry(model, meta: dict, kind: str) -> tuple[int, int]:
    """(stride, halo) in pixels."""
    io = meta.get("io") or {}
    if kind == "segmentation":
        return int(io.get("stride", 8)), int(io.get("margin", 32))
    # the total stride of the generator's stride-2 convolutions (core imports no method)
    stride = 2 ** sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d) and tuple(m.stride) == (2, 2))
    return int(getattr(model, "stride", stride)), int(model.receptive_radius)  # a pooling network names its own


def export_model(entry, out_path, *, test_size: int | None = None) -> Path:
    """Write ``entry`` (a registry :class:`~napari_medseg.core.registry.ModelEntry`) as a
    bioimage.io model package (``.zip``) at ``out_path``, never over an existing file."""
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5 as bio
    except ImportError as exc:
        raise InputError("Exporting to bioimage.io needs bioimageio.core: "
                         "pip install 'napari-medseg[bioimageio]'.") from exc

    from .atomic import atomic_path

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".zip":
        raise InputError(f"A bioimage.io package is a .zip file, not {out_path.name}.")
    if out_path.exists():
        raise InputError(f"{out_path} exists; napari-medseg never replaces a file. Choose another name.")
    model, meta = entry.load("cpu")
    model.eval()
    kind = kind_of(meta)
    plan = _plan(model, meta, kind, test_size)
    x = plan.x
    with torch.no_grad():
        y = plan.wrapped(torch.from_numpy(x)).numpy().astype(np.float32)
    size = x.shape[-1]

    with tempfile.TemporaryDirectory(prefix="medseg-bioimageio-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "test_input.npy", x)
        np.save(tmp / "test_output.npy", y)
        traced = torch.jit.trace(plan.wrapped, torch.from_numpy(x))
        traced.save(str(tmp / "weights.torchscript.pt"))
        torch.save(model.state_dict(), tmp / "state_dict.pt")
        (tmp / "napari_medseg.json").write_text(json.dumps({**meta, "name": entry.name, "version": entry.version},
                                                           default=str, indent=2))
        card = entry.path.parent / "MODEL_CARD.md"
        doc = card.read_text() if card.is_file() else f"# {entry.name}\n\nA napari-medseg model ({meta.get('method')}).\n"
        notes = f"\n\n## Input\n\n{plan.notes}\n" if plan.notes else ""
        (tmp / "README.md").write_text(doc + notes + "\n\nExported from napari-medseg " + _version() + ".\n")

        def axes(names, output: bool):
            batch = bio.BatchAxis()
            channel = bio.ChannelAxis(channel_names=[bio.Identifier(n.replace(" ", "_")) for n in names])
            if not output:
                space = [bio.SpaceInputAxis(id=bio.AxisId(a), size=bio.ParameterizedSize(min=size, step=plan.stride))
                         for a in plan.space]
            else:
                space = [bio.SpaceOutputAxisWithHalo(id=bio.AxisId(a), halo=plan.halo, size=bio.SizeReference(
                    tensor_id=bio.TensorId("input"), axis_id=bio.AxisId(a))) for a in plan.space]
            return [batch, channel, *space]

        in_data = (bio.IntervalOrRatioDataDescr(type="float32", range=plan.value_range) if plan.value_range
                   else bio.IntervalOrRatioDataDescr(type="float32"))
        descr = bio.ModelDescr(
            name=f"napari-medseg {entry.name} v{entry.version}",
            description=f"{entry.name}: {meta.get('method', '')} model exported from napari-medseg"[:1024],
            authors=[bio.Author(name="napari-medseg developers")],
            cite=[_citation(bio, meta)],
            license=bio.LicenseId("BSD-3-Clause"),
            documentation=bio.FileDescr(source=tmp / "README.md"),
            tags=plan.tags,
            inputs=[bio.InputTensorDescr(
                id=bio.TensorId("input"), axes=axes(plan.in_names, False), description=plan.in_desc,
                test_tensor=bio.FileDescr(source=tmp / "test_input.npy"), data=in_data)],
            outputs=[bio.OutputTensorDescr(
                id=bio.TensorId("output"), axes=axes(plan.out_names, True), description=plan.out_desc,
                test_tensor=bio.FileDescr(source=tmp / "test_output.npy"),
                data=bio.IntervalOrRatioDataDescr(type="float32"))],
            weights=bio.WeightsDescr(torchscript=bio.TorchscriptWeightsDescr(
                source=tmp / "weights.torchscript.pt", pytorch_version=bio.Version(torch.__version__.split("+")[0]))),
            attachments=[bio.FileDescr(source=tmp / "state_dict.pt"), bio.FileDescr(source=tmp / "napari_medseg.json")],
            config={"napari_medseg": {"name": entry.name, "version": entry.version, "kind": kind}},
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_path, suffix=".tmp.zip") as part:
            save_bioimageio_package(descr, output_path=Path(part))
    return out_path


def _citation(bio, meta: dict):
    method = str(meta.get("method", ""))
    if method.startswith("combalia2019"):
        return bio.CiteEntry(text="Combalia et al. 2019, Digitally stained confocal microscopy through deep "
                                  "learning (MIDL 2019)", url="https://proceedings.mlr.press/v102/combalia19a.html")
    if method.startswith("dorent2019"):
        return bio.CiteEntry(text="Dorent et al. 2019, Learning joint lesion and tissue segmentation from "
                                  "task-specific hetero-modal datasets (MIDL 2019)",
                             url="https://proceedings.mlr.press/v102/dorent19a.html")
    return bio.CiteEntry(text="Ronneberger et al. 2015, U-Net: convolutional networks for biomedical image "
                              "segmentation", doi=bio.Doi("10.1007/978-3-319-24574-4_28"))


def _version() -> str:
    from .. import __version__

    return __version__


def check_package(path) -> dict:
    """bioimageio.core's own model test on a package: ``{"passed": bool, "details": str}``."""
    from bioimageio.core import test_model

    summary = test_model(str(path))
    details = "\n".join(f"{d.name}: {d.status}" + "".join(f"\n  {e.msg}" for e in (d.errors or []))
                        for d in summary.details)
    return {"passed": summary.status == "passed", "details": details}


def import_model(registry, path, name: str | None = None):
    """A napari-medseg package (as :func:`export_model` writes it) into the user's
    registry as the next version of its model (or of ``name``). Returns the entry."""
    import zipfile

    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not a bioimage.io package (.zip).")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if not {"napari_medseg.json", "state_dict.pt"} <= names:
            raise InputError(f"{path.name} was not exported by napari-medseg (no napari_medseg.json and "
                             "state_dict.pt in it); other bioimage.io models run in bioimageio.core, not here.")
        meta = json.loads(z.read("napari_medseg.json"))
        with tempfile.TemporaryDirectory() as tmp:
            z.extract("state_dict.pt", tmp)
            state = torch.load(Path(tmp) / "state_dict.pt", map_location="cpu", weights_only=True)
    from .nets import build

    model = build(meta["arch"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path.name}: its weights do not fit its architecture ({exc}).") from None
    keep = {k: meta[k] for k in ("method", "arch", "config", "metrics", "data_fingerprint") if k in meta}
    extra = {k: meta[k] for k in ("io", "validation") if k in meta}
    extra["imported_from"] = f"{path.name} ({meta.get('name')} v{meta.get('version')})"
    return registry.save_new_version(name or meta["name"], state, make_current=False, extra=extra, **keep)
