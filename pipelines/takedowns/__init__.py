"""Takedowns: a photographer asks that their photo be removed, and Colorflow removes it and says which
datasets and models it reached.

| file | step |
|---|---|
| `request.py` | what a takedown names and which images that is (`TakedownRequest`, `matching_images`) |
| `impact.py` | the dataset versions, training runs and model versions it reached (`assess`) |
| `apply.py` | the takedown applied: withdrawn, bytes deleted, models tagged, report written (`apply_takedown`) |
| `report.py` | the impact report in the lake, as JSON and HTML, and in a few lines (`describe`) |
| `cli.py` | `colorflow takedown` |

Ingestion refuses what was withdrawn (`pipelines.raw_zone.RawZoneWriter`), and the stitch takes only
accepted images, so a withdrawn one never enters another dataset version.
"""

from pipelines.takedowns.apply import TakedownOutcome, apply_takedown
from pipelines.takedowns.report import describe
from pipelines.takedowns.request import TakedownRequest

__all__ = ["TakedownOutcome", "TakedownRequest", "apply_takedown", "describe"]
