"""What importing some modules loads, asked of a fresh interpreter (this one has loaded everything)."""

from __future__ import annotations

import json
import subprocess
import sys


def modules_loaded_by(*imports: str) -> set[str]:
    """Every module in `sys.modules` after a new Python imports `imports`."""
    probe = f"import json, sys; {'; '.join(f'import {name}' for name in imports)}; print(json.dumps(list(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def package_modules(package: str) -> list[str]:
    """The dotted names of a package's modules (one level: Colorflow's packages are flat)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / package
    return [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]
