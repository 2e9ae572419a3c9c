"""Look at the embedded stack's Airflow and MLflow UIs the way a person does, in headless Chromium, and keep a
screenshot of every page looked at.

The REST APIs say what must be there (every DAG, the tasks of a run, the newest training run and its metrics,
the champion); each check then waits until the rendered page shows it. That catches what API tests cannot:
a UI that does not load or log in, or a single-page app that renders without its data.

    python -m embedded screenshots              # against the stack of `make up`, into .colorflow/screenshots/

Checks, in order, each saving `<name>.png` whether it passes or not:
    airflow-login     the SimpleAuthManager login form takes the stack's user and opens the UI
    airflow-dags      the DAG list shows every DAG the API server knows (page by page if it paginates)
    airflow-run       a successful run's page (default: the newest of train_colorizer) shows the run as
                      Success, every task of the DAG with state Success, and each task's grid cell green
    mlflow-runs       the experiment's runs table lists its newest finished run with its validation metrics
    mlflow-registry   the registered model's page shows the alias (champion) on the version that holds it

The first check that does not see what it waits for raises `UICheckFailed`, naming what was missing and
the screenshot of what was on screen instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from embedded.airflow_api import AirflowClient, AirflowError
from embedded.settings import StackSettings
from models.registry import MODEL_NAME
from models.tracking import EXPERIMENT
from pipelines.browser import BrowserUnavailable, HeadlessChromium

logger = logging.getLogger(__name__)

DEFAULT_DAG = "train_colorizer"
DEFAULT_ALIAS = "champion"
# Wide enough for the MLflow runs table to show the metric columns beside its default ones.
WINDOW_SIZE = (1920, 1200)
WAIT_TIMEOUT_S = 30.0
POLL_S = 0.2
# Shown as columns of the MLflow runs table: the validation metrics a reader compares runs by.
SHOWN_METRICS = ("val_psnr", "val_ssim", "val_l1_ab")
# Airflow paints success oklch(0.47 0.2 149), about rgb(0, 120, 30); any clearly green colour passes.
GREEN_MARGIN = 48

# Airflow 3 UI
LOGIN_PATH = "/auth/login"
TABLE_VIEW_BUTTON = "button[aria-label='Show table view']"
NEXT_PAGE_BUTTON = "button[data-testid=next]"
NAV_SIDEBAR = "[data-testid=nav-sidebar]"
RUN_HEADER = "[data-testid=header-card]"
STATE_BADGE = "[data-testid=state-badge]"
TASK_ROWS = "tbody tr"
TASK_NAME_CELL = "td[data-testid=table-cell-task_display_name]"
TASK_STATE_CELL = "td[data-testid=table-cell-state]"
GRID_BADGE = "[data-testid=task-state-badge]"
ERROR_ALERT = ".chakra-alert__description"
# MLflow 3 UI
ASSISTANT_CLOSE = "button[data-component-id='mlflow.assistant.chat_panel.close']"
COLUMNS_DROPDOWN = "[data-testid=column-selection-dropdown]"
CSS_COLOR_TO_RGB = (
    "const context = document.createElement('canvas').getContext('2d');"
    "context.fillStyle = arguments[0]; context.fillRect(0, 0, 1, 1);"
    "return Array.from(context.getImageData(0, 0, 1, 1).data.slice(0, 3));"
)


@dataclass(frozen=True)
class Screenshot:
    check: str
    path: Path


class UICheckFailed(RuntimeError):
    """A page did not show what a check waited for; `screenshot` shows what it showed instead."""

    def __init__(self, check: str, problem: str, screenshot: Path | None) -> None:
        seen = f"screenshot of the page: {screenshot}" if screenshot else "no screenshot: the browser was gone"
        super().__init__(f"{check}: {problem} ({seen})")
        self.check, self.problem, self.screenshot = check, problem, screenshot


class _NotSeen(Exception):
    """Raised inside a check with what the page did not show."""


class _Session:
    """One browser session: waits that say what they waited for, and a screenshot per check."""

    def __init__(self, driver: Any, folder: Path, timeout_s: float) -> None:
        self.driver, self.folder, self.timeout_s = driver, folder, timeout_s
        self.screenshots: list[Screenshot] = []

    @contextlib.contextmanager
    def check(self, name: str) -> Iterator[None]:
        path = self.folder / f"{name}.png"
        try:
            yield
        except _NotSeen as error:
            problem = f"did not see {error}"
        except WebDriverException as error:
            problem = f"the browser failed: {(error.msg or repr(error)).splitlines()[0]}"
        except (AirflowError, MlflowException, requests.RequestException) as error:
            problem = f"the API failed: {error}"
        else:
            self.driver.save_screenshot(str(path))
            self.screenshots.append(Screenshot(name, path))
            logger.info("%s: seen, %s", name, path)
            return
        try:
            self.driver.save_screenshot(str(path))
        except WebDriverException:
            path = None
        raise UICheckFailed(name, problem, path) from None

    def wait(
        self,
        condition: Callable[[Any], Any],
        what: str | Callable[[], str],
        page_error: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """What `condition` returns once truthy; `what` (or what it returns, then) names it if it never is.
        `page_error` finds an error the page shows instead, which ends the wait at once."""

        def seen(driver: Any) -> Any:
            if page_error and (error := page_error(driver)):
                raise _NotSeen(f"{describe()}: the page shows the error {error!r}")
            return condition(driver)

        def describe() -> str:
            return what if isinstance(what, str) else what()

        try:
            # React replaces elements as data arrives: a stale one means "look again", not a failure.
            waiting = WebDriverWait(
                self.driver, self.timeout_s, poll_frequency=POLL_S, ignored_exceptions=[StaleElementReferenceException]
            )
            return waiting.until(seen)
        except TimeoutException:
            raise _NotSeen(f"{describe()} within {self.timeout_s:.0f} s") from None


def check_uis(
    settings: StackSettings,
    folder: Path | None = None,
    dag_id: str = DEFAULT_DAG,
    run_id: str | None = None,
    experiment: str = EXPERIMENT,
    model: str = MODEL_NAME,
    alias: str = DEFAULT_ALIAS,
    timeout_s: float = WAIT_TIMEOUT_S,
) -> list[Screenshot]:
    """Run every check against the stack of `settings`; screenshots go to `folder` (default
    `<home>/screenshots/`). `run_id` None checks the newest successful run of `dag_id`."""
    folder = folder or settings.home / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    with HeadlessChromium(window_size=WINDOW_SIZE) as driver:
        session = _Session(driver, folder, timeout_s)
        airflow = _airflow_login(session, settings)
        _airflow_dags(session, settings.airflow_url, airflow)
        _airflow_run(session, settings.airflow_url, airflow, dag_id, run_id)
        mlflow = MlflowClient(settings.mlflow_tracking_uri)
        _mlflow_runs(session, settings.mlflow_tracking_uri, mlflow, experiment)
        _mlflow_registry(session, settings.mlflow_tracking_uri, mlflow, model, alias)
    return session.screenshots


def report(settings: StackSettings, **options: Any) -> int:
    """Run the checks and print each screenshot's path, or the failure without a traceback; an exit code."""
    try:
        screenshots = check_uis(settings, **options)
    except (UICheckFailed, BrowserUnavailable) as error:
        print(f"UI check failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"UI checks passed; screenshots in {screenshots[0].path.parent}:")
    for screenshot in screenshots:
        print(f"  {screenshot.check:<16} {screenshot.path}")
    return 0


# -- Airflow ---------------------------------------------------------------------------------------------------


def _airflow_error(driver: Any) -> str | None:
    """The error an Airflow page shows in place of its content: its alerts begin with the HTTP status."""
    for alert in driver.find_elements(By.CSS_SELECTOR, ERROR_ALERT):
        text = " ".join(alert.text.split())
        if re.match(r"\d{3} ", text):
            return text
    return None


def _airflow_login(session: _Session, settings: StackSettings) -> AirflowClient:
    """Sign in through the login page; returns an API client signed in with the same credentials, which
    the later checks ask what the pages must show."""
    driver = session.driver
    with session.check("airflow-login"):
        driver.get(f"{settings.airflow_url}/")  # the UI sends a visitor without a session to its login page
        username = session.wait(EC.element_to_be_clickable((By.NAME, "username")), "the Airflow login form")
        username.send_keys(settings.airflow_username)
        driver.find_element(By.NAME, "password").send_keys(settings.airflow_password)
        session.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]")), "the Sign in button").click()
        session.wait(
            lambda browser: (
                LOGIN_PATH not in browser.current_url and browser.find_elements(By.CSS_SELECTOR, NAV_SIDEBAR)
            ),
            f"the Airflow UI after signing in as {settings.airflow_username}",
            _airflow_error,
        )
        return AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)


