"""The Airflow and MLflow UIs in a headless Chromium, over the daily DAG run of ``daily_run``.

Both UIs start the way ``make airflow`` and ``make mlflow`` start them (``start_airflow`` runs
``airflow standalone``, ``start_mlflow_ui`` runs ``mlflow ui``), on the run's Airflow home and
MLflow store, on free ports; each test stops what it started, pass or fail. Standalone's scheduler
adds no run of its own: ``airflow dags test`` registered every DAG of the folder paused (Airflow's
``dags_are_paused_at_creation``), and the REST cross-check asserts reelhouse_daily still has exactly
the one run the DAG test made.

The browser logs in through the simple auth manager's login page with the generated admin password,
waits for the React pages to render what is asserted on (explicit waits, no sleeps), reads the
states and aliases the pages show, and saves screenshots under ``test-artifacts/browser/``.
Chromium and its driver are the Debian packages ``chromium`` and ``chromium-driver``
(``make system-deps``); Selenium gets the driver's path, so it never downloads one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from reelhouse.orchestration.services import (
    HOST,
    AirflowService,
    start_airflow,
    start_mlflow_ui,
    stop_airflow,
    stop_mlflow_ui,
)
from tests.integration.airflow.conftest import DailyRun
from tests.integration.conftest import PROJECT_DIR, free_ports, missing_prerequisite

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _browser_installed() -> None:
    # Skipped on a developer's machine without them, a failure under CI=true.
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing_prerequisite(
            "the browser tests need the Debian packages chromium and chromium-driver "
            "(run 'make system-deps' as root, or 'apt-get install chromium chromium-driver')"
        )


ARTIFACTS = PROJECT_DIR / "test-artifacts" / "browser"
REELHOUSE_DAGS = {"reelhouse_daily", "reelhouse_hourly", "reelhouse_maintenance", "reelhouse_streaming"}
CHAMPION = "champion"
PAGE_TIMEOUT_S = 90  # an upper bound for a page to render on a busy 2-core machine, not a measure
BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--window-size=1920,1080",
)

T = TypeVar("T")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A fresh headless Chromium (new profile, so no cookie or dismissed dialog carries over)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def airflow_ui(daily_run: DailyRun) -> Iterator[AirflowService]:
    try:
        yield start_airflow(daily_run.config, daily_run.config_path, port=free_ports(1)[0])
    finally:
        stop_airflow(daily_run.config)


@pytest.fixture
def mlflow_ui(daily_run: DailyRun) -> Iterator[str]:
    port = free_ports(1)[0]
    try:
        start_mlflow_ui(daily_run.config, port=port)
        yield f"http://{HOST}:{port}"
    finally:
        stop_mlflow_ui(daily_run.config)


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str) -> T:
    """``condition``'s first truthy answer; on time-out a screenshot and the page's text explain why."""
    try:
        return WebDriverWait(driver, PAGE_TIMEOUT_S, ignored_exceptions=[StaleElementReferenceException]).until(
            condition
        )
    except TimeoutException:
        path = screenshot(driver, "failed-" + re.sub(r"\W+", "-", what).strip("-"))
        text = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            f"timed out waiting for {what} at {driver.current_url} ({path}); page:\n{text[:3000]}"
        ) from None


# --- Airflow -------------------------------------------------------------------------------------


def log_in(driver: WebDriver, service: AirflowService, path: str) -> None:
    """Open ``path``, which sends an anonymous browser to the login page, and sign in as admin."""
    assert service.password, f"no generated admin password under {service.log_file.parent}"
    driver.get(service.url + path)
    wait_for(driver, expected_conditions.visibility_of_element_located((By.NAME, "username")), "the login form")
    driver.find_element(By.NAME, "username").send_keys(service.username)
    driver.find_element(By.NAME, "password").send_keys(service.password)
    wait_for(driver, expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]")), "Sign in")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: urllib.parse.urlparse(d.current_url).path == path, f"the redirect back to {path}")


def listed_dags(driver: WebDriver) -> dict[str, str | None]:
    """DAG id -> the state badge of its latest run (None without a run), as the DAG list's cards show."""
    dags: dict[str, str | None] = {}
    for card in driver.find_elements(By.CSS_SELECTOR, "[data-testid=dag-card]"):
        dag_id = card.find_element(By.CSS_SELECTOR, "[data-testid=dag-id]").text
        badges = card.find_elements(By.CSS_SELECTOR, "[data-testid=latest-run] [data-testid=state-badge]")
        dags[dag_id] = badges[0].get_attribute("aria-label") if badges else None
    return dags


