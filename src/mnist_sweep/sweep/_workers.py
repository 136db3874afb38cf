"""Many worker processes on one study: ``mnist-sweep worker`` and ``mnist-sweep run --workers N``.

A worker is :func:`mnist_sweep.study.run_sweep` in worker mode against a storage that several
processes can share: PostgreSQL (any number of machines) or a journal file (one machine).
Start workers anywhere, any time, with the same search-space file and storage; each runs
trials until the study's budget is spent, and :mod:`mnist_sweep.study` keeps the budget
exact and retries the trials of workers that die.

:func:`run_parallel` is the one-machine convenience: it creates the study and its parent
MLflow run once, starts N worker processes with TensorFlow's threads divided between them,
waits for all of them, and sums up. Ctrl-C stops the workers; their runs end KILLED.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from mnist_sweep.contract import TAG_HOST, TAG_VERSION, TAG_WORKERS
from mnist_sweep.errors import ConfigError, DataError, MnistSweepError, StorageError, TrackingError, WorkerFailed
from mnist_sweep.sweep._gpus import plan_workers, visible_gpus
from mnist_sweep.sweep._options import RECYCLED

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.sweep._engine import SweepOptions, SweepResult

log = logging.getLogger(__name__)

# Seconds a worker gets to mark its runs KILLED after Ctrl-C before it is killed outright.
STOP_GRACE_SECONDS = 30.0
RELEASE_POLL_SECONDS = 0.05
TAIL_LINES = 20
# MLflow's client retries an unreachable server for about four minutes by default; a worker
# lets it try briefly and then applies its own bounded retry ($MNIST_SWEEP_RETRY_SECONDS).
MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def check_shared_storage(url: str, *, what: str) -> str:
    """The storage kind of ``url``; ConfigError when several processes cannot share it (SQLite)."""
    from mnist_sweep.stores import redact_url, storage_kind

    kind = storage_kind(url)
    if kind == "sqlite":
        raise ConfigError(
            f"{what}: the SQLite storage {redact_url(url)} cannot be shared by several worker processes "
            "(SQLite locks the whole file on every write); use --storage journal:///ABSOLUTE/PATH/study.log "
            "on one machine, or --storage postgresql://user@host/db"
        )
    return kind


def run_worker(space: SearchSpace, options: SweepOptions) -> SweepResult:
    """One worker of a shared study: run its trials until the study's budget is spent.

    The parent MLflow run is ``options.parent_run_id`` when given (not ended here), else the
    study's own, created by whichever worker comes first.
    """
    from mnist_sweep.stores import default_storage
    from mnist_sweep.sweep._engine import run_sweep

    storage = options.storage or default_storage(options.tracking_uri)
    check_shared_storage(storage, what="mnist-sweep worker")
    for name, value in MLFLOW_CLIENT_ENV.items():
        os.environ.setdefault(name, value)
    return run_sweep(space, replace(options, storage=storage, worker=True))


def threads_per_worker(workers: int) -> int:
    """TensorFlow threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


