"""The pix2pix objective: GAN losses that reward the right answer, the L1 weight of 100, float32 losses
under bf16 autocast, and a tiny generator and discriminator whose L1 term falls when trained."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.losses import LAMBDA_L1, GANLoss, discriminator_loss, generator_loss
from models.networks import NetworkConfig, build_discriminator, build_generator

SURE = 20.0  # a logit the discriminator is sure of: sigmoid(20) = 1 - 2e-9


def test_vanilla_loss_is_near_zero_when_right_and_large_when_confidently_wrong() -> None:
    gan_loss = GANLoss("vanilla")
    logits = torch.full((2, 1, 30, 30), SURE)

    assert gan_loss(logits, True) < 1e-6
    assert gan_loss(-logits, False) < 1e-6
    assert gan_loss(logits, False) > 10
    assert gan_loss(-logits, True) > 10
    assert gan_loss(torch.zeros(3, 1, 6, 6), True) == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_lsgan_loss_is_mean_squared_error_to_one_or_zero() -> None:
    gan_loss = GANLoss("lsgan")
    logits = torch.randn(4, 1, 30, 30)

    torch.testing.assert_close(gan_loss(logits, True), F.mse_loss(logits, torch.ones_like(logits)))
    torch.testing.assert_close(gan_loss(logits, False), logits.square().mean())


def test_unknown_gan_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown GAN loss mode 'wgan'"):
        GANLoss("wgan")


def test_generator_loss_is_adversarial_plus_100_times_l1() -> None:
    gan_loss = GANLoss()
    fake_logits, fake_ab, real_ab = torch.randn(2, 1, 6, 6), torch.rand(2, 2, 64, 64), torch.rand(2, 2, 64, 64)

    total, adversarial, l1 = generator_loss(gan_loss, fake_logits, fake_ab, real_ab)

    assert LAMBDA_L1 == 100.0
    torch.testing.assert_close(adversarial, gan_loss(fake_logits, True))
    torch.testing.assert_close(l1, (fake_ab - real_ab).abs().mean())
    torch.testing.assert_close(total, adversarial + 100 * l1)
    total_10, _, _ = generator_loss(gan_loss, fake_logits, fake_ab, real_ab, lambda_l1=10)
    torch.testing.assert_close(total_10, adversarial + 10 * l1)


def test_discriminator_loss_averages_real_and_fake_halves() -> None:
    gan_loss = GANLoss()
    real_logits, fake_logits = torch.randn(2, 1, 6, 6), torch.randn(2, 1, 6, 6)

    expected = 0.5 * (gan_loss(real_logits, True) + gan_loss(fake_logits, False))
    torch.testing.assert_close(discriminator_loss(gan_loss, real_logits, fake_logits), expected)
    assert discriminator_loss(gan_loss, torch.full((1, 1, 6, 6), SURE), torch.full((1, 1, 6, 6), -SURE)) < 1e-6


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_losses_are_float32_under_bf16_autocast(mode: str) -> None:
    torch.manual_seed(0)
    cfg = NetworkConfig(ngf=8, ndf=8, num_downs=6)
    generator, discriminator, gan_loss = build_generator(cfg), build_discriminator(cfg), GANLoss(mode)
    l_channel, real_ab = torch.rand(2, 1, 64, 64), torch.rand(2, 2, 64, 64) * 2 - 1

    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake_ab = generator(l_channel)
        fake_logits = discriminator(torch.cat([l_channel, fake_ab], 1))
        real_logits = discriminator(torch.cat([l_channel, real_ab], 1))
        losses = [*generator_loss(gan_loss, fake_logits, fake_ab, real_ab)]
        losses.append(discriminator_loss(gan_loss, real_logits, fake_logits.detach()))

    assert fake_ab.dtype == fake_logits.dtype == torch.bfloat16  # autocast did run the networks in bf16
    assert all(loss.dtype == torch.float32 and loss.isfinite() for loss in losses)
    losses[0].backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in generator.parameters())


def test_gan_loss_casts_bf16_logits_to_float32() -> None:
    assert GANLoss()(torch.randn(2, 1, 6, 6, dtype=torch.bfloat16), True).dtype == torch.float32
    fake_ab = torch.rand(2, 2, 8, 8, dtype=torch.bfloat16)
    _, _, l1 = generator_loss(GANLoss(), torch.zeros(2, 1, 6, 6), fake_ab, torch.rand(2, 2, 8, 8))
    assert l1.dtype == torch.float32


def test_a_tiny_pix2pix_pair_learns_to_colour_a_fixed_batch() -> None:
    torch.manual_seed(0)
    cfg = NetworkConfig(ngf=8, ndf=8, num_downs=6)
    generator, discriminator, gan_loss = build_generator(cfg), build_discriminator(cfg), GANLoss()
    # Higher than the paper's 2e-4 so that 30 steps show a clear fall; the betas are the paper's.
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    # Smooth grey images whose chroma is a function of lightness, so there is something to learn.
    l_channel = F.interpolate(torch.rand(4, 1, 8, 8), size=64, mode="bilinear") * 2 - 1
    real_ab = torch.cat([0.6 * torch.sin(3 * l_channel), 0.5 * l_channel.square() - 0.2], 1)

    l1_history = []
    for _ in range(30):
        fake_ab = generator(l_channel)

        opt_d.zero_grad()
        real_logits = discriminator(torch.cat([l_channel, real_ab], 1))
        fake_logits = discriminator(torch.cat([l_channel, fake_ab.detach()], 1))
        discriminator_loss(gan_loss, real_logits, fake_logits).backward()
        opt_d.step()

        opt_g.zero_grad()
        total, _, l1 = generator_loss(gan_loss, discriminator(torch.cat([l_channel, fake_ab], 1)), fake_ab, real_ab)
        total.backward()
        opt_g.step()
        l1_history.append(l1.item())

    assert min(l1_history[-5:]) < 0.5 * l1_history[0], l1_history
    assert max(l1_history[-5:]) < 0.7 * l1_history[0], l1_history
