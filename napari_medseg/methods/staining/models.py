"""Training jobs that write registry versions of the two staining models.

``despeckle``: the despeckling network; ``stain_cyclegan``: the CycleGAN generator that
maps Gareau-stained confocal to H&E. Each job is a progress generator; the best state so
far is saved as a new version when it ends, also when it is stopped.
"""

from __future__ import annotations

import numpy as np

from ...core import nets
from ...core.checkpoints import data_fingerprint
from ...core.errors import InputError
from ...core.training import save_best_on_exit
from .speckle import PAPER_STD
from .training import ARCH, METHOD, MODEL_NAME, train_despeckler

#: the shipped despeckler serves the paper's level and the benchmark's matched level
BLIND_STD = (0.1, 0.5)
#: the real-image recipe validates at each of these levels and keeps the best mean PSNR
REAL_VAL_STDS = (0.1, 0.2, 0.35, 0.5)


def as_rgb_list(images, what: str) -> list[np.ndarray]:
    """uint8/float RGB arrays as a list; one clear message for anything else."""
    out = []
    for i, im in enumerate(images or []):
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[-1] not in (3, 4):
            raise InputError(f"{what} image {i} has shape {im.shape}; give RGB images (height, width, 3).")
        if im.dtype.kind == "f" and not np.isfinite(im).all():
            raise InputError(f"{what} image {i} has NaN or infinite values.")
        out.append(im[..., :3])
    if not out:
        raise InputError(f"Give at least one {what.lower()} image.")
    return out


def train_despeckle_model(registry, train_rgb, val_rgb, *, steps: int = 2000, batch_size: int = 8, crop: int = 256,
                          lr: float = 5e-4, std=PAPER_STD, seed: int = 0, device="cpu", resume=None,
                          data: str = "user images", on_best=None, arch: dict | None = None, augment: bool = False,
                          val_stds=None, val_crop: int | None = None, cosine: bool = False, val_data: str = "",
                          median: bool | str | None = None, distill_filters: int = 0,
                          distill_dilations=None, distill_teacher: int | None = None):
    """A job (generator): train (or fine-tune ``resume=(state, meta)``) the despeckler; save
    the best validation PSNR as a new ``despeckle`` version. The job returns ``{"entry",
    ...summary}``; inputs are checked when this is called, before the job starts.

    ``arch``: the network (default: the paper's, :data:`.training.ARCH`; a fine-tune keeps
    the resumed version's); ``median``: keep (True) or drop (False) the final 3x3 median
    whatever the architecture says; ``augment``, ``val_stds``, ``val_crop``, ``cosine``: see
    :func:`.training.train_despeckler`. ``on_best(model, metrics, step)``: called with the
    model at each new best (previews). ``distill_filters`` > 0: distil the current version
    into that many filters per layer instead (:func:`distillation_start`,
    :func:`.training.distill_mse`), with ``distill_dilations`` if given, from version
    ``distill_teacher`` (default: the current one); it cannot be combined with ``resume``."""
    train_rgb, val_rgb = as_rgb_list(train_rgb, "Training"), as_rgb_list(val_rgb, "Validation")
    teacher = init_state = None
    if distill_filters:
        if resume is not None:
            raise InputError("Distillation trains a new, narrower network from the current version; it does not "
                             "resume one.")
        teacher, init_state, arch = distillation_start(registry, distill_filters, device, distill_dilations,
                                                         distill_teacher)
    if resume is not None:
        arch = resume[1].get("arch") or arch
    arch = arch or ARCH
    if median is not None:  # the median has no weights: a version with or without it loads the same state
        arch = {**arch, "kwargs": {**arch.get("kwargs", {}), "median": median}}
    model = nets.build(arch)
    if init_state is not None:
        model.load_state_dict(init_state)
    if resume is not None:
        missing, unexpected = model.load_state_dict(resume[0], strict=False)
        if unexpected or any(not k.startswith("gate.") for k in missing):
            raise InputError(f"The version to fine-tune does not fit this network (missing {missing}, "
                             f"unexpected {unexpected}).")
    best: dict = {}

    def keep(state, metrics, step):
        best.update(state=state, metrics=metrics, step=step)
        if on_best is not None:
            on_best(model, metrics, step)

    config = {"steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed,
              "speckle_std": list(std) if not np.isscalar(std) else float(std), "data": data,
              "image_shapes": [list(im.shape) for im in train_rgb], "augment": bool(augment), "cosine": bool(cosine),
              "val_stds": list(val_stds) if val_stds else None, "val_crop": val_crop, "val_data": val_data or None,
              "resumed_from": None if resume is None else resume[1].get("version"),
              "distilled_from": None if teacher is None else teacher[1].get("version")}

    def save(b):
        return registry.save_new_version(MODEL_NAME, b["state"], method=METHOD, arch=arch, config=config,
                                         metrics={**b["metrics"], "best_step": b["step"]},
                                         data_fingerprint=data_fingerprint(*train_rgb))

    def job():
        result = yield from save_best_on_exit(
            train_despeckler(model, train_rgb, val_rgb, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
                             std=std, seed=seed, device=device, keep=keep, augment=augment, val_stds=val_stds,
                             val_crop=val_crop, cosine=cosine, teacher=None if teacher is None else teacher[0]),
            best, save, name=MODEL_NAME)
        return {**(result or {}), "entry": best.get("entry")}

    return job()  # everything above ran now: bad input is refused before the job starts


