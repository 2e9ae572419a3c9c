"""The whole network pair lives in this file: the pix2pix U-Net generator and the PatchGAN discriminator.

The generator sees the L channel of a CIE Lab image and predicts its a/b chroma in [-1, 1]; the discriminator
judges (L, ab) pairs patch by patch. Both follow the pix2pix paper (Isola et al., 2017) and its reference
implementation (junyanz/pytorch-CycleGAN-and-pix2pix), with the same names: ngf, ndf, n_layers, innermost,
outermost.

    cfg = NetworkConfig()                             # 256 px, the paper's networks
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    fake_ab = generator(l)                            # (N, 1, 256, 256) -> (N, 2, 256, 256)
    logits = discriminator(torch.cat([l, fake_ab], 1))  # (N, 3, 256, 256) -> (N, 1, 30, 30)

Smaller images need a smaller U-Net: the input side must be divisible by 2**num_downs (e.g. num_downs=6
for 64 px).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Norm = Literal["batch", "instance"]


@dataclass(frozen=True)
class NetworkConfig:
    input_nc: int = 1  # L: lightness is what a black-and-white photograph still has
    output_nc: int = 2  # a, b: the chroma the generator has to invent
    ngf: int = 64  # generator filters in the outermost layer; they double per level up to 8 * ngf
    ndf: int = 64  # discriminator filters in the first layer, doubling per layer up to 8 * ndf
    num_downs: int = 8  # 2**8 = 256: a 256 px image is squeezed to a 1x1 bottleneck, as in the paper
    n_layers_d: int = 3  # three strided layers give each output logit a 70x70 px receptive field
    norm: Norm = "batch"  # the paper's choice; "instance" does not depend on the batch (batch size 1)
    dropout: bool = True  # the generator's only noise source in pix2pix, which drops the z input


def norm_layer(kind: Norm) -> Callable[[int], nn.Module]:
    """A factory taking a channel count, so blocks can build the same norm at every width."""
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True)
    if kind == "instance":
        # As in the reference: no learnt scale and shift, and statistics from each image even at eval.
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {kind!r}: expected 'batch' or 'instance'")


def _use_bias(kind: Norm) -> bool:
    """BatchNorm's learnt shift makes a conv bias redundant; affine-free InstanceNorm has none, so keep it."""
    return kind == "instance"


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down, the levels below (`submodule`), up, and a skip around them.

    The skip concatenates this level's input with the decoder's output, so fine detail from the encoder
    reaches the decoder without squeezing through the bottleneck. The outermost level has no skip (its
    output is the image), no norm on its down conv and a tanh to land in [-1, 1]; the innermost level has
    no submodule and no norm on its down conv, whose output is 1x1.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: Norm = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        make_norm, use_bias = norm_layer(norm), _use_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        # Except at the bottleneck, the up conv takes the submodule's output concatenated with its skip.
        up_in = inner_nc if innermost else inner_nc * 2

        if outermost:
            up_conv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [down_conv, submodule, nn.ReLU(), up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2), down_conv, nn.ReLU(), up_conv, make_norm(outer_nc)]
        else:
            up_conv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            down = [nn.LeakyReLU(0.2), down_conv, make_norm(inner_nc)]
            up = [nn.ReLU(), up_conv, make_norm(outer_nc)]
            layers = [*down, submodule, *up, *([nn.Dropout(0.5)] if dropout else [])]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net, built from the bottleneck outwards: each level wraps the one below it.

    Widths from the outside in are ngf, 2 ngf, 4 ngf, then 8 ngf for the remaining `num_downs - 4` levels;
    the `num_downs - 5` deep levels just outside the innermost one carry dropout, as in the paper's decoder.
    """

    def __init__(
        self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: Norm = "batch", dropout: bool = True
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5 (the U-Net has 5 fixed levels), got {num_downs}")
        self.num_downs = num_downs
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc, block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Checked up front: otherwise an up conv misses its skip by a pixel and torch.cat fails deep inside.
        side = 2**self.num_downs
        height, width = x.shape[-2:]
        if height % side or width % side:
            raise ValueError(
                f"input is {height}x{width} px but a U-Net with num_downs={self.num_downs} needs both sides "
                f"divisible by {side}: resize the image or build the generator with a smaller num_downs"
            )
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The PatchGAN: a stack of 4x4 convs whose output is a map of logits, one per overlapping patch.

    Judging patches rather than whole images leaves the low frequencies to the L1 loss and makes the
    discriminator a texture and colour critic; with n_layers=3 each logit sees 70x70 px. No sigmoid: the loss
    takes logits.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch") -> None:
        super().__init__()
        make_norm, use_bias = norm_layer(norm), _use_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        nf_mult = 1
        for n in range(1, n_layers + 1):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps the resolution
            layers += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=4, stride=stride, padding=1, bias=use_bias),
                make_norm(ndf * nf_mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(ndf * nf_mult, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` is L concatenated with ab along the channels: the discriminator is conditioned on the input."""
        return self.model(x)


@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The paper's initialisation, N(0, 0.02), which keeps early GAN training from blowing up."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.InstanceNorm2d) and module.weight is not None:
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


def build_generator(cfg: NetworkConfig) -> nn.Module:
    return init_weights(UnetGenerator(cfg.input_nc, cfg.output_nc, cfg.num_downs, cfg.ngf, cfg.norm, cfg.dropout))


def build_discriminator(cfg: NetworkConfig) -> nn.Module:
    return init_weights(NLayerDiscriminator(cfg.input_nc + cfg.output_nc, cfg.ndf, cfg.n_layers_d, cfg.norm))


@torch.no_grad()
def colorize_ab(generator: nn.Module, lightness: torch.Tensor) -> torch.Tensor:
    """ab for L the way pix2pix colorizes at test time: BatchNorm normalizes with the statistics of the
    images at hand (the reference's test script keeps training mode), dropout is off, and the stored
    running statistics are left untouched. With instance norm this is plain evaluation."""
    was_training = generator.training
    generator.eval()
    norms = [module for module in generator.modules() if isinstance(module, nn.BatchNorm2d)]
    saved = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum, norm.training = 0.0, True  # momentum 0: the running statistics stay as they are
    try:
        return generator(lightness)
    finally:
        for norm, momentum in zip(norms, saved, strict=True):
            norm.momentum = momentum
        generator.train(was_training)
