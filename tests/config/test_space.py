"""Search-space files: shipped files validate, bad ones fail with a precise message, sampling
respects conditions and per-layer widths, and no input makes the parser crash."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_sweep.config import PRUNERS, SAMPLERS, SearchSpace, load_space, parse_space
from mnist_sweep.errors import ConfigError
from mnist_sweep.model._params import PARAMS, resolve_params

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE: dict[str, Any] = {
    "study": "unit",
    "dataset": "mnist",
    "budget": {"n_trials": 4},
    "sampler": {"name": "tpe", "options": {"multivariate": True}},
    "pruner": {"name": "median", "options": {"n_warmup_steps": 1}},
    "fixed": {"epochs": 1, "optimizer": "adam"},
    "space": {
        "architecture": {"type": "categorical", "choices": ["dense", "conv"]},
        "activation": {"type": "categorical", "choices": ["relu", "sigmoid"]},
        "depth": {"type": "int", "low": 1, "high": 3},
        "width": {"type": "categorical", "choices": [16, 32], "per_layer": True},
        "learning_rate": {"type": "float", "low": "1e-4", "high": 1.0e-2, "log": True},
        "filters": {"type": "categorical", "choices": [8, 16], "when": {"architecture": "conv"}},
    },
}
DELETE = object()


def mutated(changes: dict[str, Any], base: dict[str, Any] = BASE) -> dict[str, Any]:
    """``base`` with dotted-path keys set (or removed with DELETE)."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def parse(data: Any) -> SearchSpace:
    return parse_space(data, source="bad.yaml")


def run_trials(space: SearchSpace, n: int) -> optuna.Study:
    study = optuna.create_study(
        sampler=space.make_sampler(), pruner=space.make_pruner(), direction=space.objective.direction
    )
    for number in range(n):
        trial = study.ask()
        params = space.trial_params(trial)
        assert trial.params.items() <= params.items()
        study.tell(trial, float(number % 3))
    return study


# -- shipped files ------------------------------------------------------------------------


def test_search_spaces_folder_is_not_empty() -> None:
    assert len(SHIPPED) >= 9


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_file_validates(path: Path) -> None:
    space = load_space(path)
    assert space.study_name == path.stem
    assert space.question
    assert path.read_text().startswith("#"), "each file starts with a comment saying which question it answers"
    assert space.text == path.read_text()
    assert space.budget.n_trials is not None and space.budget.n_trials <= 40
    study = run_trials(space, 2)
    for trial in study.trials:
        resolve_params(space.trial_params(optuna.trial.FixedTrial(trial.params)))


def test_shipped_activation_is_the_make_run_grid() -> None:
    space = load_space(ROOT / "search_spaces" / "activation.yaml")
    assert space.sampler.name == "grid"
    assert space.budget.n_trials == 12
    study = optuna.create_study(sampler=space.make_sampler())
    study.optimize(lambda t: len(space.trial_params(t)), n_trials=space.budget.n_trials)
    seen = {(t.params["activation"], t.params["depth"]) for t in study.trials}
    assert seen == set(itertools.product(["relu", "sigmoid", "tanh"], [1, 2, 5, 10]))


def test_repeats_default_to_one_and_round_trip() -> None:
    plain = parse(mutated({}))
    assert plain.repeats == 1 and "repeats" not in plain.to_dict()  # one seed: the file reads as before
    repeated = parse(mutated({"repeats": 3}))
    assert repeated.repeats == 3
    assert parse(repeated.to_dict()).repeats == 3


# -- invalid input: table-driven ----------------------------------------------------------

