"""The Kaggle stand-in behaves like the real API and storage where the connector depends on it: basic auth
and its 401, 404 for unknown datasets, paged file listings, the license in the metadata, downloads that
redirect to signed Cloud Storage URLs which expire, ranged reads, `x-goog-hash`, and the dataset's arrays
in OpenCV's 8-bit Lab encoding.

All requests go over HTTP to the sandbox process (`sandbox_url`); nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import io
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import pytest
import requests
from PIL import Image

from sandbox import kaggle
from sandbox.library import PhotoLibrary

AUTH = (kaggle.USERNAME, kaggle.API_KEY)


@pytest.fixture
def base(sandbox_service) -> str:
    """The stand-in's base URL, with URL lifetime, expiring URLs and variant reset before and after."""
    return sandbox_service("kaggle")


def api(base: str, path: str, auth: tuple[str, str] | None = AUTH, **params: object) -> requests.Response:
    return requests.get(f"{base}/api/v1/{path}", params=params, auth=auth, timeout=30, allow_redirects=False)


def configure(base: str, **change: object) -> dict:
    answer = requests.post(f"{base}/_admin/config", json=change, timeout=5)
    answer.raise_for_status()
    return answer.json()


def signed(base: str, name: str) -> str:
    answer = api(base, f"datasets/download/{kaggle.DATASET_REF}/{name}")
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def test_requests_without_or_with_wrong_credentials_get_401(base: str) -> None:
    for auth in (None, (kaggle.USERNAME, "wrong-key"), ("someone-else", kaggle.API_KEY)):
        for path in (f"datasets/list/{kaggle.DATASET_REF}", f"datasets/download/{kaggle.DATASET_REF}/{kaggle.L_FILE}"):
            answer = api(base, path, auth=auth)
            assert answer.status_code == 401
            assert answer.json() == {"code": 401, "message": "Unauthenticated"}
    broken = requests.get(
        f"{base}/api/v1/datasets/list/{kaggle.DATASET_REF}", headers={"Authorization": "Basic ***"}, timeout=10
    )
    assert broken.status_code == 401


def test_unknown_datasets_and_files_get_404(base: str) -> None:
    assert api(base, "datasets/list/someone/no-such-dataset").json() == {"code": 404, "message": "Not found"}
    assert api(base, "datasets/metadata/someone/no-such-dataset").status_code == 404
    assert api(base, f"datasets/download/{kaggle.DATASET_REF}/l/missing.npy").status_code == 404


def test_listing_names_every_file_with_its_size_and_date(base: str, library: PhotoLibrary) -> None:
    body = api(base, f"datasets/list/{kaggle.DATASET_REF}").json()
    assert body["errorMessage"] is None and body["nextPageToken"] == ""
    files = {entry["name"]: entry for entry in body["datasetFiles"]}
    assert sorted(files) == sorted([kaggle.L_FILE, *kaggle.AB_FILES])
    expected = kaggle.dataset_files(library, "standard")
    for name, entry in files.items():
        assert entry["totalBytes"] == len(expected[name].data)
        assert entry["datasetRef"] == kaggle.DATASET_REF
        assert entry["creationDate"].endswith("Z")
        assert entry["url"].endswith(f"/kaggle/api/v1/datasets/download/{kaggle.DATASET_REF}/{name}")


def test_listing_pages_with_next_page_token(base: str) -> None:
    first = api(base, f"datasets/list/{kaggle.DATASET_REF}", pageSize=3).json()
    assert len(first["datasetFiles"]) == 3 and first["nextPageToken"]
    second = api(base, f"datasets/list/{kaggle.DATASET_REF}", pageSize=3, pageToken=first["nextPageToken"]).json()
    assert len(second["datasetFiles"]) == 1 and second["nextPageToken"] == ""
    names = [entry["name"] for entry in first["datasetFiles"] + second["datasetFiles"]]
    assert len(set(names)) == 4


def test_metadata_and_view_name_the_license(base: str) -> None:
    info = api(base, f"datasets/metadata/{kaggle.DATASET_REF}").json()["info"]
    assert info["licenses"] == [{"name": kaggle.LICENSE}]
    assert (info["ownerUser"], info["datasetSlug"]) == (kaggle.OWNER, kaggle.DATASET)
    view = api(base, f"datasets/view/{kaggle.DATASET_REF}").json()
    assert view["licenseName"] == kaggle.LICENSE_NAME and view["ref"] == kaggle.DATASET_REF
    page = requests.get(view["url"], timeout=10)
    assert page.status_code == 200 and kaggle.LICENSE_NAME in page.text


