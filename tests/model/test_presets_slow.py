"""Every lecture preset at its full 20 epochs, as ``mnist-sweep train --preset`` runs it, against its claim.

Each preset's reference text states what it measures; :data:`CLAIMS` pins those figures and the
tolerance each is held to. The runs take 1 to 2.5 minutes each on two shared CPU cores (about 9
minutes for all five), so they are ``slow`` (``make test-all``); the check that the reference
text states the pinned figures is fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mnist_sweep.app._train import TrainJob, run_train
from mnist_sweep.model._presets import PRESETS

CHANCE = 0.15  # ten balanced classes: chance is 0.10; the lecture's "stuck" runs show 0.10-0.11
TEST_IMAGES = 10_000


@dataclass(frozen=True)
class Claim:
    """What a preset claims: measured train and test accuracy within ``tolerance``, or chance."""

    train: float | None = None
    test: float | None = None
    tolerance: float = 0.0
    at_chance: bool = False
    lecture_test: float | None = None  # the lecture's own figure, held to within one point


CLAIMS = {
    "lecture-2layer": Claim(train=0.341, test=0.355, tolerance=0.05),
    "lecture-2layer-ce": Claim(train=0.908, test=0.895, tolerance=0.02),
    "lecture-10-sigmoid-mse": Claim(train=0.091, test=0.103, at_chance=True),
    "lecture-10-sigmoid-ce": Claim(train=0.097, test=0.103, at_chance=True),
    "lecture-10-relu-ce": Claim(train=0.994, test=0.9526, tolerance=0.01, lecture_test=0.9545),
}


def test_every_lecture_preset_has_a_claim_its_reference_states() -> None:
    assert set(CLAIMS) == {name for name in PRESETS if name.startswith("lecture-")}
    for name, claim in CLAIMS.items():
        reference = PRESETS[name].reference
        assert f"train {claim.train:g}" in reference and f"test {claim.test:g}" in reference, name
        assert ("chance" in reference) == claim.at_chance, name
        assert PRESETS[name].train_limit == 10_000


@pytest.mark.slow
@pytest.mark.full_data
@pytest.mark.parametrize("name", list(CLAIMS))
def test_lecture_preset_reproduces_its_claim(name: str, tmp_path: Path) -> None:
    claim = CLAIMS[name]
    job = TrainJob.from_cli(preset=name, assignments=[], dataset=None, epochs=None, batch_size=None, limit=None, seed=0)
    result, _ = run_train(job, data_dir=None, out=tmp_path, quiet=True)
    assert result.ok and result.epochs_trained == 20
    assert result.test_probabilities is not None and len(result.test_probabilities) == TEST_IMAGES
    train, val, test = result.final("accuracy"), result.final("val_accuracy"), result.test_accuracy
    assert train is not None and val is not None and test is not None
    if claim.at_chance:
        assert max(train, val, test) <= CHANCE, (train, val, test)
        return
    assert claim.train is not None and claim.test is not None
    assert train == pytest.approx(claim.train, abs=claim.tolerance)
    assert test == pytest.approx(claim.test, abs=claim.tolerance)
    if claim.lecture_test is not None:
        assert train >= 0.98
        assert test == pytest.approx(claim.lecture_test, abs=0.01)
