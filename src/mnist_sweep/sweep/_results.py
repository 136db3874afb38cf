"""What a sweep leaves: every trial as the final table shows it, and what one invocation did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mnist_sweep.contract import (
    ATTR_BRACKET,
    ATTR_CONTINUES,
    ATTR_DUPLICATE_OF,
    ATTR_FAIL_REASON,
    ATTR_HISTORY,
    ATTR_PARAMS,
    ATTR_PAUSED_AT,
    ATTR_RESAMPLED,
    ATTR_RESUMED_FROM_EPOCH,
    ATTR_RETRY_HISTORY,
    ATTR_RUN_ID,
    ATTR_TEST_ACCURACY,
)

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the final table shows it."""

    number: int
    state: str
    value: float | None
    params: Mapping[str, Any]
    run_id: str | None
    test_accuracy: float | None
    epochs: int
    seconds: float | None
    note: str = ""


@dataclass
class SweepResult:
    """What one invocation did, and where the study stands after it."""

    study_name: str
    storage: str
    direction: str
    metric: str
    parent_run_id: str | None
    experiment: str
    trials_run: int = 0
    trials: list[TrialSummary] = field(default_factory=list)
    stopped_reason: str | None = None

    @property
    def best(self) -> TrialSummary | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t.value or 0.0)

    def top(self, k: int) -> list[TrialSummary]:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        done.sort(key=lambda t: t.value or 0.0, reverse=self.direction == "maximize")
        rest = [t for t in self.trials if t not in done]
        return (done + rest)[:k]


def summarize(study: optuna.Study) -> list[TrialSummary]:
    """Every trial of ``study`` as a :class:`TrialSummary`."""
    trials = study.get_trials(deepcopy=False)
    retried_as: dict[int, int] = {}
    for t in trials:
        history = t.system_attrs.get(ATTR_RETRY_HISTORY) or []
        if history:
            retried_as[int(history[-1])] = t.number
    out = []
    for t in trials:
        attrs = t.user_attrs
        if ATTR_RESAMPLED in attrs:  # a sampler's repeat, closed at once and asked again: no trial
            continue
        history = attrs.get(ATTR_HISTORY) or []
        seconds = t.duration.total_seconds() if t.duration else None
        note = attrs.get(ATTR_FAIL_REASON) or ""
        if attrs.get(ATTR_DUPLICATE_OF) is not None:
            note = f"duplicate of trial {attrs[ATTR_DUPLICATE_OF]}"
        if t.state.name == "FAIL" and not note:
            note = "its worker stopped mid-trial (killed or lost)"
            if t.number in retried_as:
                note += f"; retried as trial {retried_as[t.number]}"
        elif not note and t.system_attrs.get(ATTR_RETRY_HISTORY):
            note = f"retry of trial {t.system_attrs[ATTR_RETRY_HISTORY][-1]}"
        resumed = int(attrs.get(ATTR_RESUMED_FROM_EPOCH, 0))
        if resumed and ATTR_CONTINUES in attrs:
            note = f"continues trial {attrs[ATTR_CONTINUES]} after epoch {resumed}" + (f"; {note}" if note else "")
        if ATTR_PAUSED_AT in attrs and t.state.name == "PRUNED":
            bracket = f" (bracket {attrs[ATTR_BRACKET]})" if ATTR_BRACKET in attrs else ""
            note = f"asha: stopped at rung epoch {attrs[ATTR_PAUSED_AT]}{bracket}" + (f"; {note}" if note else "")
        # Epochs this trial trained: a continuation's history starts with the epochs it resumed;
        # a duplicate trained none (its history and values are its source's).
        trained = (len(history) if history else len(t.intermediate_values)) - resumed
        if attrs.get(ATTR_DUPLICATE_OF) is not None:
            trained = 0
        out.append(
            TrialSummary(
                number=t.number,
                state=t.state.name,
                value=t.value,
                params=attrs.get(ATTR_PARAMS) or t.params,
                run_id=attrs.get(ATTR_RUN_ID),
                test_accuracy=attrs.get(ATTR_TEST_ACCURACY),
                epochs=trained,
                seconds=seconds,
                note=note,
            )
        )
    return out


def finished_count(study: optuna.Study) -> tuple[int, int, int]:
    """(finished toward the budget: COMPLETE + PRUNED, FAIL, RUNNING) trials of ``study``."""
    from optuna.trial import TrialState

    counted = failed = running = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            counted += 1
        elif t.state == TrialState.FAIL:
            failed += 1
        elif t.state == TrialState.RUNNING:
            running += 1
    return counted, failed, running


def trials_frame(study: optuna.Study) -> Any:
    """All trials as a pandas DataFrame (params, value, state, test accuracy, run id)."""
    import pandas as pd

    rows = []
    for s in summarize(study):
        rows.append(
            {
                "number": s.number,
                "state": s.state,
                "value": s.value,
                "test_accuracy": s.test_accuracy,
                "epochs": s.epochs,
                "seconds": s.seconds,
                "mlflow_run_id": s.run_id,
                "note": s.note,
                **{f"params_{k}": v for k, v in s.params.items()},
            }
        )
    return pd.DataFrame(rows)
