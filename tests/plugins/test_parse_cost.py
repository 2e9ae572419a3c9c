"""Plugins are imported by every DAG file, so at parse time: none may pull in a library the scheduler's
parse loop does not need (the HTTP client, retries, the ORM, images, validation models), directly or through
a Colorflow module. What Airflow's own names import, and what Airflow loads to make an Asset (its providers'
URI handlers), is Airflow's cost and is measured away."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
PLUGIN_FILES = sorted(PLUGINS.glob("*.py"))
HEAVY = ("requests", "tenacity", "sqlalchemy", "PIL", "pydantic", "pipelines", "models")


def airflow_names(path: Path) -> list[tuple[str, list[str]]]:
    """The `from airflow... import names` a plugin makes at module level."""
    tree = ast.parse(path.read_text())
    return [
        (node.module, [alias.name for alias in node.names])
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "airflow"
    ]


def module_level_imports(path: Path) -> set[str]:
    """The top-level packages a module imports when it is loaded (imports inside functions wait for a call)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("plugin", PLUGIN_FILES, ids=lambda path: path.stem)
def test_a_plugin_imports_no_heavy_library_at_module_level(plugin: Path) -> None:
    assert not module_level_imports(plugin) & set(HEAVY)


@pytest.mark.parametrize("plugin", PLUGIN_FILES, ids=lambda path: path.stem)
def test_a_plugin_adds_no_heavy_import_to_what_airflow_loads(plugin: Path) -> None:
    probe = f"""
import importlib, json, sys
sys.path.insert(0, {str(PLUGINS)!r})
for module, names in {airflow_names(plugin)!r}:
    loaded = importlib.import_module(module)
    for name in names:
        getattr(loaded, name)
from airflow.sdk import Asset
Asset(name="probe", uri="colorflow://probe/asset")
before = set(sys.modules)
importlib.import_module({plugin.stem!r})
print(json.dumps(sorted(set(sys.modules) - before)))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    added = json.loads(result.stdout.strip().splitlines()[-1])
    assert not [name for name in added if name.split(".")[0] in HEAVY]
