"""A model card from a saved version's metadata: what every shipped model's card says,
whatever the method (the method gives its own description and limits)."""

from __future__ import annotations

from pathlib import Path


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write_card(folder: Path, meta: dict, command: str, *, title: str, what: str, data: str, limits: str) -> Path:
    """``folder/MODEL_CARD.md``: title, description, architecture, training data and settings,
    validation metrics, limits and the command that reproduces it."""
    cfg, metrics = meta.get("config") or {}, meta.get("metrics") or {}
    arch = meta.get("arch") or {}
    settings = ", ".join(f"{k} {_num(v)}" for k, v in cfg.items() if k != "data" and not isinstance(v, (dict, list)))
    scores = ", ".join(f"{k} {_num(v)}" for k, v in metrics.items() if isinstance(v, (int, float)))
    text = f"""# {title} v{meta.get('version')}

- **What it does**: {what}
- **Network**: `{arch.get('name')}` ({', '.join(f'{k} {v}' for k, v in (arch.get('kwargs') or {}).items())}).
- **Training data**: {data} ({cfg.get('data', 'see the command')}).
- **Training settings**: {settings}.
- **Validation** (held-out phantoms, the best validation is kept): {scores or 'n/a'}.
- **Limits**: {limits} Research use, not a clinical tool.
- **Reproduce**: `{command}` (created {meta.get('created')}, torch {meta.get('torch')}).
"""
    path = Path(folder) / "MODEL_CARD.md"
    path.write_text(text)
    return path
