"""Model cards written next to the shipped joint lesion + tissue model and its baselines."""

from __future__ import annotations

import re
from pathlib import Path

_WHAT = {
    "joint": "tissue classes and white-matter lesions together, from T1 alone or T1 + FLAIR "
             "(the joint model trained on W + N, Dorent et al. 2019)",
    "tissue_only": "tissue classes from T1 (baseline N: trained on the control scans only)",
    "lesion_only": "white-matter lesions from T1 + FLAIR (baseline W: trained on the lesion scans only)",
    "supervised": "tissue and lesions from T1 + FLAIR (baseline M: trained on fully labelled scans)",
}


def _fmt(v, spec=".3f"):
    return format(v, spec) if isinstance(v, (int, float)) else "n/a"


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    c, m, arch = meta.get("config", {}), meta.get("metrics", {}), meta.get("arch", {})
    kw = arch.get("kwargs", arch)
    mode = c.get("mode", "joint")
    size_mb = sum(p.stat().st_size for p in folder.glob(f"v{meta['version']:04d}.pt")) / 2**20
    dice = ", ".join(f"{k[5:].replace('_', ' ')} {_fmt(v)}" for k, v in sorted(m.items())
                     if k.startswith("dice_")) or "n/a"
    randomised = "randomised" in str(c.get("data", ""))
    n_val = re.search(r"\((\d+) validation\)", str(c.get("data", "")))
    n_val = int(n_val.group(1)) if n_val else 2
    count = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}.get(n_val, str(n_val))
    val_what = (f"{count} fully labelled domain-randomised phantom subject{'s' if n_val > 1 else ''}, synthetic; "
                "the network alone at 2.5 mm, no mask, no refinement, so a skull-on head's scalp counts against it"
                if randomised else "one fully labelled phantom subject")
    start = f"fine-tuned from v{c['resumed_from']}" if c.get("resumed_from") else "trained from scratch"
    limits = ("trained only on synthetic scans (the phantom's anatomy drawn with random contrast, skull or none, "
              "blur, bias, noise), at coarse resolution, with a small network on a CPU; its real-data test is "
              "the MNI152 template in `bench joint`" if randomised else
              "trained on the project's synthetic brain phantom at coarse resolution, with a small network on a CPU")
    inter = (f"the inter-modality term L(h(T1+FLAIR), h(T1)) switched on after {c.get('warmup')} iterations"
             if mode == "joint" else "no inter-modality term (a baseline)")
    text = f"""# {folder.name} v{meta['version']}: {_WHAT.get(mode, mode)}

- **Classes**: {', '.join(c.get('label_set', []))} (lesion last). Inputs: {', '.join(meta.get('modalities', []))};
  absent modalities are left out of the HeMIS-style mean, and the model needs T1.
- **Network**: `dorent2019.HeteroModalNet`, one encoder per modality, the mean over the
  modalities present, a {kw.get('backbone', 'highresnet')} backbone with features {kw.get('features')} and a 1x1
  head; {kw.get('spatial_dims', 3)}D, instance normalisation. {size_mb:.2f} MB.
- **Training data**: {c.get('data')}. Controls give T1 + tissue labels, patients T1 + FLAIR + lesion
  labels; nobody has both. Preprocessing: resampling to the training spacing, 1–99 percentile
  scaling and z-normalisation inside the brain.
- **Training**: mode `{mode}`; weighted probabilistic Jaccard (lesion weight 1/2, tissue side 1/2),
  {inter}; one {tuple(c.get('patch_size', ()))} sub-volume per dataset and iteration (tissue
  uniform, lesions lesion-centred), random flips, Adam lr {c.get('lr')}, {c.get('steps')} iterations,
  seed {c.get('seed')}, {start}. Kept: the best validation mean Dice, step {m.get('best_step')}.
- **Validation Dice** ({val_what}): {dice}. Held-out figures, the GMM
  baseline and the real MNI152 test: docs/benchmarks.md (`napari-medseg bench joint`).
- **Inference** (`segment_scan`, the widget, `napari-medseg predict joint`): the scan is
  reoriented to RAS, resampled to {meta.get('spacing') or 'the scan'} mm and normalised inside the brain
  mask when one is given; the probabilities are interpolated back onto the scan's grid and refined
  there with a per-scan intensity model (the network as spatial prior); lesions are kept only
  where FLAIR (or, on T1 alone, hypo-intensity inside white matter) supports them and above the
  minimum size.
- **Limits**: {limits}, for {c.get('steps')} iterations. It is a starting point to fine-tune on your own scans (the widget's
  retraining, or `napari-medseg train joint --resume`), not a clinical tool.
- **Reproduce**: `{command}` (created {meta['created']}, torch {meta.get('torch')}).
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
