"""Night studies in the Optuna storage: which exist, how a new one is warm-started, what each holds.

A night study is ``<job>-<study>-<date>``, tagged with its job and date (user attributes
``nightly_job``, ``nightly_date``), so retention and the previous night's warm start find them
from the storage alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mnist_sweep.app._nightly_report import NightlyResult, NightStudy
from mnist_sweep.config import NightlyConfig, PromotionPolicy, SearchSpace, can_sample, night_study_name
from mnist_sweep.contract import (
    ATTR_CHECKPOINT,
    ATTR_HISTORY,
    ATTR_NIGHTLY_DATE,
    ATTR_NIGHTLY_JOB,
    ATTR_NIGHTLY_WARM_START,
    ATTR_TEST_ACCURACY,
    ATTR_WARM_CHECKPOINT,
    ATTR_WARM_START_SOURCE,
)
from mnist_sweep.model import PER_LAYER_WIDTH
from mnist_sweep.tracking import current_champion

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

NIGHT_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def space_for_night(space: SearchSpace, *, config: NightlyConfig, night: dt.date, name: str) -> SearchSpace:
    """The space as tonight runs it: the night's study and trial budget, a per-night seed.

    Reseeding with the date's day number makes nights explore different points (a fixed
    seed would replay the same startup trials every night) while a re-run of a date draws
    the same ones.
    """
    seed = (space.seed + night.toordinal()) % 2**32
    night_space = space.with_overrides(study_name=name, n_trials=config.budget.n_trials, seed=seed)
    if space.sampler.seed is None:  # an unseeded sampler stays unseeded
        night_space = replace(night_space, sampler=replace(night_space.sampler, seed=None))
    return night_space


def seconds_spent(storage: str, config: NightlyConfig, night: dt.date) -> float:
    """Trial seconds the night's studies have used so far (start to end of each finished trial).

    Read from the storage, so a re-run of the date, even after a crash, knows what is left of
    ``budget.timeout``; the time between trials (data loading, logging) is not counted.
    """
    spent = 0.0
    for space in config.spaces:
        study = load_existing(storage, night_study_name(config.name, space.study_name, night))
        if study is None:
            continue
        for trial in study.get_trials(deepcopy=False):
            if trial.datetime_start is not None and trial.datetime_complete is not None:
                spent += (trial.datetime_complete - trial.datetime_start).total_seconds()
    return spent


def warm_start(
    study: optuna.Study,
    space: SearchSpace,
    *,
    config: NightlyConfig,
    storage: str,
    tracking_uri: str,
    night: dt.date,
) -> list[dict[str, Any]]:
    """Enqueue the champion's params and the previous night's top-k of ``space`` into ``study``.

    Returns what was enqueued. Only new night studies get here, and ``skip_if_exists``
    keeps a resumed one from running the same params twice. A previous night's trial whose
    checkpoint was kept (the nightly job keeps its top-k) is continued from that checkpoint
    instead of trained again, when tonight's params and data are the ones it was trained on
    (checked when the trial starts; otherwise it trains from epoch 0).
    """
    candidates: list[tuple[str, Mapping[str, Any], str | None]] = []
    if config.warm_start.champion:
        champion = champion_params(tracking_uri, config.promotion, dataset=space.dataset)
        if champion is not None:
            version, params = champion
            source = f"{config.promotion.model_name} version {version} (@{config.promotion.alias})"
            candidates.append((source, params, None))
    k = config.warm_start.previous_top_k
    if k:
        previous = _previous_night_study(storage, config.name, space, night)
        if previous is not None:
            for rank, trial in enumerate(top_trials(previous, k), start=1):
                kept = trial.user_attrs.get(ATTR_CHECKPOINT)
                source = f"{previous.study_name} #{rank} (trial {trial.number})"
                candidates.append((source, trial.params, kept if isinstance(kept, str) else None))
    enqueued: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    for source, wanted, checkpoint in candidates:
        sampled = sampled_params(space, wanted)
        if not sampled or sampled in seen:
            continue
        seen.append(sampled)
        attrs: dict[str, Any] = {ATTR_WARM_START_SOURCE: source}
        if checkpoint is not None and sampled == dict(wanted):  # nothing of it was left to the sampler
            attrs[ATTR_WARM_CHECKPOINT] = checkpoint
        study.enqueue_trial(sampled, user_attrs=attrs, skip_if_exists=True)
        enqueued.append({"source": source, "params": sampled, **({"checkpoint": checkpoint} if len(attrs) > 1 else {})})
    return enqueued


def drop_earlier_checkpoints(storage: str, job: str, space: SearchSpace, night: dt.date, checkpoints: Any) -> int:
    """Delete the checkpoints earlier nights of ``space`` kept for a warm start; how many were named.

    Each night keeps its top-k checkpoints for the next night's warm start only: once tonight has
    swept (and kept its own), the earlier ones have served, so a long-running job does not fill the disk.
    """
    from optuna.trial import TrialState

    named = 0
    for date in night_dates(storage, job, space.study_name):
        if date >= night:
            continue
        earlier = load_existing(storage, night_study_name(job, space.study_name, date))
        for trial in earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if earlier else ():
            key = trial.user_attrs.get(ATTR_CHECKPOINT)
            if isinstance(key, str):
                checkpoints.remove(key)
                named += 1
    return named


def _previous_night_study(storage: str, job: str, space: SearchSpace, night: dt.date) -> optuna.Study | None:
    earlier = [d for d in night_dates(storage, job, space.study_name) if d < night]
    if not earlier:
        return None
    return load_existing(storage, night_study_name(job, space.study_name, max(earlier)))


def champion_params(tracking_uri: str, policy: PromotionPolicy, *, dataset: str) -> tuple[str, dict[str, Any]] | None:
    """(version, params) of the model holding ``policy.alias``; None when there is none to start from.

    The params are those the promotion gate recorded on the version. A champion of another
    dataset is skipped here; the gate refuses it later.
    """
    champion = current_champion(policy.model_name, policy.alias, tracking_uri=tracking_uri)
    if champion is None:
        return None
    if champion.dataset and champion.dataset != dataset:
        log.warning("%s@%s is a %s model; no warm start from it", policy.model_name, policy.alias, champion.dataset)
        return None
    if not champion.params:
        log.warning("%s version %s records no params; no warm start from it", policy.model_name, champion.version)
        return None
    return champion.version, dict(champion.params)


def sampled_params(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that ``space`` samples, with values its distributions can draw.

    Fixed parameters come from tonight's space; a value outside tonight's range is left for the
    sampler (Optuna would otherwise warn and use it anyway).
    """
    by_name = {p.name: p for p in space.params}
    out: dict[str, Any] = {}
    for key, value in params.items():
        param = by_name.get("width") if PER_LAYER_WIDTH.match(key) else by_name.get(key)
        if param is None or (param.per_layer != bool(PER_LAYER_WIDTH.match(key))):
            continue
        if can_sample(param.distribution, value):
            out[key] = value
    return out


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` best COMPLETE trials, best first (earlier trial first on a tie)."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    done.sort(key=lambda t: (sign * float(t.value or 0.0), t.number))
    return done[:k]


def summarize_night_study(study: optuna.Study, entry: NightStudy) -> None:
    """Fill ``entry`` with the study's counts, its best trial and its warm start."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    entry.trials = len(trials)
    entry.complete = sum(t.state == TrialState.COMPLETE for t in trials)
    best = top_trials(study, 1)
    if best:
        entry.best_trial = best[0].number
        entry.best_value = best[0].value
        entry.best_test_accuracy = best[0].user_attrs.get(ATTR_TEST_ACCURACY)
    if not entry.warm_start:
        entry.warm_start = list(study.user_attrs.get(ATTR_NIGHTLY_WARM_START) or [])


def night_curves(storage: str, result: NightlyResult) -> dict[str, list[dict[str, float]]]:
    """Every trial's learning curve of the night's studies, labelled for the report."""
    curves: dict[str, list[dict[str, float]]] = {}
    several = len(result.studies) > 1
    for entry in result.studies:
        study = load_existing(storage, entry.study_name)
        if study is None:
            continue
        space = entry.study_name.removesuffix(f"-{result.night.isoformat()}").removeprefix(f"{result.name}-")
        for trial in study.get_trials(deepcopy=False):
            history = trial.user_attrs.get(ATTR_HISTORY)
            if history:
                label = f"{space} #{trial.number}" if several else f"trial {trial.number}"
                if trial.user_attrs.get(ATTR_WARM_START_SOURCE):
                    label += " (warm start)"
                curves[label] = list(history)
    return curves


def study_exists(storage: str, name: str) -> bool:
    """Whether ``storage`` holds a study called ``name``."""
    return load_existing(storage, name) is not None


def load_existing(storage: str, name: str) -> optuna.Study | None:
    """Study ``name`` of ``storage``; None when there is none (never creates one)."""
    import optuna

    from mnist_sweep.stores import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        return None


def night_studies(storage: str, job: str) -> list[tuple[str, dt.date]]:
    """(study name, night) of every night study this job made, read from the study attributes."""
    import optuna

    from mnist_sweep.stores import open_storage

    out = []
    for summary in optuna.get_all_study_summaries(open_storage(storage), include_best_trial=False):
        if summary.user_attrs.get(ATTR_NIGHTLY_JOB) != job:
            continue
        night = summary.user_attrs.get(ATTR_NIGHTLY_DATE)
        if isinstance(night, str) and NIGHT_DATE.match(night) and summary.study_name.endswith(f"-{night}"):
            out.append((summary.study_name, dt.date.fromisoformat(night)))
    return out


def night_dates(storage: str, job: str, study: str) -> list[dt.date]:
    """The nights on which ``job`` ran search space ``study``."""
    return [night for name, night in night_studies(storage, job) if name == night_study_name(job, study, night)]


def delete_old_studies(storage: str, *, job: str, night: dt.date, keep: int) -> list[str]:
    """Delete ``job``'s night studies more than ``keep - 1`` days before ``night``; return their names.

    Only studies this job created (user attribute ``nightly_job``) are candidates; nights after
    ``night`` are never touched (re-running an old date does not delete newer nights).
    """
    import optuna

    from mnist_sweep.stores import open_storage

    doomed = sorted(name for name, date in night_studies(storage, job) if (night - date).days >= keep)
    backend = open_storage(storage)
    for name in doomed:
        optuna.delete_study(study_name=name, storage=backend)
    return doomed