INVALID = [
    ("unknown top-level key", {"studdy": "x"}, ["studdy", "unknown key", "did you mean 'study'"]),
    ("missing study", {"study": DELETE}, ["study", "required key is missing"]),
    ("missing budget", {"budget": DELETE}, ["budget", "required key is missing"]),
    ("bad study name", {"study": "a b"}, ["study", "letters, digits"]),
    ("numeric study name", {"study": 2024}, ["study", "quote it"]),
    ("question not a string", {"question": ["a"]}, ["question", "must be a string"]),
    ("unknown dataset", {"dataset": "cifar10"}, ["dataset", "unknown dataset 'cifar10'"]),
    ("seed negative", {"seed": -1}, ["seed", "must be >= 0, got -1"]),
    ("seed too large", {"seed": 2**40}, ["seed", "2**32 - 1"]),
    ("limit too small", {"limit": 5}, ["limit", "must be >= 10, got 5"]),
    ("limit float", {"limit": 1000.5}, ["limit", "must be an integer"]),
    ("repeats zero", {"repeats": 0}, ["repeats", "must be >= 1, got 0"]),
    ("repeats float", {"repeats": 2.5}, ["repeats", "must be an integer"]),
    ("repeats string", {"repeats": "3"}, ["repeats", "must be an integer"]),
    ("repeats bool", {"repeats": True}, ["repeats", "must be an integer"]),
    ("unknown metric", {"objective": {"metric": "accuracy"}}, ["objective.metric", "unknown metric 'accuracy'"]),
    (
        "contradictory objective",
        {"objective": {"metric": "val_loss", "direction": "maximize"}},
        ["objective.direction", "val_loss", "must be minimized"],
    ),
    ("bad direction", {"objective": {"direction": "up"}}, ["objective.direction", "maximize or minimize"]),
    ("unknown key in space entry", {"space.depth.lo": 1}, ["space.depth.lo", "unknown key 'lo'"]),
    (
        "typo'd param name",
        {"space.activaton": {"type": "categorical", "choices": ["relu"]}},
        ["space.activaton", "unknown parameter", "did you mean 'activation'"],
    ),
    ("missing type", {"space.depth.type": DELETE}, ["space.depth.type", "required key is missing"]),
    ("bad type", {"space.depth.type": "uniform"}, ["space.depth.type", "float, int or categorical"]),
    ("low > high", {"space.depth.low": 3, "space.depth.high": 2}, ["space.depth", "`low <= high` must hold"]),
    ("missing high", {"space.depth.high": DELETE}, ["space.depth.high", "required key is missing"]),
    ("low outside the param range", {"space.depth.low": 0}, ["space.depth.low", "below the allowed range"]),
    (
        "high outside the param range",
        {"space.dropout": {"type": "float", "low": 0.0, "high": 1.0}},
        ["space.dropout.high", "above the allowed range"],
    ),
    (
        "log with low <= 0",
        {"space.dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": True}},
        ["space.dropout", "`low > 0` must hold for `log=True`"],
    ),
    ("log with step", {"space.learning_rate.step": 0.001}, ["space.learning_rate", "`step` is not supported"]),
    (
        "step not dividing the range",
        {"space.depth.step": 2, "space.depth.high": 4},
        ["space.depth", "not divisible by `step`"],
    ),
    (
        "non-numeric string bound",
        {"space.learning_rate.low": "abc"},
        ["space.learning_rate.low", "must be a number", "'abc'"],
    ),
    ("nan bound", {"space.learning_rate.high": float("nan")}, ["space.learning_rate.high", "must be finite"]),
    ("bool bound", {"space.depth.low": True}, ["space.depth.low", "must be an integer"]),
    ("bool log", {"space.learning_rate.log": "yes"}, ["space.learning_rate.log", "must be true or false"]),
    ("string int bound", {"space.depth.high": "3"}, ["space.depth.high", "must be an integer"]),
    ("float type for an int param", {"space.depth.type": "float"}, ["space.depth.type", "takes integers"]),
    (
        "int type for a float param",
        {"space.learning_rate": {"type": "int", "low": 1, "high": 2}},
        ["space.learning_rate.type", "takes real numbers"],
    ),
    (
        "numeric type for a choice param",
        {"space.activation": {"type": "int", "low": 1, "high": 2}},
        ["space.activation.type", "use `type: categorical`"],
    ),
    (
        "bad categorical choice",
        {"space.activation.choices": ["relu", "relux"]},
        ["space.activation.choices[1]", "'relux'", "relu, sigmoid, tanh, elu"],
    ),
    ("choice of the wrong type", {"space.filters.choices": [8, "many"]}, ["space.filters.choices[1]", "integer"]),
    ("empty choices", {"space.activation.choices": []}, ["space.activation.choices", "at least one value"]),
    ("choices not a list", {"space.activation.choices": "relu"}, ["space.activation.choices", "must be a list"]),
    ("duplicate choices", {"space.activation.choices": ["relu", "relu"]}, ["choices[1]", "listed twice"]),
    ("low on a categorical", {"space.activation.low": 1}, ["space.activation.low", "does not apply"]),
    ("choices on an int", {"space.depth.choices": [1]}, ["space.depth.choices", "does not apply"]),
    ("entry not a mapping", {"space.depth": 3}, ["space.depth", "must be a mapping"]),
    ("empty space", {"space": {}}, ["space", "at least one parameter"]),
    ("space not a mapping", {"space": ["depth"]}, ["space", "must be a mapping"]),
    (
        "per-layer width listed one by one",
        {"space.width_2": {"type": "int", "low": 8, "high": 9}},
        ["space.width_2", "per_layer"],
    ),
    ("key both fixed and space", {"fixed.activation": "relu"}, ["space.activation", "both fixed and sampled"]),
    ("unknown fixed param", {"fixed.epoch": 3}, ["fixed.epoch", "unknown parameter", "did you mean 'epochs'"]),
    ("bad fixed value", {"fixed.optimizer": "adamw"}, ["fixed.optimizer", "'adamw'", "rmsprop, adam, sgd"]),
    ("non-numeric fixed float", {"fixed.momentum": "fast"}, ["fixed.momentum", "must be a number"]),
    ("fixed not a mapping", {"fixed": ["epochs"]}, ["fixed", "must be a mapping"]),
    ("fixed mse with logits", {"fixed.loss": "mse", "fixed.output": "logits"}, ["fixed", "logits"]),
    (
        "sampled mse with logits",
        {"fixed.loss": "mse", "space.output": {"type": "categorical", "choices": ["softmax", "logits"]}},
        ["space.output", "mse", "logits"],
    ),
    (
        "when on unknown param",
        {"space.filters.when": {"architectur": "conv"}},
        ["space.filters.when.architectur", "unknown parameter", "did you mean 'architecture'"],
    ),
    (
        "when on a param neither fixed nor sampled",
        {"space.filters.when": {"dropout": 0.5}},
        ["space.filters.when.dropout", "neither fixed nor sampled"],
    ),
    (
        "when on a param sampled later",
        {"space.depth.when": {"filters": 8}},
        ["space.depth.when.filters", "sampled later"],
    ),
    (
        "when with an invalid value",
        {"space.filters.when": {"architecture": "cnn"}},
        ["space.filters.when.architecture", "'cnn'"],
    ),
    (
        "when that never holds",
        {"space.filters.when": {"depth": [2, 7]}},
        ["space.filters.when.depth[1]", "never holds"],
    ),
    (
        "when on a fixed value it never matches",
        {"space.filters.when": {"optimizer": "sgd"}},
        ["space.filters.when.optimizer", "never holds", "fixed to 'adam'"],
    ),
    ("when not a mapping", {"space.filters.when": "conv"}, ["space.filters.when", "non-empty mapping"]),
    ("when on a per-layer param", {"space.filters.when": {"width": 16}}, ["space.filters.when.width", "per layer"]),
    ("per_layer without depth", {"space.depth": DELETE}, ["space.width.per_layer", "need `depth`"]),
    (
        "per_layer with depth after width",
        {
            "space": {
                "width": {"type": "categorical", "choices": [8], "per_layer": True},
                "depth": {"type": "int", "low": 1, "high": 2},
            }
        },
        ["space.width.per_layer", "need `depth`"],
    ),
    (
        "per_layer with a fixed layer width",
        {"fixed.width_1": 8, "fixed.depth": 2, "space.depth": DELETE},
        ["space.width.per_layer", "'width_1'"],
    ),
    (
        "fixed layer width with sampled depth",
        {"fixed.width_2": 8, "space.width.per_layer": False},
        ["fixed.width_2", "only together with `depth`"],
    ),
    (
        "fixed layer width beyond fixed depth",
        {"fixed.width_3": 8, "fixed.depth": 2, "space.depth": DELETE, "space.width.per_layer": False},
        ["fixed", "'width_3' given but depth is 2"],
    ),
    ("per_layer on another param", {"space.filters.per_layer": True}, ["space.filters.per_layer", "only `width`"]),
    ("per_layer not a bool", {"space.width.per_layer": "yes"}, ["space.width.per_layer", "true or false"]),
    ("unknown sampler", {"sampler.name": "tpee"}, ["sampler.name", "unknown sampler 'tpee'", "did you mean 'tpe'"]),
    (
        "sampler import path",
        {"sampler.name": "optuna.samplers.TPESampler"},
        ["sampler.name", "import paths are not accepted"],
    ),
    ("unknown sampler key", {"sampler.class": "TPESampler"}, ["sampler.class", "unknown key"]),
    (
        "unknown sampler option",
        {"sampler.options.multivariat": True},
        ["sampler.options.multivariat", "unknown option", "did you mean 'multivariate'"],
    ),
    ("option not for this sampler", {"sampler.name": "random"}, ["sampler.options.multivariate", "random sampler"]),
    (
        "sampler option wrong type",
        {"sampler.options.n_startup_trials": "ten"},
        ["sampler.options.n_startup_trials", "must be an integer"],
    ),
    (
        "sampler options Optuna rejects",
        {"sampler.options": {"multivariate": False, "group": True}},
        ["sampler.options", "``group`` option can only be enabled when ``multivariate``"],
    ),
    (
        "qmc type Optuna rejects",
        {"sampler": {"name": "qmc", "options": {"qmc_type": "lattice"}}},
        ["sampler.options", "qmc_type"],
    ),
    ("sampler seed negative", {"sampler.seed": -3}, ["sampler.seed", "must be >= 0"]),
    (
        "grid with a float param",
        {"sampler": {"name": "grid"}, "space.width.per_layer": False, "space.filters": DELETE},
        ["space.learning_rate", "the grid sampler needs a finite set"],
    ),
    (
        "grid with a conditional param",
        {"sampler": {"name": "grid"}, "space.learning_rate": DELETE, "space.width.per_layer": False},
        ["space.filters", "no `when` or `per_layer`"],
    ),
    ("unknown pruner", {"pruner.name": "medain"}, ["pruner.name", "unknown pruner 'medain'", "did you mean 'median'"]),
    ("pruner import path", {"pruner.name": "optuna.pruners.MedianPruner"}, ["pruner.name", "import paths"]),
    ("unknown pruner option", {"pruner.options.warmup": 1}, ["pruner.options.warmup", "unknown option"]),
    (
        "percentile pruner without percentile",
        {"pruner": {"name": "percentile"}},
        ["pruner.options.percentile", "needs `percentile`"],
    ),
    (
        "percentile out of range",
        {"pruner": {"name": "percentile", "options": {"percentile": 150}}},
        ["pruner.options", "Percentile must be between 0 and 100"],
    ),
    (
        "hyperband reduction factor too small",
        {"pruner": {"name": "hyperband", "options": {"reduction_factor": 1}}},
        ["pruner.options.reduction_factor", "must be >= 2"],
    ),
    (
        "hyperband max below min",
        {"pruner": {"name": "hyperband", "options": {"min_resource": 3, "max_resource": 2}}},
        ["pruner.options.max_resource", "`min_resource <= max_resource` must hold"],
    ),
    ("budget without trials or timeout", {"budget": {"n_trials": None}}, ["budget", "at least one of"]),
    ("zero trials", {"budget.n_trials": 0}, ["budget.n_trials", "must be >= 1, got 0"]),
    ("bool n_trials", {"budget.n_trials": True}, ["budget.n_trials", "must be an integer", "boolean"]),
    ("negative timeout", {"budget.timeout": -1}, ["budget.timeout", "must be > 0"]),
    ("non-numeric timeout", {"budget.trial_timeout": "1h"}, ["budget.trial_timeout", "must be a number"]),
    ("failure rate zero", {"budget.max_failure_rate": 0}, ["budget.max_failure_rate", "(0, 1]"]),
    ("failure rate above one", {"budget.max_failure_rate": 1.5}, ["budget.max_failure_rate", "(0, 1]"]),
    ("budget not a mapping", {"budget": 12}, ["budget", "must be a mapping"]),
    ("non-string key", {"space.depth": {"type": "int", 1: 2, "low": 1, "high": 2}}, ["space.depth", "keys must be"]),
    ("batch_norm not a bool", {"fixed.batch_norm": "yes"}, ["fixed.batch_norm", "must be true or false"]),
    (
        "unknown schedule",
        {"space.lr_schedule": {"type": "categorical", "choices": ["constant", "step"]}},
        ["space.lr_schedule.choices[1]", "choose one of constant, cosine, one_cycle, plateau"],
    ),
    ("augment level", {"fixed.augment": "heavy"}, ["fixed.augment", "choose one of none, light, strong"]),
    ("weight decay of one", {"fixed.weight_decay": 1}, ["fixed.weight_decay", "0 <= weight_decay < 1"]),
    ("fixed warm-up too long", {"fixed.warmup_epochs": 1}, ["fixed", "'warmup_epochs' = 1 must be below 'epochs' = 1"]),
    (
        "sampled warm-up can outlast training",
        {"fixed.epochs": 3, "space.warmup_epochs": {"type": "int", "low": 0, "high": 3}},
        ["space.warmup_epochs", "a trial could draw warmup_epochs 3 with epochs 3"],
    ),
    (
        "label smoothing with mse",
        {"fixed.loss": "mse", "space.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2}},
        ["space.label_smoothing", "a trial could pair loss 'mse' with label_smoothing > 0"],
    ),
]


