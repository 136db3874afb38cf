"""Look at the results the way a person does: the MLflow UI, optuna-dashboard and the report in Chromium.

A tiny real sweep runs through the CLI, then `mnist-sweep ui` and `mnist-sweep dashboard` start as
real servers on free ports, and headless Chromium (Debian's ``chromium``, driven by Playwright)
opens their pages and the report. Screenshots land in ``test-artifacts/`` at the repository root.

Needs ``/usr/bin/chromium``: ``apt-get update && apt-get install -y chromium`` (as root).
Run with ``make test-browser`` or ``pytest -m browser``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get update && apt-get install -y chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_SECONDS = 180  # the MLflow UI starts four uvicorn workers: slow on two shared cores
UI_TIMEOUT_MS = 60_000
RUN_NAME_CELL = '[col-id="attributes.`Run Name`"]'
REPORT_FILES = (
    "report.html",
    "optimization_history.png",
    "param_importances.png",
    "parallel_coordinate.png",
    "top_k_curves.png",
    "confusion_matrix.png",
    "misclassified.png",
    "robustness.png",
)

SPACE = """\
study: looks
question: "Does relu beat sigmoid?"
dataset: mnist
seed: 0
limit: 300
objective: {metric: val_accuracy, direction: maximize}
sampler: {name: grid}
pruner: {name: none}
budget: {n_trials: 3}
fixed: {epochs: 2, batch_size: 64, optimizer: adam, width: 32}
space:
  activation: {type: categorical, choices: [relu, sigmoid]}
  depth: {type: categorical, choices: [1, 3]}
