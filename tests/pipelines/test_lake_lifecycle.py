"""The lake's lifecycle rules: on a bucket of a real S3-protocol server they read back as applied, under the
lake's prefix, beside the bucket's other rules, with the days of the settings; on a folder the housekeeping
deletes what they expire and nothing else, never a run's final checkpoint; and `colorflow lake lifecycle`
says what it applies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from pipelines.catalog import Catalog
from pipelines.lake_audit import audit_lake
from pipelines.lake_lifecycle import INTERMEDIATE_CHECKPOINT_TAGS, apply_rules, expire, keep_house, lake_rules
from pipelines.settings import LifecycleSettings, Settings
from pipelines.storage import FileStore, S3Store

COLORFLOW = Path(sys.executable).parent / "colorflow"
DAY = 24 * 3600
OTHER_RULE = {"ID": "mlflow-artifacts", "Status": "Enabled", "Filter": {"Prefix": "mlflow/"}, "Expiration": {"Days": 5}}


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def read_back(s3_endpoint: str, bucket: str) -> list[dict]:
    return boto3.client("s3", endpoint_url=s3_endpoint).get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_the_rules_read_back_from_the_bucket_as_applied(s3_endpoint: str, bucket: str) -> None:
    # moto keeps GLACIER_IR, tag filters and the multipart rule as AWS does; it checks less than AWS, though (it
    # keeps a storage class named TAPE, or STANDARD_IA after one day), so AWS's own refusals are not tried here.
    store = S3Store(bucket, prefix="colorflow", endpoint_url=s3_endpoint)
    applied = apply_rules(store, lake_rules(LifecycleSettings()))

    rules = {rule["ID"]: rule for rule in read_back(s3_endpoint, bucket)}
    assert applied == list(rules.values())
    assert rules["colorflow:colorflow/raw-tiers"] == {
        "ID": "colorflow:colorflow/raw-tiers",
        "Status": "Enabled",
        "Filter": {"Prefix": "colorflow/raw/"},
        "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}, {"Days": 180, "StorageClass": "GLACIER_IR"}],
    }
    assert rules["colorflow:colorflow/quarantine"]["Expiration"] == {"Days": 90}
    assert rules["colorflow:colorflow/reports"]["Filter"] == {"Prefix": "colorflow/reports/"}
    assert rules["colorflow:colorflow/reports"]["Expiration"] == {"Days": 365}
    checkpoints = rules["colorflow:colorflow/intermediate-checkpoints"]
    assert checkpoints["Filter"] == {
        "And": {"Prefix": "colorflow/checkpoints/", "Tags": [{"Key": "colorflow-retention", "Value": "intermediate"}]}
    }
    assert checkpoints["Expiration"] == {"Days": 30}
    uploads = rules["colorflow:colorflow/unfinished-uploads"]
    assert uploads["Filter"] == {"Prefix": "colorflow/"} and uploads["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }

    assert apply_rules(store, lake_rules(LifecycleSettings())) == applied, "applying again changes nothing"
    assert read_back(s3_endpoint, bucket) == applied


def test_settings_change_the_days_and_the_bucket_keeps_its_other_rules(
    s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [OTHER_RULE]})
    store = S3Store(bucket, prefix="lake", endpoint_url=s3_endpoint)
    apply_rules(store, lake_rules(LifecycleSettings()))

    # What the compose stack sets for MinIO: no tiers, no rule for unfinished uploads.
    for name, value in {"QUARANTINE_DAYS": "10", "TIERS": "false", "UNFINISHED_UPLOAD_DAYS": "0"}.items():
        monkeypatch.setenv(f"COLORFLOW_LIFECYCLE_{name}", value)
    settings = Settings(home=tmp_path).lifecycle
    apply_rules(store, lake_rules(settings))

    rules = {rule["ID"]: rule for rule in read_back(s3_endpoint, bucket)}
    assert set(rules) == {
        "mlflow-artifacts",
        "colorflow:lake/quarantine",
        "colorflow:lake/reports",
        "colorflow:lake/intermediate-checkpoints",
    }
    assert rules["mlflow-artifacts"] == OTHER_RULE
    assert rules["colorflow:lake/quarantine"]["Expiration"] == {"Days": 10}


def test_a_lake_at_the_bucket_root_leaves_the_rules_of_a_lake_under_a_prefix(s3_endpoint: str, bucket: str) -> None:
    apply_rules(S3Store(bucket, prefix="lake", endpoint_url=s3_endpoint), lake_rules(LifecycleSettings()))
    at_root = S3Store(bucket, endpoint_url=s3_endpoint)
    assert keep_house(at_root, LifecycleSettings()) == {"rules applied": 5, "bucket rules": 10}

    rules = {rule["ID"]: rule for rule in read_back(s3_endpoint, bucket)}
    assert rules["colorflow:raw-tiers"]["Filter"] == {"Prefix": "raw/"}
    assert rules["colorflow:unfinished-uploads"]["Filter"] == {"Prefix": ""}
    assert rules["colorflow:lake/raw-tiers"]["Filter"] == {"Prefix": "lake/raw/"}


def written_days_ago(store: FileStore, key: str, days: float, data: bytes = b"bytes") -> str:
    store.put(key, data)
    moment = datetime.now(UTC).timestamp() - days * DAY
    os.utime(store.root / key, (moment, moment))
    return key


def test_folder_housekeeping_deletes_what_the_rules_expire_and_nothing_else(store: FileStore, catalog: Catalog) -> None:
    old_quarantine = written_days_ago(store, "quarantine/ab/old.jpg", 91)
    new_quarantine = written_days_ago(store, "quarantine/ab/new.jpg", 89)
    old_report = written_days_ago(store, "reports/quality/run-1/index.html", 366)
    new_report = written_days_ago(store, "reports/audit/run-2.json", 300)
    ancient_raw = written_days_ago(store, "raw/ab/" + "ab" * 32 + ".jpg", 1000)  # tiers only: a folder keeps it
    finished = [written_days_ago(store, f"checkpoints/finished/step-{step:08d}.pt", 40) for step in (100, 200, 300)]
    pointer = written_days_ago(
        store, "checkpoints/finished/latest.json", 40, json.dumps({"key": finished[-1]}).encode()
    )
    for key in finished[:-1]:  # what a run that trained all its steps tags (models.train)
        store.set_tags(key, INTERMEDIATE_CHECKPOINT_TAGS)
    young = written_days_ago(store, "checkpoints/young/step-00000100.pt", 20)
    store.set_tags(young, INTERMEDIATE_CHECKPOINT_TAGS)
    stopped = written_days_ago(store, "checkpoints/stopped/step-00000100.pt", 400)  # SIGTERM: never tagged
    stale_write = store.root / ".staging" / "1234-0123456789abcdef0123456789abcdef-elsewhere.part"
    stale_write.parent.mkdir(exist_ok=True)
    stale_write.write_bytes(b"half")
    os.utime(stale_write, (datetime.now(UTC).timestamp() - 8 * DAY,) * 2)
    rules = lake_rules(LifecycleSettings())
    everything = set(store.list())

    expected = {"quarantine": 1, "reports": 1, "intermediate-checkpoints": 2, "unfinished-uploads": 1}
    assert expire(store, rules, dry_run=True) == expected
    assert set(store.list()) == everything and stale_write.exists(), "a dry run deletes nothing"

    assert expire(store, rules) == expected
    assert set(store.list()) == {new_quarantine, new_report, ancient_raw, finished[-1], pointer, young, stopped}
    assert not stale_write.exists()
    assert {old_quarantine, old_report, *finished[:-1]}.isdisjoint(store.list())
    assert expire(store, rules) == dict.fromkeys(expected, 0), "a second pass finds nothing"
    # The tags of what is left are no lake objects: the audit finds the raw object with no image row, nothing more.
    assert [finding.subject for finding in audit_lake(store, catalog, grace=timedelta(0)).findings] == [ancient_raw]


def test_keep_house_on_a_folder_lake_does_the_expiries(store: FileStore) -> None:
    written_days_ago(store, "reports/audit/old.json", 20)
    assert keep_house(store, LifecycleSettings(reports_days=10))["reports"] == 1
    assert list(store.list()) == []


def colorflow(*args: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COLORFLOW), "lake", "lifecycle", *args],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_on_an_s3_lake_dry_runs_applies_and_shows(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    environment = {
        "COLORFLOW_HOME": str(tmp_path),
        "COLORFLOW_LAKE_URL": f"s3://{bucket}/lake",
        "COLORFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "COLORFLOW_LIFECYCLE_REPORTS_DAYS": "200",
    }
    shown = colorflow("--help", environment=environment)
    assert shown.returncode == 0, shown.stderr
    assert "--dry-run" in shown.stdout and "--show" in shown.stdout
    assert "reports/: deleted after 200 days" in shown.stdout, "the help ends with the rules of the settings"

    dry = colorflow("--dry-run", environment=environment)
    assert dry.returncode == 0, dry.stderr
    assert "nothing changed" in dry.stdout and '"Prefix": "lake/raw/"' in dry.stdout
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        read_back(s3_endpoint, bucket)

    applied = colorflow(environment=environment)
    assert applied.returncode == 0, applied.stderr
    assert f"applied to bucket {bucket}" in applied.stdout
    rules = read_back(s3_endpoint, bucket)
    assert {"Days": 200} in [rule.get("Expiration") for rule in rules]

    current = colorflow("--show", environment=environment)
    assert current.returncode == 0, current.stderr
    assert json.loads(current.stdout) == rules


def test_the_command_on_a_folder_lake_points_to_the_dag_and_expires_on_request(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lake")
    written_days_ago(store, "quarantine/ab/old.jpg", 100)
    environment = {"COLORFLOW_HOME": str(tmp_path)}

    told = colorflow(environment=environment)
    assert told.returncode == 0, told.stderr
    assert "lake_housekeeping" in told.stdout and "--expire-now" in told.stdout
    counted = colorflow("--expire-now", "--dry-run", environment=environment)
    assert "would delete: 1 by quarantine" in counted.stdout, counted.stdout + counted.stderr
    assert store.exists("quarantine/ab/old.jpg")

    done = colorflow("--expire-now", environment=environment)
    assert done.returncode == 0, done.stderr
    assert "deleted: 1 by quarantine" in done.stdout and not store.exists("quarantine/ab/old.jpg")
