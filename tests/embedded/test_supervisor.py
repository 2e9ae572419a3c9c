"""The supervisor starts services, waits for health, and stops only the processes it started."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from embedded.ports import free_port
from embedded.supervisor import Service, ServiceFailed, Supervisor


def http_service(name: str, port: int, spawn_child: bool = False) -> Service:
    """A web server that, if asked, also leaves a child process running (as Airflow's components do)."""
    program = textwrap.dedent(
        f"""
        import http.server, subprocess, sys
        if {spawn_child!r}:
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        http.server.ThreadingHTTPServer(("127.0.0.1", {port}), http.server.SimpleHTTPRequestHandler).serve_forever()
        """
    )
    return Service(
        name=name,
        argv=[sys.executable, "-c", program],
        env=dict(os.environ),
        health_url=f"http://127.0.0.1:{port}/",
        ready_timeout_s=30,
    )


@pytest.fixture
def keeper(tmp_path: Path) -> Supervisor:
    return Supervisor(tmp_path / "run", tmp_path / "logs")


def test_start_waits_for_health_and_stop_ends_the_whole_process_group(keeper: Supervisor) -> None:
    service = http_service("web", free_port(), spawn_child=True)
    keeper.start(service)
    assert keeper.is_healthy(service)
    process = keeper.running_process("web")
    assert process is not None
    family = [process, *process.children(recursive=True)]
    assert len(family) == 2

    assert keeper.stop("web") is True
    assert not any(member.is_running() and member.status() != psutil.STATUS_ZOMBIE for member in family)
    assert keeper.running_process("web") is None
    assert keeper.stop("web") is False


def test_starting_twice_keeps_one_process(keeper: Supervisor) -> None:
    service = http_service("web", free_port())
    keeper.start(service)
    first = keeper.running_process("web").pid
    keeper.start(service)
    assert keeper.running_process("web").pid == first
    keeper.stop("web")


def test_a_reused_pid_is_not_ours_and_is_left_alone(keeper: Supervisor) -> None:
    """A stale PID file must never make `make down` kill somebody else's process."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keeper.run_dir.mkdir(parents=True)
        (keeper.run_dir / "web.pid").write_text(f'{{"pid": {stranger.pid}, "create_time": 1.0}}')
        assert keeper.running_process("web") is None
        assert keeper.stop("web") is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_service_that_exits_is_reported_with_its_log(keeper: Supervisor) -> None:
    crashing = Service(
        name="broken",
        argv=[sys.executable, "-c", "raise SystemExit('bad config')"],
        env=dict(os.environ),
        health_url="http://127.0.0.1:9/",
        ready_timeout_s=30,
    )
    with pytest.raises(ServiceFailed, match=r"broken exited; see .*broken\.log"):
        keeper.start(crashing)
    assert "bad config" in keeper.log_file("broken").read_text()
