"""The Airflow Assets that chain Colorflow's DAGs: each stage publishes one, the next is scheduled by it."""

from __future__ import annotations

from airflow.sdk import Asset

RAW_IMAGES = Asset(name="raw_images", uri="colorflow://lake/raw", group="colorflow")
VALIDATED_IMAGES = Asset(name="validated_images", uri="colorflow://catalog/verdicts", group="colorflow")
# Each event's extra names the dataset version it published: {"version": ..., "samples": ...}.
LAB_DATASET = Asset(name="lab_dataset", uri="colorflow://lake/datasets", group="colorflow")
