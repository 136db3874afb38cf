"""`kill -9` of a real `mnist-sweep run` mid-trial (no checkpoints), then the same command again: nothing RUNNING."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from scaleout_support import cli_command, cli_env, temporary_database, write_space

N_TRIALS = 3


def _wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def _running_trial_in_training(storage: Any, study_name: str) -> Any:
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except Exception:  # not created yet, or the file is being written
        return None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.intermediate_values and "mlflow_run_id" in t.user_attrs:
            return t
    return None


def kill_then_rerun(tmp_path: Path, storage: str, env: dict[str, str]) -> None:
    from mlflow import MlflowClient
    from optuna import load_study

    path = write_space(tmp_path, study="victim", n_trials=N_TRIALS, epochs=6, limit=800, batch_size=16)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Without checkpoints a dead trial starts again (tests/sweep/test_checkpoint_resume.py: with them).
    args = cli_command(
        "run", str(path), "--storage", storage, "--tracking-uri", tracking, "--quiet", "--checkpoint-store", "none"
    )
    from mnist_sweep.stores import open_storage

    backend = open_storage(storage)  # one storage object: polling must not open a connection pool each time
    victim = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _running_trial_in_training(backend, "victim"), timeout=300, what="a trial in mid-training")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    every = load_study(study_name="victim", storage=backend).get_trials(deepcopy=False)
    trials = [t for t in every if "resampled_duplicate_of" not in t.user_attrs]  # the sampler's repeats, closed
    if hasattr(backend, "engine"):
        backend.engine.dispose()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    killed = [t for t in trials if t.state.name == "FAIL"]
    assert len(killed) == 1, states
    if storage.startswith("sqlite"):  # with heartbeats, Optuna fails the trial itself: the run's tag says why
        assert "died (its process is gone on this machine)" in killed[0].user_attrs["fail_reason"]

    finished = [t for t in trials if t.state.name == "COMPLETE"]
    keys = [t.user_attrs["params_key"] for t in finished]
    assert len(set(keys)) == len(keys), "the re-run drew params the study had already run"
    retry = [t for t in finished if t.params == killed[0].params]
    assert len(retry) == 1, "the killed trial was retried once with its own params"

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("victim")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == [], "runs left RUNNING"
    parents = [r for r in runs if r.data.tags.get("mnist_sweep.role") == "study"]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"], "one parent run per invocation"
    dead_parent = next(r for r in parents if r.info.status == "FAILED")
    assert f":{victim.pid} died" in dead_parent.data.tags["mnist_sweep.fail_reason"]
    assert dead_parent.data.tags["mnist_sweep.owner"].endswith(f":{victim.pid}")
    killed_run = client.get_run(killed[0].user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED"
    assert killed_run.data.tags["mnist_sweep.state"] == "FAIL"
    how = "died (its process is gone" if storage.startswith("sqlite") else "detected by heartbeat"
    assert how in killed_run.data.tags["mnist_sweep.fail_reason"]


@pytest.mark.slow
def test_kill_9_then_rerun_on_sqlite_leaves_nothing_running(tmp_path: Path) -> None:
    kill_then_rerun(tmp_path, f"sqlite:///{tmp_path / 'optuna.db'}", cli_env())


@pytest.mark.postgres
def test_kill_9_then_rerun_on_postgresql_leaves_nothing_running(tmp_path: Path) -> None:
    with temporary_database("mnist_sweep_test_kill") as storage:
        kill_then_rerun(tmp_path, storage, cli_env(MNIST_SWEEP_HEARTBEAT="1", MNIST_SWEEP_GRACE="3"))
