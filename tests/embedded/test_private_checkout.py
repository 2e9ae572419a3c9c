"""The stack starts from a checkout under a folder of mode 700, where people clone (a home folder, a
`mktemp -d`): as root, PostgreSQL runs as its own user, which cannot enter such a folder, so its cluster
lives under /var/lib/colorflow with a link in `.colorflow/postgres`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded.ports import free_port

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def checkout_files() -> list[str]:
    """What a clone of the working tree holds: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="colorflow-home-"))  # mode 700, as mkdtemp makes it
    assert home.stat().st_mode & 0o777 == 0o700
    checkout = home / "colorflow"
    for name in checkout_files():
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    yield checkout
    shutil.rmtree(home, ignore_errors=True)


def run(checkout: Path, environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedded", *arguments],
        cwd=checkout,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_the_stack_starts_from_a_checkout_in_a_private_home(private_checkout: Path) -> None:
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("COLORFLOW_", "AIRFLOW"))},
        "PYTHONPATH": f"{private_checkout}{os.pathsep}{private_checkout / 'plugins'}",
        **{f"COLORFLOW_{name}_PORT": str(free_port()) for name in ("AIRFLOW", "MLFLOW", "SANDBOX", "POSTGRES")},
    }
    link = private_checkout / ".colorflow" / "postgres"
    try:
        started = run(private_checkout, environment, "up")
        assert started.returncode == 0, started.stderr[-3000:]
        status = run(private_checkout, environment, "status").stdout
        assert all(line.split()[-1] == "healthy" for line in status.splitlines()), status
        assert link.is_symlink() and (link.resolve() / "data" / "PG_VERSION").is_file()
        assert link.resolve().is_relative_to("/var/lib/colorflow")
    finally:
        run(private_checkout, environment, "down")
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
