"""
### ingest_instagram

Collects color photos posted under hashtags in the run's data interval. The default mode is the official
Instagram Graph API hashtag search (hashtag ids cached in the lake, the 30-unique-hashtags-per-7-days
budget respected); every image of an album (CAROUSEL_ALBUM) is stored as its own photo. The `browser` mode
renders and scrolls the hashtag pages in headless Chromium with the operator's session cookie: post links
come from the grid, and time, owner and full-size URL from the JSON the page itself loads (read from the
browser's network events), or from the post's own page. It honours robots.txt unless the connection
records the operator's permission (`robots_permission`), and a login wall fails the run.

Connection `instagram_default`: host = Graph API base URL, password = access token, extra = `user_id`,
and for browser mode `web_url`, `session_token`, `robots_permission`. Emits `raw_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from colorflow_alerts import task_defaults
from colorflow_ingest import discover_photos, store_photos, summarize


@dag(
    dag_id="ingest_instagram",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),  # each run covers [D, D+1)
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "ingest", "web"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "connection_id": Param("instagram_default", type="string", description="Airflow connection to use."),
        "hashtags": Param(["cat", "flower", "coffee", "space"], type="array", description="Hashtags, without #."),
        "mode": Param("graph", enum=["graph", "browser"], description="Graph API, or a real browser."),
        "include_top_media": Param(
            True, type="boolean", description="Graph mode: also read top_media, which reaches past 24 hours."
        ),
        "limit": Param(200, type="integer", minimum=1, description="At most this many photos per run."),
        "max_scrolls": Param(30, type="integer", minimum=1, description="Browser mode: scrolls per page."),
        "batch_size": Param(20, type="integer", minimum=1, description="Photos per mapped task."),
    },
)
def ingest_instagram() -> None:
    summarize(store_photos.partial(source="instagram").expand(batch=discover_photos("instagram")))


ingest_instagram()
