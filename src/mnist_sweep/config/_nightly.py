"""The nightly job's file: ``sweeps/nightly.yaml`` -> a validated, frozen :class:`NightlyConfig`.

The format (unknown keys are errors at every level; ``*`` marks required keys)::

    name: nightly                  # job name: lock, study prefix, MLflow experiment
    spaces*: [../search_spaces/full.yaml]   # search-space files, relative to this file
    budget*: {n_trials: 20, timeout: 14400} # per night: trials per space, seconds for the night
    storage: null                  # Optuna storage URL; --storage / $MNIST_SWEEP_STORAGE win
    tracking_uri: null             # MLflow URI; --tracking-uri / $MLFLOW_TRACKING_URI win
    promotion: {metric: test_accuracy, margin: 0.001, alpha: 0.05, min_robust_accuracy: null,
                model_name: mnist-classifier, alias: champion}
                                   # metric: test_accuracy | robust_accuracy (the transformed test set)
    warm_start: {champion: true, previous_top_k: 3}
    retention: {nights: 30, unregistered_models: 7}  # null keeps everything
    lock: {ttl: 300}               # seconds a dead run's lock lives on

Every search space it names is loaded and checked too. Running a night is
:mod:`mnist_sweep.app._nightly`'s business.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_sweep.config._space import SearchSpace, load_space
from mnist_sweep.config._yaml import STUDY_NAME, Checker, did_you_mean, join_key, kind_of, read_yaml, show
from mnist_sweep.errors import ConfigError, MnistSweepError

TOP_KEYS = ("name", "spaces", "budget", "storage", "tracking_uri", "promotion", "warm_start", "retention", "lock")
REQUIRED_TOP_KEYS = ("spaces", "budget")
DEFAULT_NAME = "nightly"
DEFAULT_TOP_K = 3
DEFAULT_LOCK_TTL = 300.0
# The promotion gate's defaults, which ``mnist-sweep promote`` shares.
DEFAULT_MODEL_NAME = "mnist-classifier"
DEFAULT_ALIAS = "champion"
DEFAULT_MIN_IMPROVEMENT = 0.001
DEFAULT_ALPHA = 0.05
"""The gate promotes only when McNemar's exact test gives p below this."""
# The promotion gate measures accuracy on the held-out test set, or on its seeded transformed
# copy (rotations, shifts, scale, stroke width, noise); `metric` names which one it compares.
PROMOTION_METRICS = ("test_accuracy", "robust_accuracy")
DEFAULT_PROMOTION = {
    "metric": "test_accuracy",
    "margin": DEFAULT_MIN_IMPROVEMENT,
    "alpha": DEFAULT_ALPHA,
    "min_robust_accuracy": None,
    "model_name": DEFAULT_MODEL_NAME,
    "alias": DEFAULT_ALIAS,
}
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


@dataclass(frozen=True)
class NightlyBudget:
    """Per night: trials per space (None: the space file's) and seconds for the whole night."""

    n_trials: int | None
    timeout: float | None


@dataclass(frozen=True)
class PromotionPolicy:
    """What the gate compares (on the held-out test set), by how much, and what it moves.

    The candidate must be better than the alias holder by at least ``margin`` on ``metric``,
    with McNemar's p below ``alpha``, and (when set) reach ``min_robust_accuracy``:
    :func:`mnist_sweep.app._promote.judge`.
    """

    metric: str
    margin: float
    model_name: str
    alias: str
    alpha: float = DEFAULT_ALPHA
    min_robust_accuracy: float | None = None


@dataclass(frozen=True)
class WarmStart:
    """What a new night study runs first: the champion's params, the previous night's best."""

    champion: bool
    previous_top_k: int


@dataclass(frozen=True)
class Retention:
    """Nights of studies and of unregistered trial models to keep (None: keep all)."""

    nights: int | None
    unregistered_models: int | None


@dataclass(frozen=True)
class NightlyConfig:
    """A validated nightly file."""

    source: str
    text: str
    name: str
    spaces: tuple[SearchSpace, ...]
    budget: NightlyBudget
    storage: str | None
    tracking_uri: str | None
    promotion: PromotionPolicy
    warm_start: WarmStart
    retention: Retention
    lock_ttl: float

    @property
    def dataset(self) -> str:
        return self.spaces[0].dataset

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spaces": [s.source for s in self.spaces],
            "budget": {"n_trials": self.budget.n_trials, "timeout": self.budget.timeout},
            "storage": self.storage,
            "tracking_uri": self.tracking_uri,
            "promotion": {
                "metric": self.promotion.metric,
                "margin": self.promotion.margin,
                "alpha": self.promotion.alpha,
                "min_robust_accuracy": self.promotion.min_robust_accuracy,
                "model_name": self.promotion.model_name,
                "alias": self.promotion.alias,
            },
            "warm_start": {"champion": self.warm_start.champion, "previous_top_k": self.warm_start.previous_top_k},
            "retention": {"nights": self.retention.nights, "unregistered_models": self.retention.unregistered_models},
            "lock": {"ttl": self.lock_ttl},
        }


