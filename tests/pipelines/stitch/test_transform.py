"""One image to one sample, on real photos: the Lab encoding's accuracy, EXIF orientation, cropping without
resampling near the load size, and the Kaggle arrays' direct path."""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import color

from pipelines.lab import decode_lab8, lab8_to_npy, rgb_to_lab8
from pipelines.stitch import transform_image
from sandbox.kaggle import to_opencv_lab
from sandbox.library import PhotoLibrary
from tests.corpus import with_jpeg_comment

LIBRARY = PhotoLibrary()


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=92, **options)
    return buffer.getvalue()


def test_lab_encoding_round_trips_within_one_unit() -> None:
    photo = np.asarray(LIBRARY.image(0).convert("RGB").resize((96, 96)))
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    lab8 = transform_image(png.getvalue(), "png", 96)
    error = np.abs(decode_lab8(lab8) - color.rgb2lab(photo)).reshape(-1, 3).mean(axis=0)
    assert lab8.dtype == np.uint8 and lab8.shape == (96, 96, 3)
    assert np.all(error < 1.0), f"mean absolute error L, a, b = {error}"


@pytest.mark.parametrize(
    "reshape",
    [
        pytest.param(lambda data: data, id="as-saved"),
        pytest.param(lambda data: with_jpeg_comment(data, b"x" * 60_000), id="after-a-60kb-comment"),
    ],
)
def test_jpeg_is_shown_upright_and_center_cropped(reshape: Callable[[bytes], bytes]) -> None:
    upright = LIBRARY.image(0).convert("RGB").resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: a viewer rotates it 90 degrees clockwise
    stored = reshape(jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes()))
    expected = transform_image(jpeg(upright), "jpg", 64)
    got = transform_image(stored, "jpg", 64)
    assert got.shape == (64, 64, 3)
    error = {turns: np.abs(np.rot90(got, turns).astype(int) - expected).mean() for turns in range(4)}
    assert min(error, key=error.get) == 0 and error[0] < 6, error


def test_exif_words_outside_an_exif_segment_do_not_turn_a_photo() -> None:
    photo = LIBRARY.image(1).convert("RGB").resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    # An EXIF block quoted in a comment is not the photo's EXIF: Pillow ignores it, and so must the stitch.
    quoted = with_jpeg_comment(jpeg(photo), b"Exif\x00\x00" + exif.tobytes())
    assert np.array_equal(transform_image(quoted, "jpg", 64), transform_image(jpeg(photo), "jpg", 64))


def test_a_photo_close_to_the_load_size_is_cropped_not_resampled() -> None:
    photo = np.asarray(LIBRARY.image(2).convert("RGB").resize((104, 100)))
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    assert np.array_equal(transform_image(png.getvalue(), "png", 96), rgb_to_lab8(photo[2:98, 4:100]))


def test_kaggle_lab_arrays_enter_without_an_rgb_round_trip() -> None:
    lab = to_opencv_lab(LIBRARY.image(1))
    got = transform_image(lab8_to_npy(lab), "npy", 286)
    assert np.array_equal(got, cv2.resize(lab, (286, 286), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(transform_image(lab8_to_npy(lab), "npy", 224), lab)
