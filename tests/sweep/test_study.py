"""The main job end to end on tiny real data: Optuna trials, each a nested MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spaces import DEFAULT_SPACE, TINY, write_space  # noqa: F401  (re-used by other test modules)


def sweep(path: Path, tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    from mnist_sweep.config._space import load_space
    from mnist_sweep.sweep import SweepOptions, run_sweep

    space = load_space(path)
    if overrides:
        space = space.with_overrides(**overrides)
    options = SweepOptions(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        quiet=True,
    )
    return run_sweep(space, options)


def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def all_runs(tmp_path: Path) -> list[Any]:
    c = client(tmp_path)
    exp = c.get_experiment_by_name("tiny")
    assert exp is not None
    return list(c.search_runs([exp.experiment_id], max_results=1000))


def test_three_trial_sweep_logs_parent_and_nested_runs(tmp_path: Path) -> None:
    result = sweep(write_space(tmp_path, sampler="grid"), tmp_path)  # grid: three distinct trials

    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    runs = all_runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.run_id == result.parent_run_id
    assert parent.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)

    c = client(tmp_path)
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mnist_sweep.state"] == "COMPLETE"
        assert run.data.params["epochs"] == "2" and run.data.params["batch_size"] == "64"
        assert run.data.params["width"] in {"16", "32", "48", "64"}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
            history = c.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [1, 2], key
        assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
        assert run.data.tags["mnist_sweep.data_sha256"]
        assert run.data.tags["versions.tensorflow"]
        artifacts = {a.path for a in c.list_artifacts(run.info.run_id, "plots")}
        assert artifacts == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
        assert run.data.tags["mnist_sweep.model_uri"].startswith("models:/")

    parent_artifacts = {a.path for a in c.list_artifacts(parent.info.run_id, "study")}
    assert "study/trials.csv" in parent_artifacts
    assert "study/optimization_history.png" in parent_artifacts
    config = {a.path for a in c.list_artifacts(parent.info.run_id, "config")}
    assert "config/tiny.yaml" in config
    assert parent.data.tags["mnist_sweep.best_run_id"] in {r.info.run_id for r in children}

    # The trials' logged models carry the final metrics, linked to the split's dataset, and rank by them.
    models = c.search_logged_models(
        [parent.info.experiment_id], order_by=[{"field_name": "metrics.test_accuracy", "ascending": False}]
    )
    assert len(models) == 3
    by_run = {r.info.run_id: r for r in children}
    ranked = [by_run[m.source_run_id].data.metrics["test_accuracy"] for m in models]
    assert ranked == sorted(ranked, reverse=True)
    test_digest = next(
        i.dataset.digest
        for i in children[0].inputs.dataset_inputs
        if any(t.key == "mlflow.data.context" and t.value == "test" for t in i.tags)
    )
    for model in models:
        linked = {(m.key, m.dataset_name, m.dataset_digest) for m in model.metrics if m.dataset_digest}
        assert ("test_accuracy", "mnist", test_digest) in linked and ("test_loss", "mnist", test_digest) in linked
        assert {key for key, _, digest in linked if digest != test_digest} >= {"final_val_accuracy", "final_val_loss"}


def test_logged_model_loads_and_predicts(tmp_path: Path, tiny_mnist: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.artifacts
    import mlflow.models
    import mlflow.models.utils
    import mlflow.pyfunc
    import numpy as np

    checks: list[str] = []
    real_check = mlflow.models.utils._validate_serving_input
    monkeypatch.setattr(mlflow.models.utils, "_validate_serving_input", lambda model_uri, **_: checks.append(model_uri))
    result = sweep(write_space(tmp_path, n_trials=1), tmp_path)
    assert checks == []  # MLflow's reload-and-predict check of the example is skipped when logging
    run = client(tmp_path).get_run(result.trials[0].run_id)
    uri = run.data.tags["mnist_sweep.model_uri"]
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.signature is not None
    assert model.metadata.saved_input_example_info is not None
    assert model.metadata.run_id == run.info.run_id
    assert {"tensorflow", "python_function"} <= set(model.metadata.flavors)
    # ... yet the saved serving example is valid: the check passes when run by hand.
    serving = model.metadata.get_serving_input(mlflow.artifacts.download_artifacts(uri))
    assert serving is not None
    assert np.asarray(real_check(uri, serving)).shape == (2, 10)
    out = np.asarray(model.predict(tiny_mnist.x_test[:5]))
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-4)


def test_deterministic_pruner_marks_trial_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.testing.pruners import DeterministicPruner

    from mnist_sweep.config._space import SearchSpace

    monkeypatch.setattr(SearchSpace, "make_pruner", lambda self: DeterministicPruner(True))
    result = sweep(write_space(tmp_path, n_trials=1), tmp_path)

    assert [t.state for t in result.trials] == ["PRUNED"]
    (child,) = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert child.data.tags["mnist_sweep.state"] == "PRUNED"
    assert child.data.tags["mnist_sweep.pruned_at_epoch"] == "1"
    assert child.info.status == "FINISHED"
    assert len(client(tmp_path).get_metric_history(child.info.run_id, "val_accuracy")) == 1


# Diverges to NaN within the first batches for every seed tried (0-7), at width 128 and 256.
DIVERGING = "{epochs: 1, batch_size: 32, optimizer: sgd, learning_rate: 10.0, momentum: 0.9, depth: 4}"


def test_nan_trial_fails_and_sweep_goes_on(tmp_path: Path) -> None:
    space = """\
  learning_rate: {type: categorical, choices: [10.0, 0.001]}
