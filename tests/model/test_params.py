"""Table-driven tests of parameter validation: every accepted row, and every rejected one with its message."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mnist_sweep.errors import ConfigError, ParamError
from mnist_sweep.model._params import (
    PARAMS,
    check_value,
    conv_output_size,
    is_param_name,
    model_summary,
    parse_assignment,
    resolve_params,
)
from mnist_sweep.model._presets import PRESETS

# (name, value given, value returned)
VALID_VALUES: list[tuple[str, Any, Any]] = [
    ("architecture", "dense", "dense"),
    ("architecture", "conv", "conv"),
    ("depth", 1, 1),
    ("depth", 64, 64),
    ("depth", 3.0, 3),
    ("width", 1, 1),
    ("width", 65536, 65536),
    ("width_1", 32, 32),
    ("width_64", 8, 8),
    ("activation", "elu", "elu"),
    ("dropout", 0, 0.0),
    ("dropout", 0.999, 0.999),
    ("conv_blocks", 3, 3),
    ("filters", 1024, 1024),
    ("kernel_size", 7, 7),
    ("loss", "mse", "mse"),
    ("output", "logits", "logits"),
    ("optimizer", "sgd", "sgd"),
    ("learning_rate", 1e-6, 1e-6),
    ("learning_rate", 10, 10.0),
    ("momentum", 0, 0.0),
    ("momentum", 0.99, 0.99),
    ("epochs", 10000, 10000),
    ("batch_size", 1, 1),
]


@pytest.mark.parametrize(("name", "value", "expected"), VALID_VALUES)
def test_check_value_accepts(name: str, value: Any, expected: Any) -> None:
    result = check_value(name, value)
    assert result == expected
    assert type(result) is type(expected)


# (name, value given, how the value appears in the message, what the message says is allowed)
INVALID_VALUES: list[tuple[str, Any, str, str]] = [
    ("depth", 0, "0", "1 <= depth <= 64"),
    ("depth", 65, "65", "1 <= depth <= 64"),
    ("depth", 2.5, "2.5", "must be an integer (1 <= depth <= 64)"),
    ("depth", "3", "'3'", "must be an integer (1 <= depth <= 64)"),
    ("depth", True, "True", "must be an integer"),
    ("depth", None, "None", "must be an integer"),
    ("depth", math.inf, "inf", "must be an integer"),
    ("width", 0, "0", "1 <= width <= 65536"),
    ("width_3", 0, "0", "1 <= width_3 <= 65536"),
    ("width_3", "wide", "'wide'", "must be an integer (1 <= width_3 <= 65536)"),
    ("dropout", 1.0, "1.0", "0 <= dropout < 1"),
    ("dropout", -0.1, "-0.1", "0 <= dropout < 1"),
    ("momentum", 1, "1.0", "0 <= momentum < 1"),
    ("learning_rate", 0, "0.0", "0 < learning_rate <= 10"),
    ("learning_rate", -0.001, "-0.001", "0 < learning_rate <= 10"),
    ("learning_rate", 10.5, "10.5", "0 < learning_rate <= 10"),
    ("learning_rate", "1e-5", "'1e-5'", "write 1.0e-5, not 1e-5, in YAML"),
    ("learning_rate", math.nan, "nan", "must be finite (0 < learning_rate <= 10)"),
    ("learning_rate", -math.inf, "-inf", "must be finite"),
    ("learning_rate", [0.1], "[0.1]", "must be a number (0 < learning_rate <= 10)"),
    ("conv_blocks", 4, "4", "1 <= conv_blocks <= 3"),
    ("kernel_size", 8, "8", "1 <= kernel_size <= 7"),
    ("epochs", 0, "0", "1 <= epochs <= 10000"),
    ("batch_size", 0, "0", "1 <= batch_size <= 65536"),
    ("activation", "softplus", "'softplus'", "choose one of relu, sigmoid, tanh, elu"),
    ("activation", "ReLU", "'ReLU'", "choose one of relu, sigmoid, tanh, elu"),
    ("activation", 1, "1", "choose one of relu, sigmoid, tanh, elu"),
    ("architecture", "rnn", "'rnn'", "choose one of dense, conv"),
    ("loss", "hinge", "'hinge'", "choose one of sparse_categorical_crossentropy, categorical_crossentropy, mse"),
    ("output", "sigmoid", "'sigmoid'", "choose one of softmax, logits"),
    ("optimizer", "Adam", "'Adam'", "choose one of rmsprop, adam, sgd"),
    ("widht", 3, "3", "allowed: architecture, depth, width"),
    ("width_0", 3, "3", "width_1..width_N"),
    ("width_65", 3, "3", "width_1..width_N"),
    ("width_01", 3, "3", "width_1..width_N"),
    ("widths", [3], "[3]", "width_1..width_N"),
]


@pytest.mark.parametrize(("name", "value", "shown", "allowed"), INVALID_VALUES)
def test_check_value_rejects_naming_parameter_value_and_what_is_allowed(
    name: str, value: Any, shown: str, allowed: str
) -> None:
    with pytest.raises(ParamError) as info:
        check_value(name, value)
    message = str(info.value)
    assert repr(name) in message
    assert shown in message
    assert allowed in message
    assert "\n" not in message


def test_every_param_has_a_valid_default() -> None:
    for name, spec in PARAMS.items():
        assert check_value(name, spec.default) == spec.default, name
        assert spec.help


def test_param_errors_are_config_errors() -> None:
    assert issubclass(ParamError, ConfigError)
    with pytest.raises(ConfigError):
        check_value("depth", 0)


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("depth", True),
        ("width_1", True),
        ("width_64", True),
        ("width_0", False),
        ("width_65", False),
        ("width_01", False),
        ("width_", False),
        ("widths", False),
        ("Depth", False),
        ("", False),
    ],
)
def test_is_param_name(name: str, known: bool) -> None:
    assert is_param_name(name) is known


# --- resolve_params ------------------------------------------------------------------------

# (given, the keys of the result to compare, their expected values)
RESOLVED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {"architecture": "dense", "depth": 1, "width": 512, "widths": [512], "learning_rate": 0.001}),
    ({"optimizer": "sgd"}, {"learning_rate": 0.01, "momentum": 0.9}),
    ({"optimizer": "sgd", "learning_rate": 0.2}, {"learning_rate": 0.2}),
    ({"optimizer": "adam"}, {"learning_rate": 0.001}),
    ({"depth": 3, "width": 100}, {"widths": [100, 100, 100]}),
    ({"depth": 3, "width": 100, "width_2": 50}, {"widths": [100, 50, 100]}),
    ({"depth": 2.0, "width_1": 8, "width_2": 4}, {"depth": 2, "widths": [8, 4]}),
    ({"depth": 2, "widths": [8, 4]}, {"widths": [8, 4]}),
    ({"depth": 2, "widths": [8, 4], "width_2": 4}, {"widths": [8, 4]}),
    ({"architecture": "conv", "conv_blocks": 3, "kernel_size": 3}, {"conv_blocks": 3}),
    ({"architecture": "conv", "conv_blocks": 2, "kernel_size": 7}, {"kernel_size": 7}),
    ({"architecture": "dense", "conv_blocks": 3, "kernel_size": 7}, {"conv_blocks": 3}),  # ignored by dense
    ({"loss": "mse", "output": "softmax"}, {"loss": "mse"}),
]


@pytest.mark.parametrize(("given", "expected"), RESOLVED)
def test_resolve_params(given: dict[str, Any], expected: dict[str, Any]) -> None:
    before = dict(given)
    resolved = resolve_params(given)
    assert {key: resolved[key] for key in expected} == expected
    assert set(resolved) == {*PARAMS, "widths"}
    assert given == before  # the input is not changed
    assert resolve_params(resolved) == resolved  # idempotent: a resolved set resolves to itself


# (given, fragments the message must hold)
UNRESOLVABLE: list[tuple[dict[str, Any], list[str]]] = [
    ({"depth": 2, "width_3": 5}, ["'width_3'", "depth is 2"]),
    ({"width_2": 5}, ["'width_2'", "depth is 1"]),
    ({"loss": "mse", "output": "logits"}, ["'output'", "'logits'", "'mse'", "use 'softmax'"]),
    ({"depth": 0}, ["'depth'", "0", "1 <= depth <= 64"]),
    ({"activation": "gelu"}, ["'activation'", "'gelu'", "relu, sigmoid, tanh, elu"]),
    ({"lr": 0.1}, ["'lr'", "0.1", "learning_rate"]),
    ({"depth": 2, "widths": [8]}, ["'widths'", "[8]", "list of 2 layer widths"]),
    ({"depth": 2, "widths": "8,4"}, ["'widths'", "'8,4'", "list of 2 layer widths"]),
    ({"depth": 2, "widths": [8, 0]}, ["'width_2'", "0", "1 <= width_2 <= 65536"]),
    ({"depth": 2, "widths": [8, 4], "width_1": 16}, ["'width_1'", "16", "contradicts", "[8, 4]"]),
    (
        {"architecture": "conv", "conv_blocks": 3, "kernel_size": 5},
        ["'conv_blocks' = 3", "'kernel_size' = 5", "28x28", "conv_blocks <= 2"],
    ),
    (
        {"architecture": "conv", "conv_blocks": 3, "kernel_size": 4},
        ["'conv_blocks' = 3", "'kernel_size' = 4", "conv_blocks <= 2"],
    ),
    ({"architecture": "conv", "conv_blocks": 3, "kernel_size": 7}, ["'kernel_size' = 7", "conv_blocks <= 2"]),
]


@pytest.mark.parametrize(("given", "fragments"), UNRESOLVABLE)
def test_resolve_params_rejects(given: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ParamError) as info:
        resolve_params(given)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("blocks", "kernel", "side"),
    [(1, 3, 13), (2, 3, 5), (3, 3, 1), (2, 7, 2), (2, 6, 3), (3, 4, 0), (3, 5, 0), (1, 7, 11)],
)
def test_conv_output_size(blocks: int, kernel: int, side: int) -> None:
    assert conv_output_size(blocks, kernel) == side


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves(name: str) -> None:
    resolved = resolve_params(PRESETS[name].params)
    assert resolved["depth"] == len(resolved["widths"])
    assert model_summary(PRESETS[name].params)


@pytest.mark.parametrize(
    ("params", "summary"),
    [
        ({}, "dense 1x512 relu, sparse_categorical_crossentropy, rmsprop lr=0.001"),
        (
            {"depth": 2, "width": 500, "activation": "sigmoid", "loss": "mse", "optimizer": "adam"},
            "dense 2x500 sigmoid",
        ),
        ({"depth": 3, "width_2": 64}, "dense 512-64-512 relu"),
        ({"architecture": "conv", "width": 64}, "conv 2 blocks (32 filters, 3x3) + dense 1x64 relu"),
        ({"optimizer": "sgd"}, "sgd lr=0.01"),
    ],
)
def test_model_summary(params: dict[str, Any], summary: str) -> None:
    assert summary in model_summary(params)


# --- parse_assignment ----------------------------------------------------------------------

PARSED: list[tuple[str, tuple[str, Any]]] = [
    ("depth=3", ("depth", 3)),
    (" depth = 3 ", ("depth", 3)),
    ("learning_rate=1e-5", ("learning_rate", 1e-5)),
    ("learning_rate=1.0e-5", ("learning_rate", 1e-5)),
    ("learning_rate=3E-4", ("learning_rate", 3e-4)),
    ("learning_rate=0.01", ("learning_rate", 0.01)),
    ("dropout=.5", ("dropout", 0.5)),
    ("activation=relu", ("activation", "relu")),
    ("activation='tanh'", ("activation", "tanh")),
    ("optimizer=sgd", ("optimizer", "sgd")),
    ("width_2=64", ("width_2", 64)),
    ("epochs=1e2", ("epochs", 100.0)),
    ("loss=a=b", ("loss", "a=b")),
    ("activation={", ("activation", "{")),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse_assignment(text: str, expected: tuple[str, Any]) -> None:
    key, value = parse_assignment(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


UNPARSABLE: list[tuple[str, list[str]]] = [
    ("depth", ["'depth'", "key=value", "depth, width"]),
    ("=3", ["'=3'", "key=value"]),
    ("", ["''", "key=value"]),
    ("depth=", ["'depth='", "'depth' no value", "depth=VALUE"]),
    ("depth=  ", ["'depth'", "no value"]),
    ("depth=~", ["'depth=~'", "no value"]),
    ("depth=null", ["'depth=null'", "no value"]),
]


@pytest.mark.parametrize(("text", "fragments"), UNPARSABLE)
def test_parse_assignment_rejects(text: str, fragments: list[str]) -> None:
    with pytest.raises(ParamError) as info:
        parse_assignment(text)
    for fragment in fragments:
        assert fragment in str(info.value)


# What a --param flag goes through: parse, then check. Rejected rows name key, value and the rule.
FLAGS: list[tuple[str, Any, list[str]]] = [
    ("depth=2", 2, []),
    ("epochs=1e2", 100, []),
    ("learning_rate=1e-5", 1e-5, []),
    ("depth=two", None, ["'depth'", "'two'", "must be an integer (1 <= depth <= 64)"]),
    ("depth=2.5", None, ["'depth'", "2.5", "must be an integer"]),
    ("activation=on", None, ["'activation'", "True", "choose one of relu"]),
    ("dropout=1", None, ["'dropout'", "1.0", "0 <= dropout < 1"]),
    ("optimiser=adam", None, ["'optimiser'", "'adam'", "allowed:"]),
    ("learning_rate=[0.1, 0.01]", None, ["'learning_rate'", "[0.1, 0.01]", "must be a number"]),
]


@pytest.mark.parametrize(("text", "expected", "fragments"), FLAGS)
def test_param_flag_pipeline(text: str, expected: Any, fragments: list[str]) -> None:
    key, value = parse_assignment(text)
    if not fragments:
        assert check_value(key, value) == expected
        return
    with pytest.raises(ParamError) as info:
        check_value(key, value)
    for fragment in fragments:
        assert fragment in str(info.value)
