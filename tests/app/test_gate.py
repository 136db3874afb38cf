"""The significance gate's decision on paired predictions built by hand (no models, no stores)."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_sweep.app._promote import Gate, Score, judge
from mnist_sweep.contract import (
    TAG_GATE_CI_HIGH,
    TAG_GATE_CI_LOW,
    TAG_GATE_DECISION,
    TAG_GATE_DISCORDANT,
    TAG_GATE_P_VALUE,
)

N = 10_000


def paired(*, both: int, candidate_only: int, champion_only: int) -> tuple[Score, Score]:
    """Two scores on N images: ``both`` right for both models, then each model's own wins."""
    candidate = np.zeros(N, dtype=bool)
    champion = np.zeros(N, dtype=bool)
    candidate[:both] = champion[:both] = True
    candidate[both : both + candidate_only] = True
    champion[both + candidate_only : both + candidate_only + champion_only] = True
    return (
        Score(int(candidate.sum()), N, right=candidate),
        Score(int(champion.sum()), N, right=champion),
    )


def test_five_images_better_of_ten_thousand_is_refused_as_noise() -> None:
    candidate, champion = paired(both=9675, candidate_only=30, champion_only=25)
    assert (candidate.correct, champion.correct) == (9705, 9700)

    gate = judge(candidate, champion, min_improvement=0.0)

    assert not gate.passed and gate.kind == "not_significant"
    assert gate.test is not None and gate.test.p_value > 0.05
    assert gate.gain == pytest.approx(0.0005)
    assert gate.decision.startswith("not significant: p = ")
    tags = gate.tags()
    assert tags[TAG_GATE_DISCORDANT] == "30,25"
    assert float(tags[TAG_GATE_P_VALUE]) == gate.test.p_value
    assert float(tags[TAG_GATE_CI_LOW]) < 0 < float(tags[TAG_GATE_CI_HIGH])


def test_a_clear_win_passes_and_the_margin_still_applies() -> None:
    candidate, champion = paired(both=9600, candidate_only=90, champion_only=20)
    gate = judge(candidate, champion, min_improvement=0.001)
    assert gate.passed and gate.kind == "promoted"
    assert gate.test is not None and gate.test.p_value < 1e-6
    assert gate.interval is not None and 0 < gate.interval.low < gate.gain < gate.interval.high  # type: ignore[operator]
    margin = judge(candidate, champion, min_improvement=0.01)
    assert not margin.passed and margin.kind == "rejected" and "below the margin" in margin.decision
    strict = judge(candidate, champion, min_improvement=0.0, alpha=1e-12)
    assert not strict.passed and strict.kind == "not_significant"


def test_worse_or_equal_is_rejected() -> None:
    candidate, champion = paired(both=9600, candidate_only=20, champion_only=90)
    gate = judge(candidate, champion, min_improvement=0.0)
    assert gate.kind == "rejected" and gate.decision.startswith("rejected: not better")
    same, other = paired(both=9700, candidate_only=0, champion_only=0)
    assert judge(same, other, min_improvement=0.0).kind == "rejected"


def test_no_champion_is_promoted_without_a_p_value() -> None:
    candidate, _ = paired(both=10, candidate_only=0, champion_only=0)
    gate = judge(candidate, None)
    assert gate == Gate(True, "promoted: no champion", "promoted")
    assert TAG_GATE_P_VALUE not in gate.tags() and gate.tags()[TAG_GATE_DECISION] == "promoted: no champion"


def test_a_score_read_from_tags_is_judged_on_the_margin_alone() -> None:
    candidate, _ = paired(both=9705, candidate_only=0, champion_only=0)
    gate = judge(candidate, Score(9700, N), min_improvement=0.0)
    assert gate.passed and gate.test is None


def test_a_promotion_of_a_tied_pick_says_it_is_a_tie() -> None:
    from mnist_sweep.app._promote import Promotion

    candidate, champion = paired(both=9675, candidate_only=30, champion_only=25)
    fields = {
        "model_name": "m",
        "alias": "champion",
        "study": "best",
        "trial": 0,
        "dataset": "mnist",
        "data_sha256": "",
        "candidate_uri": "models:/m-0",
        "candidate": candidate,
        "champion_version": "3",
        "champion": champion,
        "min_improvement": 0.0,
        "decision": "not_significant",
        "gate": judge(candidate, champion, min_improvement=0.0),
    }
    plain = Promotion(**fields)  # type: ignore[arg-type]
    tied = Promotion(**fields, ties=(4,))  # type: ignore[arg-type]

    assert "tie" not in plain.message() and plain.to_dict()["ties"] == []
    assert tied.message().startswith(plain.message())
    assert tied.message().endswith(
        " Note: trial(s) 4 tie trial 0 on validation; it is the first of them by trial number, not the better one."
    )
    assert tied.to_dict()["ties"] == [4] and tied.to_dict()["reason"] == tied.message()
