"""The sandbox stands for the outside world, so it owes the product nothing: none of its modules imports
Colorflow's pipelines (a misunderstanding shared by both would pass every test)."""

from __future__ import annotations

from tests.imports import modules_loaded_by, package_modules


def test_no_module_of_the_sandbox_imports_the_pipelines() -> None:
    names = package_modules("sandbox")
    assert "sandbox.library" in names
    loaded = modules_loaded_by(*names)
    assert not {name for name in loaded if name.split(".")[0] in ("pipelines", "models")}
