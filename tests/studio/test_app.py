"""The Studio's API over HTTP, as its page calls it: photos colorized at full size with the registry's models,
a strength re-applied without the network, bad files and oversized uploads refused with a reason, clips
colorized in the background."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import requests
from PIL import Image

from models.registry import MODEL_NAME
from pipelines.lab import rgb_to_lab8
from sandbox.clips import Clip
from sandbox.library import PhotoLibrary
from tests.corpus import jpeg
from tests.studio.conftest import PHOTO_CAP_MB

pytestmark = pytest.mark.integration

PHOTO = PhotoLibrary().image(5).convert("RGB")
CHAMPION = f"models:/{MODEL_NAME}@champion"


def upload(studio_url: str, name: str, data: bytes, model: str = CHAMPION) -> requests.Response:
    return requests.post(f"{studio_url}/api/photos", files={"file": (name, data)}, data={"model": model}, timeout=120)


def lightness(image: Image.Image) -> np.ndarray:
    return rgb_to_lab8(np.asarray(image.convert("RGB")))[..., 0].astype(int)


def test_the_models_are_the_registrys_aliases_and_versions_with_their_metrics(
    studio_url: str, registered: dict
) -> None:
    listing = requests.get(f"{studio_url}/api/models", timeout=30).json()

    uris = [choice["uri"] for choice in listing["models"]]
    assert uris[0] == CHAMPION and listing["default"] == CHAMPION
    assert f"models:/{MODEL_NAME}/{registered['version']}" in uris
    assert {"eval_psnr", "eval_ssim", "eval_colorfulness_ratio"} <= set(listing["models"][0]["metrics"])


def test_a_photo_comes_back_at_its_size_with_its_lightness_and_any_strength(studio_url: str) -> None:
    original = PHOTO.resize((640, 427))
    answer = upload(studio_url, "harbour.jpg", jpeg(original, quality=95))
    assert answer.status_code == 200, answer.text
    photo = answer.json()
    assert (photo["width"], photo["height"]) == original.size

    as_predicted = Image.open(io.BytesIO(requests.get(f"{studio_url}/api/photos/{photo['id']}/colorized.png").content))
    gray = requests.get(f"{studio_url}/api/photos/{photo['id']}/colorized.png", params={"strength": 0}).content
    uploaded = Image.open(io.BytesIO(requests.get(f"{studio_url}/api/photos/{photo['id']}/original.png").content))

    assert as_predicted.size == original.size
    assert np.abs(lightness(as_predicted) - lightness(uploaded)).max() <= 2
    chroma = rgb_to_lab8(np.asarray(Image.open(io.BytesIO(gray)).convert("RGB")))[..., 1:].astype(int) - 128
    assert np.abs(chroma).max() <= 2
    too_strong = requests.get(f"{studio_url}/api/photos/{photo['id']}/colorized.png", params={"strength": 2})
    assert too_strong.status_code == 422


def test_bad_files_get_their_reason_and_the_good_ones_go_on(studio_url: str) -> None:
    broken = upload(studio_url, "letter.jpg", b"%PDF-1.7 not a photo at all")
    good = upload(studio_url, "good.png", jpeg(PHOTO.resize((200, 150))))
    too_large = upload(studio_url, "huge.jpg", b"\xff" * int((PHOTO_CAP_MB + 1) * 1_000_000))
    unknown_model = upload(studio_url, "good.png", jpeg(PHOTO), model="runs:/0123456789/colorizer")

    assert broken.status_code == 422 and broken.json()["detail"].startswith("letter.jpg: cannot read it as an image")
    assert good.status_code == 200
    assert too_large.status_code == 413 and f"{PHOTO_CAP_MB:g} MB" in too_large.json()["detail"]
    assert unknown_model.status_code == 422 and "not a registered model" in unknown_model.json()["detail"]


def test_all_results_download_as_one_zip_at_the_chosen_strength(studio_url: str) -> None:
    sizes = [(300, 200), (200, 300)]
    ids = [upload(studio_url, "same.jpg", jpeg(PHOTO.resize(size))).json()["id"] for size in sizes]

    answer = requests.get(f"{studio_url}/api/photos.zip", params={"ids": ",".join(ids), "strength": 0.5})

    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        names = archive.namelist()
        assert names == ["same-colorized.png", "same-colorized-2.png"]
        assert [Image.open(archive.open(name)).size for name in names] == sizes


def test_a_clip_is_colorized_in_the_background_with_progress_then_downloaded(studio_url: str, tmp_path: Path) -> None:
    clip = Clip(width=96, height=64, scenes=2, frames_per_scene=8)
    source = clip.write(tmp_path / "reel.mov")
    with source.open("rb") as data:
        answer = requests.post(f"{studio_url}/api/clips", files={"file": ("reel.mov", data)}, timeout=120)
    assert answer.status_code == 200, answer.text
    job = answer.json()["id"]

    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = requests.get(f"{studio_url}/api/clips/{job}", timeout=30).json()
        seen.append(status["frames_done"])
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert status["state"] == "done", status
    assert status["frames_total"] == clip.frames and status["report"]["scene_cuts"] == 1
    assert seen == sorted(seen)
    result = tmp_path / "colored.mp4"
    result.write_bytes(requests.get(f"{studio_url}/api/clips/{job}/colorized.mp4", timeout=60).content)
    with av.open(str(result)) as colored:
        assert [stream.codec_context.name for stream in colored.streams] == ["h264", "aac"]
        assert sum(1 for _ in colored.decode(video=0)) == clip.frames
