"""Many workers on one study: real worker processes, a real PostgreSQL, a real MLflow server.

What must hold: the budget is exact across workers, every trial run nests under one parent
run, a worker killed mid-trial has its trial failed and retried (its MLflow run not left
RUNNING), and a lost database means a bounded retry then one clear error line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scaleout_support import (
    admin_execute,
    cli_command,
    cli_env,
    error_line,
    free_port,
    mlflow_server,
    run_cli,
    temporary_database,
    write_space,
)

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (PostgreSQL backend, served artifacts) for this module's tests."""
    from mnist_sweep.tracking.server import build_config, command_line

    folder = tmp_path_factory.mktemp("mlflow-server")
    with temporary_database("mnist_sweep_test_mlflow") as backend:
        port = free_port()
        config = build_config(
            backend_store_uri=backend, artifacts_destination=str(folder / "artifacts"), port=port, workers=1
        )
        with mlflow_server(command_line(config), config.url, folder / "server.log") as url:
            yield url


@pytest.fixture
def pg_storage() -> Iterator[str]:
    with temporary_database("mnist_sweep_test_optuna") as url:
        try:
            yield url
        finally:
            backend = _BACKENDS.pop(url, None)
            if backend is not None:
                backend.engine.dispose()


_BACKENDS: dict[str, Any] = {}


def load(url: str, name: str) -> Any:
    """The study as it is now (one storage object per URL: tests poll often)."""
    import optuna

    from mnist_sweep.stores._storage import open_storage

    if url not in _BACKENDS:
        _BACKENDS[url] = open_storage(url)
    return optuna.load_study(study_name=name, storage=_BACKENDS[url])


def runs_of(tracking_uri: str, experiment: str) -> tuple[Any, list[Any]]:
    """(the parent run, the child runs) of ``experiment``; exactly one parent is asserted."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.data.tags.get("mlflow.runName") for r in parents]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    return parents[0], children


def trials_of(study: Any) -> list[Any]:
    """The study's trials, without those closed at once because the sampler repeated a visited point."""
    return [t for t in study.get_trials(deepcopy=False) if "resampled_duplicate_of" not in t.user_attrs]


def states(study: Any) -> list[str]:
    return [t.state.name for t in trials_of(study)]


# --------------------------------------------------------------------------- PostgreSQL + tracking server


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgresql(tmp_path: Path, pg_storage: str, tracking_server: str) -> None:
    path = write_space(tmp_path, study="shared", n_trials=6)
    started = time.monotonic()
    done = run_cli(
        "run", str(path), "--workers", "2", "--storage", pg_storage, "--tracking-uri", tracking_server,
        "--experiment", "shared-2w", "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"2 workers, 6 trials: {time.monotonic() - started:.1f} s")

    study = load(pg_storage, "shared")
    trials = trials_of(study)
    assert len(trials) == 6
    assert states(study) == ["COMPLETE"] * 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"

    parent, children = runs_of(tracking_server, "shared-2w")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mnist_sweep.workers"] == "2"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert len(children) == 6
    assert sorted(int(r.data.tags["mnist_sweep.trial_number"]) for r in children) == [t.number for t in trials]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in trials}
    assert {r.data.tags["mnist_sweep.worker"] for r in children} == {t.user_attrs["worker"] for t in trials}
    # Artifacts went through the server (--serve-artifacts): the plots of every trial are there.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_server)
    trained = {t.user_attrs["mlflow_run_id"] for t in trials if "duplicate_of" not in t.user_attrs}
    assert trained
    for run in (r for r in children if r.info.run_id in trained):
        assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {
            "plots/learning_curves.png",
            "plots/confusion_matrix.png",
        }
    assert "trials" in done.stdout and "6 COMPLETE" in done.stdout


