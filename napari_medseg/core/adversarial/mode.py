"""Adversarial mode for any segmentation training in the plugin.

:func:`napari_medseg.core.training.train_supervised` accepts an ``adversary``; this is
the one the methods use: a conditional mask discriminator (Chen et al. 2019) that sees
the image with a mask and learns to tell the reference masks (one-hot) from the model's
softmax. The segmentation model gets ``weight`` x the non-saturating adversarial loss on
top of its own loss, with the discriminator frozen in that step (:func:`gan.no_param_grads`),
and the discriminator is updated once after every model update. Pixels whose label is
unknown (an ignore value) show the model's own softmax on both sides, so they cannot give
the answer away.
"""

from __future__ import annotations

import torch

from .. import distributed
from . import losses
from .gan import no_param_grads
from .networks import ConditionalMaskDiscriminator


def _labels(y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The label map of a target: (B, H, W[, D]), or channel 0 of a (B, K, ...) target
    (the plugin's targets carry a per-pixel weight in channel 1)."""
    return y[:, 0] if y.ndim == logits.ndim else y


class MaskAdversary:
    """Discriminator, its optimiser and its two steps, for ``train_supervised(adversary=...)``."""

    def __init__(self, image_channels: int, n_classes: int, spatial_dims: int = 2, weight: float = 0.1,
                 lr: float = 2e-4, device="cpu", ignore: int | None = None, criterion: str = "bce",
                 features=(16, 32, 64, 64)):
        self.weight, self.n_classes, self.ignore, self.criterion = float(weight), int(n_classes), ignore, criterion
        self.discriminator = ConditionalMaskDiscriminator(spatial_dims=spatial_dims, image_channels=image_channels,
                                                          mask_channels=n_classes, features=tuple(features))
        self.discriminator.to(device).train()
        distributed.broadcast_weights(self.discriminator)  # under torchrun every rank starts from rank 0's D
        self.opt = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def _real(self, y: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        labels = _labels(y, probs).long()
        known = torch.ones_like(labels, dtype=torch.bool) if self.ignore is None else labels != self.ignore
        onehot = torch.nn.functional.one_hot(torch.where(known, labels, 0).clamp(0, self.n_classes - 1),
                                             self.n_classes).movedim(-1, 1).to(probs.dtype)
        return torch.where(known[:, None], onehot, probs.detach())

    def generator_term(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``weight`` x the adversarial loss of the model's softmax; D's parameters get no gradient."""
        probs = torch.softmax(logits.float(), 1)
        with no_param_grads(self.discriminator):
            return self.weight * losses.adversarial_loss(self.discriminator(x.float(), probs), self.criterion)

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict:
        """One update: reference masks are real, the model's (detached) softmax fake."""
        probs = torch.softmax(logits.detach().float(), 1)
        x = x.detach().float()
        self.opt.zero_grad(set_to_none=True)
        loss = losses.discriminator_loss(self.discriminator(x, self._real(y, probs)), self.discriminator(x, probs),
                                         self.criterion)
        loss.backward()
        distributed.average_gradients(self.discriminator)  # the ranks' mean: D stays one network
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"loss_d": float(loss.detach())}
