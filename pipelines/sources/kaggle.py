"""Kaggle: the `image-colorization` dataset's L and ab arrays, stored sample by sample as Lab data.

The dataset (by default `shravankumar9892/image-colorization`, MIRFLICKR photos at 224x224) holds
`l/gray_scale.npy`, (N, 224, 224) uint8, and `ab/ab/ab1.npy`, `ab2.npy`, ... each (n, 224, 224, 2) uint8,
which stack in file-number order to N, all in OpenCV's 8-bit Lab encoding, which is Colorflow's
(`pipelines.lab`). Each sample becomes one `.npy` Lab sample in the raw zone (format `npy`), so it reaches
the shards as Lab data without a detour through RGB or JPEG.

Why the REST API and not the `kaggle` package: the package (2.x) talks to a fixed set of Kaggle hosts and
neither resumes a cut download from another process nor verifies a checksum. Here every call goes through
Colorflow's `HttpClient` to the public REST API v1, HTTP basic auth with the username and API key:
- `GET datasets/list/{owner}/{dataset}` lists files, `GET datasets/metadata/{owner}/{dataset}` gives the
  license, `GET datasets/download/{owner}/{dataset}/{file}` answers 302 with a signed Cloud Storage URL that
  expires within minutes.
- Before anything large is fetched, a ranged read of each array file's first kilobyte gives its `.npy`
  header (shape, dtype) and the object's MD5 (`x-goog-hash`). The layout is checked there (L and ab counts
  agree, shapes and dtypes as above), so a changed dataset is refused before gigabytes move.
- Only the files a `max_images` slice needs are downloaded, with `pipelines.downloads.download`: HTTP Range
  resume of `<file>.part` (also across task retries) and MD5 verification before the file is used.
- A storage answer of 400 or 403 (Cloud Storage says `ExpiredToken` when a signed URL outlived its lifetime)
  makes the connector ask the API for a fresh URL; a resumed download continues its `.part` with it.
- Arrays are memory-mapped (`allow_pickle=False`), never read whole into memory.

Credentials come from the connection (login = username, password = key), a `kaggle.json` token file named in
the connection's extra (`{"kaggle_json": "/path/kaggle.json"}`), or `KAGGLE_USERNAME` and `KAGGLE_KEY`. The
connection's host is the API: https://www.kaggle.com/api/v1 in production (the default), the sandbox
host's `/kaggle` prefix here (`/api/v1` is appended when missing, as the kaggle package does).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import numpy as np
import requests
import urllib3

from pipelines.catalog import Catalog, SightingRecord
from pipelines.downloads import DownloadResult, download
from pipelines.http import HttpClient, HttpError, HttpPolicy, UnexpectedContentType
from pipelines.lab import lab8_from_opencv_channels, lab8_to_npy, read_npy_header
from pipelines.licenses import from_spdx
from pipelines.raw_zone import RawZoneWriter
from pipelines.settings import Settings
from pipelines.sources.contract import Dump
from pipelines.sources.dumps import DumpPart
from pipelines.sources.web import SourceUnavailable
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

SOURCE = "kaggle"
DEFAULT_API_URL = "https://www.kaggle.com/api/v1"
API_PATH = "/api/v1"
DEFAULT_DATASET = "shravankumar9892/image-colorization"
L_FILE = "l/gray_scale.npy"
AB_FILE = re.compile(r"ab/ab/ab(?P<number>\d+)\.npy")
SIDE = 224
SAMPLE_NAME = "sample.npy"  # name hint for the raw zone: Pillow cannot sniff .npy, so the suffix decides
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
PAGE_SIZE = 200
MAX_PAGES = 100  # 20,000 files: far more than any dataset this connector reads; stops a paging loop
PROBE_BYTES = 1024  # an .npy header is 128 bytes for these shapes (np.save pads it to a multiple of 64)
PROBE_ATTEMPTS = 3
# How often one file may get a fresh signed URL after storage refused one. Refusals in a row mean the
# service is broken (or its clock is), not that the next URL will work.
MAX_URL_REFRESHES = 3
SIGNED_URL_REFUSALS = frozenset({400, 403})  # Cloud Storage: 400 ExpiredToken, 403 SignatureDoesNotMatch
REDIRECTS = (301, 302, 303, 307, 308)
LOG_EVERY = 1000
_CUT_SHORT = (requests.RequestException, urllib3.exceptions.HTTPError)

T = TypeVar("T")


@dataclass(frozen=True)
class KaggleConfig:
    """Where the API is and whose credentials to call it with (the key never appears in repr or logs)."""

    api_url: str
    username: str
    key: str = field(repr=False)
    dataset: str = DEFAULT_DATASET

    @classmethod
    def from_connection(cls, connection: Any | None, environ: Mapping[str, str] | None = None) -> KaggleConfig:
        """From an Airflow connection (or anything with `.host`, `.login`, `.password`, `.extra_dejson`).

        Credentials, first found wins: login and password; a kaggle.json file named by the extra's
        `kaggle_json`; the KAGGLE_USERNAME and KAGGLE_KEY environment variables. The extra's `dataset`
        changes the default dataset.
        """
        environ = os.environ if environ is None else environ
        extra = (getattr(connection, "extra_dejson", None) or {}) if connection is not None else {}
        api_url = normalized_api_url((getattr(connection, "host", None) or "").strip() or DEFAULT_API_URL)
        username = (getattr(connection, "login", None) or "").strip()
        key = getattr(connection, "password", None) or ""
        if not (username and key) and extra.get("kaggle_json"):
            username, key = read_token_file(Path(extra["kaggle_json"]))
        if not (username and key):
            username, key = environ.get("KAGGLE_USERNAME", "").strip(), environ.get("KAGGLE_KEY", "")
        if not (username and key):
            raise ValueError(
                "no Kaggle credentials: set the connection's login and password (username and API key), its"
                " extra kaggle_json (path of a kaggle.json token), or KAGGLE_USERNAME and KAGGLE_KEY"
            )
        dataset = str(extra.get("dataset") or DEFAULT_DATASET)
        split_dataset(dataset)
        return cls(api_url=api_url, username=username, key=key, dataset=dataset)

    @property
    def web_url(self) -> str:
        """The site dataset pages live on: www.kaggle.com for the real API, the API URL's base otherwise."""
        host = (urlsplit(self.api_url).hostname or "").lower()
        if host == "kaggle.com" or host.endswith(".kaggle.com"):
            return "https://www.kaggle.com"
        return self.api_url.removesuffix(API_PATH)

    def dataset_page(self, dataset: str) -> str:
        return f"{self.web_url}/datasets/{dataset}"

    def auth_headers(self) -> dict[str, str]:
        """HTTP basic auth, sent only to the API host (storage URLs carry their own signature)."""
        token = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def normalized_api_url(url: str) -> str:
    """`https://` added when no scheme is given, and `/api/v1` when the URL stops short of it."""
    url = url.rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    return url if url.endswith(API_PATH) else f"{url}{API_PATH}"


