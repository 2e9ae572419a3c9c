"""`models/` stands on its own: it imports nothing from Airflow (the DAG side reads the task context and
hands it plain values), and the training loader pulls in neither pandas nor Great Expectations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"


def modules_loaded_by(*imports: str) -> set[str]:
    probe = f"import json, sys; {'; '.join(f'import {name}' for name in imports)}; print(json.dumps(list(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_no_module_of_models_imports_airflow() -> None:
    names = [f"models.{path.stem}" for path in sorted(MODELS.glob("*.py")) if path.stem != "__init__"]
    assert len(names) >= 9
    loaded = modules_loaded_by(*names)
    assert not {name for name in loaded if name == "airflow" or name.startswith("airflow.")}


def test_the_training_loader_needs_no_pandas_or_great_expectations() -> None:
    loaded = modules_loaded_by("models.data")
    assert not {"pandas", "great_expectations", "pipelines.quality"} & loaded