def _dag_ids_on_page(driver: Any) -> list[str]:
    """DAG ids linked from the rows of the DAG list (the links' targets, not display names)."""
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('tbody a[href^=\"/dags/\"]'), a => a.getAttribute('href'))"
    )
    return [href.split("/")[2] for href in hrefs if href.count("/") == 2]


def _airflow_dags(session: _Session, airflow_url: str, airflow: AirflowClient) -> None:
    driver = session.driver
    with session.check("airflow-dags"):
        expected = set(airflow.dag_ids())
        driver.get(f"{airflow_url}/dags")
        # The table view fits many DAGs per screen; the card view a handful.
        session.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, TABLE_VIEW_BUTTON)), "the DAG list").click()
        page = session.wait(_dag_ids_on_page, "rows in the DAG list", _airflow_error)
        shown = set(page)
        while not expected <= shown:
            next_page = driver.find_elements(By.CSS_SELECTOR, NEXT_PAGE_BUTTON)
            if not next_page or not next_page[0].is_enabled():
                missing = ", ".join(sorted(expected - shown))
                raise _NotSeen(f"DAGs {missing} in the DAG list (it shows {', '.join(sorted(shown))})")
            next_page[0].click()
            page = session.wait(
                lambda browser, before=page: (now := _dag_ids_on_page(browser)) and now != before and now,
                "the next page of the DAG list",
            )
            shown |= set(page)


