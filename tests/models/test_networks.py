"""The generator and discriminator as pix2pix describes them: shapes, output range, patch maps, norms,
initialisation, dropout, and a clear refusal of inputs the U-Net cannot take."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.networks import NetworkConfig, build_discriminator, build_generator, init_weights, norm_layer

SMALL = NetworkConfig(ngf=8, ndf=8, num_downs=6)  # a 64 px U-Net, small enough for quick CPU tests


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def grayscale(batch: int, side: int) -> torch.Tensor:
    return torch.rand(batch, 1, side, side) * 2 - 1


@pytest.mark.parametrize(
    ("cfg", "side"), [(SMALL, 64), (NetworkConfig(ngf=8, ndf=8), 256)], ids=["64px-6-downs", "256px-default-depth"]
)
def test_generator_predicts_ab_in_tanh_range_at_input_size(cfg: NetworkConfig, side: int) -> None:
    fake_ab = build_generator(cfg)(grayscale(2, side))

    assert fake_ab.shape == (2, 2, side, side)
    assert fake_ab.min() >= -1 and fake_ab.max() <= 1
    assert fake_ab.std() > 0  # not a constant map


def test_discriminator_returns_a_patch_map_of_70px_patches_for_256px_pairs() -> None:
    cfg = NetworkConfig(ngf=8, ndf=8)
    pair = torch.cat([grayscale(2, 256), build_generator(cfg)(grayscale(2, 256))], 1)

    logits = build_discriminator(cfg)(pair)

    assert logits.shape == (2, 1, 30, 30)
    assert logits.min() < 0 < logits.max()  # raw logits, no sigmoid


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_both_norms_build_working_networks(norm: str) -> None:
    cfg = NetworkConfig(ngf=8, ndf=8, num_downs=6, norm=norm)
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    expected = nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d

    l_channel = grayscale(2, 64)
    logits = discriminator(torch.cat([l_channel, generator(l_channel)], 1))

    assert logits.shape == (2, 1, 6, 6)
    for net in (generator, discriminator):
        assert any(isinstance(module, expected) for module in net.modules())
    # Instance norm is not affine, so the conv before it keeps its bias; batch norm's shift replaces it.
    biased = [m.bias is not None for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert biased == [True, *[norm == "instance"] * 3, True]


def test_unknown_norm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        norm_layer("group")
    with pytest.raises(ValueError, match="unknown norm"):
        build_generator(NetworkConfig(norm="layer"))


@pytest.mark.parametrize("shape", [(1, 1, 100, 128), (1, 1, 128, 96), (1, 1, 32, 32)])
def test_generator_refuses_sides_not_divisible_by_2_to_the_num_downs(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"divisible by 64.*smaller num_downs"):
        build_generator(SMALL)(torch.zeros(shape))


def test_a_u_net_shallower_than_its_five_fixed_levels_is_refused() -> None:
    with pytest.raises(ValueError, match="num_downs must be at least 5"):
        build_generator(NetworkConfig(num_downs=4))


def test_generator_takes_non_square_inputs_of_allowed_sides() -> None:
    assert build_generator(SMALL)(grayscale(1, 64).repeat(1, 1, 2, 1)).shape == (1, 2, 128, 64)


def test_init_draws_conv_weights_from_n_0_002_and_norm_scales_around_1() -> None:
    generator = build_generator(NetworkConfig(ngf=8))
    convs = [m for m in generator.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]

    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert weights.mean().abs() < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(not m.bias.any() for m in convs if m.bias is not None)
    scales = torch.cat([m.weight.detach() for m in norms])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    assert 0.01 < scales.std() < 0.03
    assert all(not m.bias.any() for m in norms)


def test_init_weights_takes_a_gain() -> None:
    net = init_weights(nn.Conv2d(64, 64, 4), gain=0.1)
    assert net.weight.std().item() == pytest.approx(0.1, rel=0.05)


def test_dropout_only_in_the_generator_and_only_when_enabled() -> None:
    def dropouts(net: nn.Module) -> int:
        return sum(isinstance(module, nn.Dropout) for module in net.modules())

    # The num_downs - 5 levels just outside the innermost one carry dropout, as in the paper's decoder.
    assert dropouts(build_generator(NetworkConfig(ngf=8))) == 3
    assert dropouts(build_generator(SMALL)) == 1
    assert dropouts(build_generator(NetworkConfig(ngf=8, dropout=False))) == 0
    assert dropouts(build_discriminator(NetworkConfig())) == 0


def test_dropout_makes_training_mode_outputs_vary_and_eval_mode_deterministic() -> None:
    generator = build_generator(SMALL)
    l_channel = grayscale(2, 64)

    generator.train()
    assert not torch.equal(generator(l_channel), generator(l_channel))
    generator.eval()
    assert torch.equal(generator(l_channel), generator(l_channel))
