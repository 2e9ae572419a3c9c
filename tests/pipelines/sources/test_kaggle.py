"""The Kaggle connector against the sandbox stand-in over real HTTP: every sample stored as Lab `.npy` with
catalog rows and license, exactly the stand-in's arrays; reruns and slices; cut downloads resumed and
verified; expired signed URLs refreshed; bad credentials and broken datasets refused with nothing stored.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from sqlalchemy import func, select

from pipelines.catalog import Catalog, Sighting
from pipelines.catalog import Image as ImageRow
from pipelines.downloads import ChecksumMismatch
from pipelines.http import HttpClient
from pipelines.licenses import DEFAULT_ALLOWED
from pipelines.settings import Settings
from pipelines.sources import kaggle
from pipelines.sources.web import SourceUnavailable
from pipelines.storage import FileStore
from sandbox import kaggle as stand_in
from sandbox.library import PhotoLibrary
from tests.replay import Answer, capture, replaying

DATASET = kaggle.DEFAULT_DATASET


@pytest.fixture(scope="module")
def expected_samples() -> np.ndarray:
    """What sample i must be: the stand-in's L[i] beside the i-th row of its stacked ab files."""
    arrays = stand_in.dataset_arrays(PhotoLibrary())
    ab = np.concatenate([arrays[name] for name in stand_in.AB_FILES])
    return np.concatenate([arrays[stand_in.L_FILE][..., np.newaxis], ab], axis=-1)


@pytest.fixture
def base(sandbox_service) -> str:
    return sandbox_service("kaggle")


def connection(base: str, login: str = stand_in.USERNAME, password: str = stand_in.API_KEY, **extra: str):
    return SimpleNamespace(host=base, login=login, password=password, extra_dejson=extra)


@pytest.fixture
def config(base: str) -> kaggle.KaggleConfig:
    return kaggle.KaggleConfig.from_connection(connection(base))


@pytest.fixture
def http(config: kaggle.KaggleConfig, settings: Settings) -> HttpClient:
    return kaggle.client(config, settings)


@pytest.fixture
def run(config, http, store, catalog, tmp_path):
    """`run(max_images=None, run_id="run-1")`: one ingest of the dataset into this test's lake and catalog."""

    def ingest(max_images: int | None = None, run_id: str = "run-1", **overrides) -> dict[str, int]:
        return kaggle.ingest(
            overrides.get("config", config),
            http,
            store,
            catalog,
            run_id,
            tmp_path / "work",
            dataset=DATASET,
            max_images=max_images,
        )

    return ingest


def configure(base: str, **change: object) -> None:
    requests.post(f"{base}/_admin/config", json=change, timeout=5).raise_for_status()


def stored_samples(store: FileStore, catalog: Catalog) -> dict[int, np.ndarray]:
    """Each stored sample by its index in the dataset, read back from the raw zone."""
    with catalog.session() as session:
        rows = session.execute(
            select(Sighting.source_id, ImageRow.raw_key).join(ImageRow, ImageRow.sha256 == Sighting.image_sha256)
        ).all()
    return {
        int(source_id.rsplit("/", 1)[1]): np.load(io.BytesIO(store.get(key)), allow_pickle=False)
        for source_id, key in rows
    }


def count_rows(catalog: Catalog) -> tuple[int, int]:
    with catalog.session() as session:
        images = session.execute(select(func.count()).select_from(ImageRow)).scalar_one()
        sightings = session.execute(select(func.count()).select_from(Sighting)).scalar_one()
    return images, sightings


def test_config_from_connection_token_file_and_environment(base: str, tmp_path: Path) -> None:
    sandbox = kaggle.KaggleConfig.from_connection(connection(base))
    assert sandbox.api_url == f"{base}/api/v1"
    assert sandbox.dataset_page(DATASET) == f"{base}/datasets/{DATASET}"
    assert stand_in.API_KEY not in repr(sandbox)  # the key stays out of logs

    real = kaggle.KaggleConfig.from_connection(SimpleNamespace(host="", login="ada", password="k3y", extra_dejson={}))
    assert (real.api_url, real.web_url) == ("https://www.kaggle.com/api/v1", "https://www.kaggle.com")

    token = tmp_path / "kaggle.json"
    token.write_text(json.dumps({"username": "grace", "key": "from-file"}))
    from_file = kaggle.KaggleConfig.from_connection(connection(base, login="", password="", kaggle_json=str(token)))
    assert (from_file.username, from_file.key) == ("grace", "from-file")

    environ = {"KAGGLE_USERNAME": "linus", "KAGGLE_KEY": "from-env"}
    from_env = kaggle.KaggleConfig.from_connection(None, environ=environ)
    assert (from_env.username, from_env.key, from_env.api_url) == ("linus", "from-env", kaggle.DEFAULT_API_URL)

    with pytest.raises(ValueError, match="KAGGLE_USERNAME"):
        kaggle.KaggleConfig.from_connection(connection(base, login="", password=""), environ={})
    with pytest.raises(ValueError, match="owner/dataset"):
        kaggle.KaggleConfig.from_connection(connection(base, dataset="../../etc"))