def _wait_for(predicate: Any, *, timeout: float, what: str, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def _drain(process: subprocess.Popen[str], sink: list[str]) -> threading.Thread:
    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sink.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_run_asha_with_brackets_on_postgresql(tmp_path: Path, pg_storage: str) -> None:
    """asha's rule under the study lock across two real workers: no paused trial is continued twice,
    brackets fill in their proportions whichever worker asks, and promotions stay in their bracket."""
    path = write_space(tmp_path, study="asha2w", n_trials=9, epochs=3, sampler="random")
    path.write_text(
        path.read_text().replace(
            "pruner: {name: none}", "pruner: {name: asha, options: {min_resource: 1, reduction_factor: 3, brackets: 2}}"
        )
    )
    done = run_cli("run", str(path), "--workers", "2", "--storage", pg_storage, "--no-tracking", "-q")
    assert done.returncode == 0, done.stderr[-4000:]

    study = load(pg_storage, "asha2w")
    trials = trials_of(study)
    by_number = {t.number: t for t in trials}
    originals = [t for t in trials if "promotion_of" not in t.user_attrs]
    continuations = [t for t in trials if "promotion_of" in t.user_attrs]
    assert len(originals) == 9, "the budget counts configurations"
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}, states(study)
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"
    # Rungs 1, 3: bracket 0 pauses at epoch 1, bracket 1 trains straight to 3. Shares 1.5 : 1, each
    # configuration to the bracket furthest below its share: 6 and 3 of 9.
    brackets = [t.user_attrs["asha_bracket"] for t in originals]
    assert sorted(brackets) == [0] * 6 + [1] * 3, brackets
    for t in originals:
        if t.user_attrs["asha_bracket"] == 1:
            assert t.state.name == "COMPLETE" and sorted(t.intermediate_values) == [1, 2, 3]
        else:
            assert t.user_attrs["paused_at_epoch"] == 1
    promoted = [int(t.user_attrs["promotion_of"]) for t in continuations]
    assert promoted and len(set(promoted)) == len(promoted), "no paused trial is continued twice"
    for t in continuations:
        source = by_number[int(t.user_attrs["promotion_of"])]
        assert t.params == source.params and t.user_attrs["asha_bracket"] == source.user_attrs["asha_bracket"] == 0
    first_rung = [t for t in originals if t.user_attrs["asha_bracket"] == 0]
    assert max(first_rung, key=lambda t: t.intermediate_values[1]).number in promoted, "the rung's best went on"
    closed = sorted(t.number for t in first_rung if t.number not in promoted)
    assert study.user_attrs["asha_closed"] == closed, "paused trials never promoted were closed at the end"


