"""`python -m embedded airflow ...` runs the real Airflow CLI with the embedded stack's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_airflow_cli_sees_the_stack_settings(tmp_path: Path) -> None:
    environment = {**os.environ, "COLORFLOW_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "embedded", "airflow", "config", "get-value", "core", "dags_folder"]

    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(REPO / "dags")
    assert (tmp_path / "airflow").is_dir(), "AIRFLOW_HOME is the stack's"
