"""The pix2pix objective: an adversarial loss on PatchGAN logits plus an L1 loss on the predicted chroma.

    gan_loss = GANLoss("vanilla")
    d_loss = discriminator_loss(gan_loss, discriminator(real_pair), discriminator(fake_pair.detach()))
    g_total, g_adv, g_l1 = generator_loss(gan_loss, discriminator(fake_pair), fake_ab, real_ab)

Every loss is computed in float32, also when the networks run under torch.autocast in bfloat16: logits and
chroma are cast up first, because bf16 keeps about three significant digits, too few for a log-loss near
zero or for a mean of small differences over a whole image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GANMode = Literal["vanilla", "lsgan"]

LAMBDA_L1 = 100.0  # the paper's weight: L1 keeps colours close to the truth, the GAN term makes them vivid


class GANLoss(nn.Module):
    """The adversarial loss against an all-real or all-fake target shaped like the discriminator's output.

    "vanilla" is the paper's cross-entropy on logits; "lsgan" (least squares) gives gradients that do not
    vanish when the discriminator is sure, and is often steadier. The target is built per call, like the
    prediction, so any patch map size, device and batch works.
    """

    def __init__(self, mode: GANMode = "vanilla") -> None:
        super().__init__()
        if mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        elif mode == "lsgan":
            self.loss = nn.MSELoss()
        else:
            raise ValueError(f"unknown GAN loss mode {mode!r}: expected 'vanilla' or 'lsgan'")
        self.mode = mode

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return self.loss(prediction, target)


def generator_loss(
    gan_loss: GANLoss,
    fake_logits: torch.Tensor,
    fake_ab: torch.Tensor,
    real_ab: torch.Tensor,
    lambda_l1: float = LAMBDA_L1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The generator wants its pairs judged real and its chroma close to the truth.

    Returns (total, adversarial, l1), all float32; the parts are returned so they can be logged apart.
    """
    adversarial = gan_loss(fake_logits, True)
    l1 = F.l1_loss(fake_ab.float(), real_ab.float())
    return adversarial + lambda_l1 * l1, adversarial, l1


def discriminator_loss(gan_loss: GANLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Real pairs as real, fake pairs as fake, halved as in pix2pix to slow D relative to G.

    `fake_logits` should come from a detached fake, so this loss does not reach the generator.
    """
    return 0.5 * (gan_loss(real_logits, True) + gan_loss(fake_logits, False))
