"""Kaggle stand-in: the public REST API v1 for one dataset, and the Cloud Storage host its downloads redirect to.

Routes, relative to `/kaggle` (production: the hosts in brackets):
- API under `/api/v1/` [https://www.kaggle.com/api/v1], HTTP basic auth with the username and API key (what
  `kaggle.json`, or `KAGGLE_USERNAME` and `KAGGLE_KEY`, hold); no or wrong credentials get 401
  `{"code": 401, "message": "Unauthenticated"}`, an unknown dataset 404 `{"code": 404, "message": "Not found"}`:
  `GET datasets/list/{owner}/{dataset}` (`pageSize`, `pageToken`) lists files as
  `{"datasetFiles": [{"ref", "name", "datasetRef", "ownerRef", "creationDate", "totalBytes", "url", ...}],
  "errorMessage": null, "nextPageToken": ""}`; `GET datasets/metadata/{owner}/{dataset}` gives
  `{"info": {..., "licenses": [{"name"}]}, "errorMessage": null}`; `GET datasets/view/{owner}/{dataset}` the
  dataset record with `licenseName`; `GET datasets/download/{owner}/{dataset}/{file path}` answers 302 with a
  signed storage URL, as Kaggle does.
- Storage [https://storage.googleapis.com]: `GET /storage/kaggle-data-sets/{id}/{version}/{file path}` with
  Google V4 query parameters (`X-Goog-Algorithm`, `X-Goog-Credential`, `X-Goog-Date`, `X-Goog-Expires`,
  `X-Goog-SignedHeaders`, `X-Goog-Signature`). URLs live `url_ttl_s` seconds (300 unless changed); past that
  the answer is Cloud Storage's XML error, HTTP 400 `ExpiredToken`; a changed URL is 403
  `SignatureDoesNotMatch`. Objects are served with HTTP Range, HEAD and ETag, and carry
  `x-goog-hash: md5=<base64>` (the whole object's MD5, on ranged answers too, as Cloud Storage sends it).
- Web [https://www.kaggle.com]: `GET /datasets/{owner}/{dataset}`, the dataset page attribution links name.
- Admin (tests only): `POST /_admin/reset` restores the defaults; `POST /_admin/config` with
  `{"url_ttl_s": N, "expired_urls": K, "variant": "..."}` changes the URL lifetime, makes the next K signed
  URLs arrive already expired (as a URL that waited in a queue past its lifetime would), and switches the
  dataset to a broken variant: `mismatched_counts` (the last ab file lacks a sample, so the ab files no
  longer stack to N) or `wrong_dtype` (the L array is float32). Each variant is its own dataset version,
  so its files have their own storage paths. `GET /_admin/stats` counts redirects and storage answers.

The one dataset is shaped like `shravankumar9892/image-colorization` (MIRFLICKR photos as 224x224 Lab
arrays): `l/gray_scale.npy` (N, 224, 224) uint8 and `ab/ab/ab1.npy`, `ab2.npy`, `ab3.npy`, each
(n, 224, 224, 2) uint8, stacking to N. Here N is 48, split 16/16/16, made from library photos: each photo is
scaled so its shorter side is 224 and center-cropped to 224x224, then converted by OpenCV itself
(`cv2.cvtColor`, `COLOR_RGB2LAB`: sRGB, D65, its 8-bit Lab encoding). The license (`CC0-1.0`) is the
stand-in's own choice, not a statement about the real dataset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import io
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import cv2
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from PIL import Image, ImageOps
from pydantic import BaseModel, Field

from sandbox import credentials
from sandbox.library import PhotoLibrary
from sandbox.ranges import file_response

PREFIX = "kaggle"

USERNAME = credentials.KAGGLE_USERNAME
API_KEY = credentials.KAGGLE_KEY
OWNER = "shravankumar9892"
DATASET = "image-colorization"
DATASET_REF = f"{OWNER}/{DATASET}"
DATASET_ID = 421585
TITLE = "Image Colorization Dataset"
LICENSE = "CC0-1.0"  # the code metadata names it by (`licenses[].name`)
LICENSE_NAME = "CC0: Public Domain"  # how Kaggle displays that code (`licenseName`, the dataset page)
L_FILE = "l/gray_scale.npy"
AB_FILES = ("ab/ab/ab1.npy", "ab/ab/ab2.npy", "ab/ab/ab3.npy")
SAMPLES_PER_AB_FILE = 16
SAMPLE_COUNT = SAMPLES_PER_AB_FILE * len(AB_FILES)
SIDE = 224
PHOTO_STRIDE = 7  # sample i is library photo 7*i: coprime with the 9 base photos, so all of them appear
DEFAULT_URL_TTL_S = 300
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
BUCKET = "kaggle-data-sets"
SIGNING_ACCOUNT = "kaggle-data-sets@kaggle-161607.iam.gserviceaccount.com"
GOOG_DATE = "%Y%m%dT%H%M%SZ"
# Dataset versions: the standard files are version 1; each broken variant is a version of its own.
VARIANTS = {"standard": 1, "mismatched_counts": 2, "wrong_dtype": 3}
CREATED = datetime(2019, 11, 9, 16, 48, 43, tzinfo=UTC)


def to_opencv_lab(image: Image.Image) -> np.ndarray:
    """A (224, 224, 3) uint8 array of `image` in OpenCV's 8-bit Lab, as OpenCV converts it."""
    square = ImageOps.fit(image.convert("RGB"), (SIDE, SIDE), method=Image.Resampling.LANCZOS)
    return cv2.cvtColor(np.asarray(square), cv2.COLOR_RGB2LAB)


