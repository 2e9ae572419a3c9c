"""
### ingest_instagram

Collects color photos posted under hashtags in the run's data interval. The default mode is the official
Instagram Graph API hashtag search (hashtag ids cached in the lake, the 30-unique-hashtags-per-7-days
budget respected). The `browser` mode renders and scrolls the hashtag pages in headless Chromium with
the operator's session cookie and parses them with BeautifulSoup; it honours robots.txt unless the
connection records the operator's permission (`robots_permission`), and a login wall fails the run.

Connection `instagram_default`: host = Graph API base URL, password = access token, extra = `user_id`,
and for browser mode `web_url`, `session_cookie`, `robots_permission`. Emits `raw_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from colorflow_alerts import fail_fast, task_defaults
from colorflow_context import data_window
from colorflow_ingest import connect, store_photos, summarize


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
    @task
    def discover() -> list[list[dict]]:
        from pipelines.sources.web import SourceUnavailable, batches
        from pipelines.storage import open_store

        context = get_current_context()
        params = context["params"]
        with fail_fast(SourceUnavailable):
            instagram, config, http = connect("instagram", params["connection_id"])
            window = data_window(context)
            if params["mode"] == "browser":
                found = instagram.discover_browser(
                    config, http, window, params["hashtags"], params["limit"], params["max_scrolls"]
                )
            else:
                found = instagram.discover_graph(
                    config,
                    http,
                    window,
                    params["hashtags"],
                    params["limit"],
                    state_store=open_store(),
                    include_top=params["include_top_media"],
                )
            return batches(found, params["batch_size"])

    summarize(store_photos.partial(source="instagram").expand(batch=discover()))


ingest_instagram()
