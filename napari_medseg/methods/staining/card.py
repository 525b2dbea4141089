"""Model cards written next to the shipped staining models."""

from __future__ import annotations

from pathlib import Path

MODEL_NAMES = {"despeckle": "despeckle", "cyclegan": "stain_cyclegan"}


def _fmt(v, spec=".2f"):
    return format(v, spec) if isinstance(v, (int, float)) else "n/a"


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    c, m = meta.get("config", {}), meta.get("metrics", {})
    size_mb = sum(p.stat().st_size for p in folder.glob(f"v{meta['version']:04d}.pt")) / 2**20
    if meta["method"].endswith("despeckle"):
        arch = meta.get("arch", {})
        kw = arch.get("kwargs", {})
        layers, filters = kw.get("layers", 7), kw.get("filters", 64)
        dil = kw.get("dilations") or [1] * layers
        median = kw.get("median", True)
        radius = sum(dil) + 1 + (1 if median else 0)
        dil_text = "" if set(dil) == {1} else f" dilated {tuple(dil)},"
        median_text = {True: " and a 3x3 median filter", False: " (no final median)"}.get(
            median, " and a gated 3x3 median (a learnt per-pixel blend of the median and the unfiltered estimate)")
        body_text = (f"{layers} convolutions of {filters} 3x3 filters,{dil_text} with PReLU (batch norm on the\n"
                     f"  inner ones)")
        arch_name = arch.get("name", "combalia2019.DespeckleNet")
        if arch_name.endswith("UDespeckleNet"):
            from .despeckle_unet import FEATURES, UDespeckleNet

            f = tuple(kw.get("features") or FEATURES)
            radius = UDespeckleNet(f, median).receptive_radius
            body_text = (f"a three-level U-shaped body ({f[0]} / {f[1]} / {f[2]} filters at full, half and a\n"
                         f"  quarter resolution; PReLU, batch norm), not the paper's seven convolutions")
        aug = c.get("augment")
        data_text = ("random windows redrawn with stain (H/E/DAB) jitter, zoom 0.6-1.4 and gamma, as the "
                     "inverted luma (half) or the eosin/haematoxylin density (half); half of the speckle "
                     "spatially correlated; loss weighted by 1/std" if aug else
                     "the inverted Y channel (YUV) of the images")
        fine = f", fine-tuning v{c['resumed_from']}" if c.get("resumed_from") else ""
        loss_text = (f"MSE to the clean image plus MSE to v{c['distilled_from']}'s estimate (distillation)"
                     if c.get("distilled_from") else "MSE")
        if c.get("distilled_from"):
            fine = (f", distilled from v{c['distilled_from']} (it starts from v{c['distilled_from']}'s strongest "
                    f"channels, and its estimates are a second target beside the clean image)")
        stds = c.get("val_stds")
        val_text = (f"mean over std {', '.join(f'{v:g}' for v in stds)} on {c.get('val_data', 'the validation images')}"
                    if stds else "std 0.2, validation rows of the same slide")
        text = f"""# despeckle v{meta['version']}: despeckling network for reflectance confocal (RCM) images

- **What it does**: removes multiplicative speckle (Y = X(1+F)) from an RCM image scaled to
  [0, 1] (Combalia et al. 2019, section 2.1).
- **Network**: {body_text},
  a last convolution with one filter and tanh read as 1 + tanh = 1/F, a
  multiplicative residual connection{median_text}
  (`{arch_name}`, receptive radius {radius} px; tiles exactly). {size_mb:.1f} MB.
- **Training data**: {c.get('data')}; {data_text}; speckle
  std {c.get('speckle_std')} (drawn per crop when a range; the paper trains at 0.2), random flips,
  {c.get('crop')} px crops. Data fingerprint `{meta.get('data_fingerprint', '')[:16]}…`.
- **Training**: {loss_text}, Adam lr {c.get('lr')}, {c.get('steps')} steps of batch {c.get('batch_size')},
  seed {c.get('seed')}{', cosine decay' if c.get('cosine') else ''}.
- **Validation** ({val_text}): PSNR {_fmt(m.get('psnr_noisy'))} dB noisy
  → {_fmt(m.get('psnr'))} dB despeckled, best at step {m.get('best_step')}. Held-out figures:
  docs/benchmarks.md (`napari-medseg bench staining --real`).
- **Limits**: trained on H&E (luma{' and stain densities' if aug else ''}) with simulated speckle, not on real RCM;
  fine-tune on your own images (the widget's Train tab or `napari-medseg train despeckle --images DIR`).
- **Reproduce**: `{command}`{fine} (created {meta['created']}, torch {meta.get('torch')}).
"""
    else:
        mode = (meta.get("arch") or {}).get("kwargs", {}).get("upsample", "transposed")
        fine = f"; fine-tuned from v{c['resumed_from']} (fresh G_BA and discriminators)" if c.get("resumed_from") else ""
        upsampling = (f"resize-convolution up-sampling ({'bilinear' if mode == 'bilinear' else 'nearest'} ×2, then "
                      "a 3×3 convolution: no checkerboard, Odena et al. 2016)" if mode != "transposed"
                      else "transposed-convolution up-sampling (CycleGAN's)")
        kept = (c.get("selection") or "smallest validation colour distance")
        text = f"""# stain_cyclegan v{meta['version']}: Gareau-stained confocal → H&E generator (CycleGAN)

- **What it does**: maps a Gareau digital stain of an FCM/RCM pair to the look of real H&E
  (Combalia et al. 2019, section 2.3). Input and output RGB in [-1, 1].
- **Network**: the CycleGAN ResNet generator, {c.get('ngf')} base filters, {c.get('n_blocks')} residual
  blocks, {upsampling}, batch norm (not instance norm, so whole slides tile without seams)
  (`combalia2019.ResnetGenerator`). {size_mb:.1f} MB. Only the A→B generator ships.
- **Training data** (unpaired): domain A = Gareau stains of confocal-like pairs derived by
  colour deconvolution from {c.get('data')}; domain B = other crops of the same H&E images.
- **Training**: LSGAN, 70x70 PatchGAN discriminators (MONAI), cycle weight {c.get('cycle_weight')},
  identity weight {c.get('identity_weight')}x cycle, image pool {c.get('pool_size')}, Adam {c.get('lr')}
  (β1 {c.get('beta1')}); {c.get('steps_small')} steps at {c.get('crop_small')} px, then
  {c.get('steps_large')} steps at {c.get('crop_large')} px with the learning rate decaying to 0;
  batch {c.get('batch_size')}, seed {c.get('seed')}{fine}. Kept: the preview checkpoint with the
  {kept}, step {m.get('best_step')}.
- **Validation** (derived pairs from the validation rows): colour distance to the true H&E
  {_fmt(m.get('color_distance_gareau'), '.3f')} for Gareau alone → {_fmt(m.get('color_distance'), '.3f')} with the
  generator; SSIM {_fmt(m.get('ssim_gareau'), '.3f')} → {_fmt(m.get('ssim'), '.3f')}.
- **Limits**: trained on confocal-like images made from H&E, not on real confocal mosaics;
  fine-tune on your own (`napari-medseg train cyclegan --images DIR --resume`).
- **Reproduce**: `{command}` (created {meta['created']}, torch {meta.get('torch')}).
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
