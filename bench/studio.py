"""Colorflow Studio under load: photos from upload to result, twenty clients at once, and film at 480p.

The Studio runs as people run it (`colorflow studio`, its own process) in front of a real MLflow server whose
registry holds the full-size generator (pix2pix U-Net, ngf 64, 256 px input). Its weights are freshly
initialised, not trained: the time a network takes does not depend on what its weights say, and training one
here would take days. Measured:

- `photo_512_*`: a 512 px photo (512x384 JPEG) from the start of its upload to the end of its colorized PNG's
  download (POST /api/photos, then GET its colorized.png), 50 times one after another: p50 and p95.
- `concurrent_20_*`: 20 clients uploading a 512 px photo each at the same moment (the server's per-client
  limit raised to 20, as the clients all come from 127.0.0.1): how many were answered with their photo, the
  slowest answer, and the server's peak resident memory (`server_peak_rss_mib`, its process tree, sampled
  every 50 ms while the photos are measured).
- `photo_2048_p50_s`: the same for a 2048x1536 photo (10 times), to show how the cost grows with pixels.
- `video_480p_fps`: frames per second of `colorize_clip` on a 854x480 clip (2 scenes of 48 frames, film
  grain) on this machine's CPU, H.264 encoding included (`video_240p_fps` at 426x240); `flicker_raw` and
  `flicker_smoothed`: the 480p clip's flicker (mean a/b change between frames where lightness did not move)
  colorized frame by frame and with the temporal smoothing.

Prints one JSON line; results: bench/results/studio.json.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import mlflow
import psutil
import requests
from mlflow.tracking import MlflowClient

from bench.report import write_results
from embedded.ports import free_port, running_mlflow, wait_for_port
from models.colorize import Colorizer
from models.networks import NetworkConfig, build_generator
from models.registry import MODEL_NAME, log_colorizer, panel_photos
from models.video import colorize_clip
from sandbox.clips import Clip
from sandbox.library import PhotoLibrary

BIN = Path(sys.executable).parent
PHOTO_REQUESTS = 50
LARGE_REQUESTS = 10
CLIENTS = 20
CLIP_480P = Clip(width=854, height=480, fps=24, scenes=2, frames_per_scene=48)
CLIP_240P = Clip(width=426, height=240, fps=24, scenes=2, frames_per_scene=48)


def log(message: str) -> None:
    print(f"[bench studio] {message}", file=sys.stderr, flush=True)


def full_size_colorizer() -> tuple[Colorizer, dict, NetworkConfig]:
    network = NetworkConfig()
    generator = build_generator(network).eval()
    return Colorizer(generator, size=2**network.num_downs), generator.state_dict(), network


@contextmanager
def registry(root: Path) -> Iterator[str]:
    """A real MLflow server with the full-size generator registered as the champion."""
    with running_mlflow(root) as url:
        mlflow.set_tracking_uri(url)
        colorizer, state, network = full_size_colorizer()
        with mlflow.start_run(run_name="studio-bench"):
            version = log_colorizer(colorizer, state, network, panel_photos())
        MlflowClient(url).set_registered_model_alias(MODEL_NAME, "champion", version)
        yield url


class PeakMemory:
    """The peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.process, self.interval_s = psutil.Process(pid), interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak_bytes = max(self.peak_bytes, sum(part.memory_info().rss for part in tree))
            except psutil.Error:
                pass
            time.sleep(self.interval_s)


@contextmanager
def studio(tracking_uri: str, log_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "COLORFLOW_MLFLOW_TRACKING_URI": tracking_uri,
        "COLORFLOW_STUDIO_IN_FLIGHT_PER_CLIENT": str(CLIENTS),
    }
    with log_path.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "colorflow"), "studio", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, server, timeout_s=180)
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def photo(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PhotoLibrary().image(2).convert("RGB").resize((width, height)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def upload_to_result(url: str, data: bytes) -> tuple[float, bool]:
    started = time.perf_counter()
    answer = requests.post(f"{url}/api/photos", files={"file": ("photo.jpg", data)}, timeout=600)
    if not answer.ok:
        return time.perf_counter() - started, False
    png = requests.get(f"{url}/api/photos/{answer.json()['id']}/colorized.png", timeout=600)
    return time.perf_counter() - started, png.ok and png.content.startswith(b"\x89PNG")


def percentile(values: list[float], fraction: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1], 3)


def measure_photos(url: str) -> dict:
    data = photo(512, 384)
    upload_to_result(url, data)  # the first request loads the model: not what a person waits for afterwards
    times = [upload_to_result(url, data)[0] for _ in range(PHOTO_REQUESTS)]
    log(f"{PHOTO_REQUESTS} photos one after another: p50 {statistics.median(times):.3f} s")
    large = photo(2048, 1536)  # 16 times the pixels: the network's cost stays, the full-size work grows
    large_times = [upload_to_result(url, large)[0] for _ in range(LARGE_REQUESTS)]
    barrier = threading.Barrier(CLIENTS)

    def client(_: int) -> tuple[float, bool]:
        barrier.wait()
        return upload_to_result(url, data)

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(client, range(CLIENTS)))
    log(f"{CLIENTS} clients at once: {sum(ok for _, ok in answers)} answered with their photo")
    return {
        "photo_512_p50_s": round(statistics.median(times), 3),
        "photo_512_p95_s": percentile(times, 0.95),
        "photo_2048_p50_s": round(statistics.median(large_times), 3),
        "concurrent_20_answered": sum(ok for _, ok in answers),
        "concurrent_20_slowest_s": round(max(elapsed for elapsed, _ in answers), 3),
    }


def measure_video(scratch: Path) -> dict:
    colorizer, _, _ = full_size_colorizer()
    small = CLIP_240P.write(scratch / "240p.mp4")
    started = time.perf_counter()
    colorize_clip(colorizer, small, scratch / "240p-colored.mp4")
    fps_240p = CLIP_240P.frames / (time.perf_counter() - started)
    source = CLIP_480P.write(scratch / "480p.mp4")
    started = time.perf_counter()
    smoothed = colorize_clip(colorizer, source, scratch / "smoothed.mp4")
    fps = CLIP_480P.frames / (time.perf_counter() - started)
    raw = colorize_clip(colorizer, source, scratch / "raw.mp4", smoothing=0)
    log(f"240p: {fps_240p:.2f}, 480p: {fps:.2f} frames/s; flicker {raw.flicker} raw, {smoothed.flicker} smoothed")
    return {
        "video_240p_fps": round(fps_240p, 2),
        "video_480p_fps": round(fps, 2),
        "video_480p_frames": CLIP_480P.frames,
        "flicker_raw": raw.flicker,
        "flicker_smoothed": smoothed.flicker,
        "scene_cuts_found": smoothed.scene_cuts,
    }


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="colorflow-bench-studio-"))
    with registry(scratch) as tracking_uri, studio(tracking_uri, scratch / "studio.log") as (url, pid):
        with PeakMemory(pid) as memory:
            figures = measure_photos(url)
        figures["server_peak_rss_mib"] = round(memory.peak_bytes / 2**20, 1)
    figures |= measure_video(scratch)
    figures["targets"] = {"photo_512_p95_s": 1.5, "server_peak_rss_mib": 2048, "concurrent_20_answered": CLIENTS}
    write_results("studio", figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
