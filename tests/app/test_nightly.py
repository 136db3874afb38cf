"""The nightly job: the storage lock, warm start, retention, and two simulated
nights end to end (tiny real data, explicit dates, sqlite stores under tmp_path)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from mnist_sweep.app._night_studies import delete_old_studies, sampled_params
from mnist_sweep.app._nightly import NightlyOptions, parse_date, run_nightly
from mnist_sweep.config import load_nightly, night_study_name, parse_space
from mnist_sweep.errors import AlreadyRunning, ConfigError
from mnist_sweep.stores._locks import JobLock, LockLost, lock_holder
from mnist_sweep.tracking import delete_old_trial_runs
from nightly_support import SPACE, write_config

ROOT = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


@pytest.mark.parametrize(("value", "message"), [("2026-13-01", "not a calendar date"), ("01/02/2026", "like 2026")])
def test_bad_date(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_date(value)
    assert info.value.key == "--date"
    assert parse_date("2026-02-28") == dt.date(2026, 2, 28)


def test_cli_config_errors_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mnist_sweep.cli import main

    path = write_config(tmp_path, {"budget": {}})
    result = CliRunner().invoke(main, ["nightly", str(path)])
    assert result.exit_code == 2, result.output
    assert "budget: at least one of" in result.output
    good = write_config(tmp_path)
    result = CliRunner().invoke(main, ["nightly", str(good), "--date", "2026-02-30"])
    assert result.exit_code == 2 and "--date" in result.output
    result = CliRunner().invoke(main, ["nightly", str(good), "--check"])
    assert result.exit_code == 0 and "ok:" in result.output and "tiny-model@champion" in result.output


def test_unreachable_storage_is_a_fast_failure_exit_1(tmp_path: Path) -> None:
    """The pre-flight check answers within 10 s, with the 60 s retry window left at its default."""
    import time

    import mlflow
    import sqlalchemy
    from click.testing import CliRunner

    from mnist_sweep.cli import main

    assert mlflow and sqlalchemy  # imported up front: the bound is for the check, not the imports
    path = write_config(tmp_path)
    storage = "postgresql://nobody:secret@127.0.0.1:9/optuna"  # the discard port: nothing listens
    started = time.monotonic()
    result = CliRunner().invoke(main, ["nightly", str(path), "--date", "2026-01-01", "--storage", storage])
    assert time.monotonic() - started < 10, result.output
    assert result.exit_code == 1, result.output
    assert "error: night 2026-01-01: storage postgresql://nobody:***@127.0.0.1:9/optuna: unreachable" in result.output
    assert "secret" not in result.output
    assert not list(tmp_path.glob("*.db")), "nothing may be created before the servers answer"


def test_unreachable_tracking_server_is_a_fast_failure_exit_1(tmp_path: Path) -> None:
    import time

    import mlflow
    from click.testing import CliRunner

    from mnist_sweep.cli import main

    assert mlflow
    path = write_config(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["nightly", str(path), "--date", "2026-01-01", "--storage", storage, "--tracking-uri", "http://127.0.0.1:1"],
    )
    assert time.monotonic() - started < 10, result.output
    assert result.exit_code == 1, result.output
    assert "error: night 2026-01-01: tracking server http://127.0.0.1:1: unreachable" in result.output


# --------------------------------------------------------------------------- warm start


def test_sampled_params_keeps_only_what_tonight_samples() -> None:
    space = parse_space(
        {
            "study": "s",
            "dataset": "mnist",
            "budget": {"n_trials": 1},
            "fixed": {"epochs": 1},
            "space": {
                "depth": {"type": "int", "low": 1, "high": 3},
                "width": {"type": "categorical", "choices": [16, 32], "per_layer": True},
                "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
            },
        }
    )
    champion = {
        "depth": 2,
        "width_1": 32,
        "width_2": 64,  # not a choice tonight: left to the sampler
        "width": 32,  # per-layer tonight: a plain `width` is not sampled
        "learning_rate": 0.5,  # out of range tonight
        "epochs": 7,  # fixed tonight
        "activation": "tanh",  # not in tonight's space
    }
    assert sampled_params(space, champion) == {"depth": 2, "width_1": 32}


def test_seconds_spent_counts_the_nights_finished_trials(tmp_path: Path) -> None:
    from mnist_sweep.app._night_studies import seconds_spent

    config = load_nightly(write_config(tmp_path))
    url = storage_url(tmp_path)
    night = dt.date(2026, 1, 1)
    assert seconds_spent(url, config, night) == 0.0
    study = optuna.create_study(study_name=night_study_name("nightly", "tiny", night), storage=url)
    start = dt.datetime(2026, 1, 1, 2, 0, 0)
    for number, (seconds, state) in enumerate([(30, "COMPLETE"), (45, "PRUNED"), (None, "RUNNING")]):
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=number,
                trial_id=number,
                state=optuna.trial.TrialState[state],
                value=0.5 if state == "COMPLETE" else None,
                datetime_start=start,
                datetime_complete=None if seconds is None else start + dt.timedelta(seconds=seconds),
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
            )
        )
    assert seconds_spent(url, config, night) == pytest.approx(75.0)
    assert seconds_spent(url, config, dt.date(2026, 1, 2)) == 0.0


def test_uris_come_from_the_flag_then_the_environment_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_sweep.app._nightly import resolve_uris

    config = load_nightly(
        write_config(tmp_path, {"storage": "sqlite:///file.db", "tracking_uri": "sqlite:///file-mlflow.db"})
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MNIST_SWEEP_STORAGE", raising=False)
    assert resolve_uris(config) == ("sqlite:///file.db", "sqlite:///file-mlflow.db")
    monkeypatch.setenv("MNIST_SWEEP_STORAGE", "sqlite:///env.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env-mlflow.db")
    assert resolve_uris(config) == ("sqlite:///env.db", "sqlite:///env-mlflow.db")
    assert resolve_uris(config, storage="sqlite:///flag.db", tracking_uri="sqlite:///flag-mlflow.db") == (
        "sqlite:///flag.db",
        "sqlite:///flag-mlflow.db",
    )
    monkeypatch.delenv("MNIST_SWEEP_STORAGE")
    bare = load_nightly(write_config(tmp_path))
    assert resolve_uris(bare) == ("sqlite:///optuna.db", "sqlite:///env-mlflow.db")


# --------------------------------------------------------------------------- the lock


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_lock_refuses_a_second_owner_and_releases(tmp_path: Path, kind: str) -> None:
    url = storage_url(tmp_path) if kind == "sqlite" else f"journal:///{tmp_path / 'journal.log'}"
    with JobLock(url, "nightly/x", ttl=30, label="nightly job 'x'") as lock:
        refused = rf"nightly job 'x' is already running: held by host \S+ pid {os.getpid()} since"
        with pytest.raises(AlreadyRunning, match=refused):
            JobLock(url, "nightly/x", ttl=30, label="nightly job 'x'").acquire()
        holder = lock_holder(url, "nightly/x")
        assert holder is not None and holder.owner == lock.owner
        JobLock(url, "nightly/other", ttl=30).acquire().release()  # other jobs are independent
        lock.check()
    assert lock_holder(url, "nightly/x") is None


def test_lock_heartbeat_keeps_it_alive_and_a_stalled_owner_loses_it(tmp_path: Path) -> None:
    url = storage_url(tmp_path)
    lock = JobLock(url, "nightly/x", ttl=0.6).acquire()
    time.sleep(1.5)  # several ttls: the heartbeat keeps pushing the expiry forward
    with pytest.raises(AlreadyRunning):
        JobLock(url, "nightly/x", ttl=0.6).acquire()
    lock._stop.set()  # simulate a process stalled past its ttl
    time.sleep(1.0)
    with JobLock(url, "nightly/x", ttl=30) as other:
        assert other.taken_over is not None and other.taken_over.owner == lock.owner
        with pytest.raises(LockLost, match="lost lock"):
            lock.check()
        lock.release()  # must not delete the new owner's lock
        assert lock_holder(url, "nightly/x") is not None


HOLD_AND_DIE = """
import os, signal, sys
from mnist_sweep.stores._locks import JobLock
JobLock(sys.argv[1], "nightly/nightly", ttl=float(sys.argv[2])).acquire()
print("held", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def kill_while_holding(url: str, ttl: float) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOLD_AND_DIE, url, str(ttl)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -signal.SIGKILL and "held" in done.stdout, done.stderr


def test_stale_lock_of_a_killed_process_is_taken_over_after_it_expires(tmp_path: Path) -> None:
    url = storage_url(tmp_path)
    kill_while_holding(url, ttl=1.5)
    dead = lock_holder(url, "nightly/nightly")
    assert dead is not None and not dead.expired()
    with pytest.raises(AlreadyRunning, match=f"pid {dead.pid}"):
        JobLock(url, "nightly/nightly", ttl=30).acquire()
    time.sleep(max(0.0, dead.expires_at - time.time()) + 0.1)
    with JobLock(url, "nightly/nightly", ttl=30) as lock:
        assert lock.taken_over is not None and lock.taken_over.pid == dead.pid


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lock_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield storage_url(tmp_path)
    elif request.param == "journal":
        yield f"journal:///{tmp_path / 'journal.log'}"
    else:
        from scaleout_support import temporary_database

        with temporary_database("mnist_sweep_test_lock") as url:
            yield url


def _race(url: str, n: int = 6) -> list[JobLock]:
    """``n`` threads start at once; return the locks that were won."""
    import threading

    barrier = threading.Barrier(n)
    won: list[JobLock] = []

    def contender() -> None:
        lock = JobLock(url, "nightly/race", ttl=30)
        barrier.wait()
        with contextlib.suppress(AlreadyRunning):
            won.append(lock.acquire())

    threads = [threading.Thread(target=contender) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won


def test_racing_starts_exactly_one_wins_and_one_takes_over(lock_storage: str) -> None:
    (winner,) = _race(lock_storage)
    winner._stop.set()  # its process stalls: the lock expires ...
    time.sleep(0.1)
    stale = lock_holder(lock_storage, "nightly/race")
    assert stale is not None and stale.owner == winner.owner
    _expire(lock_storage, "nightly/race")
    (successor,) = _race(lock_storage)  # ... and exactly one of the next starters takes it over
    assert successor.taken_over is not None and successor.taken_over.owner == winner.owner
    successor.release()
    winner.release()
    assert lock_holder(lock_storage, "nightly/race") is None


def _expire(url: str, name: str) -> None:
    """Move the lock's expiry into the past, as if its ttl had run out."""
    from mnist_sweep.stores._locks import _open_store

    store = _open_store(url)
    try:
        current = store.get(name)
        assert current is not None
        assert store.refresh(name, current.owner, current.heartbeat_at, time.time() - 1)
    finally:
        store.close()


# --------------------------------------------------------------------------- retention


def _fake_night_study(url: str, job: str, study: str, night: str) -> str:
    name = f"{job}-{study}-{night}"
    s = optuna.create_study(study_name=name, storage=url)
    s.set_user_attr("nightly_job", job)
    s.set_user_attr("nightly_date", night)
    return name


def test_retention_deletes_only_this_jobs_old_night_studies(tmp_path: Path) -> None:
    url = storage_url(tmp_path)
    for night in ("2026-01-01", "2026-01-05", "2026-01-08", "2026-01-10", "2026-01-12"):
        _fake_night_study(url, "nightly", "tiny", night)
    _fake_night_study(url, "other", "tiny", "2026-01-01")
    optuna.create_study(study_name="nightly-tiny-2025-12-31", storage=url)  # not made by the job
    deleted = delete_old_studies(url, job="nightly", night=dt.date(2026, 1, 10), keep=3)
    assert deleted == ["nightly-tiny-2026-01-01", "nightly-tiny-2026-01-05"]
    left = {s.study_name for s in optuna.get_all_study_summaries(url, include_best_trial=False)}
    assert left == {
        "nightly-tiny-2026-01-08",
        "nightly-tiny-2026-01-10",
        "nightly-tiny-2026-01-12",  # after the night being run: never touched
        "other-tiny-2026-01-01",
        "nightly-tiny-2025-12-31",
    }


def test_retention_deletes_old_unregistered_trial_runs_only(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from mnist_sweep.tracking._runs import Tracker

    tracker = Tracker(experiment="nightly")
    client: MlflowClient = tracker.client

    def trial_run(night: str, number: int) -> str:
        with tracker.run(
            name=f"trial-{number}",
            tags={"mnist_sweep.study": f"nightly-tiny-{night}", "mnist_sweep.trial_number": number},
        ) as run:
            return run.run_id

    old = [trial_run("2026-01-01", n) for n in range(3)]
    recent = trial_run("2026-01-09", 0)
    with tracker.run(name="nightly 2026-01-01", tags={"mnist_sweep.night": "2026-01-01"}) as night_run:
        report_run = night_run.run_id
    client.create_registered_model("tiny-model")
    client.create_model_version("tiny-model", source=f"runs:/{old[1]}/model", run_id=old[1])

    assert delete_old_trial_runs(tracker, job="nightly", night=dt.date(2026, 1, 10), keep=7) == 2
    stage = {r: client.get_run(r).info.lifecycle_stage for r in [*old, recent, report_run]}
    assert stage == {
        old[0]: "deleted",
        old[1]: "active",  # its model is a registered version
        old[2]: "deleted",
        recent: "active",
        report_run: "active",
    }


# --------------------------------------------------------------------------- nights end to end

WORSE = SPACE.replace("optimizer: adam}", "optimizer: sgd, learning_rate: 1.0e-5}")
BETTER = SPACE.replace("{epochs: 1, batch_size: 64, optimizer: adam}", "{epochs: 6, batch_size: 32, optimizer: adam}")


def night(path: Path, date: str) -> Any:
    return run_nightly(load_nightly(path), NightlyOptions(date=date, quiet=True))


def night_study(tmp_path: Path, date: str) -> optuna.Study:
    return optuna.load_study(study_name=f"nightly-tiny-{date}", storage=storage_url(tmp_path))


def registry_state(tmp_path: Path) -> tuple[str, int]:
    """(version holding @champion, number of registered versions) of tiny-model."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    holder = client.get_model_version_by_alias("tiny-model", "champion")
    return str(holder.version), len(client.search_model_versions("name = 'tiny-model'"))


def nightly_runs(tmp_path: Path) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nightly")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`mnist_sweep.role` = 'nightly'")
    return {r.data.tags["mnist_sweep.night"]: r for r in runs}


# Night 2's models barely learn, so its trials can tie; Optuna's importance plot (drawn by the
# sweep's study plots) then warns that every trial falls in both of its quantiles.
@pytest.mark.filterwarnings("ignore:Target and region quantiles select the same set of trials:UserWarning")
def test_nights_warm_start_promote_only_when_better_and_rerun_changes_nothing(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner
    from mlflow import MlflowClient

    from mnist_sweep.cli import main
    from mnist_sweep.config._space import load_space

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = write_config(tmp_path)

    # Night 1, through the CLI: no champion yet, so tonight's best becomes version 1.
    done = CliRunner().invoke(main, ["nightly", str(path), "--date", "2026-01-01", "--quiet"])
    assert done.exit_code == 0, done.output
    assert "promotion: promoted: study 'nightly-tiny-2026-01-01' trial" in done.output
    first = night_study(tmp_path, "2026-01-01")
    assert len(first.trials) == 2 and first.user_attrs["nightly_warm_start"] == []
    assert first.user_attrs["nightly_promotion"]["decision"] == "promoted"
    assert registry_state(tmp_path) == ("1", 1)
    champion = client.get_model_version_by_alias("tiny-model", "champion")
    champion_params = sampled_params(
        load_space(tmp_path / "tiny.yaml"), json.loads(champion.tags["mnist_sweep.params"])
    )
    night1_run = nightly_runs(tmp_path)["2026-01-01"]
    artifacts = {a.path for a in client.list_artifacts(night1_run.info.run_id, "report")}
    assert artifacts == {
        "report/report.md",
        "report/report.html",
        "report/tonight_vs_champion.png",
        "report/learning_curves.png",
        "report/best_over_time.png",
    }
    # Trials nest under the night's study run, which nests under the night's run.
    study_run = client.get_run(first.user_attrs["mlflow_parent_run_id"])
    assert study_run.data.tags["mlflow.parentRunId"] == night1_run.info.run_id
    trial_run = client.get_run(first.trials[0].user_attrs["mlflow_run_id"])
    assert trial_run.data.tags["mlflow.parentRunId"] == study_run.info.run_id

    # Night 2 trains worse models (tiny SGD steps): it starts from the champion's params and
    # night 1's other trial, and promotes nothing.
    write_config(tmp_path, space=WORSE)
    second = night(path, "2026-01-02")
    study2 = night_study(tmp_path, "2026-01-02")
    trials = sorted(study2.trials, key=lambda t: t.number)
    assert trials[0].params == champion_params
    assert trials[0].user_attrs["warm_start"] == "tiny-model version 1 (@champion)"
    ranked = sorted(first.trials, key=lambda t: -(t.value or 0.0))
    expected = [champion_params, *[t.params for t in ranked if t.params != champion_params]][:2]
    assert [t.params for t in trials] == expected
    assert [t.user_attrs["warm_start"] for t in trials][1:] == [
        f"nightly-tiny-2026-01-01 #{ranked.index(t) + 1} (trial {t.number})"
        for t in ranked
        if t.params != champion_params
    ][:1]
    # Night 1 kept its top-2 checkpoints; night 2's warm start names the one of the trial it replays, but
    # tonight's fixed params differ (WORSE), so the trial trained anew rather than continue another model.
    other = next(t for t in ranked if t.params != champion_params)
    assert trials[1].user_attrs["warm_start_checkpoint"] == other.user_attrs["checkpoint"]
    assert "resumed_from_epoch" not in trials[1].user_attrs and trials[1].state.name == "COMPLETE"
    assert "warm_start_checkpoint" not in trials[0].user_attrs, "the champion's params come without a checkpoint"
    # Night 2 keeps its own top-2 for night 3; night 1's kept checkpoints have served and are gone.
    kept = {p.name for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith(".")}
    assert kept == {t.user_attrs["checkpoint"] for t in trials}
    assert not kept & {t.user_attrs["checkpoint"] for t in first.trials}
    decision = second.studies[0].promotion
    assert decision["decision"] == "rejected" and not decision["promoted"]
    assert decision["candidate_score"] <= decision["champion_score"]
    assert registry_state(tmp_path) == ("1", 1)

    # Night 3 trains better models (more epochs): promoted over version 1.
    write_config(tmp_path, space=BETTER)
    third = night(path, "2026-01-03")
    decision = third.studies[0].promotion
    assert decision["decision"] == "promoted", decision["message"]
    assert decision["candidate_score"] > decision["champion_score"]
    assert registry_state(tmp_path) == ("2", 2)
    assert nightly_runs(tmp_path)["2026-01-03"].data.metrics["champion_test_accuracy"] == pytest.approx(
        decision["candidate_score"]
    )

    # A killed run of night 1 left its lock: refused until it expires, then taken over.
    kill_while_holding(storage_url(tmp_path), ttl=1.5)
    with pytest.raises(AlreadyRunning, match="already running"):
        night(path, "2026-01-01")
    dead = lock_holder(storage_url(tmp_path), "nightly/nightly")
    assert dead is not None
    time.sleep(max(0.0, dead.expires_at - time.time()) + 0.1)

    # Re-running night 1 changes nothing: same trials, same decision, same run, no new version.
    before = {a.path for a in client.list_artifacts(night1_run.info.run_id, "report")}
    again = night(path, "2026-01-01")
    assert again.taken_over_from is not None and f"pid {dead.pid}" in again.taken_over_from
    assert again.run_id == night1_run.info.run_id
    assert again.studies[0].trials_run == 0 and not again.studies[0].promotion_now
    assert not again.report_logged
    assert len(night_study(tmp_path, "2026-01-01").trials) == 2
    assert night_study(tmp_path, "2026-01-01").user_attrs["nightly_promotion"] == first.user_attrs["nightly_promotion"]
    assert registry_state(tmp_path) == ("2", 2)
    assert sorted(nightly_runs(tmp_path)) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert {a.path for a in client.list_artifacts(night1_run.info.run_id, "report")} == before
    assert lock_holder(storage_url(tmp_path), "nightly/nightly") is None


def test_a_second_instance_exits_3_at_once(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    url = storage_url(tmp_path)  # the default storage: optuna.db beside the test's mlflow.db
    with JobLock(url, "nightly/nightly", ttl=60):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "mnist_sweep.cli", "nightly", str(path), "--date", "2026-01-01"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "error: nightly job 'nightly' is already running: held by host" in done.stderr
    assert f"pid {os.getpid()} since" in done.stderr
    assert elapsed < 30  # refused before TensorFlow or any training
    assert optuna.get_all_study_summaries(url, include_best_trial=False) == []


# --------------------------------------------------------------------------- scheduling files and the chart


def test_crontab_line_runs_the_nightly_job() -> None:
    lines = [
        line
        for line in (ROOT / "sweeps" / "crontab").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) == 1
    minute, hour, day, month, weekday, command = lines[0].split(maxsplit=5)
    assert (minute, hour, day, month, weekday) == ("0", "2", "*", "*", "*")
    assert "mnist-sweep nightly sweeps/nightly.yaml" in command and command.startswith("cd ")


def test_systemd_units_run_the_nightly_job_every_night(tmp_path: Path) -> None:
    import configparser
    import shutil

    def units(name: str) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(ROOT / "sweeps" / name)
        return parser

    service, timer = units("mnist-sweep-nightly.service"), units("mnist-sweep-nightly.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("/.venv/bin/mnist-sweep nightly sweeps/nightly.yaml")
    assert service["Service"]["SuccessExitStatus"] == "3"  # "already running" is not a failure
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:00:00" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze") is None:
        return
    # systemd's own parser, with the paths of a user's checkout replaced by ones that exist here.
    for name in ("mnist-sweep-nightly.service", "mnist-sweep-nightly.timer"):
        text = (ROOT / "sweeps" / name).read_text()
        text = text.replace("%h/mnist-sweep/.venv/bin/mnist-sweep", sys.executable).replace("%h", str(tmp_path))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "mnist-sweep-nightly.service"),
            str(tmp_path / "mnist-sweep-nightly.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "mnist-sweep-nightly" not in done.stderr, done.stderr


def test_best_over_time_chart_leaves_gaps_and_checks_lengths(tmp_path: Path) -> None:
    from mnist_sweep.display import plots

    figure = plots.best_over_time(
        ["2026-01-01", "2026-01-02", "2026-01-03"],
        {"best": [0.9, None, 0.95], "champion": [0.9, 0.9, 0.95]},
        ylabel="test accuracy",
        title="t",
    )
    assert len(figure.axes[0].lines) == 2
    assert plots.save(figure, tmp_path / "chart.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        plots.best_over_time(["a", "b", "c"], {"x": [1.0, 2.0]}, ylabel="y")
    empty = plots.best_over_time([], {}, ylabel="y")
    assert not empty.axes[0].lines


def test_rerunning_a_half_finished_night_draws_new_points_and_stays_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A night stopped after 2 of its 4 trials, re-run: 2 new points, the same ones on a fresh store."""
    no_warm_start = {"warm_start": {"champion": False, "previous_top_k": 0}}

    def half_then_whole(folder: Path) -> list[dict[str, Any]]:
        folder.mkdir()
        monkeypatch.chdir(folder)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        night(write_config(folder, {"budget": {"n_trials": 2}, **no_warm_start}), "2026-03-14")
        night(write_config(folder, {"budget": {"n_trials": 4}, **no_warm_start}), "2026-03-14")
        study = optuna.load_study(study_name="nightly-tiny-2026-03-14", storage=storage_url(folder))
        return [t.params for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]

    first = half_then_whole(tmp_path / "a")
    assert len(first) == 4
    assert len({tuple(sorted(p.items())) for p in first}) == 4, first
    assert half_then_whole(tmp_path / "b") == first