def distillation_start(registry, filters: int, device="cpu", dilations=None, version: int | None = None):
    """``(teacher, init_state, arch)`` to distil the current despeckler into ``filters``
    channels per layer: the current version and its meta, the narrowed copy's weights
    (:func:`.despeckle.narrowed_from`) and its architecture. ``dilations`` (one per body
    convolution): the student's, if not the teacher's; the weights have the same shapes
    either way, so the student still starts from the teacher's strongest channels.
    ``version``: the teacher, if not the current version (or, when the current version has
    another body, the newest version of the paper's network)."""
    from .despeckle import ARCH_NAME, DespeckleNet, narrowed_from

    if not registry.list(MODEL_NAME):
        raise InputError("There is no despeckle model to distil from: train one first.")
    if version is None and registry.get(MODEL_NAME).meta.get("arch", {}).get("name") != ARCH_NAME:
        # the current version has another body: the newest version of the paper's network teaches
        papers = [e for e in registry.list(MODEL_NAME) if e.meta.get("arch", {}).get("name") == ARCH_NAME]
        version = papers[-1].version if papers else None
    teacher = registry.get(MODEL_NAME, version).load(device)
    if not isinstance(teacher[0], DespeckleNet):
        raise InputError(f"Distillation narrows the paper's network; despeckle v{teacher[1].get('version')} has a "
                         f"{teacher[1]['arch'].get('name')} body. Name a version of the paper's network with "
                         "--teacher.")
    width = teacher[0].last.in_channels
    if not 1 <= int(filters) < width:
        raise InputError(f"The teacher (despeckle v{teacher[1].get('version')}) has {width} filters per layer; "
                         f"distil it into fewer (1 to {width - 1}), not {filters}.")
    student = narrowed_from(teacher[0].cpu(), int(filters))
    kwargs = {**teacher[1]["arch"].get("kwargs", {}), "filters": int(filters)}
    if dilations is not None:
        try:
            DespeckleNet(layers=student.layers, filters=int(filters), dilations=dilations)
        except ValueError as exc:
            raise InputError(f"--dilations: {exc}") from None
        kwargs["dilations"] = [int(d) for d in dilations]
    return teacher, student.state_dict(), {**teacher[1]["arch"], "kwargs": kwargs}


# ------------------------------------------------------------------------- CycleGAN
CYCLEGAN_NAME = "stain_cyclegan"


