"""`repeats: k`: k seeds per trial in lockstep, their mean as the objective, std and CI recorded."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from mnist_sweep import stats
from mnist_sweep.config import load_space
from mnist_sweep.sweep import SweepOptions, run_sweep
from spaces import write_space

SPACE = "  width: {type: categorical, choices: [16, 32]}\n"


def sweep(tmp_path: Path, *, repeats: int, n_trials: int, epochs: int = 2) -> tuple[object, str]:
    path = write_space(
        tmp_path, n_trials=n_trials, fixed=f"{{epochs: {epochs}, batch_size: 64}}", space=SPACE, sampler="grid"
    )
    if repeats != 1:
        path.write_text(path.read_text() + f"repeats: {repeats}\n")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri=tracking, quiet=True)
    return run_sweep(load_space(path), options), tracking


def test_two_seeds_two_trials_carry_mean_std_and_ci(tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    _, tracking = sweep(tmp_path, repeats=2, n_trials=2)
    client = MlflowClient(tracking)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for trial in study.trials:
        values = trial.user_attrs["seed_values"]
        assert len(values) == 2 and values[0] != values[1], "two seeds, two different models"
        summary = stats.mean_interval(values)
        assert trial.value == pytest.approx(summary.mean)
        assert trial.user_attrs["value_std"] == pytest.approx(summary.std)
        assert trial.user_attrs["value_ci_low"] == pytest.approx(summary.ci_low)
        assert trial.user_attrs["value_ci_high"] == pytest.approx(summary.ci_high)
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        metrics = run.data.metrics
        assert metrics["val_accuracy_std"] == pytest.approx(summary.std)
        assert metrics["val_accuracy_ci_low"] == pytest.approx(summary.ci_low)
        assert metrics["val_accuracy_ci_high"] == pytest.approx(summary.ci_high)
        assert [metrics["seed1/val_accuracy"], metrics["seed2/val_accuracy"]] == pytest.approx(values)
        assert {"seed1/test_accuracy", "seed2/loss", "seed2/val_loss"} <= set(metrics)
        assert run.data.tags["mnist_sweep.repeats"] == "2"
        # The pruner saw the mean over the seeds at every epoch, and so does the run's plain metric.
        for step in (1, 2):
            histories = [client.get_metric_history(run.info.run_id, f"seed{i}/val_accuracy") for i in (1, 2)]
            per_seed = [next(m.value for m in history if m.step == step) for history in histories]
            assert trial.intermediate_values[step] == pytest.approx(statistics.fmean(per_seed))
        # The logged model is the median seed's (of two, the worse one), not the luckier one.
        logged = trial.user_attrs["logged_seed"]
        assert values[logged - 1] == min(values)
        assert run.data.tags["mnist_sweep.logged_seed"] == str(logged)
        assert trial.user_attrs["test_accuracy"] == pytest.approx(metrics[f"seed{logged}/test_accuracy"])
        assert trial.user_attrs["model_uri"].startswith("models:/m-")
        assert math.isfinite(metrics["final_val_accuracy"])


def test_one_seed_adds_no_key(tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    _, tracking = sweep(tmp_path, repeats=1, n_trials=1, epochs=1)
    trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials[0]
    assert not {"seed_values", "value_std", "value_ci_low", "value_ci_high", "logged_seed"} & set(trial.user_attrs)
    run = MlflowClient(tracking).get_run(trial.user_attrs["mlflow_run_id"])
    assert not [m for m in run.data.metrics if m.startswith("seed") or m.endswith(("_std", "_ci_low", "_ci_high"))]
    assert "mnist_sweep.repeats" not in run.data.tags
