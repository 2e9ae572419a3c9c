"""Throwaway servers on loopback ports (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Callable, Iterator

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
