"""Progress output: a redrawn bar on a terminal, plain lines in logs, nothing when quiet."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from mnist_sweep.display import _progress as progress
from mnist_sweep.display._progress import CLEAR_LINE, Progress

EPOCH = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75, "seconds": 1.25}


class FakeStream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def one_trial(p: Progress) -> None:
    p.message("study 'tiny': mnist")
    p.trial_started(0, "dense 1x32 relu")
    for epoch in (1, 2, 3):
        p.epoch(0, epoch, 3, EPOCH)
    p.trial_finished(0, "COMPLETE", 0.75, 0.75)
    p.trial_started(1, "dense 1x32 sigmoid")
    p.epoch(1, 1, 3, {**EPOCH, "loss": float("nan")})
    p.trial_finished(1, "FAIL", None, 0.75, "diverged: loss is nan")
    p.close()


def test_not_a_tty_gets_plain_lines() -> None:
    stream = FakeStream(tty=False)
    one_trial(Progress(total=4, stream=stream))
    text = stream.getvalue()

    assert "\r" not in text and "\x1b" not in text
    assert text.isascii()
    lines = text.splitlines()
    assert lines == [
        "study 'tiny': mnist",
        "[....................] 0/4  best --  ETA --:--  trial 0: dense 1x32 relu",
        "  trial 0 [###.......] epoch 1/3: loss 0.5000 acc 0.8000 val_loss 0.6000 val_acc 0.7500 (1.2s)",
        "  trial 0 [######....] epoch 2/3: loss 0.5000 acc 0.8000 val_loss 0.6000 val_acc 0.7500 (1.2s)",
        "  trial 0 [##########] epoch 3/3: loss 0.5000 acc 0.8000 val_loss 0.6000 val_acc 0.7500 (1.2s)",
        "  trial 0 COMPLETE value 0.7500",
        lines[6],  # its ETA depends on the clock
        "  trial 1 [###.......] epoch 1/3: loss - acc 0.8000 val_loss 0.6000 val_acc 0.7500 (1.2s)",
        "  trial 1 FAIL - diverged: loss is nan",
    ]
    assert re.fullmatch(r"\[#####\.{15}\] 1/4  best 0\.7500  ETA \d\d:\d\d  trial 1: dense 1x32 sigmoid", lines[6])


def test_a_tty_redraws_the_epoch_bar_in_place() -> None:
    stream = FakeStream(tty=True)
    p = Progress(total=4, stream=stream)
    p.trial_started(0, "dense 1x32 relu")
    start = len(stream.getvalue())
    p.epoch(0, 1, 3, EPOCH)
    p.epoch(0, 2, 3, EPOCH)
    redraws = stream.getvalue()[start:]

    assert redraws.count(CLEAR_LINE) == 2 and "\n" not in redraws
    assert redraws.endswith("epoch 2/3: loss 0.5000 acc 0.8000 val_loss 0.6000 val_acc 0.7500 (1.2s)")
    p.trial_finished(0, "COMPLETE", 0.75, 0.75)
    assert stream.getvalue().endswith(CLEAR_LINE + "  trial 0 COMPLETE value 0.7500\n")  # the bar line is cleared
    p.epoch(1, 1, 3, EPOCH)
    p.close()
    assert stream.getvalue().endswith("\n")  # the prompt comes back on a line of its own


def test_a_tty_line_never_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((40, 24)))
    stream = FakeStream(tty=True)
    Progress(total=4, stream=stream).epoch(0, 1, 3, EPOCH)

    drawn = stream.getvalue().removeprefix(CLEAR_LINE)
    assert len(drawn) == 39 and drawn.endswith("...")


@pytest.mark.parametrize("tty", [True, False])
def test_quiet_prints_nothing(tty: bool) -> None:
    stream = FakeStream(tty=tty)
    one_trial(Progress(total=4, quiet=True, stream=stream))

    assert stream.getvalue() == ""


def test_eta_of_a_resumed_study_counts_only_this_runs_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    stream = FakeStream(tty=False)
    p = Progress(total=10, stream=stream)
    p.done = 8  # finished by an earlier invocation
    clock[0] += 30.0
    p.trial_finished(8, "COMPLETE", 0.9, 0.9)
    p.trial_started(9, "dense")

    # one trial in 30 s here, one left: 30 s (not 30 s / 9 trials)
    assert stream.getvalue().splitlines()[-1].startswith("[##################..] 9/10  best 0.9000  ETA 00:30")


def test_without_a_trial_budget_the_bar_counts_trials() -> None:
    stream = FakeStream(tty=False)
    p = Progress(total=None, stream=stream)
    p.trial_started(0, "dense")

    assert stream.getvalue() == "0 trials  best --  ETA --:--  trial 0: dense\n"


def test_a_sweep_logs_plain_progress_lines_without_keras_bars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mnist_sweep.config._space import load_space
    from mnist_sweep.sweep import SweepOptions, run_sweep

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(
        "study: tiny\ndataset: mnist\nlimit: 300\nobjective: {metric: val_accuracy, direction: maximize}\n"
        "sampler: {name: random, seed: 0}\npruner: {name: none}\nbudget: {n_trials: 1}\n"
        "fixed: {epochs: 2, batch_size: 64, width: 16}\nspace:\n  activation: {type: categorical, choices: [relu]}\n"
    )
    options = SweepOptions(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    run_sweep(load_space(space_file), options)
    out, err = capsys.readouterr()

    assert "━" not in out + err and "\x1b" not in out + err  # no Keras progress bars, no ANSI codes in logs
    assert "[....................] 0/1  best --  ETA --:--  trial 0: dense 1x16 relu" in err
    assert re.search(r"^  trial 0 \[##########\] epoch 2/2: loss \d\.\d{4} .*\(\d+\.\ds\)$", err, re.M)
    assert re.search(r"^  trial 0 COMPLETE value 0\.\d{4}$", err, re.M)
