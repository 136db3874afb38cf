"""The nightly file: its schema, its defaults and precise errors (no training, no stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mnist_sweep.config import load_nightly
from mnist_sweep.errors import ConfigError
from nightly_support import SPACE, write_config

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- the file


def test_shipped_nightly_file_validates() -> None:
    config = load_nightly(ROOT / "sweeps" / "nightly.yaml")
    assert config.name == "nightly"
    assert [s.study_name for s in config.spaces] == ["best"]
    assert config.spaces[0].limit is None and config.spaces[0].train_limit is None, "on full data"
    assert config.budget.n_trials and config.budget.timeout
    assert config.promotion.alias == "champion"
    assert config.warm_start.champion and config.warm_start.previous_top_k == 3
    assert config.retention.nights and config.retention.unregistered_models
    assert config.storage is None and config.tracking_uri is None


def test_defaults_and_relative_space_paths(tmp_path: Path) -> None:
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "tiny.yaml").write_text(SPACE)
    (tmp_path / "jobs").mkdir()
    path = tmp_path / "jobs" / "n.yaml"
    path.write_text("spaces: ../spaces/tiny.yaml\nbudget: {timeout: 60}\n")
    config = load_nightly(path)
    assert config.name == "nightly"
    assert Path(config.spaces[0].source) == tmp_path / "spaces" / "tiny.yaml"
    assert config.budget.n_trials is None and config.budget.timeout == 60
    assert config.promotion.metric == "test_accuracy" and config.promotion.alias == "champion"
    assert config.promotion.alpha == 0.05 and config.promotion.min_robust_accuracy is None
    assert config.warm_start.champion and config.warm_start.previous_top_k == 3
    assert config.retention.nights is None and config.lock_ttl == 300


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown top key", {"nights": 3}, ["nightly.yaml: nights: unknown key 'nights'", "allowed: name, spaces"]),
    ("typo suggests", {"retension": {}}, ["retension", "did you mean 'retention'?"]),
    ("spaces missing", {"spaces": None}, ["spaces", "non-empty list"]),
    ("spaces empty", {"spaces": []}, ["spaces", "non-empty list"]),
    ("space not a string", {"spaces": [3]}, ["spaces[0]", "must be a string"]),
    ("space file missing", {"spaces": ["nope.yaml"]}, ["spaces[0]", "nope.yaml: file not found"]),
    ("space file invalid", {"spaces": ["bad.yaml"]}, ["spaces[0]", "bad.yaml: space.width", "must be a mapping"]),
    ("space twice", {"spaces": ["tiny.yaml", "tiny.yaml"]}, ["spaces[1]", "already run by spaces[0]"]),
    ("mixed datasets", {"spaces": ["tiny.yaml", "fashion.yaml"]}, ["spaces[1]", "must share a dataset"]),
    ("bad job name", {"name": "night ly"}, ["name", "letters, digits"]),
    ("name too long", {"name": "n" * 120}, ["spaces[0]", "exceed 128 characters"]),
    ("budget empty", {"budget": {}}, ["budget", "at least one of `n_trials`"]),
    ("budget not a mapping", {"budget": 3}, ["budget", "must be a mapping"]),
    ("zero trials", {"budget": {"n_trials": 0}}, ["budget.n_trials", "must be >= 1, got 0"]),
    ("string timeout", {"budget": {"timeout": "4h"}}, ["budget.timeout", "must be a number"]),
    ("budget unknown key", {"budget": {"n_trials": 2, "trials": 3}}, ["budget.trials", "unknown key"]),
    ("bad storage", {"storage": "redis://x"}, ["storage", "unsupported"]),
    ("bad tracking uri", {"tracking_uri": "ftp://x"}, ["tracking_uri", "unsupported scheme"]),
    ("unknown metric", {"promotion": {"metric": "val_accuracy"}}, ["promotion.metric", "measures test_accuracy"]),
    ("metric typo", {"promotion": {"metric": "test_acuracy"}}, ["did you mean 'test_accuracy'?"]),
    ("negative margin", {"promotion": {"margin": -0.1}}, ["promotion.margin", "at least 0 and below 1"]),
    ("margin of one", {"promotion": {"margin": 1}}, ["promotion.margin", "at least 0 and below 1"]),
    ("margin not a number", {"promotion": {"margin": "a lot"}}, ["promotion.margin", "must be a number"]),
    ("model name with slash", {"promotion": {"model_name": "a/b"}}, ["promotion.model_name", "without '/'"]),
    ("model name with quote", {"promotion": {"model_name": "a'b"}}, ["promotion.model_name", "quotes"]),
    ("alias latest", {"promotion": {"alias": "latest"}}, ["promotion.alias", "'latest'"]),
    ("alias like a version", {"promotion": {"alias": "v3"}}, ["promotion.alias", "like 'v1'"]),
    ("promotion unknown key", {"promotion": {"alias_name": "x"}}, ["promotion.alias_name", "did you mean 'alias'?"]),
    ("alpha zero", {"promotion": {"alpha": 0}}, ["promotion.alpha", "must be in (0, 1]"]),
    ("alpha above one", {"promotion": {"alpha": 1.5}}, ["promotion.alpha", "significance level"]),
    ("alpha not a number", {"promotion": {"alpha": "low"}}, ["promotion.alpha", "must be a number"]),
    ("robust floor above one", {"promotion": {"min_robust_accuracy": 2}}, ["promotion.min_robust_accuracy", "[0, 1]"]),
    ("warm start not bool", {"warm_start": {"champion": "yes"}}, ["warm_start.champion", "true or false"]),
    ("negative top k", {"warm_start": {"previous_top_k": -1}}, ["warm_start.previous_top_k", ">= 0"]),
    ("zero nights", {"retention": {"nights": 0}}, ["retention.nights", "must be >= 1"]),
    ("float models", {"retention": {"unregistered_models": 1.5}}, ["retention.unregistered_models", "integer"]),
    ("zero ttl", {"lock": {"ttl": 0}}, ["lock.ttl", "must be > 0 seconds"]),
    ("lock unknown key", {"lock": {"timeout": 3}}, ["lock.timeout", "unknown key"]),
]


def test_robust_gate_settings_are_read(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"promotion": {"metric": "robust_accuracy", "alpha": 0.01, "min_robust_accuracy": 0.9}}
    )
    promotion = load_nightly(path).promotion
    assert (promotion.metric, promotion.alpha, promotion.min_robust_accuracy) == ("robust_accuracy", 0.01, 0.9)


@pytest.mark.parametrize(("changes", "expected"), [r[1:] for r in INVALID], ids=[r[0] for r in INVALID])
def test_invalid_nightly_file_is_rejected_precisely(
    tmp_path: Path, changes: dict[str, Any], expected: list[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(
        SPACE.replace("width: {type: categorical, choices: [8, 16, 32, 64]}", "width: 3")
    )
    (tmp_path / "fashion.yaml").write_text(SPACE.replace("study: tiny", "study: f").replace("mnist", "fashion_mnist"))
    path = write_config(tmp_path, changes)
    with pytest.raises(ConfigError) as info:
        load_nightly(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("- a\n", "top level must be a mapping"),
        ("spaces: [a\n", "invalid YAML at line 2"),
        ("budget: {n_trials: 1}\n", "spaces: required key is missing"),
        ("spaces: x.yaml\nbudget: {n_trials: 1}\nbudget: {n_trials: 2}\n", "duplicate key 'budget'"),
    ],
)
def test_invalid_yaml_is_rejected(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "n.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_nightly(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_nightly("nope.yaml")
