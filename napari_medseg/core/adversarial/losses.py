"""The losses of the three adversarial methods, written once for the engine.

Targets are integer label maps, (B, 1, *S) or (B, *S), unless said otherwise; logits
are (B, C, *S). One logit channel means a binary mask (sigmoid, BCE), more mean
classes (softmax, cross-entropy). Everything is autocast-safe: binary cross-entropy
is always taken on logits (``torch.nn.BCELoss``, which MONAI's ``PatchAdversarialLoss``
uses for its ``"bce"`` criterion, is refused inside float16 autocast).

* Chen et al. (2019): L_ID = β·CE + (1−β)·Dice (:func:`segmentation_loss`); L_DT is
  the same form on pseudo-masks; L_G = λ·L_ID + (1−λ)·L_DT (+ the adversarial term,
  weight 1 as in Eq. 6, L_adv = L_D + L_G) (:func:`generator_loss`); the conditional
  mask discriminator on binary cross-entropy, real = ground truth, fake = G's softmax
  (Eq. 5) (:func:`discriminator_loss`, :func:`adversarial_loss`).
* Giacomello et al. (2020) / SegAN: the multi-scale L1 distance between critic
  features (:func:`multiscale_l1`); the segmentor minimises it plus a Dice term
  (:func:`segan_segmentor_loss`), the critic maximises it (:func:`segan_critic_loss`).
* Delisle et al. (2019): the segmenter's weighted Dice loss (:func:`dice_loss`); the
  domain discriminator's log loss over real domains (labels 0..K−1) and generated
  images (label K) (:func:`domain_discriminator_loss`); the generator's adversarial term
  pushing its images away from the "generated" class (:func:`normalization_adversarial_loss`);
  the MSE identity warm-up (:func:`identity_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, PatchAdversarialLoss

from ..errors import InputError

CRITERIA = ("bce", "least_squares")


def _labels(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Integer labels as (B, 1, *S) on the logits' device."""
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.ndim != logits.ndim or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise InputError(f"Labels {tuple(target.shape)} do not match logits {tuple(logits.shape)}: expected "
                         f"(B, 1, *S) or (B, *S) integer labels on the same grid.")
    return target.to(device=logits.device)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: Sequence[float] | None = None,
              include_background: bool = True) -> torch.Tensor:
    """Soft Dice loss, 1 − mean over classes of 2|P∩Y| / (|P| + |Y|), per image then batch
    mean. Softmax over classes (sigmoid for one channel); ``weight`` weighs the classes
    (Delisle et al.'s weighted Dice)."""
    target = _labels(target, logits)
    binary = logits.shape[1] == 1
    loss = DiceLoss(include_background=include_background or binary, to_onehot_y=not binary, sigmoid=binary,
                    softmax=not binary, weight=weight)
    return loss(logits.float(), target.float())


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy (binary on one logit channel)."""
    target = _labels(target, logits)
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return F.cross_entropy(logits.float(), target[:, 0].long())


# -- Chen et al. 2019 ---------------------------------------------------------------------


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, beta: float = 0.9) -> torch.Tensor:
    """L_ID (Eq. 2), and L_DT (Eq. 3) when ``target`` holds pseudo-masks: β·CE + (1−β)·Dice."""
    if not 0.0 <= beta <= 1.0:
        raise InputError(f"beta must lie in [0, 1], got {beta}.")
    return beta * cross_entropy(logits, target) + (1.0 - beta) * dice_loss(logits, target)


def generator_loss(l_id: torch.Tensor, l_dt: torch.Tensor | None = None, adv: torch.Tensor | None = None,
                   lam: float = 0.9, adv_weight: float = 1.0) -> torch.Tensor:
    """L_G = λ·L_ID + (1−λ)·L_DT (Eq. 4), plus ``adv_weight``·adversarial term (Eq. 6
    adds L_D and L_G with equal weight, so 1 by default).

    Without ``l_dt`` (no weak transfer, the paper's U+A+D) L_ID has the full weight.
    """
    if not 0.0 <= lam <= 1.0:
        raise InputError(f"lambda must lie in [0, 1], got {lam}.")
    loss = l_id if l_dt is None else lam * l_id + (1.0 - lam) * l_dt
    return loss if adv is None else loss + adv_weight * adv


def _adv_criterion(logits: torch.Tensor, real: bool, criterion: str, for_discriminator: bool) -> torch.Tensor:
    if criterion == "bce":
        target = torch.full_like(logits, 1.0 if real else 0.0, dtype=torch.float32)
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    if criterion == "least_squares":
        return PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)(
            logits.float(), target_is_real=real, for_discriminator=for_discriminator)
    raise InputError(f"Unknown adversarial criterion {criterion!r}; choose one of {list(CRITERIA)}.")


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, criterion: str = "bce") -> torch.Tensor:
    """The mask discriminator's loss (Eq. 5, negated to be minimised): ground-truth (or
    pseudo-) masks are real (1), the segmentor's masks fake (0). Logits of any shape
    (global (B, 1) or a patch map); ``"least_squares"`` is LSGAN via MONAI."""
    return _adv_criterion(d_real, True, criterion, True) + _adv_criterion(d_fake, False, criterion, True)


def scaled_real_masks(one_hot: torch.Tensor, fake: torch.Tensor, tau: float) -> torch.Tensor:
    """Real masks that a discriminator cannot tell from the segmentor's by softness alone: the
    "scaling" of Luc et al. (2016, Semantic segmentation using adversarial networks, §3.2).
    Per pixel the true class gets max(τ, s_true) of the segmentor's probabilities ``fake``,
    the other classes share the rest in the segmentor's proportions; sums stay 1, and a
    one-hot ``fake`` gives the one-hot mask back. (B, C, *S) both."""
    if not 0.0 < tau <= 1.0:
        raise InputError(f"The scaling threshold tau must be in (0, 1]; got {tau}.")
    s_true = (fake * one_hot).sum(1, keepdim=True)
    y_true = torch.clamp(s_true, min=tau)
    rest = (1.0 - y_true) / (1.0 - s_true).clamp_min(1e-6)
    return one_hot * y_true + (1.0 - one_hot) * fake * rest


def adversarial_loss(d_fake: torch.Tensor, criterion: str = "bce") -> torch.Tensor:
    """The segmentor's adversarial term: make D call its masks real (the non-saturating
    form of minimising log(1 − D(G(x)|x)))."""
    return _adv_criterion(d_fake, True, criterion, False)


# -- Giacomello et al. 2020 (SegAN) -------------------------------------------------------


def multiscale_l1(features_pred: Sequence[torch.Tensor], features_true: Sequence[torch.Tensor],
                  weights: Sequence[float] | None = None) -> torch.Tensor:
    """SegAN's ℓ_mae: the mean over scales of the mean absolute difference between the
    critic's features of (image, predicted mask) and (image, true mask)."""
    if len(features_pred) != len(features_true) or not features_pred:
        raise InputError(f"The critic gave {len(features_pred)} and {len(features_true)} feature scales; "
                         "they must match and be non-empty.")
    weights = [1.0] * len(features_pred) if weights is None else list(weights)
    if len(weights) != len(features_pred):
        raise InputError(f"{len(weights)} weights for {len(features_pred)} feature scales.")
    terms = [w * (a.float() - b.float()).abs().mean() for w, a, b in zip(weights, features_pred, features_true)]
    return torch.stack(terms).sum() / len(terms)