@pytest.mark.parametrize(("changes", "expected"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID])
def test_invalid_config_is_rejected_precisely(changes: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse(mutated(changes))
    message = str(info.value)
    assert message.startswith("bad.yaml: "), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message


INVALID_FILES = [
    ("empty file", "", ["empty"]),
    ("only comments", "# nothing here\n", ["empty"]),
    ("list at top level", "- study: x\n", ["top level must be a mapping", "a list"]),
    ("scalar at top level", "just text\n", ["top level must be a mapping", "'just text'"]),
    ("YAML syntax error", "study: x\ndataset: mnist\nspace: {depth: [1, 2}\n", ["invalid YAML", "line 3"]),
    ("bad indentation", "study: x\n  dataset: mnist\n", ["invalid YAML", "line 2"]),
    ("duplicate key", "study: a\ndataset: mnist\nstudy: b\n", ["duplicate key 'study'", "line 1", "line 3"]),
    ("python tag", "study: !!python/object/apply:os.system ['true']\n", ["invalid YAML", "line 1"]),
    (
        "one-e-minus-five string rejected where an int is due",
        "study: x\ndataset: mnist\nseed: 1e-5\nbudget: {n_trials: 1}\nspace: {depth: {type: int, low: 1, high: 2}}\n",
        ["seed", "must be an integer", "'1e-5'"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in INVALID_FILES], ids=[r[0] for r in INVALID_FILES])
def test_invalid_file_is_rejected_precisely(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_space("nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_space(tmp_path)


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_bytes(b"study: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: not UTF-8"):
        load_space("x.yaml")


def test_error_carries_source_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(mutated({"space.depth.low": 0}))
    assert info.value.source == "bad.yaml"
    assert info.value.key == "space.depth.low"


@pytest.mark.parametrize("name", ["cmaes", "gp"])
def test_optional_dependency_samplers(name: str) -> None:
    import importlib.util

    module = {"cmaes": "cmaes", "gp": "torch"}[name]
    data = mutated({"sampler": {"name": name}})
    if importlib.util.find_spec(module) is None:
        with pytest.raises(ConfigError, match=rf"sampler\.name: the {name} sampler needs the `{module}` package.*pip"):
            parse(data)
    else:
        assert parse(data).make_sampler() is not None


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - {"cmaes", "gp", "grid"}))
def test_every_plain_sampler_builds(name: str) -> None:
    space = parse(mutated({"sampler": {"name": name, "seed": 3}}))
    sampler = space.make_sampler()
    assert type(sampler).__name__.lower().startswith(name.replace("_", ""))
    run_trials(space, 3)


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_builds(name: str) -> None:
    options = {"percentile": 25.0} if name == "percentile" else {}
    changes: dict[str, Any] = {"pruner": {"name": name, "options": options}}
    if name == "asha":  # its rungs need more than one epoch
        changes["fixed.epochs"] = 3
    space = parse(mutated(changes))
    assert isinstance(space.make_pruner(), optuna.pruners.BasePruner)


# -- valid input: coercion and defaults ---------------------------------------------------


def test_numeric_strings_are_coerced_where_floats_are_due() -> None:
    space = parse(
        mutated(
            {
                "fixed.learning_rate": "1e-3",
                "space.learning_rate": DELETE,
                "budget.timeout": "1e3",
                "space.dropout": {"type": "float", "low": "0", "high": "5e-1", "step": "1e-1"},
            }
        )
    )
    assert space.fixed["learning_rate"] == 1e-3
    assert space.budget.timeout == 1000.0
    dropout = next(p for p in space.params if p.name == "dropout").distribution
    assert isinstance(dropout, optuna.distributions.FloatDistribution)
    assert (dropout.low, dropout.high, dropout.step) == (0.0, 0.5, 0.1)


def test_yaml_1e_minus_5_is_read_as_a_float(tmp_path: Path) -> None:
    text = (
        "study: s\ndataset: fashion-mnist\nbudget: {n_trials: 1}\n"
        "space:\n  learning_rate: {type: float, low: 1e-5, high: 1e-2, log: true}\n"
    )
    (tmp_path / "s.yaml").write_text(text)
    space = load_space("s.yaml")
    (param,) = space.params
    assert isinstance(param.distribution, optuna.distributions.FloatDistribution)
    assert param.distribution.low == 1e-05
    assert space.dataset == "fashion_mnist"
    assert space.source == "s.yaml"


def test_defaults() -> None:
    minimal = {
        "study": "m",
        "dataset": "mnist",
        "budget": {"timeout": 60},
        "space": {"depth": {"type": "int", "low": 1, "high": 2}},
    }
    space = parse(minimal)
    assert space.seed == 0
    assert space.limit is None
    assert space.question is None
    assert (space.objective.metric, space.objective.direction) == ("val_accuracy", "maximize")
    assert (space.sampler.name, space.sampler.seed, dict(space.sampler.options)) == ("tpe", 0, {})
    assert (space.pruner.name, dict(space.pruner.options)) == ("median", {})
    assert space.budget == type(space.budget)(n_trials=None, timeout=60.0, trial_timeout=None, max_failure_rate=None)
    assert dict(space.fixed) == {}
    loss = parse({**minimal, "objective": {"metric": "val_loss"}, "seed": 7})
    assert loss.objective.direction == "minimize"
    assert loss.sampler.seed == 7
    unseeded = parse({**minimal, "sampler": {"name": "random", "seed": None}})
    assert unseeded.sampler.seed is None


def test_space_is_frozen() -> None:
    space = parse(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        space.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        space.fixed["epochs"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        space.params[-1].when["architecture"] = ("dense",)  # type: ignore[index]


def test_to_dict_is_json_and_round_trips() -> None:
    for source in [*SHIPPED, None]:
        space = load_space(source) if source else parse(BASE)
        summary = space.to_dict()
        assert json.loads(json.dumps(summary)) == summary
        again = parse_space(summary, source=space.source, text=space.text)
        assert again == space


# -- sampling -----------------------------------------------------------------------------


def test_conditional_and_per_layer_params_follow_the_sampled_values() -> None:
    space = parse(mutated({"budget.n_trials": 30}))
    study = run_trials(space, 30)
    architectures, depths = set(), set()
    for trial in study.trials:
        params = trial.params
        architectures.add(params["architecture"])
        depths.add(params["depth"])
        assert ("filters" in params) == (params["architecture"] == "conv")
        widths = sorted(k for k in params if k.startswith("width_"))
        assert widths == [f"width_{i}" for i in range(1, params["depth"] + 1)]
        assert "width" not in params
    assert architectures == {"dense", "conv"}
    assert len(depths) > 1


def test_per_layer_with_fixed_depth_and_chained_conditions() -> None:
    space = parse(
        mutated(
            {
                "fixed.depth": 2,
                "space.depth": DELETE,
                "space.kernel_size": {
                    "type": "categorical",
                    "choices": [3, 5],
                    "when": {"filters": 16, "architecture": "conv"},
                },
            }
        )
    )
    study = run_trials(space, 25)
    for trial in study.trials:
        params = space.trial_params(optuna.trial.FixedTrial(trial.params))
        assert [params["width_1"], params["width_2"]] == [trial.params["width_1"], trial.params["width_2"]]
        assert ("kernel_size" in params) == (params["architecture"] == "conv" and params["filters"] == 16)
        assert resolve_params(params)["widths"] == [params["width_1"], params["width_2"]]


def test_trial_params_rebuild_the_best_trial_from_a_fixed_trial() -> None:
    space = parse(BASE)
    study = optuna.create_study(sampler=space.make_sampler(), direction="maximize")
    recorded: dict[int, dict[str, Any]] = {}

    def objective(trial: optuna.Trial) -> float:
        recorded[trial.number] = space.trial_params(trial)
        return recorded[trial.number]["learning_rate"]

    study.optimize(objective, n_trials=8)
    best = study.best_trial
    rebuilt = space.trial_params(optuna.trial.FixedTrial(best.params))
    assert rebuilt == recorded[best.number]
    assert rebuilt["epochs"] == 1 and rebuilt["optimizer"] == "adam"
    resolved = resolve_params(rebuilt)
    assert len(resolved["widths"]) == rebuilt["depth"]


def test_fixed_trial_by_hand() -> None:
    space = parse(BASE)
    params = space.trial_params(
        optuna.trial.FixedTrial(
            {
                "architecture": "dense",
                "activation": "relu",
                "depth": 2,
                "width_1": 16,
                "width_2": 32,
                "learning_rate": 0.001,
            }
        )
    )
    assert params == {
        "epochs": 1,
        "optimizer": "adam",
        "architecture": "dense",
        "activation": "relu",
        "depth": 2,
        "width_1": 16,
        "width_2": 32,
        "learning_rate": 0.001,
    }


def test_sampler_seed_makes_sampling_repeatable() -> None:
    space = parse(mutated({"seed": 5}))
    first = [t.params for t in run_trials(space, 12).trials]
    second = [t.params for t in run_trials(space, 12).trials]
    assert first == second


# -- overrides ----------------------------------------------------------------------------


def test_with_overrides() -> None:
    space = parse(mutated({"space.epochs": {"type": "int", "low": 1, "high": 3}, "fixed.epochs": DELETE}))
    assert "epochs" in [p.name for p in space.params]
    changed = space.with_overrides(n_trials=2, timeout=30, study_name="quick", epochs=1, seed=9, limit=300)
    assert changed.budget.n_trials == 2 and changed.budget.timeout == 30.0
    assert changed.study_name == "quick"
    assert changed.fixed["epochs"] == 1
    assert "epochs" not in [p.name for p in changed.params]
    assert changed.seed == 9 and changed.sampler.seed == 9
    assert changed.limit == 300
    assert space.budget.n_trials == 4 and "epochs" not in space.fixed, "the original is unchanged"
    assert space.with_overrides() == space
    assert all(t.params.keys().isdisjoint({"epochs"}) for t in run_trials(changed, 3).trials)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_trials": 0}, "--n-trials: must be >= 1, got 0"),
        ({"n_trials": True}, "--n-trials: must be an integer"),
        ({"timeout": -5}, "--timeout: must be > 0 seconds, got -5"),
        ({"study_name": "has space"}, "--study-name: must be 1-128 letters"),
        ({"epochs": 0}, "--epochs: parameter 'epochs' = 0 is below the allowed range"),
        ({"seed": -1}, "--seed: must be >= 0, got -1"),
        ({"limit": 3}, "--limit: must be >= 10, got 3"),
    ],
)
def test_with_overrides_rejects_bad_flags(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE).with_overrides(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_epochs_override_must_outlast_the_warm_up() -> None:
    fixed = parse(mutated({"fixed.epochs": 4, "fixed.warmup_epochs": 2}))
    assert fixed.with_overrides(epochs=3).fixed["epochs"] == 3
    with pytest.raises(ConfigError, match=r"^--epochs: parameter 'warmup_epochs' = 2 must be below 'epochs' = 2"):
        fixed.with_overrides(epochs=2)
    sampled = parse(mutated({"fixed.epochs": 4, "space.warmup_epochs": {"type": "int", "low": 0, "high": 2}}))
    with pytest.raises(ConfigError, match=r"^--epochs: a trial could draw warmup_epochs 2 with epochs 1"):
        sampled.with_overrides(epochs=1)


def test_import_is_light() -> None:
    code = (
        "import sys, mnist_sweep.config._space, mnist_sweep.config._nightly; "
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'optuna') if m in sys.modules]; "
        "print(heavy); sys.exit(bool(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- property: any YAML-like input parses or raises ConfigError ----------------------------

KEYS = sorted(
    {
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
        "type",
        "low",
        "high",
        "step",
        "log",
        "choices",
        "when",
        "per_layer",
        "name",
        "options",
        "metric",
        "direction",
        "n_trials",
        "timeout",
        "trial_timeout",
        "max_failure_rate",
        "percentile",
        "multivariate",
        *PARAMS,
    }
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "1e-5",
            "abc",
            "tpe",
            "grid",
            "qmc",
            "median",
            "percentile",
            "hyperband",
            "categorical",
            "int",
            "float",
            "relu",
            "conv",
            "mnist",
            "val_loss",
            "maximize",
            "auto",
            "width_1",
        ]
    )
)
YAMLISH = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5) | st.integers(), children, max_size=5)
    ),
    max_leaves=25,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _check_parses_or_config_error(data: Any) -> None:
    try:
        space = parse_space(data, source="fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    assert isinstance(space, SearchSpace)
    json.dumps(space.to_dict())
    with warnings.catch_warnings():
        # Optuna's advisory warnings (e.g. a sampler falling back to independent sampling) are
        # legitimate for odd but valid spaces; this property is about exceptions.
        warnings.simplefilter("ignore")
        study = run_trials(space, 2)
    for trial in study.trials:
        resolve_params(space.trial_params(optuna.trial.FixedTrial(trial.params)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_arbitrary_structures_parse_or_raise_config_error(data: Any) -> None:
    _check_parses_or_config_error(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_config_parses_or_raises_config_error(data: st.DataObject) -> None:
    config = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(config)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = config
        for part in path[:-1]:
            parent = parent[part]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(SCALARS | YAMLISH)
    _check_parses_or_config_error(config)
