"""Look into studies without running anything: ``mnist-sweep studies``, ``status`` and ``best``.

Everything here reads the Optuna storage only (the trial user attrs the sweep records: params,
history, test metrics, MLflow run id and model URI); nothing is trained, logged or changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mnist_sweep.contract import (
    ATTR_DATASET,
    ATTR_DEVICE,
    ATTR_DUPLICATE_OF,
    ATTR_HISTORY,
    ATTR_MODEL_URI,
    ATTR_OBJECTIVE_METRIC,
    ATTR_PARAMS,
    ATTR_RUN_ID,
    ATTR_TEST_ACCURACY,
    ATTR_TEST_LOSS,
)
from mnist_sweep.display import text_table
from mnist_sweep.errors import NoCompleteTrial

if TYPE_CHECKING:
    import optuna

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING", "PAUSED")
"""PAUSED: trials the asha pruner paused at a rung, waiting for a promotion (Optuna holds them PRUNED)."""
_TEST_METRICS = {"test_accuracy": ATTR_TEST_ACCURACY, "test_loss": ATTR_TEST_LOSS}  # shown name -> trial attribute


@dataclass(frozen=True)
class BestTrial:
    """The best COMPLETE trial of a study, with what is needed to find and judge its model."""

    study: str
    number: int
    dataset: str | None
    metric: str
    direction: str
    value: float
    params: Mapping[str, Any]
    validation: Mapping[str, float]
    training: Mapping[str, float]
    test: Mapping[str, float]
    epochs: int
    run_id: str | None
    model_run_id: str | None
    model_uri: str | None
    duplicate_of: int | None = None
    ties: tuple[int, ...] = ()
    """Other COMPLETE trials with exactly the same objective value (not reused duplicates): Optuna's
    best is the first of them, so the choice among them is the trial order, not the data."""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class RunningTrial:
    """A trial some worker is training now."""

    number: int
    seconds: float | None
    epochs: int
    last_value: float | None
    run_id: str | None
    device: str | None = None


@dataclass(frozen=True)
class StudyStatus:
    """Where a study stands: trial counts by state, the best so far, what runs now."""

    study: str
    storage: str
    dataset: str | None
    metric: str
    direction: str
    counts: Mapping[str, int]
    best: BestTrial | None
    running: Sequence[RunningTrial] = field(default_factory=tuple)
    started: datetime | None = None
    last_finished: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({**asdict(self), "total": self.total})


@dataclass(frozen=True)
class StudyOverview:
    """One line of ``mnist-sweep studies``."""

    study: str
    dataset: str | None
    metric: str
    direction: str
    counts: Mapping[str, int]
    best_value: float | None
    best_trial: int | None
    started: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


# --------------------------------------------------------------------------- storage


def resolve_storage(storage: str | None, tracking_uri: str | None = None) -> str:
    """``storage``, or the default beside the MLflow store; a missing SQLite file is an error.

    Opening a SQLite URL creates the file, so looking at a study in the wrong folder would
    otherwise leave an empty ``optuna.db`` behind and report "no study".
    """
    from mnist_sweep.stores import check_store_exists, default_storage

    return check_store_exists(storage or default_storage(tracking_uri))


# --------------------------------------------------------------------------- queries


def best_of(study: optuna.Study) -> BestTrial:
    """The best COMPLETE trial of ``study`` (by its objective, never by test metrics)."""
    from optuna.trial import TrialState

    try:
        trial = study.best_trial
    except ValueError:
        counts = _counts(study)
        raise NoCompleteTrial(
            f"study {study.study_name!r} has no COMPLETE trial yet ({_counts_text(counts)})"
        ) from None
    attrs = trial.user_attrs
    history = attrs.get(ATTR_HISTORY) or []
    last = history[-1] if history else {}
    duplicate_of = attrs.get(ATTR_DUPLICATE_OF)
    model_run_id = attrs.get(ATTR_RUN_ID)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if duplicate_of is not None:
        # A duplicate reused another trial's result: its model was logged by that trial's run.
        source = next((t for t in complete if t.number == duplicate_of), None)
        model_run_id = source.user_attrs.get(ATTR_RUN_ID) if source is not None else None
    ties = tuple(
        t.number
        for t in complete
        if t.number != trial.number
        and t.value == trial.value
        and t.user_attrs.get(ATTR_DUPLICATE_OF) is None  # a reuse of a result is not a second model
    )
    study_attrs = study.user_attrs
    return BestTrial(
        study=study.study_name,
        number=trial.number,
        dataset=study_attrs.get(ATTR_DATASET),
        metric=study_attrs.get(ATTR_OBJECTIVE_METRIC) or "value",
        direction=study.direction.name.lower(),
        value=float(trial.value if trial.value is not None else float("nan")),
        params=dict(attrs.get(ATTR_PARAMS) or trial.params),
        validation={k: float(v) for k, v in last.items() if k.startswith("val_")},
        training={k: float(v) for k, v in last.items() if k in ("accuracy", "loss")},
        test={k: float(attrs[key]) for k, key in _TEST_METRICS.items() if attrs.get(key) is not None},
        epochs=len(history),
        run_id=attrs.get(ATTR_RUN_ID),
        model_run_id=model_run_id,
        model_uri=attrs.get(ATTR_MODEL_URI) or None,
        duplicate_of=duplicate_of,
        ties=ties,
    )


def best_trial(name: str, storage: str) -> BestTrial:
    """The best COMPLETE trial of study ``name``; NoCompleteTrial when it has none."""
    from mnist_sweep.stores import load_study

    return best_of(load_study(name, storage))


def study_status(name: str, storage: str, *, now: datetime | None = None) -> StudyStatus:
    """Counts by state, the best trial so far, and the trials running now with their age."""
    from optuna.trial import TrialState

    from mnist_sweep.stores import load_study, redact_url

    study = load_study(name, storage)
    now = now or datetime.now()  # Optuna stores naive local times
    trials = study.get_trials(deepcopy=False)
    running = [
        RunningTrial(
            number=t.number,
            seconds=(now - t.datetime_start).total_seconds() if t.datetime_start else None,
            epochs=len(t.intermediate_values),
            last_value=t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None,
            run_id=t.user_attrs.get(ATTR_RUN_ID),
            device=t.user_attrs.get(ATTR_DEVICE),
        )
        for t in trials
        if t.state == TrialState.RUNNING
    ]
    try:
        best: BestTrial | None = best_of(study)
    except NoCompleteTrial:
        best = None
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return StudyStatus(
        study=study.study_name,
        storage=redact_url(storage),
        dataset=study.user_attrs.get(ATTR_DATASET),
        metric=study.user_attrs.get(ATTR_OBJECTIVE_METRIC) or "value",
        direction=study.direction.name.lower(),
        counts=_counts(study),
        best=best,
        running=tuple(running),
        started=min(starts) if starts else None,
        last_finished=max(ends) if ends else None,
    )


def list_studies(storage: str) -> list[StudyOverview]:
    """Every study in ``storage``, oldest first."""
    import optuna

    from mnist_sweep.stores import open_storage

    backend = open_storage(storage)
    out = []
    for summary in optuna.get_all_study_summaries(backend, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=backend)
        try:
            best = study.best_trial
        except ValueError:
            best = None
        out.append(
            StudyOverview(
                study=summary.study_name,
                dataset=summary.user_attrs.get(ATTR_DATASET),
                metric=summary.user_attrs.get(ATTR_OBJECTIVE_METRIC) or "value",
                direction=summary.direction.name.lower(),
                counts=_counts(study),
                best_value=best.value if best is not None else None,
                best_trial=best.number if best is not None else None,
                started=summary.datetime_start,
            )
        )
    return out


# --------------------------------------------------------------------------- text


def format_best(best: BestTrial, *, ui_url: str | None = None) -> str:
    """``mnist-sweep best`` as text; with ``ui_url`` (the MLflow UI), a direct link to the trial's run."""
    from mnist_sweep.tracking import run_link

    lines = [
        f"study {best.study!r}: best trial {best.number} ({best.direction} {best.metric}: {_num(best.value)})",
        f"  dataset:    {best.dataset or '-'}",
        f"  params:     {json.dumps(dict(best.params), sort_keys=True, default=str)}",
        f"  validation: {_metrics(best.validation)} (last of {best.epochs} epochs)",
        f"  training:   {_metrics(best.training)}",
        f"  test:       {_metrics(best.test)} (the study's test split, never used for selection)",
        f"  MLflow run: {best.run_id or '-'}",
        f"  model URI:  {best.model_uri or '- (no model logged)'}",
    ]
    if ui_url and best.run_id:
        lines.append(f"  open:       {run_link(ui_url, best.run_id)}")
    if best.duplicate_of is not None:
        lines.append(f"  (same params as trial {best.duplicate_of}: its result and model were reused)")
    if best.ties:
        others = ", ".join(str(n) for n in best.ties)
        lines.append(
            f"  tie:        trial(s) {others} reached the same {best.metric}; this one is first by trial number, "
            "not better (tell them apart with `repeats: k`, or compare their test predictions)"
        )
    return "\n".join(lines)


