"""Search-space YAML -> validated, frozen objects and real Optuna distributions.

A search-space file names a study, the data set, the objective, the sampler and pruner, the
budget, the parameters held fixed and the parameters to sample. Everything is checked when the
file is loaded, so a typo stops the command before anything trains, with a message that names
the file, the key path and the problem (``search_spaces/x.yaml: space.depth: `low <= high` must
hold, ...``). The distributions are Optuna's own, so Optuna's checks apply, and sampling goes
through the public ``trial.suggest_*`` calls only.

Sampler and pruner names come from the allowlist of :mod:`mnist_sweep.config._samplers`, never
from an import path, so a YAML file cannot make the sweep import arbitrary code.

The format (unknown keys are errors at every level; ``*`` marks required keys)::

    study*: activation          # [A-Za-z0-9_.-]+
    question: "..."             # shown in reports
    dataset*: mnist             # mnist | fashion_mnist (fashion-mnist accepted)
    seed: 0                     # seeds training, and the sampler unless sampler.seed is given
    limit: null                 # int >= 10: a class-balanced training subset (validation, test: limit // 5)
    train_limit: null           # or: cut only the training split; validation and test stay whole
    repeats: 1                  # int >= 1: seeds per trial, trained in lockstep; the objective is their mean
    objective: {metric: val_accuracy, direction: maximize}  # or val_loss (minimize)
    sampler: {name: tpe, seed: 0, options: {...}}   # tpe random grid cmaes gp qmc; seed: null = unseeded
    pruner: {name: median, options: {...}}          # none median percentile successive_halving hyperband asha
    budget*: {n_trials: 12, timeout: null, trial_timeout: null, max_failure_rate: 0.5}
    fixed: {epochs: 3, optimizer: adam}             # any mnist_sweep.model parameter
    checkpoint_store: null                          # folder or s3://bucket/prefix; none: off (sweep._checkpoints)
    space*:                                         # sampled in this order
      depth: {type: int, low: 1, high: 4, step: 1, log: false}
      learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}   # or step: 0.001
      width: {type: categorical, choices: [64, 128], per_layer: true}     # width_1..width_<depth>
      filters: {type: categorical, choices: [16, 32], when: {architecture: conv}}

``when`` maps parameters fixed or sampled earlier to a value or a list of values; all entries
must hold. PyYAML reads ``1e-5`` as a string: where a float is due, a plain numeric string is
read as a number; anything else is an error.

This module imports neither TensorFlow, Keras nor MLflow; Optuna is imported when first needed.
"""

from __future__ import annotations

import os
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from mnist_sweep.config._samplers import (
    ASHA_DEFAULTS,
    PrunerConfig,
    SamplerChecks,
    SamplerConfig,
    check_sampler_available,
    make_pruner,
    make_sampler,
)
from mnist_sweep.config._yaml import Checker, did_you_mean, join_key, kind_of, read_yaml, show
from mnist_sweep.errors import ParamError
from mnist_sweep.model import PARAMS, PER_LAYER_WIDTH, allowed_names, check_value, is_param_name, resolve_params

if TYPE_CHECKING:
    import optuna

__all__ = [
    "Budget",
    "Objective",
    "ParamDef",
    "SearchSpace",
    "can_sample",
    "load_space",
    "parse_space",
]

TOP_KEYS = (
    "study",
    "question",
    "dataset",
    "seed",
    "limit",
    "train_limit",
    "repeats",
    "objective",
    "sampler",
    "pruner",
    "budget",
    "fixed",
    "space",
    "checkpoint_store",
)
REQUIRED_TOP_KEYS = ("study", "dataset", "budget", "space")
Direction = Literal["maximize", "minimize"]
METRICS: dict[str, Direction] = {"val_accuracy": "maximize", "val_loss": "minimize"}
DIRECTIONS = ("maximize", "minimize")
DATASETS = ("mnist", "fashion_mnist")
MIN_LIMIT = 10


@dataclass(frozen=True)
class Objective:
    """What a trial reports to Optuna: a validation metric and which way is better."""

    metric: str
    direction: Direction


@dataclass(frozen=True)
class Budget:
    """When the sweep stops: trials, seconds, and the share of failed trials tolerated."""

    n_trials: int | None
    timeout: float | None
    trial_timeout: float | None
    max_failure_rate: float | None


