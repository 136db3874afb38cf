"""`mnist-sweep studies`, `status` and `best`: on hand-built studies (every state) and on a real one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_sweep.app._inspect import NoCompleteTrial, best_trial, duration, list_studies, study_status
from mnist_sweep.cli import main
from registry_helpers import Studies, trained_studies


def history(val_accuracy: float) -> list[dict[str, float]]:
    return [
        {"loss": 1.0, "accuracy": 0.6, "val_loss": 0.9, "val_accuracy": val_accuracy - 0.1, "seconds": 1.0},
        {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": val_accuracy, "seconds": 1.0},
    ]


def build_study(tmp_path: Path, name: str = "handmade", *, direction: str = "maximize") -> str:
    """COMPLETE x2, PRUNED, FAIL and one RUNNING trial (two epochs reported), without training anything.

    The trial best on validation is *not* the one best on test: selection must ignore test metrics.
    """
    import optuna
    from optuna.trial import TrialState, create_trial

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
    study.set_user_attr("dataset", "mnist")
    study.set_user_attr("objective_metric", "val_accuracy" if direction == "maximize" else "val_loss")
    good = 0.9 if direction == "maximize" else 0.2
    fair = 0.8 if direction == "maximize" else 0.4
    for value, test, width in ((fair, 0.95, 32), (good, 0.85, 64)):
        attrs = {
            "params": {"width": width, "epochs": 2},
            "history": history(value),
            "test_accuracy": test,
            "test_loss": 0.3,
            "mlflow_run_id": f"run-{width}",
            "model_uri": f"models:/m-{width:032d}",
        }
        study.add_trial(create_trial(value=value, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.1}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "diverged"}))
    running = study.ask()
    running.report(0.5, step=1)
    running.report(0.7, step=2)
    return storage


def test_status_counts_states_and_shows_running_trials(tmp_path: Path) -> None:
    storage = build_study(tmp_path)
    started = study_status("handmade", storage).running[0]

    status = study_status("handmade", storage, now=datetime.now() + timedelta(minutes=3))

    assert dict(status.counts) == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1, "RUNNING": 1, "WAITING": 0}
    assert status.total == 5
    assert status.best is not None and status.best.number == 1
    (running,) = status.running
    assert running.number == 4 and running.epochs == 2 and running.last_value == 0.7
    assert running.seconds is not None and 180 <= running.seconds < 200
    assert started.seconds is not None and started.seconds < 60

    result = CliRunner().invoke(main, ["status", "handmade", "--storage", storage])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("study 'handmade' (sqlite:///") and lines[0].endswith("mnist, maximize val_accuracy")
    assert lines[1] == "trials: 5 (2 COMPLETE, 1 PRUNED, 1 FAIL, 1 RUNNING)"
    assert "best: trial 1, val_accuracy 0.9000 (test accuracy 0.8500), MLflow run run-64" in result.output
    assert any(
        line.startswith("  trial 4: for ") and "2 epochs reported, last val_accuracy 0.7000" in line for line in lines
    )


def test_best_is_chosen_on_validation_never_on_test(tmp_path: Path) -> None:
    storage = build_study(tmp_path)

    best = best_trial("handmade", storage)

    assert best.number == 1 and best.value == 0.9
    assert best.test == {"test_accuracy": 0.85, "test_loss": 0.3}  # trial 0 has 0.95 on test: irrelevant
    assert best.validation == {"val_accuracy": 0.9, "val_loss": 0.6}
    assert best.training == {"accuracy": 0.8, "loss": 0.5}
    assert best.params == {"width": 64, "epochs": 2}
    assert (best.run_id, best.model_uri, best.epochs) == ("run-64", f"models:/m-{64:032d}", 2)

    result = CliRunner().invoke(main, ["best", "handmade", "--storage", storage, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["number"] == 1 and data["run_id"] == "run-64" and data["model_uri"] == best.model_uri
    assert data["validation"]["val_accuracy"] == 0.9 and data["test"]["test_accuracy"] == 0.85


def test_best_names_the_trials_it_ties_with(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import create_trial

    storage = build_study(tmp_path)
    study = optuna.load_study(study_name="handmade", storage=storage)
    twin = {"params": {"width": 128, "epochs": 2}, "history": history(0.9), "mlflow_run_id": "run-128"}
    study.add_trial(create_trial(value=0.9, user_attrs=twin))  # trial 5: another model, same value
    reused = {"params": {"width": 64, "epochs": 2}, "duplicate_of": 1}
    study.add_trial(create_trial(value=0.9, user_attrs=reused))  # trial 6: trial 1's result reused

    best = best_trial("handmade", storage)

    assert (best.number, best.ties) == (1, (5,))
    result = CliRunner().invoke(main, ["best", "handmade", "--storage", storage])
    assert result.exit_code == 0, result.output
    assert "  tie:        trial(s) 5 reached the same val_accuracy; this one is first by trial number" in result.output
    assert json.loads(CliRunner().invoke(main, ["best", "handmade", "--storage", storage, "--json"]).output)[
        "ties"
    ] == [5]
    assert best_trial("plain", build_study(tmp_path, "plain")).ties == ()  # no tie: nothing said


def test_best_of_a_minimized_objective(tmp_path: Path) -> None:
    storage = build_study(tmp_path, direction="minimize")

    best = best_trial("handmade", storage)

    assert best.number == 1 and best.value == 0.2 and best.direction == "minimize" and best.metric == "val_loss"


def test_studies_lists_every_study(tmp_path: Path) -> None:
    storage = build_study(tmp_path, "first")
    build_study(tmp_path, "second")

    found = list_studies(storage)
    assert [s.study for s in found] == ["first", "second"]
    assert found[0].best_trial == 1 and found[0].best_value == 0.9 and found[0].counts["RUNNING"] == 1

    result = CliRunner().invoke(main, ["studies", "--storage", storage])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"2 studies in {storage}"
    assert lines[1].split() == [
        "study", "dataset", "objective", "trials", "complete", "pruned", "fail", "running", "best", "started",
    ]  # fmt: skip
    assert lines[2].split()[:10] == ["first", "mnist", "maximize", "val_accuracy", "5", "2", "1", "1", "1", "0.9000"]

    as_json = CliRunner().invoke(main, ["studies", "--storage", storage, "--json"])
    assert [s["study"] for s in json.loads(as_json.output)] == ["first", "second"]


def test_a_study_without_complete_trials(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="empty", storage=storage).ask()

    with pytest.raises(NoCompleteTrial, match="no COMPLETE trial yet"):
        best_trial("empty", storage)
    status = CliRunner().invoke(main, ["status", "empty", "--storage", storage])
    assert status.exit_code == 0 and "best: no COMPLETE trial yet" in status.output
    best = CliRunner().invoke(main, ["best", "empty", "--storage", storage])
    assert best.exit_code == 1
    assert best.output == "error: study 'empty' has no COMPLETE trial yet (0 COMPLETE, 0 PRUNED, 0 FAIL, 1 RUNNING)\n"


def test_unknown_study_and_missing_storage(tmp_path: Path) -> None:
    storage = build_study(tmp_path)
    unknown = CliRunner().invoke(main, ["status", "nope", "--storage", storage])
    assert unknown.exit_code == 1
    assert unknown.output.startswith("error: no study 'nope' in") and "(studies there: handmade)" in unknown.output

    missing = CliRunner().invoke(main, ["studies", "--storage", f"sqlite:///{tmp_path / 'nothing.db'}"])
    assert missing.exit_code == 1 and "no Optuna storage at" in missing.output
    assert not (tmp_path / "nothing.db").exists()  # looking must not create an empty storage


def test_default_storage_sits_beside_the_tracking_store(tmp_path: Path) -> None:
    build_study(tmp_path)  # tmp_path/optuna.db

    result = CliRunner().invoke(main, ["studies", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])

    assert result.exit_code == 0, result.output
    assert "handmade" in result.output


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (42.9, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_best_of_a_real_study_points_at_its_mlflow_run_and_model(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> None:
    studies: Studies = trained_studies(tmp_path_factory, data_dir)

    result = CliRunner().invoke(main, ["best", studies.strong, *studies.options()])

    assert result.exit_code == 0, result.output
    best = studies.best(studies.strong)
    run = studies.client().get_run(best.run_id)
    assert run.data.tags["mnist_sweep.model_uri"] == best.model_uri
    assert run.data.tags["mnist_sweep.trial_number"] == str(best.number)
    assert f"MLflow run: {best.run_id}" in result.output
    assert f"model URI:  {best.model_uri}" in result.output
    assert best.validation["val_accuracy"] == pytest.approx(run.data.metrics["val_accuracy"])
    assert best.test["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
