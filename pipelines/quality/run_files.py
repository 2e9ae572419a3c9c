"""Where one validation run keeps its files in the lake, all under `reports/quality/<run>/`:

| key | written by | holds |
|---|---|---|
| `facts/plan.json` | the plan | how many images the batch holds and in how many groups |
| `facts/pending-NNNNN.parquet` | the plan | one group's images: key, first sighting, sources, license verdict |
| `facts/facts-NNNNN.parquet` | that group's extraction | the same rows with every measured fact |
| `summary.json`, `index.html`, `rejected.json` | the judging | the counts, the report, every reject (`report.py`) |

Facts go to Parquet in the lake rather than to a catalog table: they are the run's working data, read once by
the judging task and then kept beside the report for whoever asks why an image was rejected; the catalog keeps
only the verdicts. One file per group means a group's retry rewrites its own file and nothing else, and the
file appears whole or not at all (`ObjectStore.open_write`).
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import ObjectStore


def report_prefix(run_id: str) -> str:
    """`reports/quality/<run>/`, the run id made safe as one key segment (Airflow ids hold ':' and '+')."""
    segment = re.sub(r"[^A-Za-z0-9._+=:-]", "_", run_id).lstrip(".") or "_"
    return f"reports/quality/{segment}/"


def summary_key(run_id: str) -> str:
    return f"{report_prefix(run_id)}summary.json"


def plan_key(run_id: str) -> str:
    return f"{report_prefix(run_id)}facts/plan.json"


def pending_key(run_id: str, group: int) -> str:
    return f"{report_prefix(run_id)}facts/pending-{group:05d}.parquet"


def facts_key(run_id: str, group: int) -> str:
    return f"{report_prefix(run_id)}facts/facts-{group:05d}.parquet"


def write_frame(store: ObjectStore, key: str, frame: pd.DataFrame) -> None:
    with store.open_write(key) as sink:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")


def read_frame(store: ObjectStore, key: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(store.get(key))).to_pandas()