def format_status(status: StudyStatus, *, ui_url: str | None = None) -> str:
    """``mnist-sweep status`` as text; with ``ui_url`` (the MLflow UI), direct links to the runs shown."""
    from mnist_sweep.tracking import run_link

    def link(run_id: str | None) -> list[str]:
        return [f"    {run_link(ui_url, run_id)}"] if ui_url and run_id else []

    lines = [
        f"study {status.study!r} ({status.storage}): {status.dataset or '-'}, {status.direction} {status.metric}",
        f"trials: {status.total} ({_counts_text(status.counts)})",
    ]
    if status.started is not None:
        finished = f", last finished {_when(status.last_finished)}" if status.last_finished else ""
        lines.append(f"started {_when(status.started)}{finished}")
    best = status.best
    if best is None:
        lines.append("best: no COMPLETE trial yet")
    else:
        test = best.test.get("test_accuracy")
        lines.append(
            f"best: trial {best.number}, {best.metric} {_num(best.value)}"
            + (f" (test accuracy {_num(test)})" if test is not None else "")
            + f", MLflow run {best.run_id or '-'}"
        )
        lines.append(f"  params: {json.dumps(dict(best.params), sort_keys=True, default=str)}")
        lines += link(best.run_id)
    if status.running:
        lines.append("running now:")
        for t in status.running:
            seconds = f"for {duration(t.seconds)}" if t.seconds is not None else "(start time unknown)"
            last = f", last {status.metric} {_num(t.last_value)}" if t.last_value is not None else ""
            where = f", on {t.device}" if t.device else ""
            lines.append(f"  trial {t.number}: {seconds}, {t.epochs} epochs reported{last}{where}")
            lines += link(t.run_id)
    else:
        lines.append("running now: none")
    return "\n".join(lines)


