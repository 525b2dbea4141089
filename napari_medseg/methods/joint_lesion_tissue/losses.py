"""The decomposed risk of Dorent et al. (2019), built on the probabilistic Jaccard loss.

Why a decomposition. No scan has both annotations: controls carry tissue labels (T1
only), lesion scans carry lesion masks (T1 + FLAIR). A one-versus-all loss is a sum
of per-class terms, so the joint loss splits into a tissue part and a lesion part
(H1), each estimated where its labels exist:

* ``loss_lesion``  L^l(h(X), Y^l): lesion class vs the rest, on lesion scans. Tissue
  is unknown there, so only the lesion channel is scored.
* ``loss_tissue``  L^t(h(p(X)), Y^t): background + tissue classes, on control scans
  seen through the shared modalities p(X) (T1). Controls have no lesion voxels, so
  the background is known there too.
* ``loss_inter``   L^t(h(X), h(p(X))): on lesion scans, the tissue output from all
  modalities against the tissue output from T1 alone. With the triangle inequality
  (H3) and equal tissue statistics outside lesions (H4) the two tissue terms bound the
  tissue risk on lesion scans, for which no tissue label exists (paper, Eq. 5).

Choices the paper leaves open, and what is done here:

* Target of the inter-modality term: h(p(X)) (T1 only) sits in the slot of Y^t, as in
  Eq. 3-5; it is the output anchored by the control labels. The probabilistic Jaccard
  is symmetric, so this only matters when ``detach_reference=True``. By default it is
  *not* detached: the bound is minimised over θ through both arguments (the paper
  states no stop-gradient; neither does the authors' code).
* Lesion voxels are left out of the inter-modality term (``lesion_mask``). H4 only
  speaks of the brain outside lesions; inside them the full-modality output should
  say "lesion" while T1 alone may say "white matter", and pulling them together
  would fight the lesion term. Dropping the same voxels from every term keeps the
  triangle inequality valid (it is then the tissue risk outside lesions).
* Switched on after ``warmup`` iterations (paper: 5000): before that, h(p(X)) is not
  yet a tissue segmentation worth agreeing with.

Weights (Eq. 6): lesion 1/2, background + tissue classes share the other 1/2 equally
(the paper's 1/16 per class for its 8 non-lesion channels). So the total is exactly
``1 - sum_c w_c J_c``, and each task weighs the same.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss

from ...core.errors import InputError
from .labels import LabelSet

LESION_SHARE = 0.5

# squared_pred + soft_label makes MONAI's Jaccard exactly the paper's
# sum(g p) / sum(g² + p² - g p); reduction "none" keeps one value per (sample, class).
_JACCARD = DiceLoss(jaccard=True, squared_pred=True, soft_label=True, reduction="none")


def tissue_side(label_set: LabelSet) -> tuple[int, ...]:
    """Channels scored by the tissue loss: background and the tissue classes."""
    return (0, *label_set.tissues)


def class_weights(label_set: LabelSet) -> torch.Tensor:
    """w_c of Eq. 6: lesion 1/2; background + tissues share 1/2 equally; sum 1."""
    w = torch.zeros(label_set.n_classes)
    side = tissue_side(label_set)
    w[list(side)] = (1.0 - LESION_SHARE) / len(side)
    w[label_set.lesion] = LESION_SHARE
    return w


def weighted_jaccard(probs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_c w_c (1 - J_c)``, per sample, averaged over the batch.

    ``probs``/``target``: (B, K, *spatial) probabilities / (soft) one-hot; ``weights``:
    (K,). ``mask`` (B, 1, *spatial) in {0, 1} drops voxels from every sum.
    """
    if mask is not None:
        probs, target = probs * mask, target * mask
    per = _JACCARD(probs.float(), target.float()).reshape(probs.shape[0], probs.shape[1])
    return (per * weights.to(per)).sum(1).mean()


def _labels(target: torch.Tensor) -> torch.Tensor:
    """(B, *spatial) or (B, 1, *spatial) integer labels → (B, 1, *spatial) long."""
    return target.long() if target.ndim >= 3 and target.shape[1] == 1 else target.long().unsqueeze(1)