def test_ingest_stores_every_sample_as_lab_npy_with_license(
    run, store: FileStore, catalog: Catalog, expected_samples: np.ndarray, base: str
) -> None:
    counts = run()
    assert counts["samples"] == counts["images_added"] == counts["sightings_added"] == 48
    assert counts["files_downloaded"] == 4 and counts["urls_refreshed"] == 0 and counts["files_unverified"] == 0

    with catalog.session() as session:
        images = session.execute(select(ImageRow)).scalars().all()
        sightings = session.execute(select(Sighting)).scalars().all()
    assert {image.format for image in images} == {"npy"}
    assert all(image.raw_key.endswith(".npy") for image in images)
    assert {sighting.source for sighting in sightings} == {"kaggle"}
    assert {(sighting.license, sighting.license_text) for sighting in sightings} == {("CC0-1.0", stand_in.LICENSE)}
    assert {sighting.page_url for sighting in sightings} == {f"{base}/datasets/{DATASET}"}
    assert sorted(sighting.source_id for sighting in sightings) == sorted(f"{DATASET}/{i}" for i in range(48))
    first = next(sighting for sighting in sightings if sighting.source_id == f"{DATASET}/0")
    assert first.url == f"{base}/datasets/{DATASET}#0" and first.author == stand_in.OWNER

    samples = stored_samples(store, catalog)
    assert sorted(samples) == list(range(48))
    for index, sample in samples.items():
        assert sample.shape == (224, 224, 3) and sample.dtype == np.uint8
        np.testing.assert_array_equal(sample, expected_samples[index])


def test_the_license_code_of_real_metadata_is_a_term_the_allow_list_knows(config, tmp_path: Path) -> None:
    """Kaggle's dataset metadata names its license by code: the documented `dataset-metadata.json` example
    (`"licenses": [{"name": "CC0-1.0"}]`, tests/captures/kaggle), as the metadata endpoint's `info`, maps to
    the term CC0-1.0, which the default allow-list holds (before, the code was compared with display names
    such as "CC0: Public Domain" and every sample was rejected)."""
    example = json.loads(capture("kaggle/dataset-metadata.docs-example.json"))

    def answer(path: str, query: dict[str, str]) -> Answer:
        return Answer(json.dumps({"info": example, "errorMessage": None}).encode())

    with replaying(answer) as base:
        replayed = kaggle.KaggleConfig(api_url=f"{base}/api/v1", username="colorflow", key="k" * 32)
        http = kaggle.client(replayed, Settings(home=tmp_path, http_allowed_hosts=[base.removeprefix("http://")]))
        term, words = kaggle.dataset_license(replayed, http, example["id"])
    assert (term, words) == ("CC0-1.0", "CC0-1.0") and term in DEFAULT_ALLOWED


def test_rerun_adds_nothing_and_downloads_nothing(run, catalog: Catalog) -> None:
    run()
    again = run(run_id="run-2")
    assert again["samples"] == 48
    assert again["images_added"] == again["sightings_added"] == again["objects_written"] == 0
    assert again["files_downloaded"] == 0
    assert count_rows(catalog) == (48, 48)


def test_max_images_downloads_only_the_files_it_needs(run, catalog: Catalog, tmp_path: Path) -> None:
    counts = run(max_images=20)
    assert counts["samples"] == counts["images_added"] == 20
    assert counts["files_downloaded"] == 3  # L, ab1 (samples 0-15) and ab2 (16-31); ab3 stays on the server
    downloaded = sorted(path.relative_to(tmp_path / "work").as_posix() for path in (tmp_path / "work").rglob("*.npy"))
    assert downloaded == [f"{DATASET}/ab/ab/ab1.npy", f"{DATASET}/ab/ab/ab2.npy", f"{DATASET}/l/gray_scale.npy"]
    assert count_rows(catalog) == (20, 20)


def test_cut_storage_answers_are_survived(
    run, faults, store: FileStore, catalog: Catalog, expected_samples: np.ndarray
) -> None:
    faults(path_prefix="/kaggle/storage", kind="truncate", times=2)
    counts = run()
    assert counts["samples"] == counts["images_added"] == 48
    for index, sample in stored_samples(store, catalog).items():
        np.testing.assert_array_equal(sample, expected_samples[index])


