"""The model card written next to the shipped tracking agent."""

from __future__ import annotations

from pathlib import Path


def _f(v, fmt=".3g") -> str:
    return "n/a" if v is None else format(v, fmt)


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    m = meta.get("metrics", {})
    c = meta.get("config", {})
    k = meta["arch"]["kwargs"]
    curve = meta.get("validation_curve") or [{}]
    ran = curve[-1].get("update") or c.get("updates")
    text = f"""# tracking v{meta['version']}: deep-RL axon tracker (Dai et al. 2019)

- **What it does**: from a start point (and optionally an end point) on a bright, thin
  structure, moves along its centreline with subpixel steps, reporting the policy
  entropy at each step (its uncertainty).
- **Networks** (Appendix A): actor and asymmetric critic CNNs, each Conv 5×5/32 →
  Conv 3×3/32 → Linear 512 → head; actor input {k['actor_channels']} channels
  (window, downsampled 21 px window, historical path × 4 timesteps) of {k['view_size']}×{k['view_size']} px;
  critic input {k['critic_channels']} channels (+ centreline view). Actions: two Beta
  distributions (softplus + 1), mapped to displacements in ±{k['max_displacement']:g} px.
- **Training data**: synthetic setting `{c.get('setting')}` ({_data_text(c.get('setting'))}), fresh seeded
  images every batch (seed {c.get('seed')}){_init_text(meta)}.
- **Training**: {_imitation_text(c, ran)}PPO, γ {c.get('gamma')}, clip {c.get('clip_coef')}, GAE λ {c.get('gae_lambda')},
  {c.get('episodes_per_batch')} episodes a batch, {c.get('update_epochs')} epochs in
  {c.get('num_minibatches')} minibatches, Adam {c.get('learning_rate')} (weight decay
  {c.get('weight_decay')}), policy in {c.get('precision')} precision. {ran} updates run (of {c.get('updates')} planned) in
  {_f(curve[-1].get('wall_minutes'), '.0f')} minutes; kept: update {m.get('best_update')}, chosen by
  deterministic validation every {c.get('eval_every')} updates (coverage first; validations within
  {c.get('coverage_tie')} point of the top coverage count as tied and the lower error wins).
- **Validation** ({c.get('val_episodes')} held-out images): coverage {_f(m.get('val_coverage_pct'), '.1f')} %,
  error {_f(m.get('val_error_px'), '.2f')} px, far end reached {_f(m.get('val_end_reached_pct'), '.0f')} %;
  mean entropy {_f(m.get('val_entropy_within'))} within 3 px of the centreline and
  {_f(m.get('val_entropy_outside'))} beyond (suggested stop threshold {_f(m.get('entropy_threshold'))}).
  {_to_90_text(m, meta)}. `napari-medseg bench tracking` measures it on ≥ 50 further images.
- **Limits**: trained on synthetic images only; on real data choose the channel, invert dark
  structures, set the window scale (1.5 in the paper) and fine-tune on corrected traces.
  Research use, not a clinical tool.
- **Reproduce**: `{command}` (created {meta['created']}, torch {meta.get('torch')}).
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path


def _to_90_text(m: dict, meta: dict) -> str:
    minutes = m.get("train_minutes_to_90pct")
    if minutes is None:
        return f"Validation coverage did not reach 90 % in this run ({meta.get('torch_threads')} CPU threads)"
    return f"Validation coverage first reached 90 % after {minutes:.1f} minutes ({meta.get('torch_threads')} CPU threads)"


def _data_text(setting) -> str:
    si = "one axon per 128×128 image, 100–180 px long, Gaussian noise"
    dr = ("domain-randomised: fibres 1–8 px wide, contrast, background, Gaussian/Poisson/speckle noise, blur, "
          "uneven illumination, texture, clutter, crossings and branches (up to 3x wider than the fibre), 25 % "
          "dark-on-bright; normalised as at "
          "inference")
    cross = "SI with two distractor axons crossing the traced one at 35–90°"
    text = {"SI": si, "DR": dr, "crossing": cross,
            "DRp": "the same domain-randomised draws, each fibre starting where it leaves a 1.5–3x wider, at least as "
                   "bright vessel",
            "DRj": "the same domain-randomised draws, with at least one branch or crossing along the fibre and each "
                   "of them 1.5–3x wider and at least as bright as the fibre",
            "DRs": "the same domain-randomised draws, each fibre leaving a 1.5–3x wider, at least as bright vessel at "
                   "15–35° and starting where the two are still 3–7 px apart"}
    parts = str(setting).split("+")
    if len(parts) > 1 and all(p in text for p in parts):
        return "in turn " + "; ".join(f"{p} ({text[p]})" for p in parts)
    return text.get(str(setting), si)


def _imitation_text(c: dict, ran=None) -> str:
    n = c.get("imitation_updates") or 0
    if not n:
        return ""
    ran = int(ran if ran is not None else c.get("updates") or 0)
    how = (f"DAgger, not in the paper: the expert steps {c.get('imitation_lookahead')} px further along it and "
           f"acts with probability {c.get('imitation_expert_start')} × {c.get('imitation_expert_decay')}^update; "
           f"every visited state is labelled with its action; {c.get('imitation_steps')} actor minibatches of "
           f"{c.get('imitation_batch')} states per update, Beta log-likelihood + {c.get('imitation_mean_weight')} × "
           "squared error of the means; critic untouched")
    if c.get("imitation_recovery"):
        how += (f"; {c['imitation_recovery']:.0%} of the episodes started 2-7 px beside their fibre, at a random "
                "point along it (recovery starts)")
    if c.get("imitation_symmetries"):
        how += ("; every minibatch pair turned by a multiple of 90° or mirrored at random, views and step alike "
                "(symmetry augmentation)")
    if ran <= n:
        return (f"every update imitated the centreline ({how}); no PPO update ran. "
                "The settings a PPO fine-tune would use: ")
    return f"the first {n} updates imitated the centreline ({how}), then {ran - n} updates of "


def _init_text(meta: dict) -> str:
    src = meta.get("initialised_from")
    return f"; fine-tuned from the {src}, with a 6-px visited-path stub behind each start" if src else ""