def format_studies(studies: Sequence[StudyOverview], storage: str) -> str:
    """``mnist-sweep studies`` as a table."""
    from mnist_sweep.stores import redact_url

    if not studies:
        return f"no studies in {redact_url(storage)}"
    rows = [["study", "dataset", "objective", "trials", *[s.lower() for s in STATES[:4]], "best", "started"]]
    for s in studies:
        best = f"{_num(s.best_value)} (trial {s.best_trial})" if s.best_value is not None else "-"
        rows.append(
            [
                s.study,
                s.dataset or "-",
                f"{s.direction} {s.metric}",
                str(sum(s.counts.values())),
                *[str(s.counts.get(state, 0)) for state in STATES[:4]],
                best,
                _when(s.started) if s.started else "-",
            ]
        )
    return f"{len(studies)} studies in {redact_url(storage)}\n" + text_table(rows, rule=False)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --------------------------------------------------------------------------- helpers


def _counts(study: optuna.Study) -> dict[str, int]:
    from mnist_sweep.sweep._asha import closed_of, paused

    counts = dict.fromkeys(STATES[:-1], 0)  # PAUSED only when some are (asha)
    trials = study.get_trials(deepcopy=False)
    waiting = {t.number for t in paused(trials, closed_of(study))}
    for t in trials:
        state = "PAUSED" if t.number in waiting else t.state.name
        counts[state] = counts.get(state, 0) + 1
    return counts


def _counts_text(counts: Mapping[str, int]) -> str:
    shown = [s for s in STATES if counts.get(s) or s not in ("WAITING", "PAUSED")]
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in shown)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metrics(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in sorted(values.items())) or "-"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
