"""The model card written next to the shipped glomerulus model."""

from __future__ import annotations

from pathlib import Path

from .recipe import SEEDS


def _seeds(split: str) -> str:
    return ", ".join(str(s) for s in SEEDS[split])


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    m, c = meta.get("metrics", {}), meta.get("config", {})
    k = meta["arch"]["kwargs"]

    def f(key):
        v = m.get(key)
        return "n/a" if v is None else f"{v:.3f}"

    replay = bool(c.get("stage2_replay"))
    stage2 = (f"Stage 2 on IS-train2 (seeds {_seeds('train2')}, no labels) and, replayed, on IS-train1 with the "
              "best Stage-1 model's labels (not in the paper: on the unlabelled slides alone, the glomeruli "
              "Stage 1 missed there are taught as background)" if replay else
              f"Stage 2 on IS-train2 (seeds {_seeds('train2')}, no labels; the paper's Stage 2)")
    prior = ("each box read as the ellipse inscribed in it, its corners unknown, in round 1 and wherever Cues 1 "
             "resets an object (not in the paper: glomeruli are round)" if c.get("box_prior") == "ellipse" else
             "the filled boxes in round 1 and wherever Cues 1 resets an object (the paper's)")
    n_val = m.get("n_true_objects")
    val = (f"{len(SEEDS['val'])} hard synthetic slides, seeds {_seeds('val')}"
           + (f", {int(n_val)} glomeruli" if n_val else ""))
    text = f"""# glomeruli v{meta['version']}: glomerulus segmenter trained from boxes (Gupta et al. 2019)

- **What it does**: labels each pixel of an RGB (PAS-like) kidney slide as background (0) or
  glomerulus (1). Tiled over whole slides; output equals a whole-image pass.
- **How it was trained**: the weakly supervised Stage 1 (rounds of training on the boxes,
  refined by Cues 1; {prior}) then the unsupervised Stage 2 (unlabelled slides, Cues 2) of Gupta et al.
  (2019). This version is Stage {meta.get('stage')} round {meta.get('round')}, the round with the best
  validation object F1 of the run (pixel F1 breaks ties). No pixel-level mask was used for training.
- **Network**: MONAI `UNet`, 2D, channels {k['channels']}, strides {k['strides']},
  {k['num_res_units']} residual units, batch norm (total stride {meta['io']['stride']}, tiling
  margin {meta['io']['margin']} px). Input RGB uint8 scaled to [0, 1]; softmax output.
- **Training data**: synthetic PAS-like kidney slides from
  `napari_medseg.methods.box_iterative.synthetic`, the hard variant (`HARD`: glomeruli that touch
  or overlap, faint and sclerotic ones, stain colour and focus blur varying per slide),
  {c.get('size', 2048)} px square: Stage 1 on
  IS-train1 (seeds {_seeds('train1')}, boxes only), {stage2}. {c.get('steps')} steps per round, patch {c.get('patch') or 'auto'} (256 on CPU), batch
  {c.get('batch_size') or 'auto'} (4 on CPU), Adam lr {c.get('lr')} with cosine decay in each round,
  2:1 object/random patches, flips, 90-degree rotations, colour jitter, seed {c.get('seed')}.
  Data fingerprint `{meta['data_fingerprint'][:16]}`.
- **Validation** ({val}, never trained on; objects are the
  instances a user gets, touching glomeruli scored apart): object precision
  {f('object_precision')}, recall {f('object_recall')}, F1 {f('object_f1')}; pixel F1 {f('pixel_f1')}.
  Held-out test figures are in docs/benchmarks.md (`napari-medseg bench box_iterative`).
- **Limits**: synthetic slides only. On real kidney slides expect to draw boxes and train a
  few Stage-1 rounds of your own (the Box-supervised training widget); the shipped model is a
  starting point and a demonstration, not a diagnostic tool.
- **Reproduce**: `{command}` (created {meta['created']}, torch {meta.get('torch')}).
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