@dataclass(frozen=True)
class ParamDef:
    """One sampled parameter.

    ``when`` maps another parameter to the values it must take for this one to be sampled
    (all entries must hold). ``per_layer`` (``width`` only) samples ``width_1`` ...
    ``width_<depth>`` from the same distribution instead of one ``width``.
    """

    name: str
    distribution: optuna.distributions.BaseDistribution
    when: Mapping[str, tuple[Any, ...]]
    per_layer: bool


@dataclass(frozen=True)
class SearchSpace:
    """A validated search-space file: everything a study needs except storage and tracking."""

    source: str
    text: str
    study_name: str
    question: str | None
    dataset: str
    seed: int
    limit: int | None
    objective: Objective
    sampler: SamplerConfig
    pruner: PrunerConfig
    budget: Budget
    fixed: Mapping[str, Any]
    params: tuple[ParamDef, ...]
    train_limit: int | None = None
    """Cuts only the training split (class-balanced); validation and test stay whole."""
    repeats: int = 1
    """Seeds each trial trains (in lockstep, epoch by epoch); the trial's value is their mean."""
    checkpoint_store: str | None = None
    """Where trial checkpoints go (a folder or ``s3://...``; ``none``: off); None: the default."""

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sample this trial's parameters: the sampled ones only, in file order.

        A conditional parameter is sampled only when its condition holds; a per-layer one
        becomes ``width_1`` ... ``width_<depth>``.
        """
        values: dict[str, Any] = {}
        for param in self.params:
            if not self._condition_holds(param, values):
                continue
            if param.per_layer:
                depth = values.get("depth", self.fixed.get("depth", PARAMS["depth"].default))
                for layer in range(1, int(depth) + 1):
                    values[f"width_{layer}"] = _suggest(trial, f"width_{layer}", param.distribution)
            else:
                values[param.name] = _suggest(trial, param.name, param.distribution)
        return values

    def trial_params(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """The complete parameter dict for ``build_model``/``train``: fixed plus sampled.

        Works with ``optuna.trial.FixedTrial(best.params)`` to rebuild the best trial.
        """
        return {**self.fixed, **self.suggest(trial)}

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """A fresh sampler as configured (seeded unless the file asked for ``seed: null``)."""
        check_sampler_available(self.sampler.name, self.source)
        return make_sampler(self.sampler, self.params)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """A fresh pruner as configured."""
        return make_pruner(self.pruner)

    def with_overrides(
        self,
        *,
        n_trials: int | None = None,
        timeout: float | None = None,
        study_name: str | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        limit: int | None = None,
    ) -> SearchSpace:
        """This space with command-line overrides applied (``None`` keeps the file's value).

        ``epochs`` replaces the fixed epoch count and stops sampling it; ``seed`` reseeds both
        training and the sampler. Values are validated as in a file; errors name the flag.
        """
        check = _SpaceChecker(None)
        changes: dict[str, Any] = {}
        budget = self.budget
        if n_trials is not None:
            budget = replace(budget, n_trials=check.integer(n_trials, "--n-trials", minimum=1))
        if timeout is not None:
            budget = replace(budget, timeout=check.positive_seconds(timeout, "--timeout"))
        changes["budget"] = budget
        if study_name is not None:
            changes["study_name"] = check.study_name(study_name, "--study-name")
        if epochs is not None:
            value = check.param_value("epochs", epochs, "--epochs")
            fixed = {**self.fixed, "epochs": value}
            try:
                resolve_params(fixed)
            except ParamError as exc:
                check.fail("--epochs", str(exc))
            changes["fixed"] = types.MappingProxyType(fixed)
            changes["params"] = tuple(p for p in self.params if p.name != "epochs")
            check.check_combinations(changes["params"], fixed, flag="--epochs")
            if self.pruner.name == "asha":  # a fully promoted trial trains the new epoch count
                options = {**self.pruner.options, "max_resource": int(value)}
                if options["min_resource"] >= int(value):
                    check.fail(
                        "--epochs", f"the asha pruner's min_resource {options['min_resource']} needs more epochs"
                    )
                check.asha_brackets(options, "--epochs")
                changes["pruner"] = replace(self.pruner, options=types.MappingProxyType(options))
        if seed is not None:
            new_seed = check.seed(seed, "--seed")
            changes["seed"] = new_seed
            changes["sampler"] = replace(self.sampler, seed=new_seed)
        if limit is not None:
            changes["limit"] = check.limit(limit, "--limit")
            changes["train_limit"] = None  # an explicit --limit cuts every split
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able summary in the file's own schema (``parse_space`` reads it back)."""
        return {
            "study": self.study_name,
            "question": self.question,
            "dataset": self.dataset,
            "seed": self.seed,
            "limit": self.limit,
            "train_limit": self.train_limit,
            **({"repeats": self.repeats} if self.repeats != 1 else {}),
            "objective": {"metric": self.objective.metric, "direction": self.objective.direction},
            "sampler": {"name": self.sampler.name, "seed": self.sampler.seed, "options": dict(self.sampler.options)},
            "pruner": {"name": self.pruner.name, "options": dict(self.pruner.options)},
            "budget": {
                "n_trials": self.budget.n_trials,
                "timeout": self.budget.timeout,
                "trial_timeout": self.budget.trial_timeout,
                "max_failure_rate": self.budget.max_failure_rate,
            },
            "fixed": dict(self.fixed),
            "space": {p.name: _param_to_dict(p) for p in self.params},
            "checkpoint_store": self.checkpoint_store,
        }

    def _condition_holds(self, param: ParamDef, values: Mapping[str, Any]) -> bool:
        for ref, allowed in param.when.items():
            current = values[ref] if ref in values else self.fixed.get(ref, _MISSING)
            if current is _MISSING or current not in allowed:
                return False
        return True


_MISSING = object()


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read and validate a search-space YAML file.

    Raises :class:`ConfigError` naming the file for a missing or unreadable file, invalid
    YAML (with its line), a top level that is not a mapping, or any invalid entry.
    """
    source, text, data = read_yaml(path)
    return parse_space(data, source=source, text=text)


def parse_space(data: Any, *, source: str = "<string>", text: str = "") -> SearchSpace:
    """Validate already-loaded YAML data (a mapping) into a :class:`SearchSpace`.

    ``source`` names the origin in error messages; ``text`` is kept as the raw file.
    """
    return _SpaceChecker(source).search_space(data, text)


class _ParamChecks(Checker):
    """The ``fixed:`` and ``space:`` sections: parameter names, values and distributions."""

    def param_value(self, name: str, value: Any, path: str) -> Any:
        """``value`` checked as a value of parameter ``name`` (numeric strings read as floats)."""
        spec = PARAMS["width"] if PER_LAYER_WIDTH.match(name) else PARAMS[name]
        if spec.kind == "float" and isinstance(value, str):
            value = self.number(value, path)
        try:
            return check_value(name, value)
        except ParamError as exc:
            self.fail(path, str(exc))

    def fixed(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of parameter names to values, got {kind_of(value)}")
        fixed: dict[str, Any] = {}
        for name, raw in value.items():
            self.param_name(name, path)
            fixed[name] = self.param_value(name, raw, join_key(path, name))
            if PER_LAYER_WIDTH.match(name) and "depth" not in value:
                self.fail(join_key(path, name), "a per-layer width can be fixed only together with `depth`")
        try:
            resolve_params(fixed)
        except ParamError as exc:
            self.fail(path, str(exc))
        return fixed

    def param_name(self, name: Any, path: str) -> str:
        if not isinstance(name, str):
            self.fail(path, f"parameter names must be strings, got {kind_of(name)}")
        if not is_param_name(name):
            self.fail(
                join_key(path, name),
                f"unknown parameter {name!r}; {did_you_mean(name, list(PARAMS))}allowed: {allowed_names()}",
            )
        return name

    def params(self, value: Any, path: str, fixed: Mapping[str, Any]) -> tuple[ParamDef, ...]:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of parameter names to distributions, got {kind_of(value)}")
        if not value:
            self.fail(path, "must sample at least one parameter")
        names = list(value)
        defined: dict[str, ParamDef] = {}
        for name, entry in value.items():
            self.param_name(name, path)
            where = join_key(path, name)
            if PER_LAYER_WIDTH.match(name):
                self.fail(where, "sample per-layer widths with `width: {..., per_layer: true}`, not one by one")
            if name in fixed:
                self.fail(where, f"{name!r} is both fixed and sampled; remove it from `fixed` or from `space`")
            param = self.param(name, entry, where, fixed=fixed, defined=defined, later=names[len(defined) + 1 :])
            defined[name] = param
        return tuple(defined.values())

    def param(
        self,
        name: str,
        entry: Any,
        path: str,
        *,
        fixed: Mapping[str, Any],
        defined: Mapping[str, ParamDef],
        later: Sequence[str],
    ) -> ParamDef:
        if not isinstance(entry, Mapping):
            self.fail(path, f"must be a mapping like {{type: float, low: ..., high: ...}}, got {kind_of(entry)}")
        numeric_keys = ("low", "high", "step", "log")
        self.mapping(entry, path, allowed=("type", "choices", *numeric_keys, "when", "per_layer"), required=("type",))
        kind = entry["type"]
        if kind not in ("float", "int", "categorical"):
            self.fail(join_key(path, "type"), f"must be float, int or categorical, got {kind_of(kind)}")
        unused = [key for key in (numeric_keys if kind == "categorical" else ("choices",)) if key in entry]
        if unused:
            self.fail(join_key(path, unused[0]), f"`{unused[0]}` does not apply to `type: {kind}`")
        if kind == "categorical":
            self.mapping(entry, path, allowed=list(entry), required=("choices",))
            distribution = self.categorical(name, entry["choices"], path)
        else:
            self.mapping(entry, path, allowed=list(entry), required=("low", "high"))
            distribution = self.numeric(name, kind, entry, path)
        per_layer = self.boolean(entry.get("per_layer", False), join_key(path, "per_layer"))
        if per_layer:
            self.check_per_layer(name, path, fixed=fixed, defined=defined)
        when = self.when(entry.get("when"), join_key(path, "when"), fixed=fixed, defined=defined, later=later)
        return ParamDef(name=name, distribution=distribution, when=when, per_layer=per_layer)

    def categorical(self, name: str, choices: Any, path: str) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        where = join_key(path, "choices")
        if not isinstance(choices, list | tuple):
            self.fail(where, f"must be a list of values, got {kind_of(choices)}")
        if not choices:
            self.fail(where, "must list at least one value")
        checked: list[Any] = []
        for index, choice in enumerate(choices):
            value = self.param_value(name, choice, f"{where}[{index}]")
            if value in checked:
                self.fail(f"{where}[{index}]", f"{show(value)} is listed twice")
            checked.append(value)
        return self.distribution(CategoricalDistribution, path, choices=tuple(checked))

    def numeric(
        self, name: str, kind: str, entry: Mapping[str, Any], path: str
    ) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import FloatDistribution, IntDistribution

        spec = PARAMS["width"] if PER_LAYER_WIDTH.match(name) else PARAMS[name]
        if spec.kind == "choice":
            self.fail(
                join_key(path, "type"), f"{name!r} takes one of {', '.join(spec.choices)}; use `type: categorical`"
            )
        if kind == "float" and spec.kind == "int":
            self.fail(join_key(path, "type"), f"{name!r} takes integers; use `type: int` or `type: categorical`")
        if kind == "int" and spec.kind == "float":
            self.fail(join_key(path, "type"), f"{name!r} takes real numbers; use `type: float` or `type: categorical`")
        low = self.param_value(name, entry["low"], join_key(path, "low"))
        high = self.param_value(name, entry["high"], join_key(path, "high"))
        log = self.boolean(entry.get("log", False), join_key(path, "log"))
        raw_step = entry.get("step")
        if kind == "float":
            step = None if raw_step is None else self.number(raw_step, join_key(path, "step"))
            return self.distribution(FloatDistribution, path, low=low, high=high, log=log, step=step)
        int_step = 1 if raw_step is None else self.integer(raw_step, join_key(path, "step"))
        return self.distribution(IntDistribution, path, low=low, high=high, log=log, step=int_step)

    def distribution(self, cls: Any, path: str, **kwargs: Any) -> optuna.distributions.BaseDistribution:
        """Construct with Optuna's own checks; its warnings (e.g. a range not divisible by
        ``step``, which Optuna would silently shrink) are errors here."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                distribution = cls(**kwargs)
            except (ValueError, TypeError) as exc:
                self.fail(path, str(exc).rstrip("."))
        for warning in caught:
            self.fail(path, str(warning.message).rstrip("."))
        return distribution

    def check_per_layer(
        self, name: str, path: str, *, fixed: Mapping[str, Any], defined: Mapping[str, ParamDef]
    ) -> None:
        where = join_key(path, "per_layer")
        if name != "width":
            self.fail(where, f"only `width` can be sampled per layer, not {name!r}")
        fixed_layers = sorted(key for key in fixed if PER_LAYER_WIDTH.match(key))
        if fixed_layers:
            self.fail(where, f"per-layer widths are sampled, so `fixed` cannot also set {fixed_layers[0]!r}")
        if "depth" in fixed:
            return
        if "depth" not in defined:
            self.fail(where, "per-layer widths need `depth`, fixed or sampled before `width` in `space`")
        if defined["depth"].when:
            self.fail(where, "per-layer widths need a `depth` that is always sampled (it has a `when`)")

    def when(
        self,
        value: Any,
        path: str,
        *,
        fixed: Mapping[str, Any],
        defined: Mapping[str, ParamDef],
        later: Sequence[str],
    ) -> Mapping[str, tuple[Any, ...]]:
        if value is None:
            return types.MappingProxyType({})
        if not isinstance(value, Mapping) or not value:
            self.fail(path, f"must be a non-empty mapping like {{architecture: conv}}, got {kind_of(value)}")
        conditions: dict[str, tuple[Any, ...]] = {}
        for ref, raw in value.items():
            self.param_name(ref, path)
            where = join_key(path, ref)
            if ref not in fixed and ref not in defined:
                if ref in later:
                    self.fail(where, f"{ref!r} is sampled later in `space`; move it above this parameter")
                self.fail(where, f"{ref!r} is neither fixed nor sampled earlier in `space`")
            if ref in defined and defined[ref].per_layer:
                self.fail(where, f"{ref!r} is sampled per layer; a condition cannot refer to it")
            raw_values = raw if isinstance(raw, list | tuple) else [raw]
            if not raw_values:
                self.fail(where, "must list at least one value")
            allowed: list[Any] = []
            for index, item in enumerate(raw_values):
                item_path = f"{where}[{index}]" if isinstance(raw, list | tuple) else where
                checked = self.param_value(ref, item, item_path)
                if ref in defined and not can_sample(defined[ref].distribution, checked):
                    self.fail(item_path, f"condition never holds: {ref!r} is never sampled as {show(checked)}")
                allowed.append(checked)
            if ref in fixed and fixed[ref] not in allowed:
                self.fail(where, f"condition never holds: {ref!r} is fixed to {show(fixed[ref])}")
            conditions[ref] = tuple(allowed)
        return types.MappingProxyType(conditions)

    def check_combinations(
        self, params: Sequence[ParamDef], fixed: Mapping[str, Any], *, flag: str | None = None
    ) -> None:
        """Reject spaces where a trial could draw a pairing ``build_model`` refuses.

        ``flag`` names the command-line flag that changed ``fixed``, for the message's key.
        """
        by_name = {p.name: p for p in params}
        self.check_axis_combinations(by_name, fixed, flag=flag)

        def possible(name: str) -> tuple[Any, ...] | None:
            if name in fixed:
                return (fixed[name],)
            param = by_name.get(name)
            if param is None:
                return (PARAMS[name].default,)
            if param.when:
                return None  # the user has conditioned it; trust that
            return tuple(getattr(param.distribution, "choices", ()))

        losses, outputs = possible("loss"), possible("output")
        if losses is not None and outputs is not None and "mse" in losses and "logits" in outputs:
            key = "space.output" if "output" in by_name else "space.loss"
            self.fail(
                key,
                "a trial could pair loss 'mse' with output 'logits', which cannot be built; "
                "fix one of them or add a `when` condition",
            )

    def check_axis_combinations(
        self, by_name: Mapping[str, ParamDef], fixed: Mapping[str, Any], *, flag: str | None
    ) -> None:
        """``warmup_epochs`` below ``epochs``, and ``label_smoothing`` only with cross-entropy."""

        def span(name: str) -> tuple[Any, Any] | None:
            """The smallest and largest value a trial can get (None: conditioned, trusted)."""
            if name in fixed:
                return fixed[name], fixed[name]
            param = by_name.get(name)
            if param is None:
                return PARAMS[name].default, PARAMS[name].default
            if param.when:
                return None
            d = param.distribution
            choices = getattr(d, "choices", None)
            if choices is not None:
                return min(choices), max(choices)
            return d.low, d.high  # type: ignore[attr-defined]

        def key(*names: str) -> str:
            return flag or next((f"space.{n}" for n in names if n in by_name), f"fixed.{names[0]}")

        warmup, epochs = span("warmup_epochs"), span("epochs")
        if warmup is not None and epochs is not None and warmup[1] > 0 and warmup[1] >= epochs[0]:
            self.fail(
                key("warmup_epochs", "epochs"),
                f"a trial could draw warmup_epochs {warmup[1]} with epochs {epochs[0]}; "
                "the warm-up must be shorter than training",
            )
        smoothing = span("label_smoothing")
        losses = [fixed["loss"]] if "loss" in fixed else None
        if "loss" not in fixed:
            loss_param = by_name.get("loss")
            if loss_param is None:
                losses = [PARAMS["loss"].default]
            elif not loss_param.when:
                losses = list(getattr(loss_param.distribution, "choices", ()))
        if smoothing is not None and losses is not None and smoothing[1] > 0 and "mse" in losses:
            self.fail(
                key("label_smoothing", "loss"),
                "a trial could pair loss 'mse' with label_smoothing > 0, which needs a cross-entropy loss; "
                "fix one of them or add a `when` condition",
            )


