"""
### ingest_imagenet

Takes a slice of ImageNet: an Imagenette archive (`imagenette2-160`, a .tgz of `{train,val}/<wnid>/*.JPEG`)
or the ILSVRC2012 tars (a train tar of per-class tars, a flat val tar). The archive is downloaded with
HTTP Range resume into a fixed work folder and verified before anything is registered, against the md5
pinned in the connection or else the published archive's (torchvision's);
members are read as a stream, never unpacked to disk, and every member path is checked (links, devices,
`..` and absolute paths refuse the archive). CMYK JPEGs and PNGs named `.JPEG` are kept byte for byte.

A `plan` task downloads and verifies every archive once, then divides the run into `parts` mapped `ingest`
tasks: ILSVRC's tars by ranges of their members (groups of class tars for train), Imagenette by split. A
corrupt class tar fails only the part that reads it, naming it; a retried part adds nothing twice.

Connection `imagenet_default`: host = dump host base URL. Emits `raw_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag

from colorflow_alerts import task_defaults
from colorflow_ingest import ingest_part, plan_dump, summarize
from pipelines.fan_out import DUMP_PARTS


@dag(
    dag_id="ingest_imagenet",
    schedule="@monthly",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "ingest", "dump"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "connection_id": Param("imagenet_default", type="string", description="Airflow connection to use."),
        "archive": Param(
            "imagenette2-160", type="string", description="imagenette2, imagenette2-320/-160 or ILSVRC2012."
        ),
        "splits": Param([], type="array", description="Splits to take (train, val); empty: all."),
        "classes": Param([], type="array", description="WordNet ids to take (e.g. n01440764); empty: all."),
        "max_images": Param(None, type=["null", "integer"], minimum=1, description="At most this many images."),
        "parts": Param(DUMP_PARTS, type="integer", minimum=1, description="Mapped tasks the slice is divided into."),
    },
)
def ingest_imagenet() -> None:
    summarize(ingest_part.partial(source="imagenet").expand(part=plan_dump(source="imagenet")))


ingest_imagenet()