def _rgb(driver: Any, element: Any) -> tuple[int, int, int]:
    """An element's background colour as RGB, whatever CSS colour syntax the page styles it with."""
    return tuple(driver.execute_script(CSS_COLOR_TO_RGB, element.value_of_css_property("background-color")))


def _is_green(rgb: tuple[int, int, int]) -> bool:
    red, green, blue = rgb
    return green - max(red, blue) >= GREEN_MARGIN


def _task_states(driver: Any) -> dict[str, list[str]]:
    """The state shown for each task in the run's task instance table (several rows for a mapped task)."""
    states: dict[str, list[str]] = {}
    for row in driver.find_elements(By.CSS_SELECTOR, TASK_ROWS):
        names = row.find_elements(By.CSS_SELECTOR, TASK_NAME_CELL)
        shown = row.find_elements(By.CSS_SELECTOR, TASK_STATE_CELL)
        if names and shown:
            states.setdefault(names[0].text.strip(), []).append(shown[0].text.strip())
    return states


def _airflow_run(session: _Session, airflow_url: str, airflow: AirflowClient, dag_id: str, run_id: str | None) -> None:
    driver = session.driver
    with session.check("airflow-run"):
        if run_id is None:
            newest = airflow.runs(dag_id, state="success", limit=1)
            if not newest:
                driver.get(f"{airflow_url}/dags/{quote(dag_id)}/runs")
                raise _NotSeen(f"a successful run of {dag_id}: it has none")
            run_id = newest[0]["dag_run_id"]
        tasks = airflow.task_ids(dag_id)
        driver.get(f"{airflow_url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}")

        def run_header(browser: Any) -> str | None:
            headers = browser.find_elements(By.CSS_SELECTOR, RUN_HEADER)
            if not headers or run_id not in headers[0].text:
                return None
            badges = headers[0].find_elements(By.CSS_SELECTOR, STATE_BADGE)
            return badges[0].text.strip() if badges and badges[0].text.strip() else None

        state = session.wait(run_header, f"the page of run {run_id} of {dag_id}", _airflow_error)
        if state != "Success":
            raise _NotSeen(f"run {run_id} of {dag_id} marked Success (the page says {state})")

        def all_succeeded(browser: Any) -> bool:
            states = _task_states(browser)
            return all(states.get(task) and set(states[task]) == {"Success"} for task in tasks)

        session.wait(
            all_succeeded,
            lambda: f"tasks {', '.join(tasks)} of {dag_id} all Success (the page shows {_task_states(driver)})",
            _airflow_error,
        )

        def grid_colours(browser: Any) -> dict[str, tuple[int, int, int] | None]:
            colours = {}
            for task in tasks:
                badges = browser.find_elements(By.CSS_SELECTOR, f"[id='grid-{run_id}-{task}'] {GRID_BADGE}")
                colours[task] = _rgb(browser, badges[0]) if badges else None
            return colours

        session.wait(
            lambda browser: all(colour and _is_green(colour) for colour in grid_colours(browser).values()),
            lambda: f"the grid cells of {', '.join(tasks)} green (their RGB colours: {grid_colours(driver)})",
        )