_samples_lock = threading.Lock()


def lab_samples(library: PhotoLibrary) -> np.ndarray:
    """The dataset's N samples as one (N, 224, 224, 3) uint8 array [L, a, b], computed once per library."""
    with _samples_lock:
        return _lab_samples(library)


@lru_cache(maxsize=2)
def _lab_samples(library: PhotoLibrary) -> np.ndarray:
    return np.stack([to_opencv_lab(library.image(index * PHOTO_STRIDE)) for index in range(SAMPLE_COUNT)])


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class DatasetFile:
    """One file of one dataset version, as listed and as stored."""

    name: str
    data: bytes
    md5: bytes
    version: int

    @property
    def md5_base64(self) -> str:
        return base64.b64encode(self.md5).decode()

    @property
    def object_path(self) -> str:
        return f"{BUCKET}/{DATASET_ID}/{self.version}/{self.name}"


def dataset_arrays(library: PhotoLibrary, variant: str = "standard") -> dict[str, np.ndarray]:
    """The arrays each file of `variant` holds, by file name (tests compare stored samples with these)."""
    samples = lab_samples(library)
    arrays: dict[str, np.ndarray] = {L_FILE: np.ascontiguousarray(samples[..., 0])}
    for number, name in enumerate(AB_FILES):
        start = number * SAMPLES_PER_AB_FILE
        arrays[name] = np.ascontiguousarray(samples[start : start + SAMPLES_PER_AB_FILE, :, :, 1:])
    if variant == "mismatched_counts":
        arrays[AB_FILES[-1]] = arrays[AB_FILES[-1]][:-1]
    elif variant == "wrong_dtype":
        arrays[L_FILE] = arrays[L_FILE].astype(np.float32)
    elif variant != "standard":
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return arrays


_files_lock = threading.Lock()


def dataset_files(library: PhotoLibrary, variant: str) -> dict[str, DatasetFile]:
    """The files of `variant`, by name, in the order Kaggle lists them (by name)."""
    with _files_lock:
        return _dataset_files(library, variant)


@lru_cache(maxsize=8)
def _dataset_files(library: PhotoLibrary, variant: str) -> dict[str, DatasetFile]:
    files = {}
    for name, array in sorted(dataset_arrays(library, variant).items()):
        data = npy_bytes(array)
        files[name] = DatasetFile(name=name, data=data, md5=hashlib.md5(data).digest(), version=VARIANTS[variant])
    return files


