"""The budget decision: whether a worker may ask for another trial. A pure function.

``n_trials`` counts finished trials, COMPLETE and PRUNED. A FAIL trial uses no budget (a
crashed trial is retried), nor does a WAITING one. When the trials still RUNNING would fill
the budget, a worker waits for them rather than leaving: one may yet fail and need a retry;
a RUNNING trial that nobody can end any more (its worker is gone and no heartbeat will fail
it) does not hold the others back.

Failed trials use no budget, so a sweep whose every trial fails would never end: it stops
once failures pass ``max_failure_rate`` (at least 3 failures), or, without a rate, once as
many trials have failed as the budget holds (at least 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mnist_sweep.contract import ATTR_RESAMPLED

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import Budget

Action = Literal["go", "stop", "wait", "fail"]
MIN_FAILURES = 3


@dataclass(frozen=True)
class Tally:
    """A study's trials as the budget sees them."""

    finished: int = 0
    """COMPLETE + PRUNED: what uses up the budget."""
    failed: int = 0
    running: int = 0
    """RUNNING trials that will still end, by their worker or by recovery."""
    stuck: int = 0
    """RUNNING trials that nobody can end (no live worker, no heartbeat)."""


@dataclass(frozen=True)
class Decision:
    """``go`` (ask for a trial), ``stop`` (done), ``wait`` (poll again) or ``fail`` (stop with an error)."""

    action: Action
    reason: str | None = None


def tally(trials: Iterable[optuna.trial.FrozenTrial], *, may_end: Callable[[optuna.trial.FrozenTrial], bool]) -> Tally:
    """Count ``trials``; ``may_end`` says whether a RUNNING one will finish or be recovered."""
    from optuna.trial import TrialState

    finished = failed = running = stuck = 0
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            finished += 1
        elif t.state == TrialState.FAIL and ATTR_RESAMPLED not in t.user_attrs:
            failed += 1
        elif t.state == TrialState.RUNNING:
            if may_end(t):
                running += 1
            else:
                stuck += 1
    return Tally(finished=finished, failed=failed, running=running, stuck=stuck)


def decide(counts: Tally, *, budget: Budget, elapsed: float, last_failure: str = "unknown") -> Decision:
    """What a worker does next, given the study's ``counts`` and the seconds ``elapsed`` so far."""
    if budget.timeout is not None and elapsed >= budget.timeout:
        return Decision("stop", f"timeout of {budget.timeout:g} s reached")
    failed, total = counts.failed, counts.finished + counts.failed
    rate, n = budget.max_failure_rate, budget.n_trials
    if rate is not None and failed >= MIN_FAILURES and failed / total > rate:
        return Decision(
            "fail",
            f"stopped: {failed} of {total} trials failed, more than max_failure_rate {rate:g}"
            f" (last reason: {last_failure})",
        )
    if rate is None and n is not None and failed >= max(n, MIN_FAILURES):
        return Decision(
            "fail",
            f"stopped: {failed} trials failed, as many as the budget of {n} (set budget.max_failure_rate"
            f" to choose the limit; last reason: {last_failure})",
        )
    running = counts.running + counts.stuck
    if n is None or counts.finished + running < n:
        return Decision("go")
    spent = f"budget of {n} trials spent"
    if counts.finished >= n:
        return Decision("stop", spent)
    if counts.finished + counts.stuck >= n:
        return Decision("stop", f"{spent} ({counts.stuck} RUNNING without a worker to finish or fail them)")
    return Decision("wait", f"{counts.running} running trial(s) would fill the budget of {n}")
