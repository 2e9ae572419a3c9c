"""Colorflow Studio's web server: the page, and the API it calls.

    GET  /                                   the page (every asset served from here; no CDN)
    GET  /api/models                         the registry's aliases and versions with their evaluation metrics
    POST /api/photos        file, model      colorize one photo; answers its id and size (422 with the reason)
    GET  /api/photos/{id}/colorized.png      ?strength=0..1.5, re-applied without running the network again
    GET  /api/photos/{id}/original.png
    GET  /api/photos.zip    ?ids=a,b&strength=
    POST /api/clips         file, model, strength   start a clip's colorization; answers its id
    GET  /api/clips/{id}                     progress (frames done of frames in all), then the report
    GET  /api/clips/{id}/colorized.mp4
    GET  /health

Only models the registry lists can be chosen: a model URI is code that runs when it loads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from models.colorize import MAX_STRENGTH, ColorizeError, open_photo
from models.video import DEFAULT_SMOOTHING, VIDEO_SUFFIXES
from pipelines.lab import rgb_to_lab8
from pipelines.settings import Settings, get_settings
from studio.clip_jobs import ClipJobs
from studio.limits import ClientLimits, TooBusy
from studio.model_choices import DEFAULT_CHOICE, ColorizerCache, ModelChoice, model_choices
from studio.results import PhotoResult, ResultStore, zip_of

STATIC = Path(__file__).resolve().parent / "static"
CHOICES_FRESH_S = 30.0  # the model list is read from the registry at most this often
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # the multipart envelope around a file

Strength = Annotated[float, Query(ge=0, le=MAX_STRENGTH)]


class ChoiceList:
    """The registry's choices, re-read when older than `CHOICES_FRESH_S`."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._choices: list[ModelChoice] = []
        self._read_at = -CHOICES_FRESH_S
        self._lock = threading.Lock()

    def current(self, fresh: bool = False) -> list[ModelChoice]:
        with self._lock:
            if fresh or time.monotonic() - self._read_at >= CHOICES_FRESH_S:
                self._choices, self._read_at = model_choices(self.tracking_uri), time.monotonic()
            return self._choices

    def check(self, uri: str) -> str:
        """`uri` if the registry lists it (looking again before saying no: it may be newer than the list)."""
        for fresh in (False, True):
            if uri in {choice.uri for choice in self.current(fresh)}:
                return uri
        raise HTTPException(422, f"{uri} is not a registered model of this registry")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    limits_settings = settings.studio
    choices = ChoiceList(settings.mlflow_tracking_uri)
    colorizers = ColorizerCache(settings.mlflow_tracking_uri)
    results = ResultStore(int(limits_settings.kept_results_mb * 2**20))
    clips = ClipJobs(limits_settings.in_flight_per_client)
    limits = ClientLimits(limits_settings.in_flight_per_client)
    network_runs = threading.BoundedSemaphore(limits_settings.colorizing_at_once)
    # Each network run gets its share of the cores instead of all of them fighting over every core.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // limits_settings.colorizing_at_once))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        yield
        clips.close()

    app = FastAPI(title="Colorflow Studio", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    caps = {"/api/photos": limits_settings.max_photo_mb, "/api/clips": limits_settings.max_clip_mb}

    @app.middleware("http")
    async def upload_cap(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Refuse an upload over its cap from its declared length, before a byte of it is read."""
        cap_mb = caps.get(request.url.path) if request.method == "POST" else None
        if cap_mb is not None:
            declared = request.headers.get("content-length")
            if declared is None:
                return JSONResponse({"detail": "an upload must declare its length"}, status_code=411)
            if int(declared) > cap_mb * 1_000_000 + UPLOAD_OVERHEAD_BYTES:
                return JSONResponse({"detail": f"over the {cap_mb:g} MB upload limit"}, status_code=413)
        return await call_next(request)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/models")
    def models() -> dict:
        current = choices.current()
        default = DEFAULT_CHOICE if any(choice.uri == DEFAULT_CHOICE for choice in current) else None
        return {
            "models": [asdict(choice) for choice in current],
            "default": default or (current[0].uri if current else None),
            "max_strength": MAX_STRENGTH,
            "limits": limits_settings.model_dump(),
        }

    @app.post("/api/photos")
    def colorize_photo(
        request: Request, file: Annotated[UploadFile, File()], model: Annotated[str, Form()] = DEFAULT_CHOICE
    ) -> dict:
        name = Path(file.filename or "photo").name
        try:
            with limits.slot(client_of(request)):
                colorizer = colorizers.get(choices.check(model))
                with network_runs:
                    lab8 = rgb_to_lab8(np.asarray(open_photo(file.file.read())))
                    chroma = colorizer.chroma(lab8[..., 0])
        except TooBusy as error:
            raise HTTPException(429, str(error)) from error
        except ColorizeError as error:
            raise HTTPException(422, f"{name}: {str(error).removeprefix('image: ')}") from error
        result_id = results.add(PhotoResult(name, lab8, chroma, model))
        height, width = lab8.shape[:2]
        return {"id": result_id, "name": name, "width": width, "height": height, "model": model}

    def result_or_404(result_id: str) -> PhotoResult:
        result = results.get(result_id)
        if result is None:
            raise HTTPException(404, "no such result here any more: upload the photo again")
        return result

    @app.get("/api/photos/{result_id}/colorized.png")
    def colorized_png(result_id: str, strength: Strength = 1.0, download: bool = False) -> Response:
        result = result_or_404(result_id)
        with network_runs:  # no network run, but the same cores: wait with the rest
            png = result.png(strength)
        headers = {"Content-Disposition": f'attachment; filename="{result.download_name}"'} if download else {}
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/api/photos/{result_id}/original.png")
    def original_png(result_id: str) -> Response:
        return Response(result_or_404(result_id).original_png(), media_type="image/png")

    @app.get("/api/photos.zip")
    def photos_zip(ids: str, strength: Strength = 1.0) -> Response:
        chosen = [result_or_404(result_id) for result_id in ids.split(",") if result_id]
        if not chosen:
            raise HTTPException(422, "no photos named")
        headers = {"Content-Disposition": 'attachment; filename="colorized.zip"'}
        return Response(zip_of(chosen, strength), media_type="application/zip", headers=headers)

    @app.post("/api/clips")
    def colorize_clip(
        request: Request,
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form()] = DEFAULT_CHOICE,
        strength: Annotated[float, Form(ge=0, le=MAX_STRENGTH)] = 1.0,
    ) -> dict:
        name = Path(file.filename or "clip.mp4").name
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            raise HTTPException(422, f"{name}: not a clip this page reads ({', '.join(sorted(VIDEO_SUFFIXES))})")
        client = client_of(request)
        try:
            with limits.slot(client):
                colorizer = colorizers.get(choices.check(model))
                with tempfile.NamedTemporaryFile(dir=clips.root, delete=False) as upload:
                    shutil.copyfileobj(file.file, upload)
                job_id = clips.submit(client, name, Path(upload.name), colorizer, strength)
        except TooBusy as error:
            raise HTTPException(429, str(error)) from error
        return {"id": job_id, "name": name, "smoothing": DEFAULT_SMOOTHING}

    @app.get("/api/clips/{job_id}")
    def clip_status(job_id: str) -> dict:
        job = clips.get(job_id)
        if job is None:
            raise HTTPException(404, "no such clip job")
        return job.status()

    @app.get("/api/clips/{job_id}/colorized.mp4")
    def clip_result(job_id: str) -> FileResponse:
        job = clips.get(job_id)
        if job is None or job.state != "done":
            raise HTTPException(404, "no finished clip of that id")
        return FileResponse(job.output, media_type="video/mp4", filename=job.download_name)

    return app
