"""bench/rung_ranking.py's replays: promotion rules run on fixed learning curves, with known answers."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mnist_sweep.sweep import _asha

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def ranking() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("rung_ranking")
    finally:
        sys.path.remove(str(BENCH))


def curves(ranking: ModuleType) -> list[Any]:
    """Nine configurations, rungs 1, 3, 9: trial 6 is the best after the last epoch, only 4th after the first.

    Value at epoch e: a start (the rank at epoch 1) plus a per-epoch gain (what later epochs add).
    """
    starts = [0.50, 0.60, 0.70, 0.80, 0.90, 0.85, 0.75, 0.40, 0.30]
    gains = [0.001, 0.002, 0.003, 0.004, 0.001, 0.002, 0.030, 0.001, 0.001]
    return [
        ranking.Curve(n, {e: starts[n] + gains[n] * (e - 1) for e in range(1, 10)}, test=None)
        for n in range(len(starts))
    ]


def test_synchronous_halving_keeps_the_top_third_at_each_rung(ranking: ModuleType) -> None:
    data = curves(ranking)
    # Epoch 1: 4, 5, 3 go on (9 // 3); epoch 3: 4 (0.902) beats 5 (0.854) and 3 (0.808); 6 never got there.
    outcome = ranking.synchronous(data, [1, 3, 9], 3)
    assert outcome.finished == [4]
    assert outcome.epochs == 9 * 1 + 3 * 2 + 1 * 6
    wider = ranking.synchronous(data, [1, 3, 9], 3, last_top=2)
    assert wider.finished == [4, 5] and wider.epochs == 9 + 6 + 2 * 6


def test_the_asha_replay_runs_the_engines_rule(ranking: ModuleType) -> None:
    data = curves(ranking)
    quota = ranking.asha_replay(data, _asha.Rungs(1, 9, 3, promotion_quota=True))
    # Arrival order: after 0, 1, 2 the best of them (2) goes on; after 3, 4, 5 one slot: 4; after
    # 6, 7, 8 the last: 5 (3 is below the top third by then). Rung 3 then holds 2, 4, 5: one slot, 4.
    assert quota.finished == [4]
    assert quota.epochs == 9 * 1 + 3 * 2 + 1 * 6
    plain = ranking.asha_replay(data, _asha.Rungs(1, 9, 3))
    assert set(quota.finished) <= set(plain.finished) and plain.epochs >= quota.epochs


def test_spearman_is_one_for_the_same_order_and_minus_one_reversed(ranking: ModuleType) -> None:
    assert ranking.spearman([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert ranking.spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
