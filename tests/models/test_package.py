"""`models/` stands on its own: it imports nothing from Airflow (the DAG side reads the task context and
hands it plain values), and the training loader pulls in neither pandas nor Great Expectations."""

from __future__ import annotations

from tests.imports import modules_loaded_by, package_modules


def test_no_module_of_models_imports_airflow() -> None:
    names = package_modules("models")
    assert len(names) >= 9
    loaded = modules_loaded_by(*names)
    assert not {name for name in loaded if name == "airflow" or name.startswith("airflow.")}


def test_the_training_loader_needs_no_pandas_or_great_expectations() -> None:
    loaded = modules_loaded_by("models.data")
    assert not {"pandas", "great_expectations", "pipelines.quality"} & loaded
