"""`kill -9` of a real worker after epoch 2 of 4: its trial continues from its checkpoint, epochs 3-4 only.

SQLite: the same `mnist-sweep run` again continues it. PostgreSQL: of two workers, the survivor
sees the victim's heartbeat stop and continues it. Either way the trial's MLflow run (reopened)
holds epochs 1-4 once each, and nothing is left RUNNING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaleout_support import cli_command, cli_env, temporary_database, write_space

EPOCHS = 4
KILL_AFTER = 2
# Epochs of about a second or more here: the poll (every 0.05 s) sees epoch 2 long before epoch 3 ends.
LIMIT, BATCH = 2500, 16


def _wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def _trial_after_epoch(backend: Any, study_name: str, epoch: int, worker: str | None = None) -> Any:
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=backend)
    except Exception:  # not created yet
        return None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if worker is not None and t.user_attrs.get("worker") != worker:
            continue
        if len(t.intermediate_values) >= epoch:
            return t
    return None


def _assert_continued(backend: Any, study_name: str, tracking: str, killed: Any, killed_ms: int, n_trials: int) -> None:
    from mlflow import MlflowClient
    from optuna import load_study

    trials = [
        t
        for t in load_study(study_name=study_name, storage=backend).get_trials(deepcopy=False)
        if "resampled_duplicate_of" not in t.user_attrs
    ]
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == n_trials, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    assert [t.number for t in trials if t.state.name == "FAIL"] == [killed.number], states
    continuing = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(continuing) == 1, "the killed trial is continued once"
    resumed = continuing[0]
    assert resumed.state.name == "COMPLETE" and resumed.params == killed.params
    assert resumed.user_attrs["resumed_from_epoch"] == KILL_AFTER, "continued after epoch 2, not restarted"
    assert resumed.user_attrs["continues_trial"] == killed.number
    assert sorted(resumed.intermediate_values) == [1, 2, 3, 4], "the pruner sees the whole curve"
    assert [round(v, 6) for _, v in sorted(resumed.intermediate_values.items())][:KILL_AFTER] == [
        round(killed.intermediate_values[s], 6) for s in (1, 2)
    ]
    assert len(resumed.user_attrs["history"]) == EPOCHS

    client = MlflowClient(tracking)
    run_id = resumed.user_attrs["mlflow_run_id"]
    assert run_id == killed.user_attrs["mlflow_run_id"], "the same MLflow run, reopened"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mnist_sweep.state"] == "COMPLETE"
    assert run.data.tags["mnist_sweep.resumed_from_epoch"] == str(KILL_AFTER)
    assert run.data.tags["mnist_sweep.trial_number"] == str(resumed.number)
    assert "mnist_sweep.fail_reason" not in run.data.tags
    for key in ("val_accuracy", "loss"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3, 4], f"{key}: each epoch exactly once"
        # Epochs 1-2 were logged by the killed worker, 3-4 after the kill: nothing was trained twice.
        before = sorted(m.step for m in history if m.timestamp <= killed_ms)
        assert before == [1, 2], f"{key}: {[(m.step, m.timestamp - killed_ms) for m in history]}"
    experiment = client.get_experiment_by_name(study_name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == [], "runs left RUNNING"
    trial_runs = [r for r in runs if "mnist_sweep.trial_number" in r.data.tags]
    assert len(trial_runs) == n_trials, "one run per configuration"
    assert list(Path("checkpoints").glob("*.npz")) == [], "finished trials' checkpoints are deleted"


@pytest.mark.slow  # about 2.5 minutes on 2 busy cores
def test_killed_trial_continues_from_its_checkpoint_on_sqlite(tmp_path: Path) -> None:
    from mnist_sweep.stores import open_storage

    path = write_space(tmp_path, study="resumed", n_trials=1, epochs=EPOCHS, limit=LIMIT, batch_size=BATCH)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = cli_command("run", str(path), "--storage", storage, "--tracking-uri", tracking, "--quiet")
    env = cli_env(MNIST_SWEEP_THREADS="1")
    backend = open_storage(storage)
    victim = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        killed = _wait_for(lambda: _trial_after_epoch(backend, "resumed", KILL_AFTER), timeout=300, what="epoch 2")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        killed_ms = int(time.time() * 1000)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert list((tmp_path / "checkpoints").glob("*.npz")), "the killed trial left its checkpoint"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _assert_continued(backend, "resumed", tracking, killed, killed_ms, n_trials=1)


@pytest.fixture
def tracking_db() -> Iterator[str]:
    """MLflow's store in PostgreSQL itself: two workers share it safely, without a server to start."""
    from mlflow import MlflowClient

    with temporary_database("mnist_sweep_test_resume_mlflow") as url:
        MlflowClient(url).search_experiments()  # its tables, once: two workers creating them at once collide
        yield url


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_worker_trial_continues_in_the_other_worker_on_postgresql(tmp_path: Path, tracking_db: str) -> None:
    from mnist_sweep.stores import open_storage

    path = write_space(tmp_path, study="resumed", n_trials=2, epochs=EPOCHS, limit=LIMIT, batch_size=BATCH)
    # A generous grace period: on a busy machine a live worker must never look dead.
    env = cli_env(MNIST_SWEEP_THREADS="1", MNIST_SWEEP_HEARTBEAT="2", MNIST_SWEEP_GRACE="12")
    with temporary_database("mnist_sweep_test_resume") as storage:
        backend = open_storage(storage)
        args = cli_command("worker", str(path), "--storage", storage, "--tracking-uri", tracking_db, "--quiet")
        logs = [tmp_path / f"worker-{i}.log" for i in (1, 2)]
        outs = [log.open("w") for log in logs]
        procs = [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=out) for out in outs]
        victim, survivor = procs
        try:
            victim_id = f"{os.uname().nodename}:{victim.pid}"
            try:
                killed = _wait_for(
                    lambda: _trial_after_epoch(backend, "resumed", KILL_AFTER, worker=victim_id),
                    timeout=300,
                    what="epoch 2 of the victim's trial",
                )
            except BaseException:
                print("\n".join(log.read_text()[-3000:] for log in logs))
                raise
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            killed_ms = int(time.time() * 1000)
            survivor.wait(timeout=600)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for out in outs:
                out.close()
        assert survivor.returncode == 0, logs[1].read_text()[-3000:]
        try:
            _assert_continued(backend, "resumed", tracking_db, killed, killed_ms, n_trials=2)
        finally:
            backend.engine.dispose()


