"""A small client for Airflow's REST API v2: what the demo and the integration tests need to drive DAGs
through the real API server, exactly as a person would from the UI.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime
from typing import Any

import requests

from embedded.polling import wait_until

logger = logging.getLogger(__name__)

FINISHED_STATES = frozenset({"success", "failed"})
LOCKED_RETRIES = 8


class AirflowError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = requests.Session()
        answer = self._http.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if not answer.ok:
            raise AirflowError(f"login to {self.base_url} failed: HTTP {answer.status_code} {answer.text[:200]}")
        self._http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(LOCKED_RETRIES):
            answer = self._http.request(method, f"{self.base_url}/api/v2/{path}", timeout=30, **kwargs)
            # On SQLite the API answers 503 while the scheduler holds the database lock; it passes.
            if answer.status_code != 503 or attempt == LOCKED_RETRIES - 1:
                break
            time.sleep(1 + attempt)
        if not answer.ok:
            raise AirflowError(f"{method} {path}: HTTP {answer.status_code} {answer.text[:300]}", answer.status_code)
        return answer.json() if answer.content else None

    def dag_ids(self) -> list[str]:
        """Every DAG the API server lists (paused or not), all pages of it."""
        found: list[str] = []
        while True:
            page = self._call("GET", "dags", params={"limit": 100, "offset": len(found), "order_by": "dag_id"})
            found += [dag["dag_id"] for dag in page["dags"]]
            if not page["dags"] or len(found) >= page["total_entries"]:
                return found

    def task_ids(self, dag_id: str) -> list[str]:
        return [task["task_id"] for task in self._call("GET", f"dags/{dag_id}/tasks")["tasks"]]

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180) -> None:
        """Wait until the dag-processor has parsed `dag_id` and reports no import error for it."""

        def parsed() -> bool:
            try:
                self._call("GET", f"dags/{dag_id}")
                return True
            except AirflowError:
                return False

        def import_errors() -> str:
            return f"DAG {dag_id} did not appear; import errors: {self._call('GET', 'importErrors')['import_errors']}"

        wait_until(parsed, timeout_s=timeout_s, interval_s=2, what=import_errors)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self._call("PATCH", f"dags/{dag_id}", json={"is_paused": True})

    def rerun(self, dag_id: str, run_id: str, timeout_s: float = 600) -> str:
        """Clear every task of a finished run, as "Clear" in the UI does, and wait for it to run again:
        the same run, so the same interval and params. Returns the new final state."""
        self._call("POST", f"dags/{dag_id}/dagRuns/{run_id}/clear", json={"dry_run": False})
        return self.wait_for_run(dag_id, run_id, timeout_s)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self._call("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        logger.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return run["dag_run_id"]

    def backfill(
        self, dag_id: str, from_date: datetime, to_date: datetime, conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a backfill (the scheduler runs it), its runs with params `conf`; returns the backfill record.

        Airflow allows one running backfill per DAG: one already running for the same days is returned
        as it is (a create retried after a lock may have gone through), another is waited for first.
        """
        self._settle_scheduled_run(dag_id)
        # "completed": a rerun of the same days is run again (and, being idempotent, adds nothing).
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "reprocess_behavior": "completed",
            "dag_run_conf": conf or {},
        }
        for _ in range(LOCKED_RETRIES):
            running = [
                backfill
                for backfill in self._call("GET", "backfills", params={"dag_id": dag_id})["backfills"]
                if backfill["completed_at"] is None
            ]
            for backfill in running:
                if (datetime.fromisoformat(backfill["from_date"]), datetime.fromisoformat(backfill["to_date"])) == (
                    from_date,
                    to_date,
                ):
                    return backfill
                self.wait_for_backfill(backfill)
            try:
                backfill = self._call("POST", "backfills", json=body)
            except AirflowError as error:
                if error.status != 409:
                    raise
                continue
            logger.info("backfill %s of %s from %s to %s created", backfill["id"], dag_id, from_date, to_date)
            return backfill
        raise AirflowError(f"could not create a backfill of {dag_id}: another one keeps running")

    def _settle_scheduled_run(self, dag_id: str, timeout_s: float = 30) -> None:
        """Wait for the run the scheduler creates when a time-scheduled DAG is unpaused (its latest
        interval). Creating a backfill over that same day while the scheduler inserts it races on the
        (dag_id, logical_date) key and can crash the scheduler."""
        with contextlib.suppress(TimeoutError):  # a DAG whose latest interval has no run yet: nothing to race
            wait_until(lambda: self.runs(dag_id, run_type="scheduled", limit=1), timeout_s=timeout_s)

    def wait_until_idle(self, dag_id: str, timeout_s: float = 600) -> None:
        """Wait until no run of `dag_id` is queued or running, the scheduled run that unpausing starts
        included: what a run adds can then be told apart from what the runs around it added."""
        self._settle_scheduled_run(dag_id)

        def unfinished() -> list[str]:
            return [run["dag_run_id"] for run in self.runs(dag_id) if run["state"] not in FINISHED_STATES]

        wait_until(
            lambda: not unfinished(), timeout_s=timeout_s, interval_s=2, what=lambda: f"{dag_id} runs {unfinished()}"
        )

    def runs_between(self, dag_id: str, from_date: datetime, to_date: datetime, run_type: str) -> list[dict[str, Any]]:
        """Runs of `dag_id` of one type whose logical dates lie in [from_date, to_date], oldest first."""
        params = {
            "logical_date_gte": from_date.isoformat(),
            "logical_date_lte": to_date.isoformat(),
            "run_type": run_type,
            "order_by": "logical_date",
            "limit": 100,
        }
        return self._call("GET", f"dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def wait_for_backfill(self, backfill: dict[str, Any], timeout_s: float = 900) -> list[dict[str, Any]]:
        """Poll until the backfill is complete and all its runs finished; returns its runs."""
        path = f"backfills/{backfill['id']}"

        def its_runs() -> list[dict[str, Any]]:
            return self.runs_between(
                backfill["dag_id"],
                datetime.fromisoformat(backfill["from_date"]),
                datetime.fromisoformat(backfill["to_date"]),
                run_type="backfill",
            )

        def finished_runs() -> list[dict[str, Any]] | None:
            completed, runs = self._call("GET", path)["completed_at"], its_runs()
            return runs if completed and all(run["state"] in FINISHED_STATES for run in runs) else None

        def states() -> str:
            return f"backfill {backfill['id']} not finished: {[run['state'] for run in its_runs()]}"

        return wait_until(finished_runs, timeout_s=timeout_s, interval_s=3, what=states)

    def runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Runs of `dag_id`, newest first, filtered as the API allows (e.g. state="failed")."""
        params = {"order_by": "-run_after", "limit": 100, **filters}
        return self._call("GET", f"dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._call("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]

    def fail_run(self, dag_id: str, run_id: str) -> None:
        """Mark an unfinished run failed, as "Mark as failed" in the UI does: its running tasks are stopped
        and nothing more of it is scheduled. A finished run is left as it is."""
        if self.run_state(dag_id, run_id) not in FINISHED_STATES:
            self._call("PATCH", f"dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 600) -> str:
        """Poll until the run finishes; returns its final state."""

        def final_state() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in FINISHED_STATES else None

        return wait_until(
            final_state,
            timeout_s=timeout_s,
            interval_s=2,
            what=lambda: f"{dag_id} run {run_id} still {self.run_state(dag_id, run_id)}",
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The text of one task attempt's log."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        answer = self._call("GET", path, params={"full_content": "true"}, headers={"Accept": "application/json"})
        content = answer.get("content", "")
        if isinstance(content, list):  # structured log lines
            return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in content)
        return str(content)

    def set_pool_slots(self, pool: str, slots: int) -> None:
        """How many tasks of `pool` may run at once (`default_pool` holds every task that names none)."""
        self._call("PATCH", f"pools/{pool}", params={"update_mask": "slots"}, json={"name": pool, "slots": slots})

    def put_connection(self, connection_id: str, **fields: Any) -> None:
        """Create or replace a connection (stored in Airflow's metadata database)."""
        body = {"connection_id": connection_id, **fields}
        self.delete_connection(connection_id)
        self._call("POST", "connections", json=body)

    def delete_connection(self, connection_id: str) -> None:
        """Remove a connection; one that does not exist is already gone."""
        with contextlib.suppress(AirflowError):
            self._call("DELETE", f"connections/{connection_id}")

    def start(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger `dag_id` once it is parsed, unpausing it (a paused DAG's runs stay queued); the run id."""
        self.wait_for_dag(dag_id)
        self.unpause(dag_id)
        return self.trigger(dag_id, conf)

    def run(self, dag_id: str, conf: dict[str, Any] | None = None, timeout_s: float = 600) -> tuple[str, str]:
        """Trigger `dag_id` (unpausing it) and wait for the run to end: (run id, final state)."""
        run_id = self.start(dag_id, conf)
        return run_id, self.wait_for_run(dag_id, run_id, timeout_s)

    def asset_events(self, **filters: Any) -> list[dict[str, Any]]:
        """Asset events, filtered as the API allows (source_dag_id, source_run_id, asset_id...)."""
        return self._call("GET", "assets/events", params=filters)["asset_events"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self._call("GET", path, params={"deserialize": "true"})["value"]