def segan_segmentor_loss(features_pred: Sequence[torch.Tensor], features_true: Sequence[torch.Tensor],
                         logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """The segmentor minimises the multi-scale L1 plus a Dice term (without it, SegAN's
    training is unstable, Giacomello et al. Fig. 2)."""
    return multiscale_l1(features_pred, features_true) + dice_weight * dice_loss(logits, target)


def segan_critic_loss(features_pred: Sequence[torch.Tensor], features_true: Sequence[torch.Tensor]) -> torch.Tensor:
    """The critic maximises the multi-scale L1: minimise its negative. Compute
    ``features_pred`` from the segmentor's detached mask."""
    return -multiscale_l1(features_pred, features_true)


# -- Delisle et al. 2019 ------------------------------------------------------------------


def domain_discriminator_loss(logits_real: torch.Tensor, domains: torch.Tensor,
                              logits_generated: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of D over raw images (their domain labels 0..K−1, Eq. 3) plus over
    generated images (label K, "generated", Eq. 4). Logits are (B, K+1)."""
    k = logits_real.shape[1] - 1
    domains = domains.reshape(-1).long().to(logits_real.device)
    if domains.numel() != logits_real.shape[0]:
        raise InputError(f"{domains.numel()} domain labels for {logits_real.shape[0]} images.")
    if domains.numel() and (int(domains.min()) < 0 or int(domains.max()) >= k):
        raise InputError(f"Domain labels must lie in 0..{k - 1}; got {sorted(set(domains.tolist()))}.")
    loss = F.cross_entropy(logits_real.float(), domains)
    if logits_generated is not None:
        generated = torch.full((logits_generated.shape[0],), k, dtype=torch.long, device=logits_generated.device)
        loss = loss + F.cross_entropy(logits_generated.float(), generated)
    return loss


def normalization_adversarial_loss(logits_generated: torch.Tensor, form: str = "non_saturating") -> torch.Tensor:
    """The generator's adversarial term: push its images away from the "generated" class K.

    ``"non_saturating"`` (default): −log(1 − p_K), i.e. −log of the probability that D
    takes the image for one of the real domains. ``"minimax"``: −CE(D(G(x)), K) = log p_K,
    the negative of D's loss on generated images (flat gradients once D is confident).
    """
    z = logits_generated.float()
    if form == "non_saturating":
        return (torch.logsumexp(z, dim=1) - torch.logsumexp(z[:, :-1], dim=1)).mean()
    if form == "minimax":
        return torch.log_softmax(z, dim=1)[:, -1].mean()
    raise InputError(f"Unknown adversarial form {form!r}; choose 'non_saturating' or 'minimax'.")


def normalization_generator_loss(logits: torch.Tensor, target: torch.Tensor, logits_generated: torch.Tensor,
                                 adv_weight: float = 1.0, weight: Sequence[float] | None = None) -> torch.Tensor:
    """What G and S minimise together: the segmenter's (weighted) Dice loss plus the
    adversarial term on D's output for the normalised images."""
    return dice_loss(logits, target, weight=weight) + adv_weight * normalization_adversarial_loss(logits_generated)


def identity_loss(generated: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The warm-up of the generator (first epochs): MSE between G(x) and x."""
    return F.mse_loss(generated.float(), image.float())