def gareau_domain(he_images, despeckler=None, seed: int = 0, device="cpu"):
    """Domain A made from H&E: each image's confocal-like pair, despeckled like the
    pipeline does, then Gareau-stained. Returns (gareau RGB list, the confocal pairs)."""
    from .confocal import confocal_pair
    from .pipeline import StainingNet, stain_array

    net = StainingNet(despeckler=despeckler)
    pairs = [confocal_pair(he, seed=seed + i) for i, he in enumerate(he_images)]
    return [stain_array(net, p.fcm, p.rcm, device=device) for p in pairs], pairs


def unpaired_halves(he_images):
    """Left halves for domain A, right halves for domain B: no H&E crop is ever seen in
    both domains, so the two sets are unpaired."""
    a, b = [], []
    for he in he_images:
        w = he.shape[1] // 2
        a.append(np.ascontiguousarray(he[:, :w]))
        b.append(np.ascontiguousarray(he[:, w:]))
    return a, b


def shipped_despeckler(registry, device="cpu"):
    from .training import MODEL_NAME as DESPECKLE

    try:
        model, _meta = registry.get(DESPECKLE).load(device)
    except Exception:  # noqa: BLE001 - none trained yet: Gareau of the speckled RCM
        return None
    return model.eval()


SSIM_SLACK = 0.01  # a checkpoint may lose this much SSIM against Gareau's stain, no more


def better_checkpoint(new: dict, old: dict, ssim_gareau: float) -> bool:
    """Checkpoint choice that weighs colour and structure: among checkpoints whose SSIM is
    within :data:`SSIM_SLACK` of Gareau's, the smallest colour distance wins; such a
    checkpoint always beats one that is not; between two that are not, the higher SSIM."""
    ok_new, ok_old = (m["ssim"] >= ssim_gareau - SSIM_SLACK for m in (new, old))
    if ok_new != ok_old:
        return ok_new
    if ok_new:
        return new["color_distance"] < old["color_distance"]
    return new["ssim"] > old["ssim"]


