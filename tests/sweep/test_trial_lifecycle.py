"""One trial lifecycle, through the public trainer seam, and params logged whole to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fakes import fake_trainer
from mnist_sweep.config import load_space
from mnist_sweep.sweep import SweepOptions, run_sweep
from spaces import write_space


def options(tmp_path: Path, **kw: Any) -> SweepOptions:
    return SweepOptions(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        quiet=True,
        **kw,
    )


def test_a_fake_trainer_replaces_training_and_everything_else_runs(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    space = load_space(write_space(tmp_path, n_trials=3, sampler="grid"))
    calls: list[dict[str, Any]] = []
    result = run_sweep(space, options(tmp_path), trainer=fake_trainer(calls))
    assert result.trials_run == 3 and len(calls) == 3
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    assert all(c["n_train"] > 0 for c in calls)
    best = result.best
    assert best is not None and best.value == max(c["params"]["width"] for c in calls) / 100 + 0.002
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(best.run_id or "")
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.tags["mnist_sweep.state"] == "COMPLETE"


def test_trial_params_in_mlflow_are_the_complete_resolved_set(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from mnist_sweep.model import PARAMS
    from mnist_sweep.model._params import CONV_ONLY

    space = load_space(write_space(tmp_path, n_trials=1))
    result = run_sweep(space, options(tmp_path, log_models=False), trainer=fake_trainer([]))
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result.trials[0].run_id or "")
    logged = run.data.params
    dense_params = set(PARAMS) - set(CONV_ONLY)
    levers = {"steps_per_execution": "8", "jit_compile": "False", "data_pipeline": "arrays"}
    assert levers.items() <= logged.items(), "levers as chosen"
    assert dense_params | {"widths", "dataset", "limit"} <= set(logged)
    for defaulted in ("loss", "output", "dropout", "momentum", "learning_rate", "depth"):
        assert logged[defaulted] == str(PARAMS[defaulted].default), defaulted
    assert logged["widths"] == f"[{logged['width']}]"
    assert not {"conv_blocks", "filters", "kernel_size", "pooling"} & set(logged), "conv-only params on a dense model"
    assert run.data.tags["mnist_sweep.sampled"] == "activation,width"
    assert logged["epochs"] == "2" and logged["optimizer"] == "adam"  # fixed in the file


def test_conv_models_log_their_conv_params(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    path = write_space(
        tmp_path,
        n_trials=1,
        fixed="{architecture: conv, epochs: 1, batch_size: 64}",
        space="  filters: {type: int, low: 4, high: 8}",
    )
    result = run_sweep(load_space(path), options(tmp_path, log_models=False), trainer=fake_trainer([]))
    logged = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result.trials[0].run_id or "").data.params
    assert {"conv_blocks": "2", "kernel_size": "3", "pooling": "flatten"}.items() <= logged.items()
    assert 4 <= int(logged["filters"]) <= 8


def test_train_limit_cuts_only_the_training_split(tmp_path: Path) -> None:
    from mnist_sweep.errors import ConfigError

    path = write_space(tmp_path, n_trials=1)
    path.write_text(path.read_text().replace("limit: 300", "train_limit: 100"))
    calls: list[dict[str, Any]] = []
    run_sweep(load_space(path), options(tmp_path, log_models=False), trainer=fake_trainer(calls))
    assert (calls[0]["n_train"], calls[0]["n_test"]) == (100, 10000)
    assert load_space(path).with_overrides(limit=300).train_limit is None, "--limit cuts every split"
    path.write_text(path.read_text().replace("train_limit: 100", "train_limit: 100\nlimit: 300"))
    with pytest.raises(ConfigError, match="train_limit: give limit"):
        load_space(path)


def test_trial_runs_log_each_split_as_an_mlflow_dataset_and_mlflow_source_tags(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    space = load_space(write_space(tmp_path, n_trials=1))
    result = run_sweep(space, options(tmp_path, system_metrics=False), trainer=fake_trainer([]))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(result.trials[0].run_id or "")
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in run.inputs.dataset_inputs}

    assert sorted(inputs) == ["test", "train", "validation"]
    assert len({i.dataset.digest for i in inputs.values()}) == 3  # else MLflow merges them
    for split, found in inputs.items():
        tags = {t.key: t.value for t in found.tags}
        assert found.dataset.name == "mnist" and len(found.dataset.digest) <= 36
        assert (
            tags["mnist_sweep.split_sha256"].startswith(found.dataset.digest)
            and len(tags["mnist_sweep.split_sha256"]) == 64
        )
        assert tags["mnist_sweep.limit"] == str(space.limit), split
        assert int(tags["mnist_sweep.images"]) > 0
        assert found.dataset.source_type == "local" and "mnist" in found.dataset.source
    parent = client.get_run(result.parent_run_id or "")
    for tags in (run.data.tags, parent.data.tags):
        assert len(tags["mlflow.source.git.commit"]) == 40 and tags["mnist_sweep.git_dirty"] in ("true", "false")
        assert tags["mlflow.source.name"] == f"mnist-sweep@{tags['mlflow.source.git.commit'][:7]}"
        assert tags["mlflow.source.type"] == "LOCAL"
    assert not [k for k in run.data.metrics if k.startswith("system/")]  # --no-system-metrics


def test_a_trial_another_worker_closed_as_stale_is_let_go_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A worker whose trial another worker's heartbeat check closed (FAIL) mid-training carries on."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    space = load_space(write_space(tmp_path, n_trials=2, sampler="grid"))
    opts = options(tmp_path, log_models=False)
    inner = fake_trainer([])
    closed: list[int] = []

    def trainer(params: Any, dataset: Any, **kw: Any) -> Any:
        if not closed:  # the first trial: another worker takes it for lost while it trains
            storage = optuna.storages.RDBStorage(opts.storage or "")
            study_id = storage.get_study_id_from_name(space.study_name)
            running = [t for t in storage.get_all_trials(study_id) if t.state == TrialState.RUNNING]
            storage.set_trial_state_values(running[0]._trial_id, TrialState.FAIL)
            closed.append(running[0].number)
            storage.remove_session()
        return inner(params, dataset, **kw)

    result = run_sweep(space, opts, trainer=trainer)
    states = {t.number: t.state for t in result.trials}
    assert states[closed[0]] == "FAIL", states
    assert list(states.values()).count("COMPLETE") == 2, states
    client = MlflowClient(opts.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(space.study_name).experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
