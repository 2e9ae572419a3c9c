"""Throwaway servers on loopback ports (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from embedded.polling import wait_until


def free_port() -> int:
    """A TCP port nobody listens on right now, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    """Wait until `process` listens on `port`; fail early if it exits."""

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout_s=timeout_s, interval_s=0.2, what=f"nothing listens on port {port}")


@contextlib.contextmanager
def running_server(command: Callable[[int], list[str]]) -> Iterator[str]:
    """Run `command(port)` on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def running_mlflow(root: Path) -> Iterator[str]:
    """A throwaway `mlflow server` on a free loopback port, its database and artifact store in `root` (for
    tests and benchmarks; the stack's own server is `embedded.services`')."""
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [str(Path(sys.executable).parent / "mlflow"), "server"]
    command += [
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    command += ["--host", "127.0.0.1", "--workers", "1"]
    with running_server(lambda port: [*command, "--port", str(port)]) as url:
        yield url
