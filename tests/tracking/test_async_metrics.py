"""Per-epoch metrics sent asynchronously are all in the store once the run is flushed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_sweep.tracking import Tracker


def test_flush_stores_every_batch_sent_asynchronously(tmp_path: Path) -> None:
    tracker = Tracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="async")
    with tracker.run(name="r") as run:
        for step in (1, 2, 3):
            run.log_metrics_async({"loss": 1.0 / step, "val_loss": None}, step=step)
        run.flush()
        history = tracker.client.get_metric_history(run.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
        assert tracker.client.get_metric_history(run.run_id, "val_loss") == []
        run.flush()  # nothing left: a no-op


def test_a_failed_asynchronous_batch_is_written_again(tmp_path: Path) -> None:
    tracker = Tracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="async")

    with tracker.run(name="r") as run:
        from mnist_sweep.tracking import RunHandle

        assert isinstance(run, RunHandle)
        real = run.client.log_batch
        calls = []

        def lossy(run_id: str, **kwargs: Any) -> Any:
            calls.append(kwargs)
            if len(calls) == 1:
                raise RuntimeError("the store dropped it")  # the background write fails; nothing stored
            return real(run_id, **kwargs)

        run.client.log_batch = lossy  # type: ignore[method-assign]
        run.log_metrics_async({"loss": 0.25}, step=1)
        run.flush()
        assert len(calls) == 2, "written again, synchronously"
        assert [(m.step, m.value) for m in tracker.client.get_metric_history(run.run_id, "loss")] == [(1, 0.25)]


def test_mlflow_async_queue_stays_idle_so_ending_a_run_does_not_wait_for_it(tmp_path: Path) -> None:
    # MLflow's own queue, once active, makes set_terminated join a thread that polls every second.
    tracker = Tracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="async")
    store = tracker.client._tracking_client.store
    with tracker.run(name="r") as run:
        run.log_metrics_async({"loss": 0.5}, step=1)
        run.flush()
        assert store._async_logging_queue.is_idle()


def test_ending_a_run_flushes_its_metrics(tmp_path: Path) -> None:
    tracker = Tracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="async")
    with tracker.run(name="r") as run:
        run.log_metrics_async({"loss": 0.5}, step=1)
        run_id = run.run_id
    finished = tracker.client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert [m.step for m in tracker.client.get_metric_history(run_id, "loss")] == [1]
