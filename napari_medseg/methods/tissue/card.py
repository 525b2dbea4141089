"""The model card written next to the shipped tissue model."""

from __future__ import annotations

from pathlib import Path


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    m = meta.get("metrics", {})
    c = meta.get("config", {})
    text = f"""# tissue v{meta['version']}: tissue detector for H&E slides

- **What it does**: labels each pixel of an RGB slide as glass (0) or tissue (1).
- **Network**: MONAI `UNet`, 2D, channels {meta['arch']['kwargs']['channels']}, strides
  {meta['arch']['kwargs']['strides']}, 2 residual units, batch norm (tiles exactly; receptive
  field radius about 45 px, tiling margin {meta['io']['margin']} px, total stride {meta['io']['stride']}).
- **Input**: RGB uint8, scaled to [0, 1]. **Output**: softmax over (background, tissue).
- **Training data**: synthetic H&E-like slides from `napari_medseg.methods.tissue.synthetic`
  (seeds {c.get('train_seeds')}, {c.get('slide_size')} px), random {c.get('patch')} px patches,
  flips, 90° rotations, colour jitter. Data fingerprint `{meta['data_fingerprint'][:16]}…`.
- **Training**: Adam lr {c.get('lr')}, {c.get('steps')} steps, batch {c.get('batch_size')},
  seed {c.get('seed')}; pixel-weighted cross-entropy + soft Dice.
- **Validation**: Dice {m.get('dice', float('nan')):.3f} on a held-out synthetic slide (seed
  {c.get('val_seed')}), best at step {m.get('best_step')}.
- **Limits**: trained on synthetic slides only. On real slides expect to correct it and
  retrain (the Segment widget's Retrain button); it is the engine's reference model, not
  a clinical tool.
- **Reproduce**: `{command}` (created {meta['created']}, torch {meta.get('torch')}).
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