@pytest.mark.postgres
def test_worker_killed_mid_trial_is_failed_and_retried(tmp_path: Path, pg_storage: str, tracking_server: str) -> None:
    import optuna

    heartbeat, grace = 1, 4
    env = cli_env(MNIST_SWEEP_HEARTBEAT=str(heartbeat), MNIST_SWEEP_GRACE=str(grace))
    # Trials of a few seconds, so that one can be killed in the middle of its training.
    path = write_space(tmp_path, study="killed", n_trials=6, epochs=5, limit=800, batch_size=16)
    args = ["worker", str(path), "--storage", pg_storage, "--tracking-uri", tracking_server, "--experiment", "killed"]
    args += ["--checkpoint-store", "none"]  # restarted from epoch 0; test_checkpoint_resume.py: continued
    outputs: list[list[str]] = [[], []]
    procs = [
        subprocess.Popen(
            cli_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        for _ in range(2)
    ]
    readers = [_drain(p, out) for p, out in zip(procs, outputs, strict=True)]
    victim, survivor = procs
    try:
        victim_id = f"{os.uname().nodename}:{victim.pid}"

        def victim_mid_training() -> Any:
            try:
                study = load(pg_storage, "killed")
            except (KeyError, Exception):
                return None
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if (
                    t.user_attrs.get("worker") == victim_id
                    and t.intermediate_values
                    and "mlflow_run_id" in t.user_attrs
                ):
                    return t
            return None

        target = _wait_for(victim_mid_training, timeout=180, what="a trial of the victim in mid-training")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        killed_at = time.monotonic()

        def failed() -> bool:
            return bool(load(pg_storage, "killed").get_trials(deepcopy=False)[target.number].state.name == "FAIL")

        _wait_for(failed, timeout=grace + 20, what=f"trial {target.number} to be marked FAIL")
        detected = time.monotonic() - killed_at
        survivor.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for p, reader in zip(procs, readers, strict=True):
            reader.join(timeout=5)
            if p.stdout is not None:
                p.stdout.close()
    print(f"killed trial {target.number} marked FAIL {detected:.1f} s after SIGKILL (grace {grace} s)")
    assert victim.returncode == -signal.SIGKILL
    assert survivor.returncode == 0, "".join(outputs[1])[-4000:]
    assert detected <= grace + 2 * heartbeat + 3

    study = load(pg_storage, "killed")
    trials = trials_of(study)
    by_state = {s: [t for t in trials if t.state.name == s] for s in ("COMPLETE", "FAIL", "RUNNING", "WAITING")}
    assert len(by_state["COMPLETE"]) == 6, states(study)
    assert [t.number for t in by_state["FAIL"]] == [target.number]
    assert not by_state["RUNNING"] and not by_state["WAITING"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == target.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].params == target.params
    assert len({t.number for t in trials}) == len(trials)

    parent, children = runs_of(tracking_server, "killed")
    assert parent.info.status == "FINISHED"
    killed_run = next(r for r in children if r.info.run_id == target.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED"
    assert killed_run.data.tags["mnist_sweep.state"] == "FAIL"
    assert "heartbeat" in killed_run.data.tags["mnist_sweep.fail_reason"]
    assert len(children) == 7  # six finished trials and the killed one
    assert [r.info.status for r in children].count("FINISHED") == 6


@pytest.mark.postgres
def test_database_going_away_gives_bounded_retry_then_one_clear_line(tmp_path: Path, pg_storage: str) -> None:
    """The storage stops answering mid-sweep: retry for $MNIST_SWEEP_RETRY_SECONDS, then exit 1.

    Finished trials keep their results, in the study and in MLflow.
    """
    from mlflow import MlflowClient

    database = pg_storage.rsplit("/", 1)[1]
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_space(tmp_path, study="outage", n_trials=40)
    env = cli_env(MNIST_SWEEP_RETRY_SECONDS="4")
    process = subprocess.Popen(
        cli_command("worker", str(path), "--storage", pg_storage, "--tracking-uri", tracking, "--experiment", "outage"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = _drain(process, output)
    try:

        def two_complete() -> bool:
            try:
                return states(load(pg_storage, "outage")).count("COMPLETE") >= 2
            except KeyError:  # no study yet
                return False

        try:
            _wait_for(two_complete, timeout=180, what="two finished trials")
        except BaseException:
            print("".join(output)[-4000:])
            raise
        finished_before = load(pg_storage, "outage")
        done = [t for t in finished_before.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        admin_execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        stopped_at = time.monotonic()
        process.wait(timeout=120)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        admin_execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    text = "".join(output)
    assert process.returncode == 1, text[-4000:]
    line = error_line(text)
    _assert_gave_up(line, f"error: storage {pg_storage}", budget=4)
    assert "retrying in" in text
    assert took < 4 + 60, f"took {took:.0f} s"

    _BACKENDS.pop(pg_storage).engine.dispose()  # its connections were terminated with the others
    after = {t.number: t for t in load(pg_storage, "outage").get_trials(deepcopy=False)}
    client = MlflowClient(tracking_uri=tracking)
    for t in done:
        assert after[t.number].state.name == "COMPLETE" and after[t.number].value == t.value
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        # A trial that drew the params of an earlier one reuses its value and logs only the final metric.
        key = "final_val_accuracy" if "duplicate_of" in t.user_attrs else "val_accuracy"
        assert run.data.metrics[key] == pytest.approx(t.value)


def _assert_gave_up(line: str, prefix: str, *, budget: int) -> None:
    """The one error line after retries: it names the store and the seconds actually waited.

    The last attempt may end a little past the budget (a connect on a busy machine), so the
    rounded figure is the budget or a few seconds more, never less.
    """
    found = re.match(re.escape(prefix) + r": unreachable, gave up after (\d+) s of retries \(", line)
    assert found is not None, line
    assert budget <= int(found.group(1)) <= budget + 10, line


@pytest.mark.postgres
def test_missing_database_is_refused_with_bounded_retry(tmp_path: Path) -> None:
    from scaleout_support import database_url

    url = database_url("mnist_sweep_no_such_database")
    path = write_space(tmp_path, study="nodb", n_trials=2)
    started = time.monotonic()
    done = run_cli("worker", str(path), "--storage", url, env=cli_env(MNIST_SWEEP_RETRY_SECONDS="2"), timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    line = error_line(done.stderr)
    _assert_gave_up(line, f"error: storage {url}", budget=2)
    assert 'database "mnist_sweep_no_such_database" does not exist' in line
    assert took < 60


def test_closed_port_gives_bounded_retry_then_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/optuna"
    path = write_space(tmp_path, study="closed", n_trials=2)
    started = time.monotonic()
    done = run_cli("worker", str(path), "--storage", url, env=cli_env(MNIST_SWEEP_RETRY_SECONDS="3"), timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    line = error_line(done.stderr)
    _assert_gave_up(line, f"error: storage {url}", budget=3)
    assert "Connection refused" in line
    assert done.stderr.count("retrying in") >= 2
    assert 3 <= took < 60  # no TensorFlow import before the storage answers


# --------------------------------------------------------------------------- one machine, no database


@pytest.mark.slow
def test_journal_file_lets_two_workers_share_a_study(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_space(tmp_path, study="journal", n_trials=4)
    done = run_cli(
        "run", str(path), "--workers", "2", "--storage", f"journal://{journal}", "--tracking-uri", tracking, "-q"
    )
    assert done.returncode == 0, done.stderr[-4000:]
    study = load(f"journal://{journal}", "journal")
    assert len(trials_of(study)) == 4
    assert states(study) == ["COMPLETE"] * 4
    parent, children = runs_of(tracking, "journal")
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    assert "[worker 1]" in done.stderr and "[worker 2]" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{path}", "--workers", "2"],
        ["run", "{path}", "--workers", "2", "--storage", "sqlite:///{tmp}/optuna.db"],
        ["worker", "{path}", "--storage", "sqlite:///{tmp}/optuna.db"],
        ["worker", "{path}"],
    ],
)
def test_sqlite_is_refused_for_several_workers(tmp_path: Path, args: list[str]) -> None:
    from mnist_sweep.cli import main

    path = write_space(tmp_path, study="lite", n_trials=2)
    result = CliRunner().invoke(main, [a.format(path=path, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert "SQLite" in line and "journal:///" in line and "postgresql://" in line
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.slow
def test_workers_are_recycled_after_their_trials_and_the_study_still_ends_exactly(tmp_path: Path) -> None:
    from mnist_sweep.contract import ATTR_WORKER

    journal = tmp_path / "study.log"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_space(tmp_path, study="recycled", n_trials=4)
    done = run_cli(
        "run", str(path), "--workers", "2", "--max-trials-per-worker", "1",
        "--storage", f"journal://{journal}", "--tracking-uri", tracking, "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    study = load(f"journal://{journal}", "recycled")
    assert states(study) == ["COMPLETE"] * 4
    # One trial per process: four worker processes ran the four trials, two slots at a time.
    assert len({t.user_attrs[ATTR_WORKER] for t in trials_of(study)}) == 4
    parent, children = runs_of(tracking, "recycled")
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}


def test_max_trials_per_worker_must_be_positive(tmp_path: Path) -> None:
    from mnist_sweep.cli import main

    path = write_space(tmp_path, study="zero", n_trials=2)
    result = CliRunner().invoke(
        main, ["run", str(path), "--max-trials-per-worker", "0", "--storage", f"journal://{tmp_path}/s.log"]
    )
    assert result.exit_code == 2 and "--max-trials-per-worker 0: must be at least 1" in result.output


def test_workers_must_be_positive(tmp_path: Path) -> None:
    from mnist_sweep.cli import main

    path = write_space(tmp_path, study="zero", n_trials=2)
    result = CliRunner().invoke(main, ["run", str(path), "--workers", "0", "--storage", f"journal://{tmp_path}/s.log"])
    assert result.exit_code == 2 and "--workers 0: must be at least 1" in result.output


# --------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///optuna.db", "sqlite"),
        ("sqlite:///runs/study.log", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("postgresql+psycopg2://u@h/db", "postgresql"),
        ("mysql+pymysql://u@h/db", "mysql"),
        ("journal:///abs/study.log", "journal"),
        ("runs/study.log", "journal"),
    ],
)
def test_storage_kind(url: str, kind: str) -> None:
    from mnist_sweep.stores._storage import storage_kind

    assert storage_kind(url) == kind


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("journal:///abs/path/study.log", "/abs/path/study.log"),
        ("journal:////abs/study.log", "/abs/study.log"),
        ("journal://rel/study.log", "rel/study.log"),
        ("journal:rel.log", "rel.log"),
        ("runs/study.journal", "runs/study.journal"),
    ],
)
def test_journal_path(url: str, path: str) -> None:
    from mnist_sweep.stores._coordination import journal_path

    assert journal_path(url) == Path(path)


def test_journal_storage_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    from mnist_sweep.errors import StorageError
    from mnist_sweep.stores._storage import open_storage

    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"journal://{tmp_path}/nowhere/study.log")


def test_transient_errors_are_told_apart() -> None:
    import psycopg
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException, RestException

    from mnist_sweep.errors import StorageError
    from mnist_sweep.stores._coordination import describe, is_transient

    refused = psycopg.OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs')
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, refused)
    assert is_transient(refused) and is_transient(wrapped)
    assert describe(wrapped) == 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    try:
        try:
            raise wrapped
        except Exception:
            raise StorageError("storage x: cannot open") from None
    except StorageError as exc:
        assert is_transient(exc)  # the cause is kept as context
    assert is_transient(ConnectionRefusedError())
    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert not is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}))
    assert not is_transient(MlflowException("a bug on this side"))
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, ValueError("duplicate")))