"""
    fixed = "{epochs: 1, batch_size: 32, optimizer: sgd, momentum: 0.9, depth: 4, width: 128}"
    result = sweep(write_space(tmp_path, n_trials=4, fixed=fixed, space=space), tmp_path)

    states = {t.number: t.state for t in result.trials}
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert failed, states
    assert any(t.state == "COMPLETE" for t in result.trials), states
    assert all("diverged" in t.note for t in failed)
    runs = {r.info.run_id: r for r in all_runs(tmp_path)}
    for t in failed:
        run = runs[t.run_id]
        assert run.info.status == "FAILED"
        assert run.data.tags["mnist_sweep.state"] == "FAIL"
        assert "diverged" in run.data.tags["mnist_sweep.fail_reason"]


def test_max_failure_rate_stops_a_failing_sweep(tmp_path: Path) -> None:
    from mnist_sweep.errors import StudyFailing

    space = "  width: {type: categorical, choices: [128, 256]}\n"
    with pytest.raises(StudyFailing, match="max_failure_rate"):
        sweep(write_space(tmp_path, n_trials=10, fixed=DIVERGING, space=space, rate="0.5"), tmp_path)
    runs = all_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED"


def test_rerun_resumes_the_same_study(tmp_path: Path) -> None:
    path = write_space(tmp_path, n_trials=2, fixed="{epochs: 1, batch_size: 64}")
    first = sweep(path, tmp_path)
    assert first.trials_run == 2
    again = sweep(path, tmp_path)
    assert again.trials_run == 0 and len(again.trials) == 2
    more = sweep(path, tmp_path, n_trials=3)
    assert more.trials_run == 1
    assert [t.number for t in more.trials] == [0, 1, 2]
    parents = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 3


def test_identical_params_are_not_trained_twice(tmp_path: Path) -> None:
    space = "  width: {type: categorical, choices: [32]}\n"
    result = sweep(write_space(tmp_path, n_trials=2, fixed="{epochs: 1, batch_size: 64}", space=space), tmp_path)

    first, second = result.trials
    assert first.state == second.state == "COMPLETE"
    assert second.value == first.value
    assert "duplicate of trial 0" in second.note
    run = client(tmp_path).get_run(second.run_id)
    assert run.data.tags["mnist_sweep.duplicate_of"] == "0"
    assert run.data.tags["mnist_sweep.duplicate_of_run"] == first.run_id
    assert "val_accuracy" not in run.data.metrics  # nothing was trained


def test_changed_direction_is_a_config_error(tmp_path: Path) -> None:
    from mnist_sweep.errors import ConfigError

    path = write_space(tmp_path, n_trials=1, fixed="{epochs: 1, batch_size: 64}")
    sweep(path, tmp_path)
    flipped = path.read_text().replace("direction: maximize", "direction: minimize")
    path.write_text(flipped.replace("val_accuracy", "val_loss"))
    with pytest.raises(ConfigError, match="direction"):
        sweep(path, tmp_path)


def test_trial_timeout_fails_the_trial_and_endless_failures_stop(tmp_path: Path) -> None:
    import optuna

    from mnist_sweep.errors import StudyFailing
    from mnist_sweep.sweep import summarize

    path = write_space(tmp_path, n_trials=1, fixed="{epochs: 3, batch_size: 16}")
    path.write_text(path.read_text().replace("budget: {", "budget: {trial_timeout: 0.05, "))
    # Failed trials use no budget; without max_failure_rate the sweep stops after max(n_trials, 3) failures.
    with pytest.raises(StudyFailing, match="3 trials failed, as many as the budget"):
        sweep(path, tmp_path)

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = summarize(study)
    assert [t.state for t in trials] == ["FAIL"] * 3
    assert all(t.note.startswith("trial timeout: stopped after 0.05 s") for t in trials), trials
    run = client(tmp_path).get_run(trials[0].run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mnist_sweep.fail_reason"].startswith("trial timeout")


def test_closing_a_grid_repeat_survives_the_grid_saying_it_is_spent() -> None:
    """GridSampler calls study.stop() from after_trial when only a running point is left.

    Two workers: one trains point X, the other finished every other point, then draws X again
    (the grid re-offers running points once all are started). Closing that repeat must not
    stop the worker with "Study.stop is supposed to be invoked inside an objective function".
    """
    import optuna
    from optuna.trial import TrialState

    from mnist_sweep.sweep._study import tell

    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1, 2]}, seed=0))
    first = study.ask()
    first.suggest_categorical("x", [1, 2])
    second = study.ask()
    second.suggest_categorical("x", [1, 2])
    frozen, spent = tell(study, second, 0.5)
    assert frozen.state == TrialState.COMPLETE and not spent
    repeat = study.ask()  # every point started: the grid re-offers the running one
    assert repeat.suggest_categorical("x", [1, 2]) == first.params["x"]
    with pytest.raises(RuntimeError, match=r"Study\.stop"):  # what the engine met before
        study.tell(study.ask(), state=TrialState.FAIL)
    frozen, spent = tell(study, repeat, state=TrialState.FAIL)
    assert frozen.state == TrialState.FAIL and spent
    assert study.get_trials(deepcopy=False)[first.number].state == TrialState.RUNNING
