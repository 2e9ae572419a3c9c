"""The colorization metrics against values worked out by hand on images simple enough to do so: flat
colors, where PSNR, SSIM and colorfulness reduce to their formulas' constant terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from models.metrics import colorization_metrics, sample_grid
from pipelines.lab import lab8_to_rgb

SIDE = 16


def flat(lightness: int, a: int = 128, b: int = 128) -> np.ndarray:
    """A one-image batch of 8-bit Lab, the same color everywhere."""
    return np.full((1, SIDE, SIDE, 3), (lightness, a, b), dtype=np.uint8)


def rgb_of(lab8: np.ndarray) -> np.ndarray:
    rgb = lab8_to_rgb(lab8[0]).astype(np.float64)
    assert (rgb == rgb[0, 0]).all(), "a flat Lab color is a flat RGB color"
    return rgb[0, 0]


def test_psnr_and_ssim_of_two_flat_grays() -> None:
    truth, guess = flat(150), flat(120)
    difference = abs(rgb_of(truth)[0] - rgb_of(guess)[0])  # the same in R, G and B: both are gray
    mean_truth, mean_guess = rgb_of(truth)[0], rgb_of(guess)[0]
    c1 = (0.01 * 255) ** 2  # SSIM's stabilizer for 8-bit data; with no variance only the luminance term is left
    expected_ssim = (2 * mean_truth * mean_guess + c1) / (mean_truth**2 + mean_guess**2 + c1)

    metrics = colorization_metrics(guess, truth)

    assert metrics["psnr"] == pytest.approx(20 * math.log10(255 / difference))
    assert metrics["ssim"] == pytest.approx(expected_ssim, rel=1e-6)
    assert metrics["l1_ab"] == 0.0


def test_l1_on_chroma_and_colorfulness_of_flat_colors() -> None:
    truth, guess = flat(140, a=168, b=148), flat(140, a=148, b=138)
    red, green, blue = rgb_of(truth)
    # Hasler and Suesstrunk on a flat color: no spread, a third of the opponent channels' mean.
    expected_truth = 0.3 * math.hypot(red - green, 0.5 * (red + green) - blue)

    metrics = colorization_metrics(guess, truth)

    assert metrics["l1_ab"] == pytest.approx((20 + 10) / 2)
    assert metrics["colorfulness_truth"] == pytest.approx(expected_truth, abs=1e-3)
    assert metrics["colorfulness_ratio"] == pytest.approx(metrics["colorfulness"] / metrics["colorfulness_truth"])
    assert metrics["colorfulness"] < metrics["colorfulness_truth"], "less chroma, less colorful"


def test_metrics_average_over_the_batch() -> None:
    truth = np.concatenate([flat(140, a=168), flat(140, a=168)])
    guess = np.concatenate([flat(140, a=158), flat(140, a=148)])
    assert colorization_metrics(guess, truth)["l1_ab"] == pytest.approx((10 / 2 + 20 / 2) / 2)


def test_the_sample_grid_shows_gray_prediction_and_truth_per_row() -> None:
    truth, guess = np.concatenate([flat(140, a=168)] * 3), np.concatenate([flat(100, b=160)] * 3)
    grid = sample_grid(guess, truth, max_rows=2)
    assert isinstance(grid, Image.Image) and grid.size == (3 * SIDE, 2 * SIDE)
    pixels = np.asarray(grid)
    gray, predicted, real = pixels[0, 0], pixels[0, SIDE], pixels[0, 2 * SIDE]
    assert gray[0] == gray[1] == gray[2]
    assert tuple(predicted) == tuple(rgb_of(guess[:1]).astype(np.uint8))
    assert tuple(real) == tuple(rgb_of(truth[:1]).astype(np.uint8))
