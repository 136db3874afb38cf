"""How much memory one process keeps per trained model: what ``--max-trials-per-worker`` bounds."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Measured 2.6 MB per tiny model on TensorFlow 2.21 / Keras 3.15 (graphs Keras keeps per model).
MAX_MB_PER_TRIAL = 4.0

SCRIPT = textwrap.dedent(
    """
    import gc, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import psutil
    from mnist_sweep.model import load_dataset, train

    dataset = load_dataset("mnist", limit=200)
    process = psutil.Process()
    for trial in range(30):
        result = train({"width": 16, "epochs": 1, "batch_size": 64}, dataset, seed=trial)
        assert result.ok, result.failure
        del result
        gc.collect()
        print(process.memory_info().rss, flush=True)
    """
)


@pytest.mark.slow
def test_rss_growth_over_30_tiny_trials_in_one_process_is_bounded() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rss = [int(line) / 2**20 for line in done.stdout.split()]
    assert len(rss) == 30
    # From trial 5 on (start-up allocations done): the growth per trial stays under the bound, so
    # a worker recycled every N trials holds at most N times that much more than a fresh one.
    per_trial = (rss[-1] - rss[4]) / 25
    assert per_trial < MAX_MB_PER_TRIAL, f"{per_trial:.2f} MB per trial: {[round(x) for x in rss]}"