def test_download_redirects_to_a_signed_url_serving_the_arrays(base: str, library: PhotoLibrary) -> None:
    arrays = kaggle.dataset_arrays(library)
    for name in (kaggle.L_FILE, *kaggle.AB_FILES):
        location = signed(base, name)
        parts = urlsplit(location)
        assert parts.path.startswith("/kaggle/storage/kaggle-data-sets/") and parts.path.endswith(name)
        query = parse_qs(parts.query)
        assert {"X-Goog-Algorithm", "X-Goog-Date", "X-Goog-Expires", "X-Goog-Signature"} <= set(query)
        assert query["X-Goog-Expires"] == [str(kaggle.DEFAULT_URL_TTL_S)]
        answer = requests.get(location, timeout=30)  # no credentials: the signature is the permission
        assert answer.status_code == 200
        md5 = base64.b64encode(hashlib.md5(answer.content).digest()).decode()
        assert answer.headers["x-goog-hash"] == f"md5={md5}"
        stored = np.load(io.BytesIO(answer.content), allow_pickle=False)
        assert stored.dtype == np.uint8
        np.testing.assert_array_equal(stored, arrays[name])
    assert arrays[kaggle.L_FILE].shape == (48, 224, 224)
    assert [arrays[name].shape for name in kaggle.AB_FILES] == [(16, 224, 224, 2)] * 3


def test_storage_answers_ranges_with_the_whole_objects_hash(base: str) -> None:
    location = signed(base, kaggle.L_FILE)
    whole = requests.get(location, timeout=30)
    part = requests.get(location, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.content)}"
    assert part.content == whole.content[100:200]
    assert part.headers["x-goog-hash"] == whole.headers["x-goog-hash"]
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["ETag"]
    head = requests.head(location, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(whole.content)


def test_signed_urls_expire_with_a_cloud_storage_error(base: str) -> None:
    configure(base, url_ttl_s=0)
    expired = requests.get(signed(base, kaggle.L_FILE), timeout=10)
    assert expired.status_code == 400
    assert "<Code>ExpiredToken</Code>" in expired.text
    assert expired.headers["Content-Type"].startswith("application/xml")

    configure(base, url_ttl_s=300, expired_urls=1)
    assert requests.get(signed(base, kaggle.L_FILE), timeout=10).status_code == 400  # born expired
    assert requests.get(signed(base, kaggle.L_FILE), timeout=10).status_code == 200  # the next one is fine
    stats = requests.get(f"{base}/_admin/stats", timeout=5).json()
    assert stats["expired_answers"] == 2 and stats["redirects"] == 3


def test_tampered_or_unsigned_storage_urls_are_refused(base: str) -> None:
    parts = urlsplit(signed(base, kaggle.L_FILE))
    query = parse_qs(parts.query)
    query["X-Goog-Signature"] = ["0" * 64]
    tampered = urlunsplit(parts._replace(query="&".join(f"{key}={value[0]}" for key, value in query.items())))
    answer = requests.get(tampered, timeout=10)
    assert answer.status_code == 403 and "SignatureDoesNotMatch" in answer.text
    unsigned = requests.get(urlunsplit(parts._replace(query="")), timeout=10)
    assert unsigned.status_code == 403 and "AccessDenied" in unsigned.text


def test_broken_variants_are_new_versions_with_broken_arrays(base: str) -> None:
    standard = signed(base, kaggle.AB_FILES[-1])
    assert configure(base, variant="mismatched_counts")["variant"] == "mismatched_counts"
    short = signed(base, kaggle.AB_FILES[-1])
    assert urlsplit(short).path != urlsplit(standard).path
    assert np.load(io.BytesIO(requests.get(short, timeout=30).content)).shape == (15, 224, 224, 2)
    # A URL handed out before the switch still serves its own version.
    assert np.load(io.BytesIO(requests.get(standard, timeout=30).content)).shape == (16, 224, 224, 2)

    configure(base, variant="wrong_dtype")
    lightness = np.load(io.BytesIO(requests.get(signed(base, kaggle.L_FILE), timeout=30).content))
    assert lightness.dtype == np.float32 and lightness.shape == (48, 224, 224)
    refused = requests.post(f"{base}/_admin/config", json={"variant": "nonsense"}, timeout=5)
    assert refused.status_code == 422


def test_opencv_lab_encoding() -> None:
    """White is L 255 and neutral a, b 128; pure red has a high a and b, as OpenCV's 8-bit Lab has it."""
    white = kaggle.to_opencv_lab(Image.new("RGB", (300, 240), (255, 255, 255)))
    assert white.shape == (224, 224, 3) and white.dtype == np.uint8
    assert tuple(white[0, 0]) == (255, 128, 128)
    black = kaggle.to_opencv_lab(Image.new("RGB", (224, 224), (0, 0, 0)))
    assert tuple(black[0, 0]) == (0, 128, 128)
    red = kaggle.to_opencv_lab(Image.new("RGB", (224, 224), (255, 0, 0)))
    # CIE Lab of sRGB red is about (53.2, 80.1, 67.2): 136, 208, 195 in 8 bits.
    assert tuple(int(value) for value in red[0, 0]) == (136, 208, 195)


def test_samples_come_from_library_photos(library: PhotoLibrary) -> None:
    samples = kaggle.lab_samples(library)
    np.testing.assert_array_equal(samples[5], kaggle.to_opencv_lab(library.image(5 * kaggle.PHOTO_STRIDE)))
    assert len({sample.tobytes() for sample in samples}) == kaggle.SAMPLE_COUNT