def test_with_retry_backs_off_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_sweep.errors import StorageError
    from mnist_sweep.stores import _coordination as coordination

    pauses: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(coordination.time, "sleep", sleep)
    monkeypatch.setattr(coordination.time, "monotonic", lambda: clock[0])
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionRefusedError("refused")
        return "ok"

    assert coordination.with_retry(flaky, what="storage s", seconds=60) == "ok"
    assert pauses == [0.5, 1.0, 2.0]

    pauses.clear()

    def down() -> None:
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    with pytest.raises(StorageError) as info:
        coordination.with_retry(down, what="storage s", seconds=20, hint="run it again")
    assert str(info.value) == (
        "storage s: unreachable, gave up after 20 s of retries ([Errno 111] Connection refused); run it again"
    )
    assert sum(pauses) == pytest.approx(20) and max(pauses) <= 10

    with pytest.raises(ValueError):  # not an outage: no retry
        coordination.with_retry(lambda: int("x"), what="storage s", seconds=60)


def test_retry_and_heartbeat_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_sweep.errors import ConfigError
    from mnist_sweep.stores._coordination import retry_seconds
    from mnist_sweep.stores._storage import heartbeat_settings

    assert heartbeat_settings() == (10, 30)
    monkeypatch.setenv("MNIST_SWEEP_HEARTBEAT", "2")
    monkeypatch.setenv("MNIST_SWEEP_GRACE", "6")
    assert heartbeat_settings() == (2, 6)
    monkeypatch.setenv("MNIST_SWEEP_GRACE", "2")
    with pytest.raises(ConfigError, match="must exceed"):
        heartbeat_settings()
    monkeypatch.setenv("MNIST_SWEEP_RETRY_SECONDS", "soon")
    with pytest.raises(ConfigError, match="MNIST_SWEEP_RETRY_SECONDS"):
        retry_seconds()


