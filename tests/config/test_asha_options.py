"""``pruner: {name: asha}``: options that cannot work give one error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_sweep.config import load_space
from mnist_sweep.errors import ConfigError
from spaces import DEFAULT_SPACE, write_space


def _space(tmp_path: Path, pruner: str, *, fixed: str = "{epochs: 8, optimizer: adam}", space: str = DEFAULT_SPACE):
    path = write_space(tmp_path, fixed=fixed, space=space)
    path.write_text(path.read_text().replace("pruner: {name: none}", f"pruner: {pruner}"))
    return path


def test_defaults_fill_in_from_the_epochs(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path, "{name: asha}"))
    assert dict(space.pruner.options) == {
        "min_resource": 1,
        "reduction_factor": 3,
        "bootstrap_count": 0,
        "promotion_quota": False,
        "max_resource": 8,
    }
    from mnist_sweep.sweep._asha import rungs_of

    rungs = rungs_of(space)
    assert rungs is not None and rungs.epochs == [1, 3, 8] and rungs.bootstrap_count == 0
    patient = rungs_of(load_space(_space(tmp_path, "{name: asha, options: {bootstrap_count: 6}}")))
    assert patient is not None and patient.bootstrap_count == 6
    capped = rungs_of(load_space(_space(tmp_path, "{name: asha, options: {promotion_quota: true}}")))
    assert capped is not None and capped.promotion_quota and not rungs.promotion_quota
    assert [rungs.next_stop(done) for done in (0, 1, 2, 3, 7)] == [1, 3, 3, 8, 8]
    shorter = space.with_overrides(epochs=4)
    assert shorter.pruner.options["max_resource"] == 4


@pytest.mark.parametrize(
    ("pruner", "key", "says"),
    [
        ("{name: asha, options: {min_resource: 4, max_resource: 4}}", "pruner.options.max_resource", "min_resource <"),
        ("{name: asha, options: {min_resource: 8}}", "pruner.options.min_resource", "min_resource <"),
        ("{name: asha, options: {reduction_factor: 1}}", "pruner.options.reduction_factor", ">= 2"),
        ("{name: asha, options: {max_resource: 9}}", "pruner.options.max_resource", "must not exceed"),
        ("{name: asha, options: {rungs: 3}}", "pruner.options", "rungs"),
        ("{name: asha, options: {bootstrap_count: -1}}", "pruner.options.bootstrap_count", ">= 0"),
        ("{name: asha, options: {promotion_quota: sometimes}}", "pruner.options.promotion_quota", "true or false"),
        ("{name: asha, options: {brackets: 0}}", "pruner.options.brackets", ">= 1"),
        ("{name: asha, options: {brackets: 4}}", "pruner.options.brackets", "at most 3 with rungs at epochs 1, 3"),
        ("{name: asha, options: {brackets: two}}", "pruner.options.brackets", "integer"),
    ],
)
def test_options_that_cannot_work(tmp_path: Path, pruner: str, key: str, says: str) -> None:
    path = _space(tmp_path, pruner)
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}"), message
    assert says in message and "\n" not in message


def test_a_sampled_epoch_count_is_refused(tmp_path: Path) -> None:
    space = DEFAULT_SPACE + "  epochs: {type: int, low: 2, high: 6}\n"
    path = _space(tmp_path, "{name: asha}", fixed="{optimizer: adam}", space=space)
    with pytest.raises(ConfigError, match=r"space\.epochs: the asha pruner needs a fixed `epochs`"):
        load_space(path)


def test_repeated_seeds_are_refused(tmp_path: Path) -> None:
    path = _space(tmp_path, "{name: asha}")
    path.write_text(path.read_text() + "repeats: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert str(caught.value).startswith(f"{path}: repeats: the asha pruner"), caught.value


def test_brackets_start_one_rung_later_each(tmp_path: Path) -> None:
    from mnist_sweep.sweep._asha import rungs_of

    rungs = rungs_of(load_space(_space(tmp_path, "{name: asha, options: {brackets: 3}}")))
    assert rungs is not None and rungs.brackets == 3
    assert [rungs.bracket(b).epochs for b in range(3)] == [[1, 3, 8], [3, 8], [8]], "the last trains straight to 8"
    # Hyperband's shares, eta**s / (s + 1) for s halvings: 9/3, 3/2, 1/1.
    assert rungs.bracket_weights() == [3.0, 1.5, 1.0]
    space = load_space(_space(tmp_path, "{name: asha, options: {brackets: 3}}"))
    with pytest.raises(ConfigError, match=r"^--epochs: asha brackets must be at most 2 with rungs at epochs 1 and 3"):
        space.with_overrides(epochs=3)  # rungs 1, then 3: two brackets at most
