"""The checkpoint store: atomic round trip, corrupt and missing checkpoints, unwritable stores refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_sweep.errors import CheckpointStoreError, CheckpointUnusable
from mnist_sweep.model import TrainingState
from mnist_sweep.sweep._checkpoints import CheckpointStore, StoreChoice, checkpoint_id, choose_store
from scaleout_support import cli_command, cli_env, error_line, write_space


def _state(epochs: int = 2) -> TrainingState:
    return TrainingState(
        epochs_done=epochs,
        history=[{"loss": 1.0 / (e + 1), "val_accuracy": 0.5 + e / 10} for e in range(epochs)],
        seed=3,
        weights=[np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, dtype=np.float32)],
        optimizer=[np.array(12, dtype=np.int64), np.full((2, 3), 0.25, dtype=np.float32)],
    )


def test_round_trip_keeps_only_the_latest_and_removes(tmp_path: Path) -> None:
    store = CheckpointStore(StoreChoice(str(tmp_path / "ckpt")))
    store.check_writable()
    key = checkpoint_id("s", 4)
    store.save(key, _state(1), params_key="k")
    store.save(key, _state(2), params_key="k")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [key], "one file per trial, no temporaries"
    loaded = store.load(key, params_key="k")
    assert loaded.epochs_done == 2 and loaded.history == _state(2).history and loaded.seed == 3
    for got, want in zip(loaded.weights + loaded.optimizer, _state(2).weights + _state(2).optimizer, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    with pytest.raises(CheckpointUnusable, match="other params"):
        store.load(key, params_key="other")
    store.remove(key)
    with pytest.raises(CheckpointUnusable, match="missing"):
        store.load(key, params_key="k")
    store.remove(key)  # twice: no error


def test_a_torn_checkpoint_is_unusable_not_fatal(tmp_path: Path) -> None:
    store = CheckpointStore(StoreChoice(str(tmp_path)))
    store.save("t", _state(), params_key="k")
    body = (tmp_path / "t").read_bytes()
    (tmp_path / "t").write_bytes(body[: len(body) // 2])
    with pytest.raises(CheckpointUnusable, match="corrupt"):
        store.load("t", params_key="k")


def test_the_flag_then_the_environment_then_the_file_then_beside_the_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_sweep.config import load_space
    from spaces import write_space as write_tiny

    path = write_tiny(tmp_path, name="c.yaml")
    plain = load_space(path)
    path.write_text(path.read_text() + "checkpoint_store: from-file\n")
    space = load_space(path)
    assert choose_store(flag="flagged", space=space, storage_url="").location == "flagged"
    monkeypatch.setenv("MNIST_SWEEP_CHECKPOINTS", "from-env")
    assert choose_store(flag=None, space=space, storage_url="").key == "$MNIST_SWEEP_CHECKPOINTS"
    monkeypatch.delenv("MNIST_SWEEP_CHECKPOINTS")
    chosen = choose_store(flag=None, space=space, storage_url="")
    assert (chosen.location, chosen.source, chosen.key) == ("from-file", str(path), "checkpoint_store")
    db = tmp_path / "sub" / "optuna.db"
    beside = choose_store(flag=None, space=plain, storage_url=f"sqlite:///{db}")
    assert beside.location == str(db.parent / "checkpoints")
    assert choose_store(flag="none", space=plain, storage_url="").location is None


def test_an_unwritable_store_in_the_space_file_names_file_and_key(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = CheckpointStore(StoreChoice(str(blocker / "ckpt"), source="s.yaml", key="checkpoint_store"))
    with pytest.raises(CheckpointStoreError, match=r"^s\.yaml: checkpoint_store: checkpoint store .*cannot create"):
        store.check_writable()


def test_run_refuses_an_unwritable_store_before_the_first_trial(tmp_path: Path) -> None:
    import subprocess

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = write_space(tmp_path, study="refused", n_trials=1)
    storage = tmp_path / "optuna.db"
    args = cli_command("run", str(path), "--storage", f"sqlite:///{storage}", "--checkpoint-store", str(blocker / "c"))
    done = subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert error_line(done.stderr).startswith("error: --checkpoint-store: checkpoint store "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not storage.exists(), "nothing half-written: no study before the store is known to work"


@pytest.mark.slow  # a real two-epoch sweep: about a minute or two on 2 busy cores
def test_a_corrupt_checkpoint_restarts_the_trial_in_a_new_run(tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    from mnist_sweep.config import load_space
    from mnist_sweep.sweep import SweepOptions, run_sweep
    from spaces import write_space as write_tiny

    space = load_space(write_tiny(tmp_path, n_trials=1))
    storage, tracking = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking)
    dead_run = client.create_run(client.create_experiment("tiny")).info.run_id
    client.set_terminated(dead_run, "FAILED")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "torn.npz").write_bytes(b"PK\x03\x04 not a whole file")
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    params = {"width": 16, "activation": "relu"}
    distributions = {p.name: p.distribution for p in space.params}
    study.add_trial(  # what a dead worker's retry looks like: its checkpoint and run inherited
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=params,
            distributions=distributions,
            user_attrs={"checkpoint": "torn.npz", "mlflow_run_id": dead_run},
            system_attrs={"failed_trial": 0, "retry_history": [0]},
        )
    )
    options = SweepOptions(storage=storage, tracking_uri=tracking, quiet=True, log_models=False, system_metrics=False)
    result = run_sweep(space, options)
    assert [t.state for t in result.trials] == ["COMPLETE"]
    trial = optuna.load_study(study_name="tiny", storage=storage).trials[0]
    assert "resumed_from_epoch" not in trial.user_attrs and len(trial.user_attrs["history"]) == 2
    assert trial.user_attrs["mlflow_run_id"] != dead_run, "restarted in a new run"
    dead = client.get_run(dead_run)
    assert dead.info.status == "FAILED"
    assert "corrupt" in dead.data.tags["mnist_sweep.checkpoint_lost"]
    assert "restarts from epoch 0" in dead.data.tags["mnist_sweep.checkpoint_lost"]


def test_a_dead_trial_out_of_retries_loses_its_checkpoint_one_with_retries_keeps_it(tmp_path: Path) -> None:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from mnist_sweep.contract import ATTR_CHECKPOINT, ATTR_RETRY_HISTORY
    from mnist_sweep.sweep._recovery import TrialRecovery

    store = CheckpointStore(StoreChoice(str(tmp_path / "ckpt")))
    store.check_writable()
    recovery = TrialRecovery(max_retry=2)
    recovery.checkpoints = store
    study = optuna.create_study()

    def dead(number: int, history: list[int]) -> optuna.trial.FrozenTrial:
        key = checkpoint_id("s", number)
        store.save(key, _state(), params_key="k")
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.FAIL,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                user_attrs={ATTR_CHECKPOINT: key},
                system_attrs={ATTR_RETRY_HISTORY: history, "failed_trial": 0} if history else {},
            )
        )
        return study.trials[-1]

    first = dead(0, [])
    recovery.handle(study, first, reason="killed", status="FAILED")
    assert (tmp_path / "ckpt" / checkpoint_id("s", 0)).is_file(), "its retry resumes the checkpoint"
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]

    last = dead(5, [0, 1])  # the original and one retry died before: this was the second (last) retry
    recovery.handle(study, last, reason="killed", status="FAILED")
    assert not (tmp_path / "ckpt" / checkpoint_id("s", 5)).exists(), "nobody will resume it"
    assert len(study.trials) == 3, "not queued again"