def load_nightly(path: str | os.PathLike[str]) -> NightlyConfig:
    """Read and validate a nightly YAML file and every search space it names.

    Raises :class:`ConfigError` naming the file, the key path and the problem; an error in a
    search-space file names both the nightly key (``spaces[0]``) and that file's own key.
    """
    source, text, data = read_yaml(path)
    return parse_nightly(data, source=source, text=text, base_dir=Path(source).parent)


def parse_nightly(
    data: Any, *, source: str = "<string>", text: str = "", base_dir: str | os.PathLike[str] = "."
) -> NightlyConfig:
    """Validate already-loaded YAML data; space paths are relative to ``base_dir``."""
    return _NightlyChecker(source).nightly(data, text, Path(base_dir))


class _NightlyChecker(Checker):
    """The nightly file's sections, on the checks every file format shares."""

    def nightly(self, data: Any, text: str, base_dir: Path) -> NightlyConfig:
        data = self.top_level(data, allowed=TOP_KEYS, required=REQUIRED_TOP_KEYS)
        name = self.study_name(data.get("name", DEFAULT_NAME), "name")
        spaces = self.spaces(data["spaces"], "spaces", base_dir=base_dir, job=name)
        return NightlyConfig(
            source=self.source or "<string>",
            text=text,
            name=name,
            spaces=spaces,
            budget=self.night_budget(data["budget"], "budget"),
            storage=self.storage(data.get("storage"), "storage"),
            tracking_uri=self.tracking_uri(data.get("tracking_uri"), "tracking_uri"),
            promotion=self.promotion(data.get("promotion"), "promotion"),
            warm_start=self.warm_start(data.get("warm_start"), "warm_start"),
            retention=self.retention(data.get("retention"), "retention"),
            lock_ttl=self.lock(data.get("lock"), "lock"),
        )

    def spaces(self, value: Any, path: str, *, base_dir: Path, job: str) -> tuple[SearchSpace, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.fail(path, f"must be a search-space file or a non-empty list of them, got {kind_of(value)}")
        spaces: list[SearchSpace] = []
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if isinstance(value, list) else path
            relative = self.string(item, where)
            file = Path(os.path.normpath(base_dir / relative))
            try:
                space = load_space(file)
            except ConfigError as exc:
                self.fail(where, str(exc))
            longest = night_study_name(job, space.study_name, dt.date(2000, 1, 1))
            if not STUDY_NAME.match(longest):
                self.fail(where, f"night study names like {longest!r} would exceed 128 characters; shorten `name`")
            for earlier_index, earlier in enumerate(spaces):
                if earlier.study_name == space.study_name:
                    self.fail(where, f"study {space.study_name!r} is already run by {path}[{earlier_index}]")
                if earlier.dataset != space.dataset:
                    self.fail(
                        where,
                        f"{space.study_name!r} trains on {space.dataset} but {path}[0] on {earlier.dataset}; "
                        "one nightly job promotes into one model, so its spaces must share a dataset",
                    )
            spaces.append(space)
        return tuple(spaces)

    def night_budget(self, value: Any, path: str) -> NightlyBudget:
        section = self.mapping(value, path, allowed=("n_trials", "timeout"))
        n_trials = section.get("n_trials")
        timeout = section.get("timeout")
        if n_trials is None and timeout is None:
            self.fail(path, "at least one of `n_trials` (per space) and `timeout` (seconds per night) must be set")
        return NightlyBudget(
            n_trials=None if n_trials is None else self.integer(n_trials, join_key(path, "n_trials"), minimum=1),
            timeout=None if timeout is None else self.positive_seconds(timeout, join_key(path, "timeout")),
        )

    def storage(self, value: Any, path: str) -> str | None:
        if value is None:
            return None
        from mnist_sweep.stores import storage_kind

        url = self.string(value, path)
        try:
            storage_kind(url)
        except ConfigError as exc:
            self.fail(path, str(exc))
        return url

    def tracking_uri(self, value: Any, path: str) -> str | None:
        if value is None:
            return None
        from mnist_sweep.tracking import check_tracking_uri

        uri = self.string(value, path)
        try:
            check_tracking_uri(uri)
        except MnistSweepError as exc:
            self.fail(path, str(exc))
        return uri

    def promotion(self, value: Any, path: str) -> PromotionPolicy:
        section = self.mapping({} if value is None else value, path, allowed=tuple(DEFAULT_PROMOTION))
        merged: dict[str, Any] = {**DEFAULT_PROMOTION, **{k: v for k, v in section.items() if v is not None}}
        metric = self.string(merged["metric"], join_key(path, "metric"))
        if metric not in PROMOTION_METRICS:
            self.fail(
                join_key(path, "metric"),
                f"unknown metric {metric!r}; {did_you_mean(metric, PROMOTION_METRICS)}"
                f"the promotion gate measures {', '.join(PROMOTION_METRICS)} on the held-out test set",
            )
        margin = self.number(merged["margin"], join_key(path, "margin"))
        if not 0 <= margin < 1:
            self.fail(
                join_key(path, "margin"),
                f"must be at least 0 and below 1 (a gain in accuracy), got {show(merged['margin'])}",
            )
        alpha = self.number(merged["alpha"], join_key(path, "alpha"))
        if not 0 < alpha <= 1:
            self.fail(join_key(path, "alpha"), f"must be in (0, 1] (a significance level), got {show(merged['alpha'])}")
        floor = merged["min_robust_accuracy"]
        if floor is not None:
            floor = self.number(floor, join_key(path, "min_robust_accuracy"))
            if not 0 <= floor <= 1:
                shown = show(merged["min_robust_accuracy"])
                self.fail(join_key(path, "min_robust_accuracy"), f"must be an accuracy in [0, 1], got {shown}")
        model_name = self.string(merged["model_name"], join_key(path, "model_name"))
        if not model_name.strip() or any(c in model_name for c in "/:'"):
            self.fail(
                join_key(path, "model_name"),
                f"must be a non-empty name without '/', ':' or quotes, got {show(model_name)}",
            )
        alias = self.string(merged["alias"], join_key(path, "alias"))
        if not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            self.fail(
                join_key(path, "alias"),
                f"must be letters, digits, '_' or '-', and neither 'latest' nor like 'v1', got {show(alias)}",
            )
        return PromotionPolicy(
            metric=metric, margin=margin, model_name=model_name, alias=alias, alpha=alpha, min_robust_accuracy=floor
        )

    def warm_start(self, value: Any, path: str) -> WarmStart:
        section = self.mapping({} if value is None else value, path, allowed=("champion", "previous_top_k"))
        champion = self.boolean(section.get("champion", True), join_key(path, "champion"))
        top_k = section.get("previous_top_k", DEFAULT_TOP_K)
        return WarmStart(
            champion=champion, previous_top_k=self.integer(top_k, join_key(path, "previous_top_k"), minimum=0)
        )

    def retention(self, value: Any, path: str) -> Retention:
        section = self.mapping({} if value is None else value, path, allowed=("nights", "unregistered_models"))

        def nights(key: str) -> int | None:
            raw = section.get(key)
            return None if raw is None else self.integer(raw, join_key(path, key), minimum=1)

        return Retention(nights=nights("nights"), unregistered_models=nights("unregistered_models"))

    def lock(self, value: Any, path: str) -> float:
        section = self.mapping({} if value is None else value, path, allowed=("ttl",))
        ttl = section.get("ttl")
        return DEFAULT_LOCK_TTL if ttl is None else self.positive_seconds(ttl, join_key(path, "ttl"))


def night_study_name(job: str, study: str, night: dt.date) -> str:
    """The Optuna study that holds one space's trials of one night."""
    return f"{job}-{study}-{night.isoformat()}"


def describe_config(config: NightlyConfig) -> str:
    """One line per setting, for ``mnist-sweep nightly FILE --check``."""
    b, p, w, r = config.budget, config.promotion, config.warm_start, config.retention
    spaces = ", ".join(f"{s.source} (study {s.study_name!r})" for s in config.spaces)
    trials = "the space file's" if b.n_trials is None else str(b.n_trials)
    timeout = "no" if b.timeout is None else f"{b.timeout:g} s"
    return "\n".join(
        [
            f"ok: {config.source}: nightly job {config.name!r} on {config.dataset}",
            f"  spaces: {spaces}",
            f"  budget per night: {trials} trials per space, {timeout} wall-clock limit",
            f"  promotion: {p.metric} better by more than {p.margin:g} at p < {p.alpha:g}"
            + (f", robust accuracy at least {p.min_robust_accuracy:g}" if p.min_robust_accuracy is not None else "")
            + f" -> {p.model_name}@{p.alias}",
            f"  warm start: champion {'yes' if w.champion else 'no'}, previous night's top {w.previous_top_k}",
            f"  retention: studies {r.nights or 'all'} nights, "
            f"unregistered trial models {r.unregistered_models or 'all'} nights",
            f"  lock ttl: {config.lock_ttl:g} s",
        ]
    )