"""


@dataclass(frozen=True)
class Site:
    """The tiny study's stores, the two servers on them, and the report."""

    folder: Path
    experiment_id: str
    parent_run_id: str
    trial_runs: dict[str, str]  # run name (trial-N) -> run id
    best_run_id: str
    mlflow_url: str
    study_url: str  # what `mnist-sweep ui` printed
    commit: str
    digests: dict[str, str]  # split (train, validation, test) -> dataset digest
    test_accuracy: dict[str, float]  # trial run id -> its test accuracy
    dashboard_url: str
    report: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mnist_sweep(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_sweep.cli", *args]


def start(command: list[str], *, folder: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A server in its own process group, so that stopping it stops its workers too."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    pytest.fail(f"{url}: not serving after {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Site]:
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("browser")
    (folder / "looks.yaml").write_text(SPACE)
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MNIST_SWEEP_DATA_DIR": str(data_dir)}
    # The tiny trials last about 2 s: MLflow's own setting (it wins over the sweep's 1 s) samples often
    # enough for the system-metrics chart to have a line, not a single point.
    env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.2"
    run = mnist_sweep("run", "looks.yaml", "--quiet", "--system-metrics")
    for command in (run, mnist_sweep("report", "looks", "--out", "report")):
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr[-3000:]}"

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("looks")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = {r.info.run_name: r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(trials) == ["trial-0", "trial-1", "trial-2"]

    ui_port, dashboard_port = free_port(), free_port()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        ui_log, dashboard_log = folder / "ui.log", folder / "dashboard.log"
        servers.append(start(mnist_sweep("ui", "--port", str(ui_port)), folder=folder, env=env, log=ui_log))
        servers.append(
            start(
                mnist_sweep("dashboard", "looks", "--port", str(dashboard_port)),
                folder=folder,
                env=env,
                log=dashboard_log,
            )
        )
        mlflow_url = f"http://127.0.0.1:{ui_port}"
        wait_until_serving(f"{mlflow_url}/health", servers[0], ui_log)
        wait_until_serving(f"http://127.0.0.1:{dashboard_port}/dashboard/", servers[1], dashboard_log)
        printed = re.search(r"optuna-dashboard on (\S+)", dashboard_log.read_text())
        assert printed, dashboard_log.read_text()
        study_url = re.search(r"^study 'looks': (\S+)$", ui_log.read_text(), re.MULTILINE)
        assert study_url, ui_log.read_text()
        trial_run = client.get_run(next(iter(trials.values())))
        digests = {
            next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset.digest
            for i in trial_run.inputs.dataset_inputs
        }
        yield Site(
            folder=folder,
            experiment_id=str(experiment.experiment_id),
            parent_run_id=parent.info.run_id,
            trial_runs=trials,
            best_run_id=parent.data.tags["mnist_sweep.best_run_id"],
            mlflow_url=mlflow_url,
            study_url=study_url.group(1),
            commit=trial_run.data.tags["mlflow.source.git.commit"],
            digests=digests,
            test_accuracy={
                r.info.run_id: r.data.metrics["test_accuracy"] for r in runs if r.info.run_id in trials.values()
            },
            dashboard_url=printed.group(1),
            report=folder / "report" / "report.html",
        )
    finally:
        for server in servers:
            stop(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium first ({INSTALL})", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; when the test fails, a screenshot of where it stood."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failed_before:  # the call phase's report is already counted
            shoot(page, f"FAILED-{request.node.name}", full_page=True)
        context.close()


def shoot(page: Any, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def close_mlflow_assistant(page: Any) -> None:
    """MLflow 3's chat side panel opens by default and covers a third of the page: close it if shown."""
    close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
    with contextlib.suppress(Exception):
        close.click(timeout=3000)


# --------------------------------------------------------------------------- MLflow UI


def test_experiment_page_nests_the_trial_runs_under_the_study_run(site: Site, page: Any) -> None:
    page.goto(f"{site.mlflow_url}/#/experiments/{site.experiment_id}/runs", wait_until="load")
    parent_link = page.locator(f'{RUN_NAME_CELL} a[href$="/runs/{site.parent_run_id}"]')
    parent_link.wait_for()
    close_mlflow_assistant(page)
    names = page.locator(f"{RUN_NAME_CELL} a")

    assert names.all_inner_texts() == [parent_link.inner_text()]  # collapsed: only the study's run
    assert page.get_by_text("4 matching runs").is_visible()

    expander = page.locator(f'[role="row"][row-id="{site.parent_run_id}"] {RUN_NAME_CELL} button').first
    expander.click()
    page.locator(f"{RUN_NAME_CELL} a", has_text="trial-0").wait_for()

    shown = names.all_inner_texts()
    assert shown[0] == parent_link.inner_text()
    assert sorted(shown[1:]) == sorted(site.trial_runs)  # every trial, each once, below its parent
    for name, run_id in site.trial_runs.items():
        link = page.locator(f'{RUN_NAME_CELL} a[href$="/runs/{run_id}"]')
        assert link.inner_text() == name
        row = page.locator(f'[role="row"][row-id="{run_id}"]').first
        assert int(row.get_attribute("row-index")) > 0
    shoot(page, "mlflow-experiment-nested-runs")


def test_a_trial_runs_metric_chart_renders(site: Site, page: Any) -> None:
    run = site.best_run_id
    page.goto(f"{site.mlflow_url}/#/experiments/{site.experiment_id}/runs/{run}/model-metrics", wait_until="load")
    close_mlflow_assistant(page)
    page.get_by_placeholder("Search metric charts").fill("val_accuracy")
    card = page.locator('[data-testid="experiment-view-compare-runs-card"]:has(h4[title="val_accuracy"])')
    card.wait_for()
    plot = card.locator(".js-plotly-plot svg.main-svg").first
    plot.wait_for()
    line = card.locator("path.js-line").first
    line.wait_for(state="attached")

    box = plot.bounding_box()
    assert box is not None and box["width"] > 150 and box["height"] > 150
    assert re.match(r"M[\d.]+,[\d.]+L[\d.]+,[\d.]+", line.get_attribute("d") or "")  # a line through 2 epochs
    assert card.locator(".xtick").count() >= 2 and card.locator(".ytick").count() >= 2
    shoot(page, "mlflow-trial-val_accuracy-chart")


def test_the_report_opens_from_the_study_runs_artifacts(site: Site, page: Any) -> None:
    url = f"{site.mlflow_url}/#/experiments/{site.experiment_id}/runs/{site.parent_run_id}/artifacts"
    page.goto(url, wait_until="load")
    close_mlflow_assistant(page)
    page.get_by_text("report", exact=True).first.click()
    for name in REPORT_FILES:
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("report.html", exact=True).first.click()
    preview = page.frame_locator("iframe").first  # MLflow previews HTML artifacts in a sandboxed iframe
    preview.locator("h1", has_text="Study looks").wait_for()
    shoot(page, "mlflow-study-run-report-artifact")
    images = preview.locator("img")
    images.last.scroll_into_view_if_needed()

    assert images.count() == len(REPORT_FILES) - 1
    widths = [images.nth(i).evaluate("img => img.complete && img.naturalWidth") for i in range(images.count())]
    assert all(isinstance(w, int) and w > 300 for w in widths), widths  # inlined: no request leaves the iframe


def test_the_printed_url_lands_on_the_studys_trials_sorted_by_the_objective(site: Site, page: Any) -> None:
    assert site.study_url.startswith(f"{site.mlflow_url}/#/experiments/{site.experiment_id}/runs?")
    page.set_viewport_size({"width": 2600, "height": 900})  # the grid renders only the columns in view
    page.goto(site.study_url, wait_until="load")
    names = page.locator(f'[role="row"] {RUN_NAME_CELL} a')
    names.first.wait_for()
    close_mlflow_assistant(page)
    page.get_by_text("3 matching runs").wait_for()

    shown = names.all_inner_texts()
    assert sorted(shown) == sorted(site.trial_runs)  # the trials, flat: not nested under a collapsed parent
    values = [
        float(v) for v in page.locator('[role="row"] [col-id="metrics.`final_val_accuracy`"]').all_inner_texts()[1:]
    ]
    assert values == sorted(values, reverse=True) and len(values) == 3  # sorted by the objective, best first
    assert page.get_by_text("Agent versions").count() == 0  # the model-training view, not the GenAI one
    for column in ("Dataset", "Source", "Version", "Models", "test_accuracy", "activation", "depth"):
        assert page.locator('[role="columnheader"]', has_text=column).first.is_visible(), column
    datasets = page.locator('[role="row"] [col-id="attributes.`Dataset`"]').all_inner_texts()[1:]
    assert all(f"mnist ({site.digests['train']})" in cell for cell in datasets), datasets
    sources = page.locator('[role="row"] [col-id="attributes.`Source`"]').all_inner_texts()[1:]
    assert sources == [f"mnist-sweep@{site.commit[:7]}"] * 3  # the Source column shows the commit
    versions = page.locator('[role="row"] [col-id="attributes.`Version`"]').all_inner_texts()[1:]
    assert versions == [site.commit[:6]] * 3  # MLflow shows the commit's first 6 characters
    assert all(
        cell.strip() == "model"
        for cell in page.locator('[role="row"] [col-id="attributes.`Models`"]').all_inner_texts()[1:]
    )
    shoot(page, "mlflow-study-page")


def test_a_trials_system_metrics_tab_has_a_chart(site: Site, page: Any) -> None:
    run = site.best_run_id
    page.goto(f"{site.mlflow_url}/#/experiments/{site.experiment_id}/runs/{run}/system-metrics", wait_until="load")
    close_mlflow_assistant(page)
    page.get_by_text("cpu_utilization_percentage", exact=True).first.wait_for()
    legend = page.get_by_text("(system/cpu_utilization_percentage)").first  # the chart's legend names the run
    legend.wait_for()
    plot = page.locator(".js-plotly-plot svg.main-svg").first
    plot.wait_for()
    page.locator("path.js-line").first.wait_for(state="attached")

    box = plot.bounding_box()
    assert box is not None and box["width"] > 150 and box["height"] > 150
    assert page.locator(".js-plotly-plot").count() >= 3  # CPU, disk, network, ... (GPU ones with pynvml)
    assert re.match(r"M[\d.]+,[\d.]+L[\d.]+,[\d.]+", page.locator("path.js-line").first.get_attribute("d") or "")
    shoot(page, "mlflow-trial-system-metrics")


def test_the_models_view_lists_every_trials_model_with_its_test_accuracy(site: Site, page: Any) -> None:
    page.set_viewport_size({"width": 3200, "height": 900})  # the grid renders only the columns in view
    page.goto(
        f"{site.mlflow_url}/#/experiments/{site.experiment_id}/models?workflowType=machine_learning", wait_until="load"
    )
    # Columns per (metric, dataset); the cells' col-id holds the key as escaped JSON, so match on parts.
    cells = page.locator(f'[role="row"] [col-id*="test_accuracy"][col-id*="{site.digests["test"]}"]')
    page.get_by_text("Source run", exact=True).first.wait_for()
    close_mlflow_assistant(page)  # its panel would cover the metric columns
    cells.nth(3).wait_for()  # the header and one row per trial

    shown = sorted(float(text) for text in cells.all_inner_texts()[1:])
    assert shown == pytest.approx(sorted(site.test_accuracy.values()))
    assert page.get_by_text(f"mnist (#{site.digests['test']})").first.is_visible()  # grouped by the test dataset
    shoot(page, "mlflow-models-test-accuracy")


# --------------------------------------------------------------------------- optuna-dashboard


def test_dashboard_shows_the_study(site: Site, page: Any) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard/studies/\d+", site.dashboard_url)
    page.goto(site.dashboard_url, wait_until="load")
    page.get_by_text(re.compile(r"^looks \(id=\d+\)$")).wait_for()
    history = page.locator(".js-plotly-plot").first
    history.wait_for()
    page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(state="attached")

    assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 3  # one per trial
    assert page.get_by_text("val_accuracy").first.is_visible()  # the objective has its metric's name
    shoot(page, "optuna-dashboard-study")


# --------------------------------------------------------------------------- the report


def test_report_page_shows_every_figure(site: Site, page: Any) -> None:
    page.goto(site.report.as_uri(), wait_until="load")
    images = page.evaluate(
        "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"
    )

    assert [i["alt"] for i in images] == [
        "Optimization history",
        "Parameter importances",
        "Parallel coordinates",
        "Learning curves of the top trials",
        "Confusion matrix of the best model",
        "Misclassified test images",
        "Robustness of the best model",
    ]
    assert all(i["complete"] and i["width"] > 300 for i in images), images
    assert page.locator("h1").inner_text() == "Study looks"
    assert page.locator("#trials tbody tr").count() == 3
    assert page.locator("#answer .answer").inner_text().startswith("3 of 3 trials completed; the best, trial ")
    shoot(page, "report", full_page=True)
