"""Links into the MLflow UI: a study's runs page as a saved view, run links in ``best`` and ``status``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import fake_trainer
from mnist_sweep.cli import main
from mnist_sweep.config import load_space
from mnist_sweep.errors import TrackingError
from mnist_sweep.sweep import SweepOptions, run_sweep
from mnist_sweep.tracking import run_link, study_runs_page, ui_base_url
from spaces import write_space


@pytest.fixture
def swept(tmp_path: Path) -> str:
    space = load_space(write_space(tmp_path, n_trials=2, sampler="grid"))
    options = SweepOptions(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        quiet=True,
        system_metrics=False,
    )
    run_sweep(space, options, trainer=fake_trainer([]))
    return space.study_name


def test_the_study_page_is_a_saved_view_sorted_by_the_objective_with_key_columns(tmp_path: Path, swept: str) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    page = study_runs_page(None, tracking_uri=uri, base_url="http://127.0.0.1:5000")  # the latest study
    assert page is not None and page.study == swept
    assert page.url == (
        f"http://127.0.0.1:5000/#/experiments/{page.experiment_id}/runs"
        f"?viewStateShareKey=mnist-sweep-{swept}&workflowType=machine_learning"
    )
    tags = MlflowClient(uri).get_experiment(page.experiment_id).tags
    view = json.loads(tags[f"mlflow.sharedViewState.mnist-sweep-{swept}"])
    assert view["orderByKey"] == "metrics.`final_val_accuracy`" and view["orderByAsc"] is False
    assert {"attributes.`Dataset`", "attributes.`Source`", "attributes.`Version`", "attributes.`Models`"} <= set(
        view["selectedColumns"]
    )
    assert {"params.`activation`", "params.`width`", "metrics.`test_accuracy`"} <= set(view["selectedColumns"])
    trials = MlflowClient(uri).search_runs([page.experiment_id], filter_string=view["searchFilter"])
    assert sorted(r.info.run_name for r in trials) == ["trial-0", "trial-1"]  # the trials only, not the parent


def test_an_unknown_study_is_an_error_and_an_empty_store_has_no_page(tmp_path: Path, swept: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(TrackingError, match="no MLflow runs of study 'nosuch'"):
        study_runs_page("nosuch", tracking_uri=uri, base_url="http://x")
    assert study_runs_page(None, tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}", base_url="http://x") is None
    result = CliRunner().invoke(main, ["ui", "nosuch", "--tracking-uri", uri])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"error: tracking store {uri}: no MLflow runs of study 'nosuch'"]


def test_best_and_status_print_direct_links_to_their_runs(tmp_path: Path, swept: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for command in ("best", "status"):
        result = CliRunner().invoke(main, [command, swept, "--storage", storage, "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
        assert "http://127.0.0.1:5000/#/runs/" in result.output, command
    assert ui_base_url("https://mlflow.example.org/") == "https://mlflow.example.org"
    assert run_link("http://h:1", "abc") == "http://h:1/#/runs/abc"