def train_cyclegan_model(registry, he_train, he_val, *, a_images=None, steps_small: int = 2000,
                         steps_large: int = 1000, crop_small: int = 256, crop_large: int = 512, batch_size: int = 1,
                         ngf: int = 16, n_blocks: int = 6, seed: int = 0, device="cpu", resume: bool = False,
                         data: str = "user images", preview_every: int = 250, on_preview=None,
                         upsample: str | None = None):
    """Generator: train (or fine-tune the current version, ``resume``) the staining
    CycleGAN; the checkpoint whose output has the palette closest to the validation H&E
    is saved as a new ``stain_cyclegan`` version. Returns ``{"entry", ...summary}``.

    ``a_images``: Gareau stains of real confocal pairs (domain A), with ``he_train`` as
    domain B; None derives both domains from ``he_train`` (:func:`unpaired_halves`).
    Validation derives confocal pairs from ``he_val`` and compares the stained output
    with the H&E it came from (colour distance, SSIM): see :func:`better_checkpoint`.
    ``upsample``: the generators' up-sampling ("resize" or "bilinear", no checkerboard;
    "transposed", CycleGAN's). None: "resize" for a new model, the current version's for a
    fine-tune; a fine-tune that moves a transposed version to "resize" or "bilinear", or a
    "resize" one to "bilinear", starts from :func:`~.cyclegan.resize_from` (its weights,
    the new up-sampling).
    """
    from .confocal import confocal_pair
    from .cyclegan import ResnetGenerator, resize_from
    from .cyclegan_training import METHOD as CYCLEGAN_METHOD
    from .cyclegan_training import stain_preview, train_cyclegan
    from .metrics import color_distance, ssim_rgb
    from .pipeline import StainingNet, stain_array

    he_train, he_val = as_rgb_list(he_train, "Training"), as_rgb_list(he_val, "Validation")
    despeckler = shipped_despeckler(registry, device)
    if a_images is None:
        he_a, b_images = unpaired_halves(he_train)
        a_images, _ = gareau_domain(he_a, despeckler, seed, device)
    else:
        a_images, b_images = as_rgb_list(a_images, "Confocal (Gareau)"), he_train
    b_images = [np.asarray(im, np.float32) / 255.0 if im.dtype == np.uint8 else np.asarray(im, np.float32)
                for im in b_images]
    val_pairs = [confocal_pair(he, seed=seed + 1000 + i) for i, he in enumerate(he_val)]
    gareau_net = StainingNet(despeckler=despeckler)
    val_gareau = [stain_array(gareau_net, p.fcm, p.rcm, device=device) for p in val_pairs]
    base = {"color_distance_gareau": float(np.mean([color_distance(g, p.he) for g, p in zip(val_gareau, val_pairs)])),
            "ssim_gareau": float(np.mean([ssim_rgb(g, p.he) for g, p in zip(val_gareau, val_pairs)]))}

    generators, resumed_from = None, None
    if resume:
        g_ab, meta = registry.get(CYCLEGAN_NAME).load(device)
        ngf, n_blocks = g_ab.arch["kwargs"]["ngf"], g_ab.arch["kwargs"]["n_blocks"]
        current = g_ab.arch["kwargs"].get("upsample", "transposed")
        if upsample in ("resize", "bilinear") and upsample != current:
            if upsample == "resize" and current == "bilinear":
                raise InputError("The current version up-samples bilinearly; a fine-tune cannot switch it back "
                                 "to nearest resizing.")
            g_ab = resize_from(g_ab.cpu(), upsample).to(device)
        elif upsample not in (None, current):
            raise InputError(f"The current version up-samples by {current} convolution; a fine-tune cannot "
                             f"switch it to {upsample}.")
        upsample = upsample or current
        generators, resumed_from = (g_ab, None), meta.get("version")
    upsample = upsample or "resize"
    probe = ResnetGenerator(ngf=ngf, n_blocks=n_blocks, upsample=upsample).to(device)
    best: dict = {}

    def keep(state, metrics, step):
        probe.load_state_dict(state)
        outs = [stain_preview(probe, g, device) for g in val_gareau]
        scores = {"color_distance": float(np.mean([color_distance(o, p.he) for o, p in zip(outs, val_pairs)])),
                  "ssim": float(np.mean([ssim_rgb(o, p.he) for o, p in zip(outs, val_pairs)]))}
        if not best or better_checkpoint(scores, best["metrics"], base["ssim_gareau"]):
            best.update(state=state, metrics={**metrics, **scores, **base}, step=step)

    config = {"steps_small": steps_small, "steps_large": steps_large, "crop_small": crop_small,
              "crop_large": crop_large, "batch_size": batch_size, "ngf": ngf, "n_blocks": n_blocks, "seed": seed,
              "lr": 2e-4, "beta1": 0.5, "cycle_weight": 10.0, "identity_weight": 0.5, "pool_size": 50,
              "data": data, "despeckled_domain_a": despeckler is not None, "resumed_from": resumed_from,
              "upsample": upsample, "selection": "colour distance among checkpoints with SSIM >= Gareau's - 0.01"}
    preview = val_gareau[0][:512, :512] if on_preview is not None else None
    def save(b):
        return registry.save_new_version(CYCLEGAN_NAME, b["state"], method=CYCLEGAN_METHOD, arch=probe.arch,
                                         config=config, metrics={**b["metrics"], "best_step": b["step"]},
                                         data_fingerprint=data_fingerprint(*he_train))

    result = yield from save_best_on_exit(
        train_cyclegan(a_images, b_images, steps_256=steps_small, steps_512=steps_large, crop_small=crop_small,
                       crop_large=crop_large, batch_size=batch_size, ngf=ngf, n_blocks=n_blocks, seed=seed,
                       device=device, preview=preview, preview_every=preview_every, on_preview=on_preview,
                       keep=keep, generators=generators, upsample=upsample), best, save, name=CYCLEGAN_NAME)
    result = {k: v for k, v in (result or {}).items() if k != "generator_state"}
    return {**result, "entry": best.get("entry")}
