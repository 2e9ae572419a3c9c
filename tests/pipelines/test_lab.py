"""The 8-bit Lab encoding has one owner, `pipelines.lab`: every consumer (the Kaggle connector, image facts,
the stitch, the training data, the metrics, colorizing) goes through it, so a photo makes the round trip
through each of them and comes back as itself."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from models.colorize import Colorizer
from models.data import from_network, to_network
from models.metrics import colorization_metrics, sample_grid
from pipelines.image_facts import extract_facts
from pipelines.lab import (
    AB_OFFSET,
    L_SCALE,
    decode_lab8,
    lab8_from_npy,
    lab8_from_opencv_channels,
    lab8_to_npy,
    lab8_to_rgb,
    neutral_lab8,
    npy_view,
    rgb_to_lab8,
    without_chroma,
)
from pipelines.stitch import transform_image
from sandbox.library import PhotoLibrary

SIDE = 64


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real color photo, SIDE x SIDE, as 8-bit RGB."""
    return np.asarray(PhotoLibrary().image(1).convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_encoding_decodes_to_cie_lab_within_about_half_a_unit(photo: np.ndarray) -> None:
    exact = rgb2lab(photo)
    decoded = decode_lab8(rgb_to_lab8(photo))
    assert np.abs(decoded[..., 0] - exact[..., 0]).max() <= 1.5 * L_SCALE  # L in steps of 100/255
    assert np.abs(decoded[..., 1:] - exact[..., 1:]).mean() < 1.0
    assert np.abs(lab8_to_rgb(rgb_to_lab8(photo)).astype(int) - photo).mean() < 1.5


def test_neutral_chroma_is_gray(photo: np.ndarray) -> None:
    gray = lab8_to_rgb(without_chroma(rgb_to_lab8(photo))).astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1 and np.abs(gray[..., 1] - gray[..., 2]).max() <= 1
    assert (neutral_lab8(2, 3)[..., 1:] == AB_OFFSET).all()


def test_a_sample_survives_npy_bytes_and_a_bad_one_is_named(photo: np.ndarray) -> None:
    sample = rgb_to_lab8(photo)
    assert np.array_equal(lab8_from_npy(lab8_to_npy(sample)), sample)
    assert np.array_equal(npy_view(lab8_to_npy(sample)), sample)
    with pytest.raises(ValueError, match="not a Lab sample: numpy array of shape \\(4, 4\\)"):
        lab8_from_npy(lab8_to_npy(np.zeros((4, 4), np.uint8)))
    with pytest.raises(ValueError, match="corrupt numpy array"):
        lab8_from_npy(lab8_to_npy(sample)[:200])


def test_the_kaggle_connector_takes_opencv_channels_as_they_are(photo: np.ndarray) -> None:
    """The dataset's L and ab files are OpenCV's own 8-bit Lab, split in two."""
    opencv = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB)
    assert np.array_equal(lab8_from_opencv_channels(opencv[..., 0], opencv[..., 1:]), rgb_to_lab8(photo))


def test_image_facts_see_a_lab_sample_as_the_photo_it_holds(photo: np.ndarray) -> None:
    from_sample = extract_facts(lab8_to_npy(rgb_to_lab8(photo)))
    from_png = extract_facts(png(photo))
    assert from_sample.decodes and (from_sample.width, from_sample.height) == (SIDE, SIDE)
    assert from_sample.colorfulness == pytest.approx(from_png.colorfulness, rel=0.05)
    assert from_sample.mean_chroma == pytest.approx(from_png.mean_chroma, abs=1.0)


def test_the_stitch_stores_a_photo_and_a_sample_alike(photo: np.ndarray) -> None:
    sample = rgb_to_lab8(photo)
    assert np.array_equal(transform_image(lab8_to_npy(sample), "npy", SIDE), sample)
    assert np.abs(transform_image(png(photo), "png", SIDE).astype(int) - sample).max() <= 1


def test_the_training_data_round_trips_through_the_network_range(photo: np.ndarray) -> None:
    batch = torch.from_numpy(rgb_to_lab8(photo)[None])
    lightness, ab = to_network(batch)
    assert float(lightness.min()) >= -1.0 and float(lightness.max()) <= 1.0
    assert float(ab.abs().max()) < 1.0
    assert np.array_equal(from_network(lightness, ab), batch.numpy())


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # a perfect guess has infinite PSNR
def test_metrics_and_sample_grids_read_the_same_encoding(photo: np.ndarray) -> None:
    truth = rgb_to_lab8(photo)[None]
    perfect = colorization_metrics(truth, truth)
    assert perfect["l1_ab"] == 0 and perfect["ssim"] == pytest.approx(1.0) and perfect["colorfulness_ratio"] == 1
    gray_guess = colorization_metrics(without_chroma(truth), truth)
    assert gray_guess["colorfulness"] < 1.0 < gray_guess["l1_ab"]
    grid = np.asarray(sample_grid(truth, truth))
    assert grid.shape == (SIDE, 3 * SIDE, 3)
    assert np.array_equal(grid[:, SIDE : 2 * SIDE], lab8_to_rgb(truth[0]))


class KnownColors(torch.nn.Module):
    """A generator that answers with the true colors of one photo, in the network's range."""

    def __init__(self, ab: torch.Tensor) -> None:
        super().__init__()
        self.ab = ab

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        return self.ab.expand(lightness.shape[0], -1, -1, -1)


def test_colorizing_with_the_true_colors_gives_the_photo_back(photo: np.ndarray) -> None:
    _, ab = to_network(torch.from_numpy(rgb_to_lab8(photo)[None]))
    colorizer = Colorizer(KnownColors(ab.contiguous()), size=SIDE)
    colored = np.asarray(colorizer.colorize(Image.fromarray(photo).convert("L").convert("RGB"))).astype(int)
    assert np.abs(colored - photo).mean() < 3.0
