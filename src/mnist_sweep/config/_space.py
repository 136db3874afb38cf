"""Search-space YAML -> validated, frozen objects and real Optuna distributions.

A search-space file names a study, the data set, the objective, the sampler and pruner, the
budget, the parameters held fixed and the parameters to sample. Everything is checked when the
file is loaded, so a typo stops the command before anything trains, with a message that names
the file, the key path and the problem (``search_spaces/x.yaml: space.depth: `low <= high` must
hold, ...``). The distributions are Optuna's own, so Optuna's checks apply, and sampling goes
through the public ``trial.suggest_*`` calls only.

Sampler and pruner names come from an allowlist (``tpe``, ``median``, ...), never from an import
path, so a YAML file cannot make the sweep import arbitrary code.

The format (unknown keys are errors at every level; ``*`` marks required keys)::

    study*: activation          # [A-Za-z0-9_.-]+
    question: "..."             # shown in reports
    dataset*: mnist             # mnist | fashion_mnist (fashion-mnist accepted)
    seed: 0                     # seeds training, and the sampler unless sampler.seed is given
    limit: null                 # int >= 10: a class-balanced training subset
    objective: {metric: val_accuracy, direction: maximize}  # or val_loss (minimize)
    sampler: {name: tpe, seed: 0, options: {...}}   # tpe random grid cmaes gp qmc; seed: null = unseeded
    pruner: {name: median, options: {...}}          # none median percentile successive_halving hyperband
    budget*: {n_trials: 12, timeout: null, trial_timeout: null, max_failure_rate: 0.5}
    fixed: {epochs: 3, optimizer: adam}             # any mnist_sweep.params parameter
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

import difflib
import importlib.util
import math
import os
import re
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import yaml

from mnist_sweep.errors import ConfigError, ParamError
from mnist_sweep.model import PARAMS, PER_LAYER_WIDTH, allowed_names, check_value, is_param_name, resolve_params

if TYPE_CHECKING:
    import optuna

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Budget",
    "Objective",
    "ParamDef",
    "PrunerConfig",
    "SamplerConfig",
    "SearchSpace",
    "load_space",
    "parse_space",
]

TOP_KEYS = (
    "study",
    "question",
    "dataset",
    "seed",
    "limit",
    "objective",
    "sampler",
    "pruner",
    "budget",
    "fixed",
    "space",
)
REQUIRED_TOP_KEYS = ("study", "dataset", "budget", "space")
Direction = Literal["maximize", "minimize"]
METRICS: dict[str, Direction] = {"val_accuracy": "maximize", "val_loss": "minimize"}
DIRECTIONS = ("maximize", "minimize")
DATASETS = ("mnist", "fashion_mnist")
STUDY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MIN_LIMIT = 10
MAX_SEED = 2**32 - 1
MAX_GRID_SIZE = 100_000
_PLAIN_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# Option name -> (kind, minimum). Only options whose values YAML can express; each one is also
# passed through the real constructor during validation, so Optuna's own checks apply too.
_Option = tuple[str, float | None]
SAMPLERS: dict[str, dict[str, _Option]] = {
    "tpe": {
        "n_startup_trials": ("int", 0),
        "n_ei_candidates": ("int", 1),
        "multivariate": ("bool", None),
        "group": ("bool", None),
        "constant_liar": ("bool", None),
    },
    "random": {},
    "grid": {},
    "cmaes": {
        "sigma0": ("float", None),
        "n_startup_trials": ("int", 0),
        "warn_independent_sampling": ("bool", None),
        "consider_pruned_trials": ("bool", None),
        "popsize": ("int", 1),
        "use_separable_cma": ("bool", None),
        "with_margin": ("bool", None),
        "lr_adapt": ("bool", None),
    },
    "gp": {
        "n_startup_trials": ("int", 0),
        "deterministic_objective": ("bool", None),
        "warn_independent_sampling": ("bool", None),
    },
    "qmc": {
        "qmc_type": ("str", None),
        "scramble": ("bool", None),
        "warn_asynchronous_seeding": ("bool", None),
        "warn_independent_sampling": ("bool", None),
    },
}
_MEDIAN_OPTIONS: dict[str, _Option] = {
    "n_startup_trials": ("int", 0),
    "n_warmup_steps": ("int", 0),
    "interval_steps": ("int", 1),
    "n_min_trials": ("int", 1),
}
PRUNERS: dict[str, dict[str, _Option]] = {
    "none": {},
    "median": _MEDIAN_OPTIONS,
    "percentile": {"percentile": ("float", 0), **_MEDIAN_OPTIONS},
    "successive_halving": {
        "min_resource": ("int_or_auto", 1),
        "reduction_factor": ("int", 2),
        "min_early_stopping_rate": ("int", 0),
        "bootstrap_count": ("int", 0),
    },
    "hyperband": {
        "min_resource": ("int", 1),
        "max_resource": ("int_or_auto", 1),
        "reduction_factor": ("int", 2),
        "bootstrap_count": ("int", 0),
    },
}
# Samplers whose work happens in an optional package; Optuna imports it only when sampling.
_SAMPLER_NEEDS = {"cmaes": ("cmaes", "pip install cmaes"), "gp": ("torch", "pip install torch")}
_DEFAULT_SAMPLER = "tpe"
_DEFAULT_PRUNER = "median"  # as optuna.create_study


@dataclass(frozen=True)
class Objective:
    """What a trial reports to Optuna: a validation metric and which way is better."""

    metric: str
    direction: Direction


@dataclass(frozen=True)
class SamplerConfig:
    """An allowlisted sampler name, its seed (None: unseeded) and its constructor options."""

    name: str
    seed: int | None
    options: Mapping[str, Any]


@dataclass(frozen=True)
class PrunerConfig:
    """An allowlisted pruner name and its constructor options."""

    name: str
    options: Mapping[str, Any]


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
        _check_sampler_available(self.sampler.name, self.source)
        return _construct_sampler(self.sampler, self.params)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """A fresh pruner as configured."""
        return _construct_pruner(self.pruner)

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
        check = _Checker(None)
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
            changes["fixed"] = types.MappingProxyType({**self.fixed, "epochs": value})
            changes["params"] = tuple(p for p in self.params if p.name != "epochs")
        if seed is not None:
            new_seed = check.seed(seed, "--seed")
            changes["seed"] = new_seed
            changes["sampler"] = replace(self.sampler, seed=new_seed)
        if limit is not None:
            changes["limit"] = check.limit(limit, "--limit")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able summary in the file's own schema (``parse_space`` reads it back)."""
        return {
            "study": self.study_name,
            "question": self.question,
            "dataset": self.dataset,
            "seed": self.seed,
            "limit": self.limit,
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
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    return parse_space(_load_yaml(text, source), source=source, text=text)


def parse_space(data: Any, *, source: str = "<string>", text: str = "") -> SearchSpace:
    """Validate already-loaded YAML data (a mapping) into a :class:`SearchSpace`.

    ``source`` names the origin in error messages; ``text`` is kept as the raw file.
    """
    return _Checker(source).search_space(data, text)


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "cannot be parsed"
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    return f"{type(value).__name__} {_show(value)}"


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class _Checker:
    """Validation with error messages that name ``source`` and the key path."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise ConfigError(message, source=self.source, key=path or None)

    # -- scalars ---------------------------------------------------------------------------

    def integer(self, value: Any, path: str, *, minimum: float | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be >= {minimum:g}, got {value}")
        return value

    def number(self, value: Any, path: str) -> float:
        """A finite float; a plain numeric string (PyYAML's ``1e-5``) is accepted."""
        if isinstance(value, bool):
            self.fail(path, f"must be a number, got {_kind(value)}")
        if isinstance(value, str):
            if not _PLAIN_FLOAT.match(value.strip()):
                self.fail(path, f"must be a number, got {_kind(value)}")
            value = value.strip()
        elif not isinstance(value, int | float):
            self.fail(path, f"must be a number, got {_kind(value)}")
        try:
            result = float(value)
        except OverflowError:
            self.fail(path, f"must be a finite number, got {_show(value)}")
        if not math.isfinite(result):
            self.fail(path, f"must be a finite number, got {_show(value)}")
        return result

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_kind(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_kind(value)}")
        return value

    def mapping(
        self, value: Any, path: str, *, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {_kind(key)}")
            if key not in allowed:
                self.fail(
                    _join(path, key),
                    f"unknown key {key!r}; {_did_you_mean(key, allowed)}allowed: {', '.join(allowed)}",
                )
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "required key is missing")
        return value

    def positive_seconds(self, value: Any, path: str) -> float:
        seconds = self.number(value, path)
        if seconds <= 0:
            self.fail(path, f"must be > 0 seconds, got {_show(value)}")
        return seconds

    def seed(self, value: Any, path: str) -> int:
        seed = self.integer(value, path, minimum=0)
        if seed > MAX_SEED:
            self.fail(path, f"must be <= {MAX_SEED} (2**32 - 1), got {seed}")
        return seed

    def limit(self, value: Any, path: str) -> int:
        return self.integer(value, path, minimum=MIN_LIMIT)

    def study_name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not STUDY_NAME.match(value):
            hint = " (quote it in YAML)" if isinstance(value, int | float) and not isinstance(value, bool) else ""
            self.fail(
                path,
                f"must be 1-128 letters, digits, '_', '.' or '-', got {_kind(value)}{hint}",
            )
        return value

    def param_value(self, name: str, value: Any, path: str) -> Any:
        """``value`` checked as a value of parameter ``name`` (numeric strings read as floats)."""
        spec = PARAMS["width"] if PER_LAYER_WIDTH.match(name) else PARAMS[name]
        if spec.kind == "float" and isinstance(value, str):
            value = self.number(value, path)
        try:
            return check_value(name, value)
        except ParamError as exc:
            self.fail(path, str(exc))

    # -- sections --------------------------------------------------------------------------

    def search_space(self, data: Any, text: str) -> SearchSpace:
        if data is None:
            self.fail("", f"the file is empty; expected a mapping with at least {', '.join(REQUIRED_TOP_KEYS)}")
        if not isinstance(data, Mapping):
            self.fail("", f"the top level must be a mapping of keys to values, got {_kind(data)}")
        self.mapping(data, "", allowed=TOP_KEYS, required=REQUIRED_TOP_KEYS)
        study_name = self.study_name(data["study"], "study")
        question = data.get("question")
        if question is not None:
            question = self.string(question, "question")
        dataset = self.dataset(data["dataset"], "dataset")
        seed = 0 if data.get("seed") is None else self.seed(data["seed"], "seed")
        limit = None if data.get("limit") is None else self.limit(data["limit"], "limit")
        objective = self.objective(data.get("objective"), "objective")
        fixed = self.fixed(data.get("fixed"), "fixed")
        params = self.params(data["space"], "space", fixed)
        self.check_combinations(params, fixed)
        sampler = self.sampler(data.get("sampler"), "sampler", default_seed=seed, params=params)
        pruner = self.pruner(data.get("pruner"), "pruner")
        budget = self.budget(data["budget"], "budget")
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
        )

    def dataset(self, value: Any, path: str) -> str:
        name = self.string(value, path)
        normalised = name.replace("-", "_").lower()
        if normalised not in DATASETS:
            self.fail(
                path,
                f"unknown dataset {name!r}; {_did_you_mean(normalised, DATASETS)}choose one of mnist, fashion_mnist",
            )
        return normalised

    def objective(self, value: Any, path: str) -> Objective:
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"metric": value}
        section = self.mapping(value, path, allowed=("metric", "direction"))
        metric = self.string(section.get("metric", "val_accuracy"), _join(path, "metric"))
        if metric not in METRICS:
            self.fail(
                _join(path, "metric"),
                f"unknown metric {metric!r}; {_did_you_mean(metric, list(METRICS))}choose one of {', '.join(METRICS)}",
            )
        natural = METRICS[metric]
        if section.get("direction") is None:
            return Objective(metric, natural)
        direction = section["direction"]
        if direction not in DIRECTIONS:
            self.fail(_join(path, "direction"), f"must be maximize or minimize, got {_kind(direction)}")
        if direction != natural:
            self.fail(
                _join(path, "direction"),
                f"{metric} is better when it is {'higher' if natural == 'maximize' else 'lower'}, "
                f"so it must be {natural}d, but direction is {direction}",
            )
        return Objective(metric, natural)

    def fixed(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of parameter names to values, got {_kind(value)}")
        fixed: dict[str, Any] = {}
        for name, raw in value.items():
            self.param_name(name, path)
            fixed[name] = self.param_value(name, raw, _join(path, name))
            if PER_LAYER_WIDTH.match(name) and "depth" not in value:
                self.fail(_join(path, name), "a per-layer width can be fixed only together with `depth`")
        try:
            resolve_params(fixed)
        except ParamError as exc:
            self.fail(path, str(exc))
        return fixed

    def param_name(self, name: Any, path: str) -> str:
        if not isinstance(name, str):
            self.fail(path, f"parameter names must be strings, got {_kind(name)}")
        if not is_param_name(name):
            self.fail(
                _join(path, name),
                f"unknown parameter {name!r}; {_did_you_mean(name, list(PARAMS))}allowed: {allowed_names()}",
            )
        return name

    def params(self, value: Any, path: str, fixed: Mapping[str, Any]) -> tuple[ParamDef, ...]:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of parameter names to distributions, got {_kind(value)}")
        if not value:
            self.fail(path, "must sample at least one parameter")
        names = list(value)
        defined: dict[str, ParamDef] = {}
        for name, entry in value.items():
            self.param_name(name, path)
            where = _join(path, name)
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
            self.fail(path, f"must be a mapping like {{type: float, low: ..., high: ...}}, got {_kind(entry)}")
        numeric_keys = ("low", "high", "step", "log")
        self.mapping(entry, path, allowed=("type", "choices", *numeric_keys, "when", "per_layer"), required=("type",))
        kind = entry["type"]
        if kind not in ("float", "int", "categorical"):
            self.fail(_join(path, "type"), f"must be float, int or categorical, got {_kind(kind)}")
        unused = [key for key in (numeric_keys if kind == "categorical" else ("choices",)) if key in entry]
        if unused:
            self.fail(_join(path, unused[0]), f"`{unused[0]}` does not apply to `type: {kind}`")
        if kind == "categorical":
            self.mapping(entry, path, allowed=list(entry), required=("choices",))
            distribution = self.categorical(name, entry["choices"], path)
        else:
            self.mapping(entry, path, allowed=list(entry), required=("low", "high"))
            distribution = self.numeric(name, kind, entry, path)
        per_layer = self.boolean(entry.get("per_layer", False), _join(path, "per_layer"))
        if per_layer:
            self.check_per_layer(name, path, fixed=fixed, defined=defined)
        when = self.when(entry.get("when"), _join(path, "when"), fixed=fixed, defined=defined, later=later)
        return ParamDef(name=name, distribution=distribution, when=when, per_layer=per_layer)

    def categorical(self, name: str, choices: Any, path: str) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        where = _join(path, "choices")
        if not isinstance(choices, list | tuple):
            self.fail(where, f"must be a list of values, got {_kind(choices)}")
        if not choices:
            self.fail(where, "must list at least one value")
        checked: list[Any] = []
        for index, choice in enumerate(choices):
            value = self.param_value(name, choice, f"{where}[{index}]")
            if value in checked:
                self.fail(f"{where}[{index}]", f"{_show(value)} is listed twice")
            checked.append(value)
        return self.distribution(CategoricalDistribution, path, choices=tuple(checked))

    def numeric(
        self, name: str, kind: str, entry: Mapping[str, Any], path: str
    ) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import FloatDistribution, IntDistribution

        spec = PARAMS["width"] if PER_LAYER_WIDTH.match(name) else PARAMS[name]
        if spec.kind == "choice":
            self.fail(_join(path, "type"), f"{name!r} takes one of {', '.join(spec.choices)}; use `type: categorical`")
        if kind == "float" and spec.kind == "int":
            self.fail(_join(path, "type"), f"{name!r} takes integers; use `type: int` or `type: categorical`")
        if kind == "int" and spec.kind == "float":
            self.fail(_join(path, "type"), f"{name!r} takes real numbers; use `type: float` or `type: categorical`")
        low = self.param_value(name, entry["low"], _join(path, "low"))
        high = self.param_value(name, entry["high"], _join(path, "high"))
        log = self.boolean(entry.get("log", False), _join(path, "log"))
        raw_step = entry.get("step")
        if kind == "float":
            step = None if raw_step is None else self.number(raw_step, _join(path, "step"))
            return self.distribution(FloatDistribution, path, low=low, high=high, log=log, step=step)
        int_step = 1 if raw_step is None else self.integer(raw_step, _join(path, "step"))
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
        where = _join(path, "per_layer")
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
            self.fail(path, f"must be a non-empty mapping like {{architecture: conv}}, got {_kind(value)}")
        conditions: dict[str, tuple[Any, ...]] = {}
        for ref, raw in value.items():
            self.param_name(ref, path)
            where = _join(path, ref)
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
                if ref in defined and not _can_sample(defined[ref].distribution, checked):
                    self.fail(item_path, f"condition never holds: {ref!r} is never sampled as {_show(checked)}")
                allowed.append(checked)
            if ref in fixed and fixed[ref] not in allowed:
                self.fail(where, f"condition never holds: {ref!r} is fixed to {_show(fixed[ref])}")
            conditions[ref] = tuple(allowed)
        return types.MappingProxyType(conditions)

    def check_combinations(self, params: Sequence[ParamDef], fixed: Mapping[str, Any]) -> None:
        """Reject spaces where a trial could draw a pairing ``build_model`` refuses."""
        by_name = {p.name: p for p in params}

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

    def sampler(self, value: Any, path: str, *, default_seed: int, params: Sequence[ParamDef]) -> SamplerConfig:
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"name": value}
        section = self.mapping(value, path, allowed=("name", "seed", "options"))
        name = self.component_name(section.get("name", _DEFAULT_SAMPLER), _join(path, "name"), SAMPLERS, "sampler")
        if "seed" not in section:
            seed: int | None = default_seed
        else:
            seed = None if section["seed"] is None else self.seed(section["seed"], _join(path, "seed"))
        options = self.options(section.get("options"), _join(path, "options"), SAMPLERS[name], f"the {name} sampler")
        config = SamplerConfig(name=name, seed=seed, options=types.MappingProxyType(options))
        if name == "grid":
            self.check_grid(params)
        _check_sampler_available(name, self.source, key=_join(path, "name"))
        self.construct(_construct_sampler, config, params, path=_join(path, "options") if options else path)
        return config

    def check_grid(self, params: Sequence[ParamDef]) -> None:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        size = 1
        for param in params:
            where = _join("space", param.name)
            if param.when or param.per_layer:
                self.fail(where, "the grid sampler needs a fixed set of parameters: no `when` or `per_layer`")
            if not isinstance(param.distribution, CategoricalDistribution | IntDistribution):
                self.fail(
                    where, "the grid sampler needs a finite set of values; use `type: categorical` or `type: int`"
                )
            size *= len(_grid_values(param.distribution))
            if size > MAX_GRID_SIZE:
                self.fail("space", f"the grid has more than {MAX_GRID_SIZE:,} points; narrow it or use another sampler")

    def pruner(self, value: Any, path: str) -> PrunerConfig:
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"name": value}
        section = self.mapping(value, path, allowed=("name", "options"))
        name = self.component_name(section.get("name", _DEFAULT_PRUNER), _join(path, "name"), PRUNERS, "pruner")
        options = self.options(section.get("options"), _join(path, "options"), PRUNERS[name], f"the {name} pruner")
        if name == "percentile" and "percentile" not in options:
            self.fail(
                _join(path, "options.percentile"),
                "the percentile pruner needs `percentile` (0-100), e.g. options: {percentile: 25.0}",
            )
        low, high = options.get("min_resource", 1), options.get("max_resource", "auto")
        if name == "hyperband" and high != "auto" and high < low:
            self.fail(
                _join(path, "options.max_resource"),
                f"`min_resource <= max_resource` must hold, but got min_resource={low}, max_resource={high}",
            )
        config = PrunerConfig(name=name, options=types.MappingProxyType(options))
        self.construct(_construct_pruner, config, path=_join(path, "options") if options else path)
        return config

    def component_name(self, value: Any, path: str, allowed: Mapping[str, Any], what: str) -> str:
        name = self.string(value, path)
        if name not in allowed:
            hint = " (import paths are not accepted, only these names)" if "." in name else ""
            self.fail(
                path,
                f"unknown {what} {name!r}; {_did_you_mean(name.lower(), list(allowed))}"
                f"choose one of {', '.join(allowed)}{hint}",
            )
        return name

    def options(self, value: Any, path: str, spec: Mapping[str, _Option], owner: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of option names to values, got {_kind(value)}")
        options: dict[str, Any] = {}
        for key, raw in value.items():
            if not isinstance(key, str):
                self.fail(path, f"option names must be strings, got {_kind(key)}")
            where = _join(path, key)
            if key not in spec:
                allowed = ", ".join(spec) or "none"
                self.fail(
                    where, f"unknown option {key!r} for {owner}; {_did_you_mean(key, list(spec))}allowed: {allowed}"
                )
            kind, minimum = spec[key]
            if kind == "bool":
                options[key] = self.boolean(raw, where)
            elif kind == "str":
                options[key] = self.string(raw, where)
            elif kind == "float":
                number = self.number(raw, where)
                if minimum is not None and number < minimum:
                    self.fail(where, f"must be >= {minimum:g}, got {_show(raw)}")
                options[key] = number
            elif kind == "int_or_auto" and raw == "auto":
                options[key] = "auto"
            else:
                options[key] = self.integer(raw, where, minimum=minimum)
        return options

    def construct(self, factory: Any, *args: Any, path: str) -> None:
        """Build the sampler or pruner once, so Optuna rejects bad option values now."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                factory(*args)
            except (TypeError, ValueError) as exc:
                self.fail(path, str(exc).rstrip("."))

    def budget(self, value: Any, path: str) -> Budget:
        section = self.mapping(value, path, allowed=("n_trials", "timeout", "trial_timeout", "max_failure_rate"))

        def optional(key: str, check: Any) -> Any:
            raw = section.get(key)
            return None if raw is None else check(raw, _join(path, key))

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
            self.fail(path, f"must be in (0, 1], got {_show(value)}")
        return rate


def _can_sample(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
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


def _grid_values(distribution: optuna.distributions.BaseDistribution) -> list[Any]:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution)
    return list(range(distribution.low, distribution.high + 1, distribution.step))


def _check_sampler_available(name: str, source: str | None, *, key: str = "sampler.name") -> None:
    if name not in _SAMPLER_NEEDS:
        return
    module, install = _SAMPLER_NEEDS[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"the {name} sampler needs the `{module}` package, which is not installed: {install}",
            source=source,
            key=key,
        )


def _construct_sampler(config: SamplerConfig, params: Sequence[ParamDef]) -> optuna.samplers.BaseSampler:
    import optuna

    samplers = optuna.samplers
    if config.name == "grid":
        search_space = {p.name: _grid_values(p.distribution) for p in params}
        return samplers.GridSampler(search_space, seed=config.seed)
    classes: dict[str, Any] = {
        "tpe": samplers.TPESampler,
        "random": samplers.RandomSampler,
        "cmaes": samplers.CmaEsSampler,
        "gp": samplers.GPSampler,
        "qmc": samplers.QMCSampler,
    }
    sampler: optuna.samplers.BaseSampler = classes[config.name](seed=config.seed, **config.options)
    return sampler


def _construct_pruner(config: PrunerConfig) -> optuna.pruners.BasePruner:
    import optuna

    pruners = optuna.pruners
    classes: dict[str, Any] = {
        "none": pruners.NopPruner,
        "median": pruners.MedianPruner,
        "percentile": pruners.PercentilePruner,
        "successive_halving": pruners.SuccessiveHalvingPruner,
        "hyperband": pruners.HyperbandPruner,
    }
    pruner: optuna.pruners.BasePruner = classes[config.name](**config.options)
    return pruner


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