# --------------------------------------------------------------------------- run --workers N


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[str]
    result_path: Path
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    forwarder: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"

    def outcome(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.result_path.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def describe_failure(self) -> str:
        data = self.outcome()
        if data.get("error"):
            return str(data["error"])
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = next((line.strip() for line in reversed(self.tail) if line.strip()), "")
        return f"{how}" + (f" (last output: {last[:300]})" if last else "")


def run_parallel(
    space: SearchSpace,
    options: SweepOptions,
    *,
    workers: int | None = None,
    workers_per_gpu: int | None = None,
    gpus: Sequence[str] | None = None,
    max_trials_per_worker: int | None = None,
) -> SweepResult:
    """Run ``space``'s study with worker processes on this machine, one GPU each; sum them up.

    How many, and which GPU each trains on: :func:`~mnist_sweep.sweep._gpus.plan_workers`
    (``gpus`` defaults to the GPUs this machine shows). The storage must be shareable (a
    journal file or PostgreSQL; SQLite is refused) for more than one. Raises the workers'
    error when none of them finished the study.

    ``max_trials_per_worker``: a worker process exits after that many trials and a fresh one
    takes its place (same GPU) while the study's budget lasts, so a long sweep does not grow
    one process's memory without bound (TensorFlow keeps some graph state per model).
    """
    from mnist_sweep.stores import default_storage
    from mnist_sweep.sweep._engine import open_checkpoints, run_sweep
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri

    if max_trials_per_worker is not None and max_trials_per_worker < 1:
        raise ConfigError(f"--max-trials-per-worker {max_trials_per_worker}: must be at least 1")
    plan = plan_workers(workers=workers, per_gpu=workers_per_gpu, gpus=visible_gpus() if gpus is None else gpus)
    storage = options.storage or default_storage(options.tracking_uri)
    if len(plan) == 1 and max_trials_per_worker is None:
        return run_sweep(space, replace(options, storage=storage))
    check_shared_storage(storage, what=f"--workers {len(plan)}")
    tracking_uri = check_tracking_uri(options.tracking_uri or default_tracking_uri())
    open_checkpoints(space, replace(options, storage=storage))  # an unwritable store: refused before any worker
    options = replace(options, storage=storage, tracking_uri=tracking_uri)
    return _Supervisor(space, options, plan, max_trials_per_worker=max_trials_per_worker).run()


class _Supervisor:
    """Starts the workers first (they import TensorFlow and load the data meanwhile), then sets
    the study and parent run up once, releases the workers into it, and waits, recycling them."""

    def __init__(
        self,
        space: SearchSpace,
        options: SweepOptions,
        plan: Sequence[str | None],
        *,
        max_trials_per_worker: int | None = None,
    ) -> None:
        from mnist_sweep.stores import StudyMutex, storage_kind
        from mnist_sweep.sweep._engine import TrialRecovery

        self.space = space
        self.options = options
        self.plan = list(plan)
        self.workers = len(self.plan)
        self.storage = options.storage or ""
        self.mutex = StudyMutex(self.storage, space.study_name, kind=storage_kind(self.storage))
        self.recovery = TrialRecovery()
        self.max_trials_per_worker = max_trials_per_worker
        self.children: list[_Child] = []  # every worker process started, recycled ones included
        self.slots: list[_Child] = []  # the process now in each slot
        self.study: optuna.Study | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="mnist-sweep-workers-"))
        self._go = self._tmp / "go.json"  # written once the parent run exists: the workers' start signal
        self._started = 0

    def run(self) -> SweepResult:
        try:
            return self._run()
        finally:
            self.mutex.close()
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _run(self) -> SweepResult:
        threads = os.environ.get("MNIST_SWEEP_THREADS") or str(threads_per_worker(self.workers))
        # The workers first: each spends seconds importing TensorFlow and MLflow and loading the data,
        # which needs nothing from the set-up below; they wait for the go file before they touch the study.
        self._spawn_all(threads)
        try:
            return self._supervise(threads)
        except BaseException:
            if not self._go.exists():  # never released: they are only waiting
                self._stop_children()
                self._close_pipes()
            raise

    def _supervise(self, threads: str) -> SweepResult:
        from mnist_sweep import __version__
        from mnist_sweep.display import Progress
        from mnist_sweep.stores import open_storage, redact_url, with_retry
        from mnist_sweep.sweep._calls import RESUME_HINT, Calls
        from mnist_sweep.sweep._engine import open_checkpoints
        from mnist_sweep.sweep._parent import ParentRun
        from mnist_sweep.sweep._recovery import end_dead_parents
        from mnist_sweep.sweep._results import SweepResult, summarize
        from mnist_sweep.sweep._study import create_or_load_study
        from mnist_sweep.tracking import Tracker

        space, options = self.space, self.options
        what = f"storage {redact_url(self.storage)}"
        study = with_retry(lambda: create_or_load_study(space, self.storage, mutex=self.mutex), what=what)
        self.study = study
        tracker = Tracker(
            tracking_uri=options.tracking_uri,
            experiment=options.experiment or space.study_name,
            enabled=options.tracking,
        )
        self.recovery.tracker = tracker
        self.recovery.backend = with_retry(lambda: open_storage(self.storage), what=what)
        self.recovery.checkpoints = open_checkpoints(space, options)  # a dead worker's last retry: delete it
        with_retry(tracker.check, what=f"tracking server {redact_url(tracker.tracking_uri)}", error=TrackingError)
        progress = Progress(total=space.budget.n_trials, quiet=options.quiet)
        progress.message(
            f"study {space.study_name!r} ({redact_url(self.storage)}): {self.workers} workers on this machine, "
            f"{threads} TensorFlow thread(s) each"
            + (
                f", pinned to GPU(s) {', '.join(str(g) for g in self.plan)}"
                if any(g is not None for g in self.plan)
                else ""
            )
        )
        calls = Calls(storage_url=self.storage, tracking_uri=tracker.tracking_uri)
        calls.tracking(lambda: end_dead_parents(tracker, space.study_name))
        parent = ParentRun(
            study=study,
            space=space,
            tracker=tracker,
            calls=calls,
            storage_url=self.storage,
            lineage={TAG_VERSION: __version__, TAG_HOST: socket.gethostname()},
            extra_tags={TAG_WORKERS: self.workers},
            mutex=self.mutex,
        )
        with contextlib.ExitStack() as stack:
            run = parent.open(stack, mode="reopen" if options.parent_run_id else "create", run_id=options.parent_run_id)
            with _sigterm_as_interrupt():
                self._release(run.run_id or None)
                self._wait(threads)
            result = SweepResult(
                study_name=space.study_name,
                storage=redact_url(self.storage),
                direction=space.objective.direction,
                metric=space.objective.metric,
                parent_run_id=run.run_id or None,
                experiment=tracker.experiment_name,
            )
            outcomes = [child.outcome() for child in self.children]
            result.trials_run = sum(int(o.get("trials_run") or 0) for o in outcomes)
            result.trials = with_retry(lambda: summarize(study), what=what, hint=RESUME_HINT)
            parent.close(failing=False)
            self._judge(result)
        return result

    # --- children -----------------------------------------------------------------

    def _spawn_all(self, threads: str) -> None:
        for index in range(1, self.workers + 1):
            self.slots.append(self._spawn(index, threads))

    def _spawn(self, index: int, threads: str) -> _Child:
        """Start the worker process of slot ``index`` (1-based; its GPU is the plan's)."""
        self._started += 1
        gpu = self.plan[index - 1]
        env = {**os.environ, "MNIST_SWEEP_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        for name, value in MLFLOW_CLIENT_ENV.items():
            env.setdefault(name, value)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        worker_options = replace(self.options, worker=True, parent_run_id=None, max_trials=self.max_trials_per_worker)
        payload = self._tmp / f"worker-{self._started}.json"
        result_path = self._tmp / f"worker-{self._started}.result.json"
        payload.write_text(
            json.dumps(
                {
                    "space": self.space.to_dict(),
                    "source": self.space.source,
                    "text": self.space.text,
                    "options": asdict(worker_options),
                    "result": str(result_path),
                    "go": str(self._go),
                },
                default=str,
            )
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "mnist_sweep.sweep._workers", str(payload)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them in order
        )
        child = _Child(index, process, result_path)
        child.forwarder = threading.Thread(
            target=_forward, args=(process.stdout, f"[worker {index}] ", child.tail), daemon=True
        )
        child.forwarder.start()
        self.children.append(child)
        return child

    def _release(self, parent_run_id: str | None) -> None:
        """Let the waiting workers into the study, under ``parent_run_id``."""
        partial = self._go.with_suffix(".partial")
        partial.write_text(json.dumps({"parent_run_id": parent_run_id}))
        os.replace(partial, self._go)  # whole or absent for a reader

    def _wait(self, threads: str) -> None:
        try:
            while True:
                for slot, child in enumerate(self.slots):
                    if child.process.poll() == 0 and child.outcome().get("recycled"):
                        self.slots[slot] = self._spawn(child.index, threads)  # a fresh process, same GPU
                if all(child.process.poll() is not None for child in self.slots):
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            self._stop_children()
            self._recover(status="KILLED")
            raise
        finally:
            self._close_pipes()
        self._recover(status="FAILED")

    def _close_pipes(self) -> None:
        for child in self.children:
            if child.forwarder is not None:
                child.forwarder.join(timeout=5)
            if child.process.stdout is not None:
                child.process.stdout.close()

    def _stop_children(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in %g s: killing it", child.index, STOP_GRACE_SECONDS)
                child.process.kill()
                child.process.wait()

    def _recover(self, *, status: str) -> None:
        """Trials left RUNNING by workers that died: FAIL, queued again, MLflow runs ended."""
        from mnist_sweep.stores import describe

        dead = {child.worker_id for child in self.children if child.process.returncode not in (0, None)}
        if not dead or self.study is None:
            return
        study = self.study
        try:
            with self.mutex.hold():
                self.recovery.fail_dead_local_workers(study, only=dead, status=status)
        except Exception as exc:  # heartbeats (PostgreSQL) or the next run (journal) recover them
            log.warning("could not mark the trials of stopped workers FAIL: %s", describe(exc))

    def _judge(self, result: SweepResult) -> None:
        finished = [child for child in self.children if child.process.returncode == 0]
        failed = [child for child in self.children if child.process.returncode != 0]
        reasons = [o.get("stopped_reason") for o in (c.outcome() for c in finished) if not o.get("recycled")]
        result.stopped_reason = next((r for r in reasons if r), None)
        for child in failed:
            log.warning("worker %d (pid %d): %s", child.index, child.process.pid, child.describe_failure())
        if not failed:
            return
        first = failed[0]
        message = first.describe_failure()
        if finished:
            note = f"{len(failed)} of {self.workers} workers failed ({message})"
            result.stopped_reason = f"{result.stopped_reason}; {note}" if result.stopped_reason else note
            return
        error = _ERRORS.get(str(first.outcome().get("error_type")), WorkerFailed)
        if len({child.describe_failure() for child in failed}) == 1:
            raise error(f"all {self.workers} workers stopped: {message}")
        raise error(f"all {self.workers} workers stopped; worker {first.index}: {message}")


_ERRORS: dict[str, type[MnistSweepError]] = {
    "StorageError": StorageError,
    "TrackingError": TrackingError,
    "ConfigError": ConfigError,
    "ParamError": ConfigError,
    "DataError": DataError,
}


def _forward(stream: IO[str] | None, prefix: str, tail: collections.deque[str]) -> None:
    """Copy a worker's output to ours, line by line, each line marked with the worker."""
    if stream is None:
        return
    for line in stream:
        tail.append(line)
        sys.stderr.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
        sys.stderr.flush()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` (SIGTERM) stops the workers as Ctrl-C does, instead of orphaning them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- worker process


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process that :func:`run_parallel` starts (payload file in argv)."""
    from mnist_sweep.config import parse_space
    from mnist_sweep.sweep._engine import SweepOptions

    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "alembic", "optuna", "urllib3", "matplotlib", "absl", "h5py", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    payload = json.loads(Path(args[0]).read_text())
    result_path = Path(payload["result"])
    try:
        space = parse_space(payload["space"], source=payload["source"], text=payload["text"])
        options = SweepOptions(**payload["options"])
        if payload.get("go"):
            _prepare(space, options)
            options = replace(options, parent_run_id=_wait_for_release(Path(payload["go"])))
        result = run_worker(space, options)
    except MnistSweepError as exc:
        _write_json(
            result_path, {"ok": False, "error": str(exc), "error_type": type(exc).__name__, "exit_code": exc.exit_code}
        )
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        _write_json(result_path, {"ok": False, "error": "interrupted", "error_type": "KeyboardInterrupt"})
        sys.stderr.write("interrupted: runs in progress were marked KILLED\n")
        return 130
    recycled = bool(result.stopped_reason and result.stopped_reason.startswith(RECYCLED))
    _write_json(
        result_path,
        {"ok": True, "trials_run": result.trials_run, "stopped_reason": result.stopped_reason, "recycled": recycled},
    )
    return 0


def _prepare(space: SearchSpace, options: SweepOptions) -> None:
    """What a worker can do before the supervisor's set-up is done: the heavy imports and the data."""
    import mlflow  # noqa: F401  (imported for its start-up time, not used here)
    import tensorflow  # noqa: F401

    from mnist_sweep.model import load_dataset

    load_dataset(space.dataset, data_dir=options.data_dir, limit=space.limit, train_limit=space.train_limit)


def _wait_for_release(go: Path) -> str | None:
    """The parent run id, once the supervisor writes ``go``; KeyboardInterrupt if it is gone first."""
    supervisor = os.getppid()
    while not go.exists():
        if os.getppid() != supervisor:  # orphaned: the supervisor died during its set-up
            raise KeyboardInterrupt
        time.sleep(RELEASE_POLL_SECONDS)
    released: dict[str, Any] = json.loads(go.read_text())
    parent_run_id = released.get("parent_run_id")
    return str(parent_run_id) if parent_run_id else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data))


if __name__ == "__main__":  # pragma: no cover - run as a worker process
    sys.exit(main())
