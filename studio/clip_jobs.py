"""Film colorized in the background: an upload becomes a job that one worker thread runs frame by frame,
while the page polls its progress and then downloads the MP4.

Jobs run one at a time (a clip keeps every core busy on its own) in a folder of their own, which is removed
when the job is forgotten: the oldest finished jobs beyond `kept` go first.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from models.colorize import ColorizeError, Colorizer
from models.video import ClipReport, colorize_clip
from studio.limits import TooBusy

logger = logging.getLogger(__name__)


@dataclass
class ClipJob:
    name: str
    folder: Path
    client: str
    state: str = "queued"  # queued, running, done, failed
    frames_done: int = 0
    frames_total: int | None = None
    error: str | None = None
    report: ClipReport | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> Path:
        return self.folder / "colorized.mp4"

    @property
    def download_name(self) -> str:
        return f"{Path(self.name).stem or 'clip'}-colorized.mp4"

    def status(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
            "error": self.error,
            "report": self.report.__dict__ if self.report else None,
        }


class ClipJobs:
    """Clip jobs by a random id; one runs at a time."""

    def __init__(self, per_client: int, root: Path | None = None, kept: int = 8) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="colorflow-studio-clips-", dir=root))
        self.per_client, self.kept = per_client, kept
        self._jobs: OrderedDict[str, ClipJob] = OrderedDict()
        self._lock = threading.Lock()
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip")

    def submit(self, client: str, name: str, upload: Path, colorizer: Colorizer, strength: float) -> str:
        """Take ownership of `upload` (moved into the job's folder) and queue its colorization; refused
        (`TooBusy`) while `client` has `per_client` clips not yet finished."""
        with self._lock:
            waiting = sum(1 for job in self._jobs.values() if job.client == client and not job.done.is_set())
        if waiting >= self.per_client:
            upload.unlink(missing_ok=True)
            raise TooBusy(f"{waiting} clips of yours are waiting or being colorized; send more when one is done")
        job_id = secrets.token_urlsafe(12)
        folder = self.root / job_id
        folder.mkdir()
        source = folder / f"source{Path(name).suffix.lower()}"
        shutil.move(upload, source)
        job = ClipJob(name, folder, client)
        with self._lock:
            self._jobs[job_id] = job
            self._forget_old()
        self._runner.submit(self._run, job, source, colorizer, strength)
        return job_id

    def get(self, job_id: str) -> ClipJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        self._runner.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, job: ClipJob, source: Path, colorizer: Colorizer, strength: float) -> None:
        job.state = "running"

        def advance(done: int, total: int | None) -> None:
            job.frames_done, job.frames_total = done, total

        try:
            job.report = colorize_clip(colorizer, source, job.output, strength, progress=advance)
            job.state = "done"
            logger.info("clip %s: %s", job.name, job.report)
        except ColorizeError as error:
            job.state, job.error = "failed", str(error)
            logger.info("clip %s refused: %s", job.name, error)
        except Exception as error:  # a job's failure is shown in the page, never taken down with the server
            job.state, job.error = "failed", f"{job.name}: colorizing failed ({error})"
            logger.exception("clip %s failed", job.name)
        finally:
            source.unlink(missing_ok=True)
            job.done.set()

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.done.is_set()]
        for job_id in finished[: max(0, len(self._jobs) - self.kept)]:
            shutil.rmtree(self._jobs.pop(job_id).folder, ignore_errors=True)