class _SpaceChecker(_ParamChecks, SamplerChecks):
    """A whole search-space file."""

    def search_space(self, data: Any, text: str) -> SearchSpace:
        data = self.top_level(data, allowed=TOP_KEYS, required=REQUIRED_TOP_KEYS)
        study_name = self.study_name(data["study"], "study")
        question = data.get("question")
        if question is not None:
            question = self.string(question, "question")
        dataset = self.dataset(data["dataset"], "dataset")
        seed = 0 if data.get("seed") is None else self.seed(data["seed"], "seed")
        limit = None if data.get("limit") is None else self.limit(data["limit"], "limit")
        train_limit = None if data.get("train_limit") is None else self.limit(data["train_limit"], "train_limit")
        if limit is not None and train_limit is not None:
            self.fail("train_limit", "give limit (cuts every split) or train_limit (cuts training only), not both")
        repeats = 1 if data.get("repeats") is None else self.integer(data["repeats"], "repeats", minimum=1)
        objective = self.objective(data.get("objective"), "objective")
        fixed = self.fixed(data.get("fixed"), "fixed")
        params = self.params(data["space"], "space", fixed)
        self.check_combinations(params, fixed)
        sampler = self.sampler(data.get("sampler"), "sampler", default_seed=seed, params=params)
        pruner = self.pruner(data.get("pruner"), "pruner")
        budget = self.budget(data["budget"], "budget")
        if pruner.name == "asha":
            pruner = self.asha(pruner, fixed, params)
            if repeats > 1:
                self.fail(
                    "repeats", f"the asha pruner pauses one model per trial at its rungs; use repeats: 1, got {repeats}"
                )
        checkpoint_store = data.get("checkpoint_store")
        if checkpoint_store is not None:
            checkpoint_store = self.string(checkpoint_store, "checkpoint_store")
        return SearchSpace(
            source=self.source or "<string>",
            text=text,
            study_name=study_name,
            question=question,
            dataset=dataset,
            seed=seed,
            limit=limit,
            objective=objective,
            sampler=sampler,
            pruner=pruner,
            budget=budget,
            fixed=types.MappingProxyType(fixed),
            params=params,
            train_limit=train_limit,
            repeats=repeats,
            checkpoint_store=checkpoint_store,
        )

    def asha(self, pruner: PrunerConfig, fixed: Mapping[str, Any], params: Sequence[ParamDef]) -> PrunerConfig:
        """ASHA needs a fixed epoch count; ``max_resource`` defaults to it and must not exceed it."""
        if any(p.name == "epochs" for p in params):
            self.fail(
                "space.epochs", "the asha pruner needs a fixed `epochs` (its rungs are epochs), not a sampled one"
            )
        epochs = int(fixed.get("epochs", PARAMS["epochs"].default))
        options = {**ASHA_DEFAULTS, "max_resource": epochs, **pruner.options}
        if options["max_resource"] > epochs:
            self.fail(
                "pruner.options.max_resource",
                f"must not exceed the epochs a trial trains ({epochs}), got {options['max_resource']}",
            )
        if options["min_resource"] >= options["max_resource"]:
            self.fail(
                "pruner.options.min_resource",
                f"`min_resource < max_resource` must hold, but got min_resource={options['min_resource']}, "
                f"max_resource={options['max_resource']}",
            )
        self.asha_brackets(options, "pruner.options.brackets")
        return replace(pruner, options=types.MappingProxyType(options))

    def asha_brackets(self, options: Mapping[str, Any], key: str) -> None:
        """Bracket b's first rung is ``min_resource * eta**b``; the last bracket may train straight to the end."""
        eta, last = int(options["reduction_factor"]), int(options["max_resource"])
        rungs, epoch = [], int(options["min_resource"])
        while epoch < last:
            rungs.append(epoch)
            epoch *= eta
        brackets = int(options.get("brackets", 1))
        if brackets > len(rungs) + 1:
            self.fail(
                key,
                f"asha brackets must be at most {len(rungs) + 1} with rungs at epochs "
                f"{', '.join(map(str, rungs))} and {last} (min_resource {options['min_resource']}, "
                f"reduction_factor {eta}; the last bracket trains straight to {last}), got {brackets}",
            )

    def limit(self, value: Any, path: str) -> int:
        return self.integer(value, path, minimum=MIN_LIMIT)

    def dataset(self, value: Any, path: str) -> str:
        name = self.string(value, path)
        normalised = name.replace("-", "_").lower()
        if normalised not in DATASETS:
            self.fail(
                path,
                f"unknown dataset {name!r}; {did_you_mean(normalised, DATASETS)}choose one of mnist, fashion_mnist",
            )
        return normalised

    def objective(self, value: Any, path: str) -> Objective:
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"metric": value}
        section = self.mapping(value, path, allowed=("metric", "direction"))
        metric = self.string(section.get("metric", "val_accuracy"), join_key(path, "metric"))
        if metric not in METRICS:
            self.fail(
                join_key(path, "metric"),
                f"unknown metric {metric!r}; {did_you_mean(metric, list(METRICS))}choose one of {', '.join(METRICS)}",
            )
        natural = METRICS[metric]
        if section.get("direction") is None:
            return Objective(metric, natural)
        direction = section["direction"]
        if direction not in DIRECTIONS:
            self.fail(join_key(path, "direction"), f"must be maximize or minimize, got {kind_of(direction)}")
        if direction != natural:
            self.fail(
                join_key(path, "direction"),
                f"{metric} is better when it is {'higher' if natural == 'maximize' else 'lower'}, "
                f"so it must be {natural}d, but direction is {direction}",
            )
        return Objective(metric, natural)

    def budget(self, value: Any, path: str) -> Budget:
        section = self.mapping(value, path, allowed=("n_trials", "timeout", "trial_timeout", "max_failure_rate"))

        def optional(key: str, check: Any) -> Any:
            raw = section.get(key)
            return None if raw is None else check(raw, join_key(path, key))

        n_trials = optional("n_trials", lambda v, p: self.integer(v, p, minimum=1))
        timeout = optional("timeout", self.positive_seconds)
        trial_timeout = optional("trial_timeout", self.positive_seconds)
        max_failure_rate = optional("max_failure_rate", self.failure_rate)
        if n_trials is None and timeout is None:
            self.fail(path, "at least one of `n_trials` and `timeout` must be set")
        return Budget(
            n_trials=n_trials, timeout=timeout, trial_timeout=trial_timeout, max_failure_rate=max_failure_rate
        )

    def failure_rate(self, value: Any, path: str) -> float:
        rate = self.number(value, path)
        if not 0 < rate <= 1:
            self.fail(path, f"must be in (0, 1], got {show(value)}")
        return rate


def can_sample(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether ``distribution`` can draw ``value`` (a warm start enqueues only such values)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, IntDistribution):
        return bool(
            distribution.low <= value <= distribution.high and (value - distribution.low) % distribution.step == 0
        )
    if isinstance(distribution, FloatDistribution):
        return bool(distribution.low <= value <= distribution.high)
    return False


def _suggest(trial: optuna.trial.BaseTrial, name: str, distribution: optuna.distributions.BaseDistribution) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"unsupported distribution {distribution!r} for {name!r}")


def _param_to_dict(param: ParamDef) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    d = param.distribution
    entry: dict[str, Any]
    if isinstance(d, CategoricalDistribution):
        entry = {"type": "categorical", "choices": list(d.choices)}
    else:
        kind = "float" if isinstance(d, FloatDistribution) else "int"
        entry = {"type": kind, "low": d.low, "high": d.high, "log": d.log}  # type: ignore[attr-defined]
        if d.step is not None:  # type: ignore[attr-defined]
            entry["step"] = d.step  # type: ignore[attr-defined]
    if param.when:
        entry["when"] = {ref: list(values) for ref, values in param.when.items()}
    if param.per_layer:
        entry["per_layer"] = True
    return entry
