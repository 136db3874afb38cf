"""Promotion-based asynchronous successive halving (``pruner: {name: asha}``; Li et al., MLSys 2020).

Rungs are epochs: ``min_resource``, ``min_resource * eta``, ... below ``max_resource``, then
``max_resource``. A new configuration trains to the first rung and *pauses* there. Whenever a
worker asks for work it first promotes a paused trial that is in the top ``1/eta`` of its rung
(among every configuration that reached that rung) and not yet promoted, highest rung first; only
when none can be promoted does it sample a new configuration. With ``bootstrap_count`` (as in
Optuna's successive halving), a rung promotes only once it holds that many configurations, or
once the budget has sampled its last configuration. With ``promotion_quota``, a rung that ``n``
configurations reached has promoted at most ``n // eta`` of them, as many as synchronous successive
halving would: each new arrival may open a slot, which goes to the best paused trial of the rung's
top ``1/eta`` at that moment. Plain ASHA promotes more than that when the sampler improves as it
goes (each new good configuration enters the top while the early ones were already promoted).

With ``brackets: k`` (asynchronous Hyperband, as in the same paper), each new configuration
joins one of ``k`` brackets: bracket ``b`` has the same rules with its first rung at
``min_resource * eta**b`` (the last bracket may train straight to ``max_resource``). Configurations
are ranked and promoted only against others of their bracket. Brackets are filled in Hyperband's
proportions (bracket ``b`` ``eta**s / (s + 1)``, ``s`` its number of halvings): most configurations
in the first bracket, fewer where a wrong early ranking costs less. The later brackets hedge
against a first rung that ranks configurations by how fast they learn rather than how far.

How a pause is stored (Optuna cannot update a finished trial): the paused trial is told PRUNED,
with ``paused_at_epoch`` (its rung) set before ``tell`` and its checkpoint kept. A promotion adds
a continuation trial (WAITING, same params and distributions, the paused trial's intermediate
values, and user attributes naming the checkpoint, the MLflow run and ``promotion_of``: the paused
trial). The next ``ask`` takes it; it resumes the checkpoint and reopens the same MLflow run, so
one run spans all the rungs of a configuration. A paused trial counts as promoted once any trial
names it in ``promotion_of``; promoting and asking happen under the study lock, so no paused
trial is continued twice, with any number of workers.

The budget counts configurations: continuations use none of it. When it is spent and no trial is
running any more, paused trials that can never be promoted are closed: they stay PRUNED at their
rung, their runs' ``mnist_sweep.state`` becomes PRUNED and their checkpoints are deleted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mnist_sweep.contract import (
    ATTR_ASHA_CLOSED,
    ATTR_BRACKET,
    ATTR_CHECKPOINT,
    ATTR_ENQUEUED,
    ATTR_PARAMS_KEY,
    ATTR_PAUSED_AT,
    ATTR_PROMOTION_OF,
    ATTR_RUN_ID,
    STATE_PRUNED,
    TAG_STATE,
)
from mnist_sweep.stores import describe

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.sweep._checkpoints import CheckpointStore
    from mnist_sweep.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rungs:
    """The epochs at which a configuration pauses; the last one completes it."""

    min_resource: int
    max_resource: int
    reduction_factor: int
    bootstrap_count: int = 0
    """A rung promotes nothing until this many configurations reached it, or no new one will come."""
    promotion_quota: bool = False
    """A rung reached by ``n`` configurations has promoted at most ``n // reduction_factor`` of them."""
    brackets: int = 1
    """Asynchronous Hyperband: configurations spread over this many brackets of later first rungs."""

    @property
    def epochs(self) -> list[int]:
        rungs, epoch = [], self.min_resource
        while epoch < self.max_resource:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        return [*rungs, self.max_resource]

    def next_stop(self, done: int) -> int:
        """Where a trial that has trained ``done`` epochs stops next."""
        return next(epoch for epoch in self.epochs if epoch > done)

    def bracket(self, index: int) -> Rungs:
        """Bracket ``index``'s rungs: the first at ``min_resource * eta**index`` (capped at ``max_resource``)."""
        first = min(self.min_resource * self.reduction_factor**index, self.max_resource)
        return replace(self, min_resource=first, brackets=1)

    def bracket_weights(self) -> list[float]:
        """Hyperband's share of new configurations per bracket: ``eta**s / (s + 1)``, ``s`` its halvings."""
        weights = []
        for index in range(self.brackets):
            halvings = len(self.bracket(index).epochs) - 1
            weights.append(self.reduction_factor**halvings / (halvings + 1))
        return weights


def bracket_of(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs.get(ATTR_BRACKET, 0))


def assign_bracket(trials: Sequence[optuna.trial.FrozenTrial], rungs: Rungs, *, exclude: int | None = None) -> int:
    """The bracket for a new configuration: the one furthest below its share (ties: the first).

    Deterministic from the study's configurations (call it under the study lock), so workers
    sharing a study fill the brackets together in Hyperband's proportions.
    """
    counts = Counter(  # a failed trial's retry holds its bracket; a closed repeat of visited params holds none
        bracket_of(t) for t in configurations(trials) if t.number != exclude and t.state.name != "FAIL"
    )
    weights = rungs.bracket_weights()
    return min(range(rungs.brackets), key=lambda b: ((counts[b] + 1) / weights[b], b))


def rungs_of(space: SearchSpace) -> Rungs | None:
    if space.pruner.name != "asha":
        return None
    options = space.pruner.options
    return Rungs(
        min_resource=int(options["min_resource"]),
        max_resource=int(options["max_resource"]),
        reduction_factor=int(options["reduction_factor"]),
        bootstrap_count=int(options.get("bootstrap_count", 0)),
        promotion_quota=bool(options.get("promotion_quota", False)),
        brackets=int(options.get("brackets", 1)),
    )