def tissue_loss(logits: torch.Tensor, tissue_target: torch.Tensor, label_set: LabelSet) -> torch.Tensor:
    """L^t(h(p(X)), Y^t) on control scans: background + tissue classes, one-vs-all."""
    y = _labels(tissue_target).to(logits.device)
    if bool((y == label_set.lesion).any()) or bool((y < 0).any()) or bool((y > label_set.lesion).any()):
        raise InputError(f"Control tissue labels must lie in 0..{label_set.lesion - 1} "
                         f"(no '{label_set.names[-1]}' in a control scan).")
    side = list(tissue_side(label_set))
    probs = torch.softmax(logits.float(), 1)[:, side]
    onehot = torch.cat([(y == c) for c in side], 1).float()
    return weighted_jaccard(probs, onehot, class_weights(label_set)[side])


def lesion_loss(logits: torch.Tensor, lesion_target: torch.Tensor, label_set: LabelSet) -> torch.Tensor:
    """L^l(h(X), Y^l) on lesion scans: the lesion class against everything else."""
    les = label_set.lesion
    y = (_labels(lesion_target) > 0).float().to(logits.device)
    p = torch.softmax(logits.float(), 1)[:, les : les + 1]
    return weighted_jaccard(p, y, class_weights(label_set)[[les]])


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, label_set: LabelSet):
    """Fully labelled scans (model M): (tissue part, lesion part) of Eq. 6 on one forward."""
    y = _labels(labels).to(logits.device)
    probs = torch.softmax(logits.float(), 1)
    onehot = torch.cat([(y == c) for c in range(label_set.n_classes)], 1).float()
    w = class_weights(label_set)
    side, les = list(tissue_side(label_set)), [label_set.lesion]
    return (weighted_jaccard(probs[:, side], onehot[:, side], w[side]),
            weighted_jaccard(probs[:, les], onehot[:, les], w[les]))


def inter_modality_loss(logits_full: torch.Tensor, logits_shared: torch.Tensor, label_set: LabelSet,
                        lesion_mask: torch.Tensor | None = None, detach_reference: bool = False) -> torch.Tensor:
    """L^t(h(X), h(p(X))): tissue output from all modalities vs from the shared ones.

    ``lesion_mask`` (annotated lesions of the scan) removes those voxels; see the module
    docstring. ``detach_reference`` stops gradients through h(p(X)) (off: the paper).
    """
    side = list(tissue_side(label_set))
    p_full = torch.softmax(logits_full.float(), 1)[:, side]
    p_ref = torch.softmax(logits_shared.float(), 1)[:, side]
    if detach_reference:
        p_ref = p_ref.detach()
    keep = None
    if lesion_mask is not None:
        keep = (_labels(lesion_mask) == 0).float().to(p_full.device)
    return weighted_jaccard(p_full, p_ref, class_weights(label_set)[side], mask=keep)


def inter_active(step: int, warmup: int) -> bool:
    """The paper skips the inter-modality term for the first ``warmup`` iterations."""
    return step > warmup


def joint_risk(logits_control: torch.Tensor, tissue_target: torch.Tensor, logits_lesion_full: torch.Tensor,
               lesion_target: torch.Tensor, logits_lesion_shared: torch.Tensor | None, step: int, warmup: int,
               label_set: LabelSet, *, mask_lesion: bool = True, detach_reference: bool = False):
    """Empirical decomposed risk R^l + R^t_2 (+ R^t_1 after warm-up).

    Returns ``(total, {"loss_tissue", "loss_lesion", "loss_inter"})`` with tensor parts.
    ``logits_lesion_shared`` (the lesion scan seen through T1 only) may be ``None``
    before the warm-up ends; the inter term is then 0.
    """
    l_t = tissue_loss(logits_control, tissue_target, label_set)
    l_l = lesion_loss(logits_lesion_full, lesion_target, label_set)
    if inter_active(step, warmup):
        if logits_lesion_shared is None:
            raise InputError("After the warm-up the inter-modality term needs the T1-only output of the lesion scan.")
        l_i = inter_modality_loss(logits_lesion_full, logits_lesion_shared, label_set,
                                  lesion_target if mask_lesion else None, detach_reference)
    else:
        l_i = torch.zeros((), device=l_t.device)
    return l_t + l_l + l_i, {"loss_tissue": l_t, "loss_lesion": l_l, "loss_inter": l_i}
