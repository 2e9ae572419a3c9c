"""The embedded stack's configuration: what its processes and tasks are told."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedded.services import airflow_env, sandbox_connections, settings_env
from embedded.settings import StackSettings
from pipelines.settings import Settings
from sandbox import coco, imagenet
from sandbox.library import PhotoLibrary


def test_settings_survive_the_trip_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = StackSettings(
        home=tmp_path,
        sandbox_port=18790,
        http_allowed_hosts=["photos.example:443"],
        quality={"license_allow_list": ["CC0-1.0"], "batch_limit": 7},
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert StackSettings() == original
    assert original.quality.batch_limit == 7 and "127.0.0.1:18790" in original.http_allowed_hosts


def test_only_the_stack_lets_connectors_reach_its_sandbox(tmp_path: Path) -> None:
    """The product's settings allow no internal host; the stack adds its sandbox's, unless it runs none."""
    assert Settings(home=tmp_path).http_allowed_hosts == []
    assert StackSettings(home=tmp_path, sandbox_port=18790).http_allowed_hosts == ["127.0.0.1:18790"]
    assert StackSettings(home=tmp_path, sandbox=False).http_allowed_hosts == []


def test_sandbox_connections_point_every_source_at_the_sandbox(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path, sandbox_port=18790)
    connections = {name: json.loads(value) for name, value in sandbox_connections(settings).items()}
    assert set(connections) == {
        "AIRFLOW_CONN_UNSPLASH_DEFAULT",
        "AIRFLOW_CONN_FLICKR_DEFAULT",
        "AIRFLOW_CONN_INSTAGRAM_DEFAULT",
        "AIRFLOW_CONN_IMAGENET_DEFAULT",
        "AIRFLOW_CONN_COCO_DEFAULT",
        "AIRFLOW_CONN_KAGGLE_DEFAULT",
    }
    assert all(fields["host"].startswith("http://127.0.0.1:18790/") for fields in connections.values())
    assert sandbox_connections(StackSettings(home=tmp_path, sandbox=False)) == {}


def test_the_dump_connections_pin_the_stand_ins_md5s_kept_in_the_home(tmp_path: Path) -> None:
    """The stand-ins' archives are not the published ones, so their md5s are pinned as an operator pins a
    mirror's; built once into the stack's home (`airflow_env` runs for every Airflow command) and read back."""
    settings = StackSettings(home=tmp_path, sandbox_port=18790)
    library = PhotoLibrary()
    expected = {"imagenet": imagenet.archive_md5s(library), "coco": coco.archive_md5s(library)}
    connections = {name: json.loads(value) for name, value in sandbox_connections(settings).items()}
    assert connections["AIRFLOW_CONN_IMAGENET_DEFAULT"]["extra"] == {"md5": expected["imagenet"]}
    assert connections["AIRFLOW_CONN_COCO_DEFAULT"]["extra"] == {"md5": expected["coco"]}

    kept = tmp_path / "sandbox" / "dump-md5.json"
    assert json.loads(kept.read_text()) == expected
    kept.write_text(json.dumps({**expected, "coco": {"val2017.zip": "0" * 32}}))
    again = json.loads(sandbox_connections(settings)["AIRFLOW_CONN_COCO_DEFAULT"])
    assert again["extra"] == {"md5": {"val2017.zip": "0" * 32}}  # read back, not built again


def test_airflow_listens_on_loopback_with_a_fixed_login(tmp_path: Path) -> None:
    env = airflow_env(StackSettings(home=tmp_path, airflow_port=18080, airflow_password="secret"))
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    passwords = json.loads(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    assert passwords == {"admin": "secret"}
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0, "shared secrets must be private to the owner"


def test_airflow_keeps_its_metadata_in_the_private_postgresql(tmp_path: Path) -> None:
    """SQLite cannot take a backfill while the scheduler runs: Airflow refuses it, or its scheduler crashes."""
    env = airflow_env(StackSettings(home=tmp_path, postgres_port=15433))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://postgres@127.0.0.1:15433/airflow"