def continued(trials: Sequence[optuna.trial.FrozenTrial]) -> set[int]:
    return {int(t.user_attrs[ATTR_PROMOTION_OF]) for t in trials if ATTR_PROMOTION_OF in t.user_attrs}


def paused(trials: Sequence[optuna.trial.FrozenTrial], closed: Collection[int] = ()) -> list[optuna.trial.FrozenTrial]:
    """Paused trials neither promoted nor closed yet (``closed``: the study's ``asha_closed`` attribute)."""
    from optuna.trial import TrialState

    taken = continued(trials) | set(closed)
    return [
        t for t in trials if t.state == TrialState.PRUNED and ATTR_PAUSED_AT in t.user_attrs and t.number not in taken
    ]


def closed_of(study: optuna.Study) -> list[int]:
    return [int(n) for n in study.user_attrs.get(ATTR_ASHA_CLOSED, [])]


def promotable(
    trials: Sequence[optuna.trial.FrozenTrial],
    rungs: Rungs,
    *,
    maximize: bool,
    closed: Collection[int] = (),
    sampling_done: bool = False,
) -> optuna.trial.FrozenTrial | None:
    """The best-ranked paused trial in the top ``1/eta`` of its rung and bracket, highest rung first; None if none.

    A rung with fewer than ``bootstrap_count`` configurations promotes nothing while new
    configurations may still come (``sampling_done`` False): early promotions are the ones
    asynchronous halving gets wrong most often, the best of the first few being rarely in the
    final top ``1/eta``. With ``promotion_quota``, a rung whose quota (``n // eta``) is used up
    promotes nothing more. With brackets, each bracket is its own successive halving: a configuration
    is ranked only against the configurations of its bracket.
    """
    if rungs.brackets > 1:
        for index in range(rungs.brackets):
            members = [t for t in trials if bracket_of(t) == index]
            chosen = promotable(
                members, rungs.bracket(index), maximize=maximize, closed=closed, sampling_done=sampling_done
            )
            if chosen is not None:
                return chosen
        return None
    waiting = paused(trials, closed)
    promoted_from = _promoted_per_rung(trials) if rungs.promotion_quota else Counter[int]()
    for epoch in reversed(rungs.epochs[:-1]):
        here = {t.user_attrs.get(ATTR_PARAMS_KEY): t for t in waiting if int(t.user_attrs[ATTR_PAUSED_AT]) == epoch}
        if not here:
            continue
        best: dict[str, float] = {}  # one value per configuration that reached this rung
        for t in trials:
            value, key = t.intermediate_values.get(epoch), t.user_attrs.get(ATTR_PARAMS_KEY)
            if value is None or key is None:
                continue
            if key not in best or (value > best[key] if maximize else value < best[key]):
                best[key] = value
        top = len(best) // rungs.reduction_factor
        if top == 0 or (len(best) < rungs.bootstrap_count and not sampling_done):
            continue
        if rungs.promotion_quota and promoted_from[epoch] >= top:
            continue
        for key in sorted(best, key=lambda k: best[k], reverse=maximize)[:top]:
            if key in here:
                return here[key]
    return None


def _promoted_per_rung(trials: Sequence[optuna.trial.FrozenTrial]) -> Counter[int]:
    """How many paused trials each rung (epoch) has promoted so far."""
    taken = continued(trials)
    return Counter(
        int(t.user_attrs[ATTR_PAUSED_AT]) for t in trials if t.number in taken and ATTR_PAUSED_AT in t.user_attrs
    )


def promote(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue the continuation of paused ``trial`` (hold the study lock, and ask before releasing it)."""
    import optuna

    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={
                ATTR_CHECKPOINT: trial.user_attrs[ATTR_CHECKPOINT],
                ATTR_RUN_ID: trial.user_attrs.get(ATTR_RUN_ID),
                ATTR_PROMOTION_OF: trial.number,
                **({ATTR_BRACKET: trial.user_attrs[ATTR_BRACKET]} if ATTR_BRACKET in trial.user_attrs else {}),
            },
            system_attrs={ATTR_ENQUEUED: trial.params},
            intermediate_values=trial.intermediate_values,
        )
    )
    log.info("trial %d promoted from epoch %s", trial.number, trial.user_attrs[ATTR_PAUSED_AT])


def close_paused(
    study: optuna.Study,
    trials: Sequence[optuna.trial.FrozenTrial],
    *,
    tracker: Tracker,
    checkpoints: CheckpointStore | None,
) -> list[int]:
    """At the study's end: paused trials that will never be promoted are closed PRUNED at their rung.

    Hold the study lock: the numbers go into the study's ``asha_closed`` attribute.
    """
    from mnist_sweep.tracking import RunHandle

    before = closed_of(study)
    closed = []
    for t in paused(trials, before):
        run_id = t.user_attrs.get(ATTR_RUN_ID)
        if run_id and tracker.enabled:
            try:
                RunHandle(tracker.client, str(run_id), tracker.experiment_id).set_tags({TAG_STATE: STATE_PRUNED})
            except Exception as exc:
                log.warning("trial %d: could not tag its run PRUNED: %s", t.number, describe(exc))
        if checkpoints is not None and ATTR_CHECKPOINT in t.user_attrs:
            checkpoints.remove(str(t.user_attrs[ATTR_CHECKPOINT]))
        closed.append(t.number)
    if closed:
        study.set_user_attr(ATTR_ASHA_CLOSED, sorted({*before, *closed}))
    return closed


def configurations(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials the budget counts under asha: every trial but the continuations."""
    return [t for t in trials if ATTR_PROMOTION_OF not in t.user_attrs]