def reelhouse_dags_listed(driver: WebDriver) -> dict[str, str | None] | None:
    """The DAG list once every reelhouse DAG and the daily DAG's latest run are rendered."""
    dags = listed_dags(driver)
    return dags if dags.keys() >= REELHOUSE_DAGS and dags["reelhouse_daily"] else None


def listed_runs(driver: WebDriver) -> list[tuple[str, str]]:
    """(run id, state) of each row of a DAG's Runs table, as shown."""
    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, "tbody tr"):
        run_id = row.find_elements(By.CSS_SELECTOR, "[data-testid=table-cell-dag_run_id]")
        state = row.find_elements(By.CSS_SELECTOR, "[data-testid=table-cell-state]")
        if run_id and state:
            rows.append((run_id[0].text, state[0].text))
    return rows


def grid_tasks(driver: WebDriver, run_id: str) -> set[str]:
    """The task ids the grid shows a cell for in the column of ``run_id``."""
    cells = driver.find_elements(By.CSS_SELECTOR, f'[data-run-id="{run_id}"][data-task-id]')
    return {cell.get_attribute("data-task-id") for cell in cells}


def airflow_api(service: AirflowService, path: str) -> dict:
    """GET ``/api/v2/...`` with a JWT of the admin user from ``/auth/token``."""
    login = urllib.request.Request(
        f"{service.url}/auth/token",
        data=json.dumps({"username": service.username, "password": service.password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=30) as response:
        token = json.load(response)["access_token"]
    request = urllib.request.Request(f"{service.url}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_airflow_ui_lists_the_dags_and_the_daily_run_succeeded(
    daily_run: DailyRun, airflow_ui: AirflowService, browser: WebDriver
) -> None:
    log_in(browser, airflow_ui, "/dags")
    dags = wait_for(browser, reelhouse_dags_listed, "the reelhouse DAGs and the daily DAG's latest run in the list")
    print(f"Airflow DAG list: {dict(sorted(dags.items()))}  ({screenshot(browser, 'airflow-dag-list')})")

    browser.get(f"{airflow_ui.url}/dags/reelhouse_daily/runs")
    runs = wait_for(browser, listed_runs, "the Runs table of reelhouse_daily")
    run_id = runs[0][0]
    tasks = wait_for(browser, lambda d: grid_tasks(d, run_id), "the grid column of the run")
    print(f"Airflow reelhouse_daily runs: {runs}; grid tasks: {sorted(tasks)}")
    print(f"  ({screenshot(browser, 'airflow-daily-runs')})")

    # What the browser saw: every reelhouse DAG listed, the daily run a success in the list and in its table.
    assert set(dags) == REELHOUSE_DAGS
    assert dags["reelhouse_daily"] == "success", dags
    assert runs == [(run_id, "Success")], runs

    # The same run through the REST API, so the pages showed this run and not another one.
    api_dags = airflow_api(airflow_ui, "/api/v2/dags?dag_id_pattern=reelhouse")
    api_runs = airflow_api(airflow_ui, "/api/v2/dags/reelhouse_daily/dagRuns")
    instances = airflow_api(
        airflow_ui, f"/api/v2/dags/reelhouse_daily/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    )
    api_states = {ti["task_id"]: ti["state"] for ti in instances["task_instances"]}
    print(f"Airflow REST: dags {sorted(d['dag_id'] for d in api_dags['dags'])}; runs "
          f"{[(r['dag_run_id'], r['state']) for r in api_runs['dag_runs']]}; task states {api_states}")  # fmt: skip
    assert {d["dag_id"] for d in api_dags["dags"]} == REELHOUSE_DAGS
    assert [(r["dag_run_id"], r["state"]) for r in api_runs["dag_runs"]] == [(run_id, "success")]
    (api_run,) = api_runs["dag_runs"]
    interval = [dt.datetime.fromisoformat(api_run[key]) for key in ("data_interval_start", "data_interval_end")]
    assert interval == [daily_run.start, daily_run.end]
    assert set(api_states.values()) == {"success"}, api_states
    assert tasks == set(api_states), (tasks, api_states)


# --- MLflow --------------------------------------------------------------------------------------


ALIASED_VERSION = re.compile(r"@\s*([\w.-]+)\s*:\s*Version\s+(\d+)")  # "@ champion : Version 1"


def close_overlays(driver: WebDriver) -> None:
    """Close what a fresh profile gets on top of MLflow's pages: the model registry announcement and
    the assistant's side panel (it narrows the table until the "+1" of further aliases is cut off)."""
    for dialog in driver.find_elements(By.CSS_SELECTOR, "[role=dialog]"):
        if dialog.is_displayed():
            dialog.find_element(By.CSS_SELECTOR, "button[aria-label=Close]").click()
            wait_for(driver, expected_conditions.invisibility_of_element(dialog), "the dialog to close")
    for close in driver.find_elements(By.CSS_SELECTOR, 'button[data-component-id="mlflow.assistant.chat_panel.close"]'):
        if close.is_displayed():
            close.click()
            wait_for(driver, expected_conditions.invisibility_of_element(close), "the assistant panel to close")


def model_row(driver: WebDriver, name: str) -> WebElement | None:
    """The registered model's row in the models table."""
    for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=model-list-table] [role=row]"):
        if row.find_elements(By.CSS_SELECTOR, f'a[href="#/models/{name}"]'):
            return row
    return None


def model_list_aliases(driver: WebDriver, name: str) -> list[tuple[str, str]]:
    """(alias, version) pairs the models table shows for ``name``: its cell names the alias of the newest
    aliased version and hides the others behind a "+N" menu, which is opened to read them."""
    row = wait_for(driver, lambda d: model_row(d, name), f"{name} in the registered models")
    shown = ALIASED_VERSION.findall(row.text)
    for more in row.find_elements(By.XPATH, ".//button[starts-with(normalize-space(.), '+')]"):
        wait_for(driver, expected_conditions.element_to_be_clickable(more), "the menu of further aliased versions")
        more.click()
        items = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=menuitem]"), "its items")
        shown += [pair for item in items for pair in ALIASED_VERSION.findall(item.text)]
    return shown


def version_aliases(driver: WebDriver) -> dict[str, list[str]]:
    """Version -> its aliases, from the rows of a registered model's version table."""
    versions = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=model-version-table] [role=row]"):
        version = re.search(r"Version (\d+)", row.text)
        if version:
            tags = row.find_elements(By.CSS_SELECTOR, '[role=status][data-component-id*="aliastag"]')  # "@ champion"
            versions[version.group(1)] = [alias for tag in tags for alias in re.findall(r"@\s*([\w.-]+)", tag.text)]
    return versions