class ConfigChange(BaseModel):
    url_ttl_s: int | None = Field(default=None, ge=0, description="Lifetime of signed storage URLs in seconds.")
    expired_urls: int | None = Field(default=None, ge=0, description="The next N signed URLs arrive expired.")
    variant: str | None = Field(default=None, description=f"Dataset variant: {', '.join(VARIANTS)}.")


class KaggleService:
    """The stand-in's state: which variant is served, URL lifetime and signing, counters."""

    def __init__(self, library: PhotoLibrary) -> None:
        self.library = library
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.url_ttl_s = DEFAULT_URL_TTL_S
            self.expired_urls = 0
            self.variant = "standard"
            self.redirects = 0
            self.storage_answers = 0
            self.expired_answers = 0

    def configure(self, change: ConfigChange) -> None:
        if change.variant is not None and change.variant not in VARIANTS:
            raise ValueError(f"unknown variant {change.variant!r}; known: {', '.join(VARIANTS)}")
        with self._lock:
            if change.url_ttl_s is not None:
                self.url_ttl_s = change.url_ttl_s
            if change.expired_urls is not None:
                self.expired_urls = change.expired_urls
            if change.variant is not None:
                self.variant = change.variant

    def settings(self) -> dict[str, Any]:
        return {"url_ttl_s": self.url_ttl_s, "expired_urls": self.expired_urls, "variant": self.variant}

    def files(self) -> dict[str, DatasetFile]:
        return dataset_files(self.library, self.variant)

    def stored(self, object_path: str) -> DatasetFile | None:
        """The file at a storage path, of whichever version the path names (old URLs keep their version)."""
        bucket, _, rest = object_path.partition("/")
        dataset_id, _, rest = rest.partition("/")
        version, _, name = rest.partition("/")
        variant = next((known for known, number in VARIANTS.items() if str(number) == version), None)
        if bucket != BUCKET or dataset_id != str(DATASET_ID) or variant is None:
            return None
        return dataset_files(self.library, variant).get(name)

    def count_answer(self) -> None:
        with self._lock:
            self.storage_answers += 1

    def _signature(self, object_path: str, date: str, expires: str) -> str:
        message = f"GET\n/{object_path}\n{date}\n{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def sign(self, object_path: str) -> dict[str, str]:
        """Google V4 style query parameters for `object_path`, valid `url_ttl_s` seconds from now."""
        with self._lock:
            self.redirects += 1
            signed_at = datetime.now(UTC).replace(microsecond=0)
            if self.expired_urls:
                self.expired_urls -= 1
                signed_at -= timedelta(seconds=self.url_ttl_s + 60)
            ttl = self.url_ttl_s
        date, expires = signed_at.strftime(GOOG_DATE), str(ttl)
        return {
            "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
            "X-Goog-Credential": f"{SIGNING_ACCOUNT}/{signed_at:%Y%m%d}/auto/storage/goog4_request",
            "X-Goog-Date": date,
            "X-Goog-Expires": expires,
            "X-Goog-SignedHeaders": "host",
            "X-Goog-Signature": self._signature(object_path, date, expires),
        }

    def check(self, object_path: str, query: dict[str, str]) -> Response | None:
        """None when the signed query is valid now; otherwise Cloud Storage's XML error answer."""
        date, expires, signature = (
            query.get(name, "") for name in ("X-Goog-Date", "X-Goog-Expires", "X-Goog-Signature")
        )
        if not (date and expires and signature):
            return storage_error(
                403,
                "AccessDenied",
                "Access denied.",
                "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object.",
            )
        expected = self._signature(object_path, date, expires)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return storage_error(
                403,
                "SignatureDoesNotMatch",
                "Access denied.",
                "The request signature we calculated does not match the signature you provided.",
            )
        expiry = datetime.strptime(date, GOOG_DATE).replace(tzinfo=UTC) + timedelta(seconds=int(expires))
        if datetime.now(UTC) >= expiry:
            with self._lock:
                self.expired_answers += 1
            return storage_error(
                400,
                "ExpiredToken",
                "The provided token has expired.",
                f"Request signature expired at: {expiry.isoformat()}",
            )
        return None