# -- MLflow ----------------------------------------------------------------------------------------------------


def _close_assistant(driver: Any) -> None:
    """MLflow opens its assistant panel on a first visit, over a third of the page."""
    for button in driver.find_elements(By.CSS_SELECTOR, ASSISTANT_CLOSE):
        with contextlib.suppress(WebDriverException):
            button.click()


def _show_metric_columns(session: _Session, metrics: list[str]) -> None:
    """Add the metrics as columns of the runs table, through its Columns menu, as a reader would."""
    session.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, COLUMNS_DROPDOWN)), "the Columns menu").click()
    search = session.wait(
        lambda browser: (
            browser.switch_to.active_element.get_attribute("placeholder") == "Search columns"
            and browser.switch_to.active_element
        ),
        "the column search box",
    )
    for metric in metrics:
        search.send_keys(Keys.CONTROL, "a")
        search.send_keys(metric)
        entry = f"//span[contains(@class, 'tree-title') and normalize-space(.) = '{metric}']"
        session.wait(EC.element_to_be_clickable((By.XPATH, entry)), f"metric {metric} in the Columns menu").click()
    search.send_keys(Keys.ESCAPE)


def _mlflow_runs(session: _Session, mlflow_url: str, mlflow: MlflowClient, experiment: str) -> None:
    driver = session.driver
    with session.check("mlflow-runs"):
        driver.get(f"{mlflow_url}/#/experiments")  # fails at once if the server is down; the API would retry
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            raise _NotSeen(f"experiment {experiment}: MLflow has none of that name")
        newest = mlflow.search_runs(
            [found.experiment_id], "attributes.status = 'FINISHED'", order_by=["start_time DESC"], max_results=1
        )
        driver.get(f"{mlflow_url}/#/experiments/{found.experiment_id}/runs?workflowType=machine_learning")
        if not newest:
            raise _NotSeen(f"a finished run in experiment {experiment}: it has none")
        run = newest[0]
        row = f"[role=row][row-id='{run.info.run_id}']"
        session.wait(
            EC.visibility_of_element_located((By.CSS_SELECTOR, row)),
            f"run {run.info.run_name} ({run.info.run_id}) in the runs table of experiment {experiment}",
        )
        _close_assistant(driver)
        metrics = [name for name in SHOWN_METRICS if name in run.data.metrics]
        if not metrics:
            raise _NotSeen(f"metrics {', '.join(SHOWN_METRICS)} of run {run.info.run_id}: it logged none of them")
        _show_metric_columns(session, metrics)
        for metric in metrics:
            value = run.data.metrics[metric]
            cell = f"{row} [col-id='metrics.`{metric}`']"

            def shows_value(browser: Any, cell: str = cell, value: float = value) -> bool:
                cells = browser.find_elements(By.CSS_SELECTOR, cell)
                text = cells[0].text.strip() if cells else ""
                return bool(re.fullmatch(r"-?[\d.]+(e-?\d+)?", text)) and math.isclose(float(text), value, rel_tol=1e-4)

            session.wait(shows_value, f"{metric} = {value:.4g} of run {run.info.run_name} in the runs table")


def _mlflow_registry(session: _Session, mlflow_url: str, mlflow: MlflowClient, model: str, alias: str) -> None:
    driver = session.driver
    with session.check("mlflow-registry"):
        driver.get(f"{mlflow_url}/#/models/{quote(model)}")
        versions = f"a[href^='#/models/{quote(model)}/versions/']"
        session.wait(EC.presence_of_element_located((By.CSS_SELECTOR, versions)), f"the versions of model {model}")
        _close_assistant(driver)
        try:
            version = mlflow.get_model_version_by_alias(model, alias).version
        except MlflowException:
            raise _NotSeen(f"alias @{alias} on a version of model {model}: the registry has no such alias") from None
        row = f"//*[@role='row'][.//a[@href='#/models/{quote(model)}/versions/{version}']]"
        labelled = re.compile(rf"@\s*{re.escape(alias)}\b")

        def alias_shown(browser: Any) -> bool:
            rows = browser.find_elements(By.XPATH, row)
            return bool(rows) and bool(labelled.search(rows[0].text))

        session.wait(alias_shown, f"alias @{alias} on version {version} of model {model}")