def test_a_download_cut_in_the_middle_resumes_and_verifies(
    run, faults, store: FileStore, catalog: Catalog, expected_samples: np.ndarray
) -> None:
    # More cuts than the header read of this file can take (it retries at most PROBE_ATTEMPTS times), so
    # at least two fall on the download itself.
    l_path = f"/kaggle/storage/{stand_in.BUCKET}/{stand_in.DATASET_ID}/1/{stand_in.L_FILE}"
    faults(path_prefix=l_path, kind="truncate", times=kaggle.PROBE_ATTEMPTS + 2)
    counts = run()
    assert counts["downloads_resumed"] == 1
    assert counts["samples"] == 48
    samples = stored_samples(store, catalog)
    np.testing.assert_array_equal(np.stack([samples[i] for i in range(48)]), expected_samples)


def test_fetch_array_resumes_after_cuts(config, http, faults, sandbox_url: str, tmp_path: Path) -> None:
    tally: Counter[str] = Counter()
    array = kaggle.inspect_array(config, http, DATASET, stand_in.L_FILE, tally)
    faults(path_prefix="/kaggle/storage", kind="truncate", times=2)
    result = kaggle.fetch_array(config, http, DATASET, array, tmp_path / "gray_scale.npy", tally)
    assert result.resumed_from > 0 and result.digest == array.md5
    assert requests.get(f"{sandbox_url}/_faults", timeout=5).json() == []
    assert np.load(result.path, allow_pickle=False).shape == (48, 224, 224)


def test_a_wrong_checksum_is_refused_and_nothing_kept(config, http, tmp_path: Path) -> None:
    array = kaggle.inspect_array(config, http, DATASET, stand_in.L_FILE, Counter())
    forged = kaggle.ArrayFile(array.name, array.shape, array.dtype, md5="0" * 32)
    target = tmp_path / "gray_scale.npy"
    with pytest.raises(ChecksumMismatch):
        kaggle.fetch_array(config, http, DATASET, forged, target)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_an_expired_signed_url_is_refreshed(run, base: str, catalog: Catalog) -> None:
    configure(base, expired_urls=1)
    counts = run()
    assert counts["urls_refreshed"] == 1 and counts["samples"] == 48
    assert requests.get(f"{base}/_admin/stats", timeout=5).json()["expired_answers"] == 1


def test_a_part_left_by_a_killed_task_resumes_with_a_fresh_url(config, http, base: str, tmp_path: Path) -> None:
    tally: Counter[str] = Counter()
    array = kaggle.inspect_array(config, http, DATASET, stand_in.L_FILE, tally)
    whole = stand_in.dataset_files(PhotoLibrary(), "standard")[stand_in.L_FILE].data
    target = tmp_path / "gray_scale.npy"
    target.with_name(target.name + ".part").write_bytes(whole[: len(whole) // 3])
    configure(base, expired_urls=1)  # the URL the retried task gets first has outlived its lifetime
    result = kaggle.fetch_array(config, http, DATASET, array, target, tally)
    assert result.resumed_from == len(whole) // 3
    assert target.read_bytes() == whole
    assert tally["urls_refreshed"] == 1


def test_urls_that_always_expire_fail_the_source(run, base: str, catalog: Catalog) -> None:
    configure(base, url_ttl_s=0)
    with pytest.raises(SourceUnavailable, match="refused 4 fresh signed URLs"):
        run()
    assert count_rows(catalog) == (0, 0)


def test_wrong_credentials_fail_the_source(config, run, catalog: Catalog) -> None:
    wrong = kaggle.KaggleConfig(api_url=config.api_url, username=config.username, key="not-the-key")
    with pytest.raises(SourceUnavailable, match="refused the credentials") as raised:
        run(config=wrong)
    assert "not-the-key" not in str(raised.value)
    assert count_rows(catalog) == (0, 0)


def test_an_unknown_dataset_fails_the_source(config, http, store, catalog, tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no dataset someone/nothing-here"):
        kaggle.ingest(config, http, store, catalog, "run-1", tmp_path, dataset="someone/nothing-here", max_images=5)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("mismatched_counts", r"the ab files hold 47 samples .* but l/gray_scale.npy holds 48"),
        ("wrong_dtype", r"l/gray_scale.npy holds float32 \(48, 224, 224\), not uint8"),
    ],
)
def test_broken_arrays_are_refused_before_download_and_nothing_registered(
    run, base: str, store: FileStore, catalog: Catalog, tmp_path: Path, variant: str, message: str
) -> None:
    configure(base, variant=variant)
    with pytest.raises(SourceUnavailable, match=message):
        run()
    assert count_rows(catalog) == (0, 0)
    assert list(store.list("raw/")) == []
    assert not list((tmp_path / "work").rglob("*.npy"))  # refused from the headers, before any download