def storage_error(status: int, code: str, message: str, details: str) -> Response:
    """An error as Cloud Storage's XML API writes it."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{html.escape(message)}</Message>"
        f"<Details>{html.escape(details)}</Details></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def api_error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Kaggle API"'} if status == 401 else {}
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


def authenticated(request: Request) -> bool:
    """True when the request carries the sandbox user's basic-auth credentials."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        username, _, key = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(username.encode(), USERNAME.encode()) and hmac.compare_digest(
        key.encode(), API_KEY.encode()
    )


def create_router(library: PhotoLibrary) -> APIRouter:
    service = KaggleService(library)
    router = APIRouter(tags=["kaggle"])
    # Rendering and converting the photos takes seconds: start now, so the first download does not wait.
    threading.Thread(target=service.files, name="kaggle-dataset", daemon=True).start()

    def refused(request: Request, owner: str, dataset: str) -> JSONResponse | None:
        """The API's error answer for missing credentials or an unknown dataset, else None."""
        if not authenticated(request):
            return api_error(401, "Unauthenticated")
        if f"{owner}/{dataset}".lower() != DATASET_REF:
            return api_error(404, "Not found")
        return None

    def listed(request: Request, dataset_file: DatasetFile) -> dict[str, Any]:
        download = request.url_for("kaggle_download", owner=OWNER, dataset=DATASET, file_path=dataset_file.name)
        return {
            "ref": dataset_file.name,
            "name": dataset_file.name,
            "datasetRef": DATASET_REF,
            "ownerRef": OWNER,
            "creationDate": (CREATED + timedelta(days=dataset_file.version - 1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "description": None,
            "fileType": ".npy",
            "url": str(download),
            "totalBytes": len(dataset_file.data),
            "columns": [],
        }

    @router.get("/api/v1/datasets/list/{owner}/{dataset}", name="kaggle_list_files")
    def list_files(
        request: Request,
        owner: str,
        dataset: str,
        pageSize: int = DEFAULT_PAGE_SIZE,
        pageToken: str = "",
    ) -> Response:
        if (error := refused(request, owner, dataset)) is not None:
            return error
        files = list(service.files().values())
        try:
            start = int(base64.urlsafe_b64decode(pageToken.encode()).decode()) if pageToken else 0
        except ValueError:
            return api_error(400, "Invalid page token")
        size = max(1, min(pageSize, MAX_PAGE_SIZE))
        page = files[start : start + size]
        following = start + size
        token = base64.urlsafe_b64encode(str(following).encode()).decode() if following < len(files) else ""
        return JSONResponse(
            {"datasetFiles": [listed(request, item) for item in page], "errorMessage": None, "nextPageToken": token}
        )

    @router.get("/api/v1/datasets/metadata/{owner}/{dataset}", name="kaggle_metadata")
    def metadata(request: Request, owner: str, dataset: str) -> Response:
        if (error := refused(request, owner, dataset)) is not None:
            return error
        info = {
            "datasetId": DATASET_ID,
            "datasetSlug": DATASET,
            "ownerUser": OWNER,
            "usabilityRating": 0.625,
            "totalViews": 48213,
            "totalVotes": 212,
            "totalDownloads": 6120,
            "title": TITLE,
            "subtitle": "MIRFLICKR photos as 224x224 L and ab arrays",
            "description": "Grayscale L channel and ab channels of 224x224 photos, in OpenCV's 8-bit Lab encoding.",
            "isPrivate": False,
            "keywords": ["image", "computer vision", "deep learning"],
            "licenses": [{"name": LICENSE}],
            "collaborators": [],
            "data": [],
        }
        return JSONResponse({"info": info, "errorMessage": None})

    @router.get("/api/v1/datasets/view/{owner}/{dataset}", name="kaggle_view")
    def view(request: Request, owner: str, dataset: str) -> Response:
        if (error := refused(request, owner, dataset)) is not None:
            return error
        files = list(service.files().values())
        version = files[0].version
        return JSONResponse(
            {
                "id": DATASET_ID,
                "ref": DATASET_REF,
                "title": TITLE,
                "ownerName": OWNER,
                "ownerRef": OWNER,
                "creatorName": OWNER,
                "url": str(request.url_for("kaggle_page", owner=OWNER, dataset=DATASET)),
                "totalBytes": sum(len(item.data) for item in files),
                "lastUpdated": (CREATED + timedelta(days=version - 1)).isoformat(),
                "currentVersionNumber": version,
                "isPrivate": False,
                "licenseName": LICENSE_NAME,
                "licenses": [{"name": LICENSE}],
                "files": [listed(request, item) for item in files],
                "versions": [{"versionNumber": version, "creationDate": CREATED.isoformat()}],
                "tags": [],
            }
        )

    @router.get("/api/v1/datasets/download/{owner}/{dataset}/{file_path:path}", name="kaggle_download")
    def download(request: Request, owner: str, dataset: str, file_path: str) -> Response:
        if (error := refused(request, owner, dataset)) is not None:
            return error
        dataset_file = service.files().get(file_path)
        if dataset_file is None:
            return api_error(404, "Not found")
        target = request.url_for("kaggle_storage", object_path=dataset_file.object_path)
        return RedirectResponse(f"{target}?{urlencode(service.sign(dataset_file.object_path))}", status_code=302)

    @router.api_route("/storage/{object_path:path}", methods=["GET", "HEAD"], name="kaggle_storage")
    def storage(request: Request, object_path: str) -> Response:
        dataset_file = service.stored(object_path)
        if dataset_file is None:
            return storage_error(
                404, "NoSuchKey", "The specified key does not exist.", f"No such object: {object_path}"
            )
        if (error := service.check(object_path, dict(request.query_params))) is not None:
            return error
        service.count_answer()
        response = file_response(
            request,
            dataset_file.data,
            "application/octet-stream",
            filename=dataset_file.name.rsplit("/", 1)[-1],
            etag=f'"{dataset_file.md5.hex()}"',
        )
        response.headers["x-goog-hash"] = f"md5={dataset_file.md5_base64}"
        response.headers["x-goog-stored-content-length"] = str(len(dataset_file.data))
        return response

    @router.get("/datasets/{owner}/{dataset}", name="kaggle_page")
    def page(owner: str, dataset: str) -> HTMLResponse:
        if f"{owner}/{dataset}".lower() != DATASET_REF:
            return HTMLResponse("<!DOCTYPE html><title>404</title><h1>Page not found</h1>", 404)
        files = "".join(f"<li>{html.escape(name)}</li>" for name in service.files())
        return HTMLResponse(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title></head>'
            f"<body><h1>{TITLE}</h1><p>by {OWNER}</p><p>License: {LICENSE_NAME}</p><ul>{files}</ul></body></html>"
        )

    @router.post("/_admin/reset", status_code=204, name="kaggle_admin_reset")
    def admin_reset() -> None:
        service.reset()

    @router.post("/_admin/config", name="kaggle_admin_config")
    def admin_config(change: ConfigChange) -> Response:
        try:
            service.configure(change)
        except ValueError as error:
            return JSONResponse({"detail": str(error)}, status_code=422)
        return JSONResponse(service.settings())

    @router.get("/_admin/stats", name="kaggle_admin_stats")
    def admin_stats() -> dict[str, Any]:
        return {
            "redirects": service.redirects,
            "storage_answers": service.storage_answers,
            "expired_answers": service.expired_answers,
            **service.settings(),
        }

    return router