def aliased_versions(driver: WebDriver) -> dict[str, list[str]] | None:
    """The version table once it shows an alias (the aliases come with the versions)."""
    versions = version_aliases(driver)
    return versions if any(versions.values()) else None


def test_mlflow_ui_shows_the_champion_alias(daily_run: DailyRun, mlflow_ui: str, browser: WebDriver) -> None:
    assert daily_run.returncode == 0, "the daily DAG run failed, so nothing was promoted:\n" + daily_run.log[-3000:]
    from mlflow import MlflowClient

    uri = daily_run.config.mlflow.tracking_uri
    name = daily_run.config.training.registered_model
    champion = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(name).aliases[CHAMPION]

    browser.get(f"{mlflow_ui}/#/models")
    wait_for(browser, lambda d: model_row(d, name), f"{name} in the registered models")
    close_overlays(browser)
    listed = model_list_aliases(browser, name)
    print(f"MLflow models page: {name} aliased versions {listed}  ({screenshot(browser, 'mlflow-models')})")

    browser.get(f"{mlflow_ui}/#/models/{name}")
    versions = wait_for(browser, aliased_versions, f"the versions of {name} with their aliases")
    print(f"MLflow model page: {name} version -> aliases {versions}  ({screenshot(browser, f'mlflow-model-{name}')})")

    assert (CHAMPION, str(champion)) in listed, listed
    assert [version for version, aliases in versions.items() if CHAMPION in aliases] == [str(champion)], versions
