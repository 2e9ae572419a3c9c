"""The quality gate: which raw images may be trained on, decided with Great Expectations.

A colorizer learns whatever it is fed: gray photos teach it to leave things gray, broken files crash
training, duplicates leak between splits. The batch of pending images (`pending_images`) is cut into groups
(`plan_batch`), each measured by a task of its own (`extract_group`, `pipelines.image_facts`: the
decode-heavy part); one task then reads every group's facts back (`judge_batch`), adds what only the batch
and the catalog know (exact or near duplicates; whether a sighting's license is allowed was settled by the
plan), and two Great Expectations suites, kept as JSON in `expectations/`, judge the table:

- `image_rows.json`, one row per image: every failed expectation rejects the images it lists, with a reason
  a person can read, written in the expectation's `meta` and filled in from the image's facts.
- `image_batch.json`, one row per source and one for the whole batch: a failure raises `BatchRejected`, so
  the task fails and on-call is paged, because a source that is mostly undecodable or mostly rejected
  has usually changed (login pages, a new error format) rather than started sending worse photos.

`apply_verdicts` records the verdicts in the catalog and copies rejected bytes to `quarantine/`;
`judge_batch` leaves a report under `reports/quality/<run>/`; `validate_batch` runs the three steps in one
process. Row verdicts are recorded even when the batch fails: an HTML page is not a photo whatever else the
source sent, and keeping the verdicts makes the run's outcome final.

Each step has its file:

| file | step |
|---|---|
| `pending.py` | the images waiting for a verdict, with every sighting (`pending_images`, page by page) |
| `groups.py` | the batch cut into groups, each measured by a task of its own (`plan_batch`, `extract_group`) |
| `run_files.py` | where a run keeps its plan, its groups' facts (Parquet) and its report in the lake |
| `facts.py` | one row of facts per image: license verdict, measurements, duplicates (`facts_table`) |
| `duplicates.py` | exact and near duplicates of images kept before them (`mark_duplicates`) |
| `suites.py` | the suites run on the tables: row verdicts in chunks, the per-source table, batch checks |
| `verdicts.py` | what each check said of each image, recorded in the catalog (`apply_verdicts`) |
| `validate.py` | judging the measured batch, once per run id (`judge_batch`); the whole stage (`validate_batch`) |
| `report.py` | the report, one self-contained HTML page (`write_report`) |

Reruns change nothing: a run's plan and measured groups are kept and reused, judged images are no longer
pending, catalog writes are upserts that keep existing rows, quarantine copies are skipped when present, and a
run id that was already validated returns the summary it recorded (raising `BatchRejected` again if the batch
had failed, so a retry stays red).

    summary = validate_batch(open_store(), open_catalog(), run_id="manual__1")
    print(summary["accepted"], summary["rejected"], summary["by_reason"])

`great_expectations` is imported inside `suites.run_suite`: it takes seconds to import.
"""

from __future__ import annotations

from pipelines.quality.groups import extract_group, plan_batch
from pipelines.quality.pending import pending_images
from pipelines.quality.run_files import report_prefix
from pipelines.quality.validate import BatchRejected, judge_batch, validate_batch

__all__ = [
    "BatchRejected",
    "extract_group",
    "judge_batch",
    "pending_images",
    "plan_batch",
    "report_prefix",
    "validate_batch",
]
