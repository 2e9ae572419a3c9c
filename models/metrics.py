"""How good a colorization is, measured the ways people compare colorizers: L1 on the chroma the network
predicts, PSNR and SSIM on the RGB image a person sees, and colorfulness of prediction against truth (a
model that plays safe with sepia-gray output scores well on L1 but is visibly duller). Plus the picture
people would rather look at: rows of input gray | prediction | truth. And the yardstick every number needs:
the gray baseline (the lightness alone, a/b neutral), which scores well on PSNR and L1 without coloring
anything, so a model is worth having only where it beats it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipelines.image_facts import colorfulness
from pipelines.lab import lab8_to_rgb, without_chroma


def colorization_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean metrics over a batch of 8-bit Lab images (N, H, W, 3) sharing their L channel."""
    rows = []
    for guess, real in zip(predicted, truth, strict=True):
        guess_rgb, real_rgb = lab8_to_rgb(guess), lab8_to_rgb(real)
        rows.append(
            {
                "l1_ab": float(np.abs(guess[..., 1:].astype(np.float32) - real[..., 1:]).mean()),
                "psnr": float(peak_signal_noise_ratio(real_rgb, guess_rgb, data_range=255)),
                "ssim": float(structural_similarity(real_rgb, guess_rgb, channel_axis=2, data_range=255)),
                "colorfulness": colorfulness(guess_rgb),
                "colorfulness_truth": colorfulness(real_rgb),
            }
        )
    means = {name: float(np.mean([row[name] for row in rows])) for name in rows[0]}
    means["colorfulness_ratio"] = means["colorfulness"] / max(means["colorfulness_truth"], 1e-6)
    return means


@dataclass(frozen=True)
class BaselineComparison:
    """One evaluation set's metrics for the model and for the gray baseline on the same images; the truth's
    colorfulness is `model["colorfulness_truth"]` (the same in both)."""

    name: str
    images: int
    model: dict[str, float]
    gray: dict[str, float]


def compare_with_gray(name: str, predicted: np.ndarray, truth: np.ndarray) -> BaselineComparison:
    """`colorization_metrics` of the model's colors and of the gray baseline against the same truth."""
    return BaselineComparison(
        name, len(truth), colorization_metrics(predicted, truth), colorization_metrics(without_chroma(truth), truth)
    )


def sample_grid(predicted: np.ndarray, truth: np.ndarray, max_rows: int = 8) -> Image.Image:
    """One row per image: the gray input, the model's colors, the real colors (8-bit Lab in, RGB out)."""
    rows = []
    for guess, real in list(zip(predicted, truth, strict=True))[:max_rows]:
        rows.append(np.concatenate([lab8_to_rgb(without_chroma(real)), lab8_to_rgb(guess), lab8_to_rgb(real)], axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))
