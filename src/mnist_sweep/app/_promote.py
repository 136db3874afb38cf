"""The promotion gate: promote a study's best model only when it beats the alias holder beyond noise.

:func:`promote` takes a study's best COMPLETE trial (chosen by the sweep on validation data),
evaluates its logged model on the dataset's full held-out test set, evaluates the model that
holds the alias (``champion``) on the same images, and only when the candidate's test accuracy
beats it by ``min_improvement`` *and* McNemar's exact test on the paired predictions gives
p < ``alpha`` registers a new model version from the trial's logged model and moves the alias
to it. Registry aliases, not the deprecated stages. Every decision is recorded as
``mnist_sweep.gate.*`` tags on the candidate's trial run (and on the version, when registered).

MLflow has no compare-and-set for aliases, so two promotions racing are kept from leaving the
alias on the worse model in two steps. Right before moving the alias it is read again: if it
moved since the comparison, the gate runs again against the new holder. After moving it, it is
read back together with the versions other promotions registered meanwhile (each records its
gate score in tags, on the same data); the alias goes to the best of them, and the loop ends
when the alias holder is the model every promoter would choose.

Every registry call and model load goes through :mod:`mnist_sweep.tracking` (``Registry``,
``load_model``); this module decides.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mnist_sweep import __version__, stats
from mnist_sweep.app._evaluate import (
    ROBUST_FIGURE,
    measure_robustness,
    robust_images,
    robustness_figure,
    robustness_text,
)
from mnist_sweep.config import DEFAULT_ALIAS, DEFAULT_ALPHA, DEFAULT_MIN_IMPROVEMENT, DEFAULT_MODEL_NAME
from mnist_sweep.contract import (
    ATTR_TRACKING_URI,
    GATE_PASSED,
    TAG_DATA_SHA256,
    TAG_DATASET,
    TAG_GATE,
    TAG_GATE_ALPHA,
    TAG_GATE_CI_HIGH,
    TAG_GATE_CI_LOW,
    TAG_GATE_DECISION,
    TAG_GATE_DISCORDANT,
    TAG_GATE_P_VALUE,
    TAG_GATE_RULE,
    TAG_GIT_COMMIT,
    TAG_OBJECTIVE,
    TAG_OBJECTIVE_VALUE,
    TAG_PARAMS,
    TAG_PREFIX,
    TAG_PREVIOUS_TEST_ACCURACY,
    TAG_PREVIOUS_VERSION,
    TAG_ROBUST_ACCURACY,
    TAG_ROBUST_PREFIX,
    TAG_ROBUST_SEED,
    TAG_STORAGE,
    TAG_STUDY,
    TAG_SUPERSEDED_BY,
    TAG_TEST_ACCURACY,
    TAG_TEST_CORRECT,
    TAG_TEST_IMAGES,
    TAG_TRIAL_NUMBER,
    TAG_VERSION,
)
from mnist_sweep.errors import ConfigError, DatasetMismatch, ModelMissing, TrackingError, first_line
from mnist_sweep.tracking import (
    Registry,
    ResolvedModel,
    existing_run,
    load_model,
    load_resolved,
    run_tags,
    version_dataset,
)

if TYPE_CHECKING:
    import keras
    import numpy as np
    from mlflow.entities.model_registry import ModelVersion

    from mnist_sweep.app._inspect import BestTrial
    from mnist_sweep.model import Robustness, RobustSet

log = logging.getLogger(__name__)

GATE_METRIC = "test accuracy"
METRIC_WORDS = {"test_accuracy": "test accuracy", "robust_accuracy": "robust accuracy"}
MAX_ALIAS_ROUNDS = 10


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Score:
    """A model's accuracy on the held-out test set (the gate metric).

    ``right``: which images it classified correctly, when it was evaluated here (a score read
    back from a version's tags has only the counts); the significance test pairs these.
    """

    correct: int
    total: int
    right: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass(frozen=True)
class Gate:
    """One gate decision: passed or not, in words, with the numbers behind it.

    ``test`` is McNemar's exact test of the candidate (A) against the holder (B) on their
    paired predictions, and ``interval`` the bootstrap 95% CI of the accuracy difference;
    both are None with no champion (or when the holder's score was read from tags).
    """

    passed: bool
    decision: str
    kind: str  # promoted | not_significant | rejected
    gain: float | None = None
    alpha: float = DEFAULT_ALPHA
    test: stats.McNemar | None = None
    interval: stats.Interval | None = None
    metric: str = "test_accuracy"

    def tags(self) -> dict[str, str]:
        """The ``mnist_sweep.gate.*`` tags that record this decision."""
        tags = {TAG_GATE_DECISION: self.decision, TAG_GATE_ALPHA: repr(self.alpha)}
        if self.test is not None:
            tags[TAG_GATE_P_VALUE] = repr(self.test.p_value)
            tags[TAG_GATE_DISCORDANT] = f"{self.test.a_only},{self.test.b_only}"
        if self.interval is not None:
            tags[TAG_GATE_CI_LOW] = repr(self.interval.low)
            tags[TAG_GATE_CI_HIGH] = repr(self.interval.high)
        return tags

    def evidence(self) -> str:
        """The test's numbers in words (empty with no test)."""
        if self.test is None:
            return ""
        t = self.test
        on = f"on {METRIC_WORDS.get(self.metric, self.metric)}: " if self.metric != "test_accuracy" else ""
        text = (
            f"{on}McNemar p = {_p_text(t.p_value)} over {t.discordant} discordant images "
            f"({t.a_only} only the candidate got right, {t.b_only} only the champion)"
        )
        if self.interval is not None:
            text += f", 95% CI of the gain {self.interval.low:+.4f} to {self.interval.high:+.4f}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "passed": self.passed,
            "alpha": self.alpha,
            "p_value": self.test.p_value if self.test else None,
            "discordant": [self.test.a_only, self.test.b_only] if self.test else None,
            "ci_low": self.interval.low if self.interval else None,
            "ci_high": self.interval.high if self.interval else None,
        }


def judge(
    candidate: Score,
    champion: Score | None,
    *,
    min_improvement: float = DEFAULT_MIN_IMPROVEMENT,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "test_accuracy",
    robust: float | None = None,
    min_robust_accuracy: float | None = None,
) -> Gate:
    """The gate: better than ``champion`` by ``min_improvement`` and, on paired predictions, p < ``alpha``.

    Any candidate passes when there is no champion. Without paired predictions (a holder's score
    read back from tags) only the margin can be checked. ``candidate`` and ``champion`` are
    scores on ``metric``'s images; with ``min_robust_accuracy``, the candidate's ``robust``
    accuracy must also reach that floor.
    """
    if min_robust_accuracy is not None and robust is not None and robust < min_robust_accuracy - 1e-12:
        return Gate(
            False,
            f"rejected: robust accuracy {robust:.4f} below the floor {min_robust_accuracy:g}",
            "rejected",
            alpha=alpha,
            metric=metric,
        )
    if champion is None:
        return Gate(True, "promoted: no champion", "promoted", alpha=alpha, metric=metric)
    gain = candidate.accuracy - champion.accuracy
    test = interval = None
    if candidate.right is not None and champion.right is not None:
        test = stats.mcnemar_flags(candidate.right, champion.right)
        interval = stats.bootstrap_difference(test)
    p = f", p = {_p_text(test.p_value)}" if test is not None else ""
    common: dict[str, Any] = {"gain": gain, "alpha": alpha, "test": test, "interval": interval, "metric": metric}
    if gain <= 0:
        return Gate(False, f"rejected: not better ({gain:+.4f}{p})", "rejected", **common)
    if gain < min_improvement - 1e-12:  # accuracies are k/n: compare without float noise
        return Gate(False, f"rejected: gain {gain:+.4f} below the margin {min_improvement:g}{p}", "rejected", **common)
    if test is not None and not test.p_value < alpha:
        return Gate(
            False,
            f"not significant: p = {_p_text(test.p_value)} >= alpha {alpha:g} (gain {gain:+.4f})",
            "not_significant",
            **common,
        )
    return Gate(True, f"promoted: better by {gain:+.4f}{p}", "promoted", **common)


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` decided, with both scores; ``message`` is what the CLI prints.

    ``decision``: ``promoted`` (alias moved, or would move under ``dry_run``), ``rejected`` (the
    candidate lost the gate), ``not_significant`` (it won by too little to tell from noise),
    ``already`` (it holds the alias already), ``superseded`` (it passed, but a better model took
    the alias while this promotion ran).
    """

    model_name: str
    alias: str
    study: str
    trial: int
    dataset: str
    data_sha256: str
    candidate_uri: str
    candidate: Score | None
    champion_version: str | None
    champion: Score | None
    min_improvement: float
    decision: str
    dry_run: bool = False
    version: str | None = None
    gate: Gate | None = None
    alpha: float = DEFAULT_ALPHA
    metric: str = "test_accuracy"
    candidate_robust: Robustness | None = None
    champion_robust: Robustness | None = None
    ties: tuple[int, ...] = ()  # trials with the candidate's exact validation value (see BestTrial.ties)

    @property
    def promoted(self) -> bool:
        """True when the alias was moved to the candidate."""
        return self.decision == "promoted" and not self.dry_run

    def message(self) -> str:
        if not self.ties or self.decision == "already":
            return self._decision_message()
        others = ", ".join(str(n) for n in self.ties)
        return (
            f"{self._decision_message()} Note: trial(s) {others} tie trial {self.trial} on validation; it is "
            "the first of them by trial number, not the better one."
        )

    def _decision_message(self) -> str:
        who = f"study {self.study!r} trial {self.trial}"
        target = f"{self.model_name}@{self.alias}"
        if self.decision == "already":
            return f"not promoted: {who} already is {target} (version {self.champion_version}). Nothing changed."
        cand = self.candidate.accuracy if self.candidate else float("nan")
        images = f"{self.candidate.total if self.candidate else 0} held-out {self.dataset} test images"
        if self.champion is None:
            before = f"no version holds {self.alias} yet" if self.dry_run else f"no version held {self.alias} before"
            versus = f"{GATE_METRIC} {cand:.4f} on {images}; {before}"
            if self.candidate_robust is not None:
                versus += f"; {robustness_text(self.candidate_robust)}"
        else:
            gain = cand - self.champion.accuracy
            versus = (
                f"{GATE_METRIC} {cand:.4f} vs {self.champion.accuracy:.4f} for version {self.champion_version} "
                f"on the same {images} ({gain:+.4f}; the gate needs at least +{self.min_improvement:.4f} "
                f"and p < {self.alpha:g})"
            )
            if self.candidate_robust is not None and self.champion_robust is not None:
                versus += (
                    f"; robust accuracy {self.candidate_robust.accuracy:.4f} vs {self.champion_robust.accuracy:.4f}"
                )
            evidence = self.gate.evidence() if self.gate is not None else ""
            if evidence:
                versus += f"; {evidence}"
        if self.decision == "superseded":
            held = self.champion.accuracy if self.champion else float("nan")
            return (
                f"not promoted: while this promotion ran, version {self.champion_version} took {target} with "
                f"{GATE_METRIC} {held:.4f} (candidate: {cand:.4f}); "
                f"{who} stays registered as version {self.version} without the alias."
            )
        decided = f" Gate decision: {self.gate.decision}." if self.gate is not None else ""
        if self.dry_run:
            verdict = "would promote" if self.decision == "promoted" else "would not promote"
            return f"dry run: {verdict} {who} to {target}: {versus}.{decided} Nothing changed."
        if self.decision == "promoted":
            return f"promoted: {who} is now {target} (version {self.version}): {versus}."
        if self.decision == "not_significant":
            return (
                f"not promoted: {who} is not significantly better than {target} (within noise): {versus}.{decided} "
                "Nothing changed."
            )
        return f"not promoted: {who} loses to {target}: {versus}.{decided} Nothing changed."

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "promoted": self.promoted,
            "dry_run": self.dry_run,
            "model_name": self.model_name,
            "alias": self.alias,
            "version": self.version,
            "study": self.study,
            "trial": self.trial,
            "dataset": self.dataset,
            "data_sha256": self.data_sha256,
            "candidate_uri": self.candidate_uri,
            "metric": "test_accuracy",
            "candidate_score": self.candidate.accuracy if self.candidate else None,
            "champion_version": self.champion_version,
            "champion_score": self.champion.accuracy if self.champion else None,
            "test_images": self.candidate.total if self.candidate else None,
            "min_improvement": self.min_improvement,
            "alpha": self.alpha,
            "gate": self.gate.to_dict() if self.gate is not None else None,
            "gate_metric": self.metric,
            "candidate_robust_accuracy": self.candidate_robust.accuracy if self.candidate_robust else None,
            "champion_robust_accuracy": self.champion_robust.accuracy if self.champion_robust else None,
            "candidate_robust_per_transform": (
                dict(self.candidate_robust.per_transform) if self.candidate_robust else None
            ),
            "ties": list(self.ties),
            "reason": self.message(),
        }


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> Score:
    """``model``'s accuracy on ``images`` / ``labels``."""
    import numpy as np

    from mnist_sweep.model import probabilities

    right = np.argmax(probabilities(model, images), axis=1) == labels
    return Score(correct=int(right.sum()), total=len(labels), right=right)


# --------------------------------------------------------------------------- promote


@dataclass(frozen=True)
class _Candidate:
    best: BestTrial
    model_uri: str
    run_id: str | None
    dataset: str
    run_tags: Mapping[str, str]


@dataclass(frozen=True)
class _TestSet:
    dataset: str
    images: np.ndarray
    labels: np.ndarray
    sha256: str

    @property
    def robust(self) -> RobustSet:
        return robust_images(self.images, self.labels, key=self.sha256)


class _Scores:
    """Test-set scores of registry versions, each model evaluated at most once."""

    def __init__(self, registry: Registry, test: _TestSet) -> None:
        self.registry = registry
        self.test = test
        self._cache: dict[str, Score] = {}
        self._robust: dict[str, Robustness] = {}

    def of_version(self, version: ModelVersion) -> Score:
        key = str(version.version)
        if key not in self._cache:
            name = version.name
            resolved = ResolvedModel(
                uri=f"models:/{name}/{key}", artifact_uri=self.registry.download_uri(name, key), version=key
            )
            model = load_resolved(resolved, tracking_uri=self.registry.uri)
            self._cache[key] = evaluate(model, self.test.images, self.test.labels)
            self._robust[key] = measure_robustness(model, self.test.robust)
        return self._cache[key]

    def robust_of_version(self, version: ModelVersion) -> Robustness:
        self.of_version(version)
        return self._robust[str(version.version)]


def promote(
    study_name: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str = DEFAULT_ALIAS,
    min_improvement: float = DEFAULT_MIN_IMPROVEMENT,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "test_accuracy",
    min_robust_accuracy: float | None = None,
    dry_run: bool = False,
) -> Promotion:
    """Promote the best COMPLETE trial of ``study_name`` to ``model_name@alias`` if it passes the gate.

    The gate: test accuracy on the dataset's full held-out test set, at least
    ``min_improvement`` above that of the model holding the alias, with McNemar's exact test on
    the paired predictions at p < ``alpha`` (any model passes when no version holds the alias).
    A candidate that loses, or wins within noise, changes nothing but the gate tags on its run;
    ``dry_run`` never changes anything. Both models are also measured on the seeded transformed
    test set (robust accuracy); ``metric="robust_accuracy"`` makes the gate compare those paired
    predictions instead, and ``min_robust_accuracy`` sets a floor the candidate must reach.
    Raises NoCompleteTrial, ModelMissing, DatasetMismatch,
    StorageError (unknown study) and TrackingError.
    """
    from mnist_sweep.app._inspect import best_of, resolve_storage
    from mnist_sweep.stores import load_study
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri

    _check_request(model_name, alias, min_improvement, alpha)
    if metric not in METRIC_WORDS:
        raise ConfigError(f"--metric {metric!r}: choose one of {', '.join(METRIC_WORDS)}")
    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    storage_url = resolve_storage(storage, uri)
    study = load_study(study_name, storage_url)
    candidate = _candidate(best_of(study), uri, study.user_attrs.get(ATTR_TRACKING_URI))
    registry = Registry(uri)
    start_number = registry.latest_number(model_name)
    holder = registry.holder(model_name, alias)
    if holder is not None:
        _check_dataset(holder, candidate, model_name, alias, uri)

    def outcome(decision: str, **fields: Any) -> Promotion:
        base: dict[str, Any] = {
            "model_name": model_name,
            "alias": alias,
            "study": study_name,
            "trial": candidate.best.number,
            "dataset": candidate.dataset,
            "data_sha256": "",
            "candidate_uri": candidate.model_uri,
            "candidate": None,
            "champion_version": str(holder.version) if holder is not None else None,
            "champion": None,
            "min_improvement": min_improvement,
            "alpha": alpha,
            "metric": metric,
            "dry_run": dry_run,
            "ties": candidate.best.ties,
        }
        return Promotion(decision=decision, **{**base, **fields})

    if holder is not None and holder.source == candidate.model_uri:
        return outcome("already")
    test = _test_set(candidate, data_dir)
    scores = _Scores(registry, test)
    candidate_model = load_model(candidate.model_uri, tracking_uri=uri)
    ours = evaluate(candidate_model, test.images, test.labels)
    our_robust = measure_robustness(candidate_model, test.robust)
    champion = scores.of_version(holder) if holder is not None else None
    champion_robust = scores.robust_of_version(holder) if holder is not None else None
    on_metric = (
        (_as_score(our_robust), _as_score(champion_robust) if champion_robust else None)
        if metric == "robust_accuracy"
        else (ours, champion)
    )
    gate = judge(
        *on_metric,
        min_improvement=min_improvement,
        alpha=alpha,
        metric=metric,
        robust=our_robust.accuracy,
        min_robust_accuracy=min_robust_accuracy,
    )
    common = {
        "candidate": ours,
        "champion": champion,
        "data_sha256": test.sha256,
        "gate": gate,
        "candidate_robust": our_robust,
        "champion_robust": champion_robust,
    }
    if not dry_run:
        _record_gate(candidate, gate, our_robust, uri)
    if not gate.passed:
        return outcome(gate.kind, **common)
    if dry_run:
        return outcome("promoted", **common)
    version = registry.register(
        model_name,
        source=candidate.model_uri,
        run_id=candidate.run_id,
        tags={
            **_version_tags(candidate, test, ours, holder, champion, min_improvement, storage_url),
            **gate.tags(),
            **_robust_tags(our_robust),
        },
        description=_description(candidate, test, ours, holder, champion),
    )
    log.info("registered %s version %s from %s", model_name, version.version, candidate.model_uri)
    final, final_score = _settle_alias(
        registry, scores, model_name, alias, version, ours, start_number, candidate, min_improvement, alpha
    )
    if str(final.version) == str(version.version):
        return outcome("promoted", **common, version=str(version.version))
    registry.set_tag(model_name, str(version.version), TAG_SUPERSEDED_BY, str(final.version))
    return outcome(
        "superseded",
        **{**common, "champion": final_score},
        champion_version=str(final.version),
        version=str(version.version),
    )


def _settle_alias(
    registry: Registry,
    scores: _Scores,
    name: str,
    alias: str,
    ours: ModelVersion,
    our_score: Score,
    start_number: int,
    candidate: _Candidate,
    min_improvement: float,
    alpha: float,
) -> tuple[ModelVersion, Score]:
    """Move ``alias`` to the best model; return the version that holds it in the end.

    Contenders: our version, the versions other promotions registered since this one started
    (each passed its own gate; ranked by their recorded score, earlier version first on a tie),
    and the holder. A holder that is not one of those (the champion, perhaps one that moved in
    since our comparison) must be beaten by the gate margin.
    """
    sha = scores.test.sha256
    for _ in range(MAX_ALIAS_ROUNDS):
        holder = registry.holder(name, alias)
        contenders: dict[str, tuple[ModelVersion, Score]] = {str(ours.version): (ours, our_score)}
        for v in registry.all_versions(name):
            score = _recorded_score(v, candidate.dataset, sha)
            if int(v.version) > start_number and score is not None:
                contenders.setdefault(str(v.version), (v, score))
        target, target_score = max(contenders.values(), key=lambda c: (c[1].correct, -int(c[0].version)))
        if holder is not None and str(holder.version) not in contenders:
            if holder.source != ours.source:
                _check_dataset(holder, candidate, name, alias, registry.uri)
            holder_score = scores.of_version(holder)
            if not judge(target_score, holder_score, min_improvement=min_improvement, alpha=alpha).passed:
                target, target_score = holder, holder_score
        if holder is not None and str(holder.version) == str(target.version):
            return target, target_score
        log.info("moving %s@%s to version %s", name, alias, target.version)
        registry.set_alias(name, alias, str(target.version))
    raise TrackingError(
        f"{name}@{alias} kept moving while promoting (more than {MAX_ALIAS_ROUNDS} rounds); run promote again"
    )


def _recorded_score(version: ModelVersion, dataset: str, sha256: str) -> Score | None:
    """The gate score a promotion recorded on ``version``, if it was measured on the same data."""
    tags = version.tags or {}
    if tags.get(TAG_GATE) != GATE_PASSED or tags.get(TAG_DATASET) != dataset:
        return None
    if tags.get(TAG_DATA_SHA256) != sha256:
        return None
    try:
        return Score(correct=int(tags[TAG_TEST_CORRECT]), total=int(tags[TAG_TEST_IMAGES]))
    except (KeyError, ValueError):
        return None


def _as_score(robust: Robustness) -> Score:
    return Score(correct=robust.correct, total=robust.total, right=robust.right)


def _robust_tags(robust: Robustness) -> dict[str, str]:
    return {
        TAG_ROBUST_ACCURACY: repr(robust.accuracy),
        TAG_ROBUST_SEED: str(robust.seed),
        **{TAG_ROBUST_PREFIX + name: repr(value) for name, value in robust.per_transform.items()},
    }


def _record_gate(candidate: _Candidate, gate: Gate, robust: Robustness, tracking_uri: str) -> None:
    """The decision and the robustness figures on the candidate's trial run (best effort: the registry counts)."""
    if not candidate.run_id:
        return
    try:
        run = existing_run(candidate.run_id, tracking_uri=tracking_uri)
        run.set_tags({**gate.tags(), **_robust_tags(robust)})
        run.log_metrics(robust.as_dict())
        title = f"study {candidate.best.study!r} trial {candidate.best.number}: accuracy per transform"
        run.log_figure(robustness_figure(robust, title=title), ROBUST_FIGURE)
    except Exception as exc:
        log.warning("could not tag run %s with the gate decision: %s", candidate.run_id, first_line(exc))


def _check_request(model_name: str, alias: str, min_improvement: float, alpha: float = DEFAULT_ALPHA) -> None:
    # Checked before anything is registered: MLflow would refuse a bad alias only after the new version exists.
    if not model_name.strip() or any(c in model_name for c in "/:'"):
        raise ConfigError(f"--model-name {model_name!r}: must be non-empty, without '/', ':' or quotes")
    if not re.fullmatch(r"[\w-]{1,255}", alias):
        raise ConfigError(f"--alias {alias!r}: use letters, digits, '_' and '-' only")
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ConfigError(f"--alias {alias!r}: MLflow reserves 'latest' and 'v<number>'; choose another name")
    if not 0 <= min_improvement < 1:
        raise ConfigError(f"--min-improvement {min_improvement:g}: must be at least 0 and below 1")
    if not 0 < alpha <= 1:
        raise ConfigError(f"--alpha {alpha:g}: must be in (0, 1] (a significance level)")


def _candidate(best: BestTrial, tracking_uri: str, study_tracking_uri: str | None) -> _Candidate:
    who = f"study {best.study!r} trial {best.number}"
    if not best.model_uri:
        raise ModelMissing(f"{who} logged no model (was it run with --no-tracking?)")
    tags: dict[str, str] = {}
    if best.model_run_id:
        try:
            tags = run_tags(best.model_run_id, tracking_uri=tracking_uri)
        except TrackingError:
            hint = f" (the study logged to {study_tracking_uri})" if study_tracking_uri else ""
            raise ModelMissing(
                f"{who}: its MLflow run {best.model_run_id} is not in {tracking_uri}; "
                f"pass the --tracking-uri the study logged to{hint}"
            ) from None
    dataset = best.dataset or tags.get(TAG_DATASET)
    if not dataset:
        raise ModelMissing(f"{who}: neither the study nor its run records the dataset")
    run_dataset = tags.get(TAG_DATASET)
    if run_dataset and run_dataset != dataset:
        raise DatasetMismatch(f"{who}: the study says {dataset}, its MLflow run says {run_dataset}")
    return _Candidate(best=best, model_uri=best.model_uri, run_id=best.model_run_id, dataset=dataset, run_tags=tags)


def _check_dataset(holder: ModelVersion, candidate: _Candidate, name: str, alias: str, tracking_uri: str) -> None:
    held = version_dataset(holder, tracking_uri)
    target = f"{name}@{alias} (version {holder.version})"
    if held is None:
        raise DatasetMismatch(
            f"refused: {target} records no dataset (version tag {TAG_DATASET}), so it cannot be compared with "
            f"a {candidate.dataset} model; tag it, or promote under another --model-name"
        )
    if held != candidate.dataset:
        raise DatasetMismatch(
            f"refused: study {candidate.best.study!r} trial {candidate.best.number} is a {candidate.dataset} model, "
            f"but {target} is a {held} model; promote it under another --model-name"
        )


def _test_set(candidate: _Candidate, data_dir: str | None) -> _TestSet:
    import numpy as np

    from mnist_sweep.model import load_raw

    raw = load_raw(candidate.dataset, data_dir)
    trained_on = candidate.run_tags.get(TAG_DATA_SHA256)
    if trained_on and trained_on != raw.sha256:
        log.warning(
            "study %r trial %d was trained on %s data with SHA-256 %s; evaluating on %s (SHA-256 %s)",
            candidate.best.study,
            candidate.best.number,
            candidate.dataset,
            trained_on,
            raw.source,
            raw.sha256,
        )
    return _TestSet(
        dataset=candidate.dataset,
        images=raw.test_images.astype(np.float32) / np.float32(255.0),
        labels=raw.test_labels.astype(np.int64),
        sha256=raw.sha256,
    )


def _version_tags(
    candidate: _Candidate,
    test: _TestSet,
    score: Score,
    holder: ModelVersion | None,
    champion: Score | None,
    min_improvement: float,
    storage: str,
) -> dict[str, str]:
    from mnist_sweep.stores import redact_url
    from mnist_sweep.tracking import git_commit

    best = candidate.best
    run = candidate.run_tags
    tags = {
        TAG_STUDY: best.study,
        TAG_TRIAL_NUMBER: str(best.number),
        TAG_STORAGE: redact_url(storage),
        TAG_PARAMS: json.dumps(dict(best.params), sort_keys=True, default=str),
        TAG_OBJECTIVE: f"{best.direction} {best.metric}",
        TAG_OBJECTIVE_VALUE: repr(best.value),
        **{TAG_PREFIX + name: repr(value) for name, value in best.validation.items()},
        TAG_TEST_ACCURACY: repr(score.accuracy),
        TAG_TEST_CORRECT: str(score.correct),
        TAG_TEST_IMAGES: str(score.total),
        TAG_DATASET: candidate.dataset,
        TAG_DATA_SHA256: test.sha256,
        TAG_VERSION: run.get(TAG_VERSION) or __version__,
        TAG_GIT_COMMIT: run.get(TAG_GIT_COMMIT) or git_commit() or "unknown",
        TAG_GATE: GATE_PASSED,
        TAG_GATE_RULE: f"{GATE_METRIC} >= alias holder's + {min_improvement:g}, McNemar p < alpha",
        TAG_PREVIOUS_VERSION: str(holder.version) if holder is not None else "none",
    }
    if champion is not None:
        tags[TAG_PREVIOUS_TEST_ACCURACY] = repr(champion.accuracy)
    return tags


def _description(
    candidate: _Candidate, test: _TestSet, score: Score, holder: ModelVersion | None, champion: Score | None
) -> str:
    best = candidate.best
    val = best.validation.get("val_accuracy")
    previous = (
        f"version {holder.version} had {champion.accuracy:.4f}"
        if holder is not None and champion is not None
        else "no previous champion"
    )
    validation = f"validation accuracy {val:.4f}, " if val is not None else ""
    return (
        f"Study {best.study!r} trial {best.number} ({candidate.dataset}, {best.epochs} epochs): {validation}"
        f"test accuracy {score.accuracy:.4f} on {score.total} held-out test images ({previous}). "
        f"Params: {json.dumps(dict(best.params), sort_keys=True, default=str)}. "
        f"Data SHA-256 {test.sha256}."
    )


# --------------------------------------------------------------------------- helpers
