"""Writing a benchmark's results: one JSON file under bench/results/, with the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, details: dict[str, Any]) -> Path:
    """Save `details` as bench/results/<name>.json, one JSON line headed by the benchmark's name and the
    machine."""
    report = {
        "benchmark": name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **details,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report) + "\n")
    return path


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh with the process, where ru_maxrss
    would carry over the size of the parent that spawned it."""
    status = Path("/proc/self/status").read_text()
    return round(int(status.split("VmHWM:")[1].split()[0]) / 1024, 1)  # KiB