def _hold_and_count(mutex: Any, inside: list[int], peak: list[int]) -> None:
    for _ in range(20):
        with mutex.hold():
            inside.append(1)
            peak[0] = max(peak[0], len(inside))
            time.sleep(0.002)
            inside.pop()


def test_study_mutex_excludes_on_a_journal_file(tmp_path: Path) -> None:
    from mnist_sweep.stores._coordination import StudyMutex

    url = f"journal://{tmp_path}/study.log"
    inside: list[int] = []
    peak = [0]
    mutexes = [StudyMutex(url, "s", kind="journal") for _ in range(3)]  # separate file handles, as processes
    threads = [threading.Thread(target=_hold_and_count, args=(m, inside, peak)) for m in mutexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1


@pytest.mark.postgres
def test_study_mutex_excludes_on_postgresql(pg_storage: str) -> None:
    from mnist_sweep.stores._coordination import StudyMutex

    inside: list[int] = []
    peak = [0]
    mutexes = [StudyMutex(pg_storage, "s", kind="postgresql") for _ in range(3)]  # three connections
    threads = [threading.Thread(target=_hold_and_count, args=(m, inside, peak)) for m in mutexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in mutexes:
        m.close()
    assert peak[0] == 1


def _open_run(tracking: str) -> str:
    from mnist_sweep.tracking._runs import Tracker

    tracker = Tracker(tracking_uri=tracking, experiment="lost")
    return str(tracker.client.create_run(tracker.experiment_id, run_name="trial").info.run_id)


def _tracked_trial(study: Any, run_id: str, worker: str) -> Any:
    """A RUNNING trial with an open MLflow run, as a worker leaves it when it is killed."""
    import optuna

    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("mlflow_run_id", run_id)
    return trial


def test_trial_of_a_dead_local_worker_is_failed_and_queued_again(tmp_path: Path) -> None:
    """Journal files have no heartbeats: a trial whose worker process is gone is recovered by pid."""
    import optuna
    from mlflow import MlflowClient

    from mnist_sweep.stores._storage import open_storage
    from mnist_sweep.sweep._recovery import TrialRecovery
    from mnist_sweep.tracking._runs import Tracker

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = optuna.create_study(study_name="lost", storage=open_storage(f"journal://{tmp_path}/s.log"))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = _open_run(tracking)
    trial = _tracked_trial(study, run_id, f"{os.uname().nodename}:{gone.pid}")
    alive = _tracked_trial(study, _open_run(tracking), f"{os.uname().nodename}:{os.getpid()}")

    recovery = TrialRecovery()
    recovery.tracker = Tracker(tracking_uri=tracking, experiment="lost")
    assert recovery.fail_dead_local_workers(study) == [trial.number]

    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "WAITING"]
    assert trials[2].system_attrs["failed_trial"] == trial.number and trials[2].params == trials[0].params
    run = MlflowClient(tracking_uri=tracking).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["mnist_sweep.state"] == "FAIL"
    study.tell(alive, 0.5)


@pytest.mark.postgres
def test_stale_trial_on_postgresql_is_failed_by_heartbeat(
    tmp_path: Path, pg_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    from mlflow import MlflowClient

    from mnist_sweep.stores._storage import open_storage
    from mnist_sweep.sweep._recovery import TrialRecovery
    from mnist_sweep.tracking._runs import Tracker

    monkeypatch.setenv("MNIST_SWEEP_HEARTBEAT", "1")
    monkeypatch.setenv("MNIST_SWEEP_GRACE", "2")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recovery = TrialRecovery()
    recovery.tracker = Tracker(tracking_uri=tracking, experiment="lost")
    backend = open_storage(pg_storage, heartbeat=True, on_lost_trial=recovery)
    study = optuna.create_study(study_name="stale", storage=backend)
    run_id = _open_run(tracking)
    with pytest.warns(UserWarning, match="Heartbeat"):
        trial = _tracked_trial(study, run_id, "elsewhere:1")
    study_id = backend.get_study_id_from_name("stale")
    backend.record_heartbeat(backend.get_trial_id_from_study_id_trial_number(study_id, trial.number))
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials(deepcopy=False)[0].state.name == "RUNNING"  # not stale yet
    time.sleep(3.5)
    optuna.storages.fail_stale_trials(study)

    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "WAITING"]
    assert recovery.recovered == [trial.number]
    run = MlflowClient(tracking_uri=tracking).get_run(run_id)
    assert run.info.status == "FAILED"
    assert "no heartbeat" in run.data.tags["mnist_sweep.fail_reason"]
