"""Start, health-check and stop long-running local processes, each remembered by a PID file.

`make down` must stop only what `make up` started, never another user's Airflow or a process that
happens to reuse an old PID. So each service runs in its own session (process group), and its PID file
records the PID together with the process's start time: a PID whose start time differs is not ours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from embedded.polling import wait_until

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """A process to keep running, and how to tell that it is ready."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    health_url: str | None = None
    health_check: Callable[[requests.Response], bool] = field(default=lambda response: response.ok)
    probe: Callable[[], bool] | None = None  # readiness for services that do not speak HTTP
    ready_timeout_s: float = 120.0
    user: str | None = None  # run as this user (a server that refuses root), else as ourselves
    stop_signal: int = signal.SIGTERM  # what asks this service to shut down cleanly


class ServiceFailed(RuntimeError):
    """A service exited or never became healthy."""


class Supervisor:
    """Keeps PID files in `run_dir` and logs in `logs_dir`."""

    def __init__(self, run_dir: Path, logs_dir: Path) -> None:
        self.run_dir, self.logs_dir = run_dir, logs_dir

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _record(self, name: str) -> dict | None:
        pid_file = self._pid_file(name)
        return json.loads(pid_file.read_text()) if pid_file.exists() else None

    def running_process(self, name: str) -> psutil.Process | None:
        """The live process this supervisor started under `name`, or None."""
        record = self._record(name)
        if record is None:
            return None
        try:
            process = psutil.Process(record["pid"])
            if abs(process.create_time() - record["create_time"]) > 1 or process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except psutil.NoSuchProcess:
            return None

    def is_healthy(self, service: Service) -> bool:
        if self.running_process(service.name) is None:
            return False
        if service.probe is not None:
            return service.probe()
        if service.health_url is None:
            return True
        try:
            return service.health_check(requests.get(service.health_url, timeout=5))
        except requests.RequestException:
            return False

    def start(self, service: Service, wait: bool = True) -> None:
        """Start `service` unless it already runs; with `wait`, return only once it is healthy."""
        if self.running_process(service.name) is not None:
            logger.info("%s is already running", service.name)
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            with self.log_file(service.name).open("ab") as log:
                process = subprocess.Popen(
                    list(service.argv),
                    env=dict(service.env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    user=service.user,
                    cwd="/" if service.user else None,  # another user may not enter our working folder
                )
            record = {
                "pid": process.pid,
                "create_time": psutil.Process(process.pid).create_time(),
                "stop_signal": int(service.stop_signal),
            }
            self._pid_file(service.name).write_text(json.dumps(record))
            logger.info("started %s (pid %d), log %s", service.name, process.pid, self.log_file(service.name))
        if wait:
            self.wait_healthy(service)

    def wait_healthy(self, service: Service) -> None:
        def healthy() -> bool:
            if self.is_healthy(service):
                return True
            if self.running_process(service.name) is None:
                raise ServiceFailed(f"{service.name} exited; see {self.log_file(service.name)}")
            return False

        try:
            wait_until(healthy, timeout_s=service.ready_timeout_s, interval_s=0.5)
        except TimeoutError:
            timeout = f"{service.ready_timeout_s:.0f}s"
            raise ServiceFailed(
                f"{service.name} not healthy after {timeout}; see {self.log_file(service.name)}"
            ) from None

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """Stop the process group started under `name` with the signal its service asked for (then SIGKILL
        after `timeout_s`); True if something was running."""
        process = self.running_process(name)
        stop_signal = (self._record(name) or {}).get("stop_signal", signal.SIGTERM)
        self._pid_file(name).unlink(missing_ok=True)
        if process is None:
            return False
        group = os.getpgid(process.pid)
        members = [process, *process.children(recursive=True)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, stop_signal)
        _, alive = psutil.wait_procs(members, timeout=timeout_s)
        if alive:
            logger.warning("%s did not stop in %.0fs; killing it", name, timeout_s)
            for member in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
            psutil.wait_procs(alive, timeout=5)
        logger.info("stopped %s", name)
        return True