@pytest.mark.slow
def test_a_kept_checkpoint_warm_starts_a_later_study_without_training_again(tmp_path: Path) -> None:
    """keep_checkpoints keeps the best trials' checkpoints; a later study's warm-start trial with the same
    params continues one (no epoch trained again) in a run of its own, with the whole curve."""
    import optuna
    from mlflow import MlflowClient

    from mnist_sweep.config import load_space
    from mnist_sweep.contract import ATTR_CHECKPOINT, ATTR_WARM_CHECKPOINT
    from mnist_sweep.model import train
    from mnist_sweep.sweep import SweepOptions, run_sweep
    from spaces import write_space as write_tiny

    store = tmp_path / "ckpt"

    def options(**kw: Any) -> SweepOptions:
        return SweepOptions(
            storage=f"sqlite:///{tmp_path / 'optuna.db'}",
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            checkpoint_store=str(store),
            quiet=True,
            log_models=False,
            **kw,
        )

    epochs: list[int] = []

    def counting(params: Any, dataset: Any, *, checkpoint: Any = None, resume: Any = None, **kw: Any) -> Any:
        given = kw.pop("on_epoch")

        def on_epoch(epoch: int, record: Any) -> None:
            epochs.append(epoch + 1)
            given(epoch, record)

        return train(params, dataset, on_epoch=on_epoch, checkpoint=checkpoint, resume=resume, **kw)

    first = load_space(write_tiny(tmp_path, n_trials=2, sampler="grid"))
    done = run_sweep(first, options(keep_checkpoints=1), trainer=counting)
    assert [t.state for t in done.trials] == ["COMPLETE"] * 2 and len(epochs) == 4
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    best = study.best_trial
    kept = best.user_attrs[ATTR_CHECKPOINT]
    assert sorted(p.name for p in store.iterdir()) == [kept], "only the best trial's checkpoint is kept"

    later = first.with_overrides(study_name="later", n_trials=1)
    target = optuna.create_study(
        study_name="later", storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize"
    )
    target.enqueue_trial(best.params, user_attrs={ATTR_WARM_CHECKPOINT: kept})
    epochs.clear()
    warm = run_sweep(later, options(), trainer=counting)
    assert epochs == [], "no epoch trained again"
    trial = optuna.load_study(study_name="later", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(best.value)
    assert trial.user_attrs["resumed_from_epoch"] == 2
    assert trial.user_attrs["test_accuracy"] == pytest.approx(best.user_attrs["test_accuracy"]), "the same weights"
    assert trial.intermediate_values == best.intermediate_values, "the pruner saw the whole curve"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(warm.trials[0].run_id or "")
    assert run.info.run_id != best.user_attrs["mlflow_run_id"], "a run of its own"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
    assert run.data.tags["mnist_sweep.warm_start_checkpoint"] == kept
    assert (store / kept).is_file(), "the earlier study's kept checkpoint is left as it was"
    assert len(list(store.iterdir())) == 1, "the warm-start trial's own checkpoint went when it finished"
