"""The budget decision, table-driven: no training, no storage."""

from __future__ import annotations

import pytest

from mnist_sweep.config._space import Budget
from mnist_sweep.sweep import Decision, Tally, decide


def budget(n: int | None = 4, *, timeout: float | None = None, rate: float | None = None) -> Budget:
    return Budget(n_trials=n, timeout=timeout, trial_timeout=None, max_failure_rate=rate)


CASES = [
    # (id, tally, budget, elapsed, action, reason fragment)
    ("fresh study", Tally(), budget(), 0.0, "go", None),
    ("room left", Tally(finished=2, running=1), budget(), 10.0, "go", None),
    ("spent", Tally(finished=4), budget(), 10.0, "stop", "budget of 4 trials spent"),
    ("overspent by a race of old versions", Tally(finished=5), budget(), 1.0, "stop", "budget of 4 trials spent"),
    ("running trials fill it", Tally(finished=3, running=1), budget(), 1.0, "wait", "1 running trial(s) would fill"),
    ("stuck trials fill it", Tally(finished=3, stuck=1), budget(), 1.0, "stop", "1 RUNNING without a worker"),
    ("one live, one stuck", Tally(finished=2, running=1, stuck=1), budget(), 1.0, "wait", "1 running trial(s)"),
    ("failures use no budget", Tally(finished=3, failed=2), budget(), 1.0, "go", None),
    ("no n_trials: only time stops", Tally(finished=1000), budget(None, timeout=60), 59.0, "go", None),
    ("timeout", Tally(finished=1), budget(timeout=60), 60.0, "stop", "timeout of 60 s reached"),
    ("timeout beats a full budget", Tally(finished=4), budget(timeout=5), 9.0, "stop", "timeout"),
    ("rate passed", Tally(finished=1, failed=3), budget(rate=0.5), 1.0, "fail", "3 of 4 trials failed"),
    ("rate not passed", Tally(finished=3, failed=3), budget(10, rate=0.5), 1.0, "go", None),
    ("rate needs 3 failures", Tally(failed=2), budget(rate=0.1), 1.0, "go", None),
    ("no rate: as many failures as budget", Tally(failed=4), budget(), 1.0, "fail", "as many as the budget of 4"),
    ("no rate, small budget: at least 3", Tally(failed=2), budget(1), 1.0, "go", None),
    ("no rate, small budget: 3 stop it", Tally(failed=3), budget(1), 1.0, "fail", "3 trials failed"),
]


@pytest.mark.parametrize(
    ("counts", "limits", "elapsed", "action", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(counts: Tally, limits: Budget, elapsed: float, action: str, reason: str | None) -> None:
    got = decide(counts, budget=limits, elapsed=elapsed, last_failure="OOM")
    assert got.action == action, got
    if reason is None:
        assert got == Decision("go")
    else:
        assert reason in (got.reason or "")
    if action == "fail":
        assert "last reason: OOM" in (got.reason or "")
