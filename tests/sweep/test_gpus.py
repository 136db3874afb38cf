"""One GPU per worker: the assignment logic and GPU counting, without a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnist_sweep.errors import ConfigError
from mnist_sweep.sweep._gpus import plan_workers, visible_gpus

PLANS = [
    # (workers, per_gpu, gpus, plan)
    (None, None, [], [None]),
    (3, None, [], [None, None, None]),
    (None, 2, [], [None]),  # no GPU: nothing changes
    (None, None, ["0", "1"], ["0"]),  # neither flag: one worker, as before
    (4, None, ["0", "1"], ["0", "1", "0", "1"]),
    (3, None, ["0", "1"], ["0", "1", "0"]),
    (None, 2, ["0", "1", "2"], ["0", "1", "2", "0", "1", "2"]),
    (2, 4, ["0", "1"], ["0", "1"]),  # --workers wins, spread evenly
    (5, 1, ["3", "5"], ["3", "5", "3", "5", "3"]),  # the ids CUDA_VISIBLE_DEVICES gave
]


@pytest.mark.parametrize(("workers", "per_gpu", "gpus", "plan"), PLANS)
def test_plan_workers(workers: int | None, per_gpu: int | None, gpus: list[str], plan: list[str | None]) -> None:
    assert plan_workers(workers=workers, per_gpu=per_gpu, gpus=gpus) == plan


@pytest.mark.parametrize(
    ("workers", "per_gpu", "message"), [(0, None, "--workers 0"), (None, 0, "--workers-per-gpu 0")]
)
def test_bad_counts_are_config_errors(workers: int | None, per_gpu: int | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_workers(workers=workers, per_gpu=per_gpu, gpus=["0"])


def test_visible_gpus_reads_cuda_visible_devices_then_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-2)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus({}) == ["0", "1"]
    fake.unlink()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus({}) == []


@pytest.mark.slow
def test_supervisor_pins_each_worker_with_cuda_visible_devices(tmp_path: Path) -> None:
    """Two real worker processes, told there are GPUs 4 and 7: each trains with one of them visible."""
    import optuna

    from mnist_sweep.config import load_space
    from mnist_sweep.sweep import SweepOptions, run_parallel
    from spaces import write_space

    path = write_space(tmp_path, n_trials=2, fixed="{epochs: 1, batch_size: 64}")
    storage = f"journal:///{tmp_path / 'study.log'}"
    options = SweepOptions(storage=storage, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", quiet=True)
    # No GPU here: TensorFlow in the children finds none under CUDA_VISIBLE_DEVICES=4 / 7 and
    # trains on the CPU; the device each trial records names the pinned id all the same.
    result = run_parallel(load_space(path), options, workers=2, gpus=["4", "7"])
    assert result.trials_run == 2
    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    trials = optuna.load_study(study_name="tiny", storage=backend).get_trials(deepcopy=False)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2
    devices = {t.user_attrs["worker"]: t.user_attrs["device"] for t in trials}
    assert sorted(d.rsplit("=", 1)[-1].rstrip(")") for d in devices.values()) == ["4", "7"], devices