def read_token_file(path: Path) -> tuple[str, str]:
    """Username and key from a kaggle.json token (`{"username": ..., "key": ...}`)."""
    try:
        token = json.loads(path.read_text())
        return str(token["username"]).strip(), str(token["key"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read a Kaggle token from {path}: {type(error).__name__}") from None


def split_dataset(dataset: str) -> tuple[str, str]:
    """`owner/dataset` as its two slugs; anything else (an absolute path, `..`) is refused."""
    if not DATASET_NAME.fullmatch(dataset) or ".." in dataset:
        raise ValueError(f"a Kaggle dataset is named owner/dataset, got {dataset!r}")
    owner, slug = dataset.split("/")
    return owner, slug


def client(config: KaggleConfig, settings: Settings) -> HttpClient:
    """An HTTP client that may reach the allow-listed (sandbox) hosts; credentials are added per API call."""
    return HttpClient(HttpPolicy(allowed_hosts=frozenset(settings.http_allowed_hosts)))


def _refusal(config: KaggleConfig, dataset: str, error: HttpError) -> SourceUnavailable | None:
    """The API's answers that no retry can change, as SourceUnavailable; None for the others."""
    if error.status == 401:
        return SourceUnavailable(
            f"Kaggle refused the credentials of user {config.username!r} (HTTP 401): check the connection's"
            " login and password (username and API key), or KAGGLE_USERNAME and KAGGLE_KEY"
        )
    if error.status == 403:
        return SourceUnavailable(
            f"Kaggle forbids user {config.username!r} to read {dataset} (HTTP 403): the dataset may be private"
            " or need its rules accepted on the website"
        )
    if error.status == 404:
        return SourceUnavailable(f"Kaggle has no dataset {dataset} (or no such file in it): HTTP 404")
    return None


def api_json(config: KaggleConfig, http: HttpClient, path: str, dataset: str, **params: Any) -> dict[str, Any]:
    """One authenticated API call answered with a JSON object."""
    try:
        body = http.get_json(f"{config.api_url}/{path}", params=params or None, headers=config.auth_headers())
    except UnexpectedContentType as error:
        raise SourceUnavailable(f"Kaggle answered {path} with something other than JSON: {error}") from None
    except HttpError as error:
        raise (_refusal(config, dataset, error) or error) from None
    if not isinstance(body, dict):
        raise SourceUnavailable(f"Kaggle's answer to {path} is not a JSON object: the API changed")
    if body.get("errorMessage"):
        raise SourceUnavailable(f"Kaggle refused {path}: {body['errorMessage']}")
    return body


def list_files(config: KaggleConfig, http: HttpClient, dataset: str) -> dict[str, int]:
    """Every file of `dataset` with its size in bytes, all pages of the listing."""
    files: dict[str, int] = {}
    token = ""
    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {"pageSize": PAGE_SIZE, **({"pageToken": token} if token else {})}
        body = api_json(config, http, f"datasets/list/{dataset}", dataset, **params)
        try:
            for entry in body.get("datasetFiles") or []:
                files[str(entry["name"])] = int(entry.get("totalBytes") or 0)
        except (KeyError, TypeError, ValueError):
            raise SourceUnavailable("a Kaggle file listing entry has no name or size: the API changed") from None
        token = body.get("nextPageToken") or ""
        if not token:
            return files
    raise SourceUnavailable(f"Kaggle's file listing of {dataset} did not end after {MAX_PAGES} pages")


def dataset_license(config: KaggleConfig, http: HttpClient, dataset: str) -> tuple[str | None, str | None]:
    """(term, Kaggle's code) for the dataset's license from its metadata: `licenses` holds exactly one entry
    whose `name` is a code such as `CC0-1.0` or `CC-BY-SA-4.0`; (None, None) when it names none."""
    info = api_json(config, http, f"datasets/metadata/{dataset}", dataset).get("info") or {}
    codes = [
        str(entry["name"]) for entry in info.get("licenses") or [] if isinstance(entry, dict) and entry.get("name")
    ]
    if not codes:
        logger.warning("%s names no license in its metadata", dataset)
        return None, None
    return from_spdx(codes[0]), " / ".join(codes)


def signed_url(config: KaggleConfig, http: HttpClient, dataset: str, name: str) -> str:
    """A fresh signed storage URL for one file: where the API's download endpoint redirects."""
    url = f"{config.api_url}/datasets/download/{dataset}/{quote(name)}"
    try:
        answer = http.request("GET", url, headers=config.auth_headers(), allow_redirects=False, ok_statuses=REDIRECTS)
    except HttpError as error:
        raise (_refusal(config, dataset, error) or error) from None
    location = next((value for header, value in answer.headers.items() if header.lower() == "location"), "")
    if not location:
        raise SourceUnavailable(f"Kaggle's download of {dataset}/{name} redirected nowhere: the API changed")
    return urljoin(url, location)


def with_fresh_url(
    config: KaggleConfig,
    http: HttpClient,
    dataset: str,
    name: str,
    action: Callable[[str], T],
    tally: Counter[str],
) -> T:
    """`action(signed URL)`, asking the API for a new URL whenever storage refuses one (it expired)."""
    refreshes = 0
    while True:
        url = signed_url(config, http, dataset, name)
        try:
            return action(url)
        except HttpError as error:
            if error.status not in SIGNED_URL_REFUSALS:
                raise
            if refreshes == MAX_URL_REFRESHES:
                raise SourceUnavailable(
                    f"Kaggle's storage refused {MAX_URL_REFRESHES + 1} fresh signed URLs for {dataset}/{name} in a"
                    f" row (HTTP {error.status}): {error}"
                ) from None
            logger.warning(
                "%s/%s: storage refused the signed URL (HTTP %s); asking for a fresh one", dataset, name, error.status
            )
            refreshes += 1
            tally["urls_refreshed"] += 1


@dataclass(frozen=True)
class ArrayFile:
    """What a ranged read of an array file's start tells: its `.npy` header and the published MD5."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    md5: str | None


def published_md5(headers: Mapping[str, str]) -> str | None:
    """The MD5 (hex) in Cloud Storage's `x-goog-hash: crc32c=...,md5=...`; None when it sends none."""
    for part in (headers.get("x-goog-hash") or "").split(","):
        algorithm, _, value = part.strip().partition("=")
        if algorithm.lower() == "md5":
            try:
                digest = base64.b64decode(value, validate=True)
            except binascii.Error:
                return None
            return digest.hex() if len(digest) == 16 else None
    return None


def inspect_array(config: KaggleConfig, http: HttpClient, dataset: str, name: str, tally: Counter[str]) -> ArrayFile:
    """The `.npy` header and published MD5 of one file, from a ranged read of its first kilobyte."""

    def read_start(url: str) -> tuple[bytes, str | None]:
        """Up to PROBE_BYTES from the start, and the MD5; a cut read returns what arrived before the cut."""
        head = bytearray()
        ranged = {"Range": f"bytes=0-{PROBE_BYTES - 1}", "Accept-Encoding": "identity"}
        with http.stream(url, headers=ranged, ok_statuses=(200, 206)) as response:
            md5 = published_md5(response.headers)
            try:
                for chunk in response.iter_content(64):
                    head += chunk
                    if len(head) >= PROBE_BYTES:
                        break
            except _CUT_SHORT as error:
                logger.info("%s/%s: header read cut after %d bytes (%s)", dataset, name, len(head), error)
        return bytes(head[:PROBE_BYTES]), md5

    def probe(url: str) -> ArrayFile:
        problem = ValueError(f"{name}: no header read")
        for _ in range(PROBE_ATTEMPTS):
            head, md5 = read_start(url)
            try:
                shape, dtype = read_npy_header(head)
            except ValueError as error:  # unreadable, or cut before the header's end: read again
                problem = ValueError(f"{name} does not start with a {error}")
                continue
            return ArrayFile(name=name, shape=shape, dtype=dtype, md5=md5)
        raise problem

    try:
        return with_fresh_url(config, http, dataset, name, probe, tally)
    except ValueError as error:
        raise SourceUnavailable(f"{dataset}: {error}") from None


def check_layout(dataset: str, lightness: ArrayFile, ab_files: list[ArrayFile]) -> int:
    """N, after checking L is (N, 224, 224) uint8, each ab file (n, 224, 224, 2) uint8, and the n add to N."""
    refused = f"the dataset's layout changed; nothing was stored from {dataset}"
    if lightness.dtype != np.uint8 or len(lightness.shape) != 3 or lightness.shape[1:] != (SIDE, SIDE):
        raise SourceUnavailable(
            f"{lightness.name} holds {lightness.dtype} {lightness.shape}, not uint8 (N, {SIDE}, {SIDE}): {refused}"
        )
    for ab in ab_files:
        if ab.dtype != np.uint8 or len(ab.shape) != 4 or ab.shape[1:] != (SIDE, SIDE, 2):
            raise SourceUnavailable(
                f"{ab.name} holds {ab.dtype} {ab.shape}, not uint8 (n, {SIDE}, {SIDE}, 2): {refused}"
            )
    count = lightness.shape[0]
    stacked = sum(ab.shape[0] for ab in ab_files)
    if stacked != count:
        counts = ", ".join(f"{ab.name}: {ab.shape[0]}" for ab in ab_files)
        raise SourceUnavailable(
            f"the ab files hold {stacked} samples ({counts}) but {lightness.name} holds {count}: {refused}"
        )
    return count


def fetch_array(
    config: KaggleConfig,
    http: HttpClient,
    dataset: str,
    array: ArrayFile,
    target: Path,
    tally: Counter[str] | None = None,
) -> DownloadResult:
    """Download one file to `target` (resuming its `.part`), verified against the published MD5."""
    tally = Counter() if tally is None else tally
    if array.md5 is None:
        logger.warning("%s/%s: storage published no MD5; the file cannot be verified", dataset, array.name)
        tally["files_unverified"] += 1
    result = with_fresh_url(
        config, http, dataset, array.name, lambda url: download(http, url, target, checksum=array.md5), tally
    )
    tally["files_downloaded"] += 0 if result.reused else 1
    tally["downloads_resumed"] += 1 if result.resumed_from else 0
    return result


def load_array(path: Path, expected: ArrayFile) -> np.ndarray:
    """The downloaded array, memory-mapped, after checking it is what its header promised."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise SourceUnavailable(f"{expected.name} cannot be read as an .npy array: {error}") from None
    if array.shape != expected.shape or array.dtype != expected.dtype:
        raise SourceUnavailable(
            f"{expected.name} holds {array.dtype} {array.shape} but its header said {expected.dtype} {expected.shape}"
        )
    return array


def ab_file_order(names: list[str], dataset: str) -> list[str]:
    """The ab files by their number (ab2 before ab10), the order in which they stack to N."""
    numbered = sorted((int(match["number"]), name) for name in names if (match := AB_FILE.fullmatch(name)))
    if not numbered:
        raise SourceUnavailable(f"{dataset} lists no ab/ab/ab<n>.npy files: the dataset's layout changed")
    return [name for _, name in numbered]


def ingest(
    config: KaggleConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    *,
    dataset: str,
    max_images: int | None,
) -> dict[str, int]:
    """Store the first `max_images` samples (all when None) of `dataset` as Lab `.npy` arrays; returns counts.

    Downloads go to `work_dir/<owner>/<dataset>/` and stay there, so a retried or repeated run fetches
    nothing twice. Nothing is stored unless the whole layout checks out; a rerun adds nothing.
    """
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1 (or None for all), got {max_images}")
    owner, slug = split_dataset(dataset)
    tally: Counter[str] = Counter()
    listed = list_files(config, http, dataset)
    if L_FILE not in listed:
        raise SourceUnavailable(f"{dataset} lists no {L_FILE}: the dataset's layout changed")
    ab_names = ab_file_order(list(listed), dataset)
    license, license_text = dataset_license(config, http, dataset)

    lightness = inspect_array(config, http, dataset, L_FILE, tally)
    ab_files = [inspect_array(config, http, dataset, name, tally) for name in ab_names]
    count = check_layout(dataset, lightness, ab_files)
    wanted = count if max_images is None else min(count, max_images)
    needed, covered = [], 0
    for ab in ab_files:
        if covered >= wanted:
            break
        needed.append(ab)
        covered += ab.shape[0]
    logger.info(
        "%s: %d samples in %d ab files; storing %d from %d of them", dataset, count, len(ab_files), wanted, len(needed)
    )

    folder = work_dir / owner / slug
    arrays = {}
    for array in [lightness, *needed]:
        result = fetch_array(config, http, dataset, array, folder / array.name, tally)
        arrays[array.name] = load_array(result.path, array)

    page = config.dataset_page(dataset)
    index = 0
    with RawZoneWriter(store, catalog, run_id) as writer:
        for ab in needed:
            ab_values = arrays[ab.name]
            for local in range(ab.shape[0]):
                if index >= wanted:
                    break
                sample = lab8_from_opencv_channels(arrays[L_FILE][index], ab_values[local])
                sighting = SightingRecord(
                    source=SOURCE,
                    source_id=f"{dataset}/{index}",
                    url=f"{page}#{index}",
                    page_url=page,
                    author=owner,
                    author_url=f"{config.web_url}/{owner}",
                    license=license,
                    license_text=license_text,
                )
                writer.add(lab8_to_npy(sample), sighting, name_hint=SAMPLE_NAME)
                index += 1
                if index % LOG_EVERY == 0:
                    logger.info("%s: %d of %d samples stored", dataset, index, wanted)
    tally.update(writer.counts)
    tally["samples"] = index
    logger.info("%s: %d samples, %s", dataset, index, dict(tally))
    return {
        name: tally[name]
        for name in (
            "samples",
            "objects_written",
            "images_added",
            "sightings_added",
            "files_downloaded",
            "downloads_resumed",
            "urls_refreshed",
            "files_unverified",
        )
    }


def ingest_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """`ingest`'s keyword arguments from a DAG run's params."""
    return {"dataset": params["dataset"], "max_images": params.get("max_images")}


def plan(
    config: KaggleConfig, http: HttpClient, work_dir: Path, *, dataset: str, max_images: int | None, parts: int
) -> tuple[list[DumpPart], Counter[str]]:
    """A Kaggle dataset of Lab arrays is one part: its samples are rows spread over a lightness array and
    several ab arrays, all of which a sample needs, so the part downloads and stores them itself."""
    split_dataset(dataset)  # a malformed name fails the plan, not the part
    return [DumpPart(config.dataset_page(dataset), take=max_images)], Counter()


def ingest_part(
    config: KaggleConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    part: DumpPart,
    *,
    dataset: str,
    max_images: int | None,
) -> dict[str, int]:
    """The one part of a Kaggle run: the whole `ingest`."""
    return ingest(config, http, store, catalog, run_id, work_dir, dataset=dataset, max_images=max_images)


CONNECTOR = Dump(KaggleConfig.from_connection, client, SOURCE, plan, ingest_part, ingest_options)
