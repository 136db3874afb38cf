"""`mnist-sweep report` and `compare` on a tiny real study, and the answer in words on made-up ones."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

SPACE = """\
study: tiny
question: "Does relu beat sigmoid at depth 1 and 4?"
dataset: mnist
seed: 0
limit: 300
objective: {metric: val_accuracy, direction: maximize}
sampler: {name: grid}
pruner: {name: none}
budget: {n_trials: 3}
fixed: {epochs: 2, batch_size: 64, optimizer: adam, width: 32}
space:
  activation: {type: categorical, choices: [relu, sigmoid]}
  depth: {type: categorical, choices: [1, 4]}
"""
# 3 of the 4 grid points: enough for importances and parallel coordinates, and quick.

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = {
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "top_k_curves",
    "confusion_matrix",
    "misclassified",
    "robustness",
}


@dataclass(frozen=True)
class TinyStudy:
    folder: Path
    storage: str
    tracking_uri: str
    parent_run_id: str
    run_ids: tuple[str, ...]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[TinyStudy]:
    """A real 3-trial sweep (300 images, 2 epochs), shared by this module's tests."""
    from mnist_sweep.config._space import load_space
    from mnist_sweep.sweep import SweepOptions, run_sweep

    folder = tmp_path_factory.mktemp("tiny-study")
    (folder / "tiny.yaml").write_text(SPACE)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    before = Path.cwd()
    os.chdir(folder)  # MLflow puts the artifacts of a SQLite store under ./mlruns
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
            result = run_sweep(
                load_space(folder / "tiny.yaml"),
                SweepOptions(storage=storage, tracking_uri=tracking_uri, data_dir=str(data_dir), quiet=True),
            )
    finally:
        os.chdir(before)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    assert result.parent_run_id
    yield TinyStudy(
        folder=folder,
        storage=storage,
        tracking_uri=tracking_uri,
        parent_run_id=result.parent_run_id,
        run_ids=tuple(t.run_id or "" for t in result.trials),
    )


def cli(*args: str) -> Any:
    from mnist_sweep.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------- report


def test_report_writes_a_self_contained_page_and_logs_it_to_the_parent_run(
    tiny_study: TinyStudy, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    out = tmp_path / "rep"
    result = cli(
        "report", "tiny", "--storage", tiny_study.storage, "--tracking-uri", tiny_study.tracking_uri,
        "--out", str(out), "--top-k", "2",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "activation: " in result.output and " won with best val_accuracy" in result.output
    # One seed per trial: the lead is tested on the two best models' paired validation predictions.
    assert "(95% CI), " in result.output and "McNemar's exact test on both models' 60 validation" in result.output
    assert f"logged to MLflow run {tiny_study.parent_run_id}" in result.output
    page = (out / "report.html").read_text()
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes().startswith(PNG), name
    assert page.count('src="data:image/png;base64,') == len(FIGURES)  # self-contained
    assert "robust accuracy 0." in page and "rotation 0." in page
    assert "Does relu beat sigmoid at depth 1 and 4?" in page
    assert "What the study found" in page and "All trials" in page
    assert page.count('<span class="state state-COMPLETE">') == 3
    for run_id in tiny_study.run_ids:
        assert run_id[:12] in page
    assert "Fixed for every trial: batch_size=64, epochs=2, optimizer=adam, width=32" in page
    assert "on 60 mnist test images (limit 300, as the trial&#x27;s MLflow run recorded)" in page

    client = MlflowClient(tracking_uri=tiny_study.tracking_uri)
    logged = {a.path for a in client.list_artifacts(tiny_study.parent_run_id, "report")}
    assert logged == {"report/report.html", *(f"report/{name}.png" for name in FIGURES)}
    assert client.get_run(tiny_study.parent_run_id).info.status == "FINISHED"  # left as it was


def test_report_reads_a_journal_storage_too(tiny_study: TinyStudy, tmp_path: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from mnist_sweep.app._report import build_report

    journal = tmp_path / "optuna.log"
    optuna.copy_study(
        from_study_name="tiny",
        from_storage=tiny_study.storage,
        to_storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))),
    )
    result = build_report(
        "tiny",
        storage=f"journal:///{journal}",
        tracking_uri=tiny_study.tracking_uri,
        out=tmp_path / "rep",
        log_to_mlflow=False,
    )

    assert set(result.images) == FIGURES
    assert result.logged_run_id is None and result.notes == ()
    assert "3 of 3 trials completed" in result.answer


def test_report_of_a_study_without_results_says_what_is_missing(tmp_path: Path) -> None:
    import optuna

    from mnist_sweep.app._report import build_report

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="empty", storage=storage, direction="maximize")
    result = build_report("empty", storage=storage, out=tmp_path / "rep")

    assert result.images == {}
    assert "No trial has completed yet" in result.answer
    page = result.html.read_text()
    assert "Left out" in page and "no parent run" in page
    assert "<img" not in page


def test_report_of_an_unknown_study_lists_the_known_ones(tiny_study: TinyStudy) -> None:
    result = cli("report", "nope", "--storage", tiny_study.storage, "--tracking-uri", tiny_study.tracking_uri)

    assert result.exit_code == 1
    assert "no study 'nope'" in result.output and "studies there: tiny" in result.output


# --------------------------------------------------------------------------- compare


def test_compare_puts_studies_side_by_side(tiny_study: TinyStudy, tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for name in ("activation", "loss"):
        optuna.copy_study(
            from_study_name="tiny", from_storage=tiny_study.storage, to_storage=storage, to_study_name=name
        )
    out = tmp_path / "cmp"
    result = cli(
        "compare", "activation", "loss", "--storage", storage, "--tracking-uri", tiny_study.tracking_uri,
        "--out", str(out),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    # The same best model twice: no discordant image, nothing beyond noise.
    assert "study activation leads study loss by 0.00 ± 0.00 points (95% CI), within noise (p = 1.000" in result.output
    assert "0 discordant): run with `repeats: 3` to tell them apart." in result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["study", "dataset", "objective", "best"]
    assert [line.split()[0] for line in lines[2:4]] == ["activation", "loss"]
    assert "max val_accuracy" in lines[2] and "3/3" in lines[2]
    assert (out / "compare.png").read_bytes().startswith(PNG)
    with (out / "compare.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows] == ["study", "activation", "loss"]
    assert 'src="data:image/png;base64,' in (out / "compare.html").read_text()


def test_compare_charts_test_accuracy_when_objectives_differ(tmp_path: Path) -> None:
    from mnist_sweep.app._compare import compare_studies

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    made_up_study(storage, "by-accuracy", metric="val_accuracy", direction="maximize", values=[0.9, 0.95])
    made_up_study(storage, "by-loss", metric="val_loss", direction="minimize", values=[0.3, 0.2])
    result = compare_studies(["by-accuracy", "by-loss"], storage=storage, out=tmp_path / "cmp")

    assert result.chart_label == "test accuracy of the best trial"
    assert [r.best_value for r in result.rows] == [0.95, 0.2]
    assert "min val_loss" in result.table


# --------------------------------------------------------------------------- the answer in words


def made_up_study(storage: str | None, name: str, *, metric: str, direction: str, values: list[float]) -> Any:
    import optuna
    from optuna.distributions import FloatDistribution

    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    study.set_user_attr("objective_metric", metric)
    study.set_user_attr("dataset", "mnist")
    for i, value in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": 10.0 ** -(i + 2)},
                distributions={"learning_rate": FloatDistribution(1e-5, 1e-1, log=True)},
                value=value,
                user_attrs={"test_accuracy": 0.8 + i / 100, "history": [{metric: value}]},
            )
        )
    return study


def activation_by_depth_study(direction: str = "maximize") -> Any:
    """The lecture's result, made up: relu beats sigmoid at every depth; sigmoid at depth 10 stays at chance."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState

    sign = 1 if direction == "maximize" else -1
    study = optuna.create_study(study_name="activation", direction=direction)
    study.set_user_attr("objective_metric", "val_accuracy" if direction == "maximize" else "val_loss")
    dists = {
        "activation": CategoricalDistribution(["relu", "sigmoid"]),
        "depth": CategoricalDistribution([1, 10]),
        "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    }
    rows = [  # activation, depth, lr, val_accuracy, state
        ("relu", 1, 1e-3, 0.970, TrialState.COMPLETE),
        ("relu", 10, 2e-3, 0.965, TrialState.COMPLETE),
        ("sigmoid", 1, 1e-3, 0.930, TrialState.COMPLETE),
        ("sigmoid", 10, 1e-3, 0.110, TrialState.COMPLETE),
        ("relu", 10, 5e-2, 0.500, TrialState.PRUNED),
        ("sigmoid", 1, 1e-1, 0.0, TrialState.FAIL),
    ]
    for activation, depth, lr, acc, state in rows:
        complete = state == TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                params={"activation": activation, "depth": depth, "learning_rate": lr},
                distributions=dists,
                value=sign * acc if complete else None,
                intermediate_values={1: acc} if state == TrialState.PRUNED else None,
                state=state,
                user_attrs={
                    "history": [] if state == TrialState.FAIL else [{"val_accuracy": acc, "val_loss": -acc}],
                    "fail_reason": "diverged: loss is nan at epoch 1" if state == TrialState.FAIL else "",
                    "test_accuracy": acc - 0.01 if complete else None,
                },
            )
        )
    return study


def test_answer_names_the_winner_the_margin_and_the_settings_stuck_at_chance() -> None:
    from mnist_sweep.app._report import answer_in_words

    text = answer_in_words(activation_by_depth_study())

    assert text.startswith(
        "4 of 6 trials completed; the best, trial 0, reached val_accuracy 0.9700 (test accuracy 0.9600) "
        "with activation=relu, depth=1, learning_rate=0.001."
    )
    assert (
        "activation: relu won with best val_accuracy 0.9700 (mean 0.9675 over 2 trials), "
        "ahead of sigmoid (best 0.9300, mean 0.5200; 0.0400 behind)." in text
    )
    assert "relu beat sigmoid at every depth tried (1, 10)." in text
    assert "Stayed at chance (val_accuracy <= 0.15): activation=sigmoid with depth=10 (trial 3: 0.1100)." in text
    assert "learning_rate: the best 2 of 4 completed trials used 0.001 to 0.002" in text
    assert text.endswith("1 trial was pruned and 1 failed (diverged).")


def seeded_study(relu: list[float], tanh: list[float]) -> Any:
    """Two activations, one trial each, with per-seed values (``repeats: k``)."""
    import statistics

    import optuna
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(study_name="seeded", direction="maximize")
    study.set_user_attr("objective_metric", "val_accuracy")
    for activation, values in (("relu", relu), ("tanh", tanh)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"activation": activation},
                distributions={"activation": CategoricalDistribution(["relu", "tanh"])},
                value=statistics.fmean(values),
                user_attrs={"seed_values": values, "history": [{"val_accuracy": statistics.fmean(values)}]},
            )
        )
    return study


def test_answer_tests_the_lead_across_seeds_with_welch() -> None:
    from mnist_sweep import stats
    from mnist_sweep.app._report import answer_in_words

    clear = answer_in_words(seeded_study([0.970, 0.972, 0.971], [0.960, 0.962, 0.961]))
    welch = stats.welch([0.970, 0.972, 0.971], [0.960, 0.962, 0.961])
    assert (
        f"activation: relu leads tanh by 1.00 ± {welch.interval.half_width * 100:.2f} points (95% CI), "
        f"p = {welch.p_value:.2g}: beyond noise at 5% (Welch's t-test over 3 and 3 seeds)." in clear
    )
    noisy = answer_in_words(seeded_study([0.970, 0.960, 0.975], [0.965, 0.972, 0.958]))
    assert "within noise (p = 0." in noisy and "run with `repeats: 6` to tell them apart." in noisy


def test_answer_tests_one_seed_with_mcnemar_on_validation_predictions() -> None:
    import numpy as np

    from mnist_sweep.app._report import _findings, read_study

    study = seeded_study([0.9], [0.8])  # one seed each: no Welch
    right = {0: np.array([True] * 9 + [False]), 1: np.array([True] * 8 + [False] * 2)}
    text = " ".join(_findings(read_study(study), lambda t: right[t.number]))
    # Only the 9th image differs: one discordant pair, p = 1.
    assert "activation: relu leads tanh by 10.00 ± " in text
    assert (
        "within noise (p = 1.000; McNemar's exact test on both models' 10 validation predictions, 1 discordant)" in text
    )
    assert "leads" not in " ".join(_findings(read_study(study)))  # no models, no test, no claim


def test_answer_follows_the_direction_of_a_minimized_objective() -> None:
    from mnist_sweep.app._report import answer_in_words

    text = answer_in_words(activation_by_depth_study(direction="minimize"))

    # values are -accuracy: the lowest wins, so relu still wins, now by the lowest val_loss
    assert "activation: relu won with best val_loss -0.9700" in text
    assert "relu beat sigmoid at every depth tried (1, 10)." in text


def lecture_grid_study() -> Any:
    """``search_spaces/lecture.yaml``'s grid with the presets' measured validation accuracies (relu + MSE made up)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(study_name="lecture", direction="maximize")
    study.set_user_attr("objective_metric", "val_accuracy")
    dists = {
        "activation": CategoricalDistribution(["sigmoid", "relu"]),
        "loss": CategoricalDistribution(["mse", "categorical_crossentropy"]),
        "depth": CategoricalDistribution([2, 12]),
    }
    rows = [  # activation, loss, depth, val_accuracy
        ("sigmoid", "mse", 2, 0.345),
        ("sigmoid", "mse", 12, 0.100),
        ("sigmoid", "categorical_crossentropy", 2, 0.886),
        ("sigmoid", "categorical_crossentropy", 12, 0.100),
        ("relu", "mse", 2, 0.850),
        ("relu", "mse", 12, 0.800),
        ("relu", "categorical_crossentropy", 2, 0.930),
        ("relu", "categorical_crossentropy", 12, 0.952),
    ]
    for activation, loss, depth, acc in rows:
        study.add_trial(
            optuna.trial.create_trial(
                params={"activation": activation, "loss": loss, "depth": depth},
                distributions=dists,
                value=acc,
                user_attrs={"history": [{"val_accuracy": acc}], "test_accuracy": acc},
            )
        )
    return study


def test_answer_states_the_lectures_three_findings() -> None:
    from mnist_sweep.app._report import answer_in_words

    text = answer_in_words(lecture_grid_study())

    # 1. cross-entropy trains where MSE stalls
    assert "categorical_crossentropy beat mse at every activation tried (relu, sigmoid)." in text
    # 2. sigmoid trains at 2 layers, not at 12; relu trains the deep network best
    assert "The best depth depended on activation: 12 at activation relu; 2 at activation sigmoid." in text
    # 3. the deep sigmoid network stays at chance whatever the loss
    assert "Every trial with activation=sigmoid and depth=12 stayed at chance." in text
    assert "Every trial with activation=sigmoid stayed" not in text


def test_answer_when_nothing_completed() -> None:
    import optuna

    from mnist_sweep.app._report import answer_in_words

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "oom"}))

    assert answer_in_words(study) == (
        "No trial has completed yet (1 fail), so the study cannot answer its question yet. 1 failed (oom)."
    )


def test_trials_table_shows_the_spread_over_seeds() -> None:
    from mnist_sweep.app._report import _trials_table, read_study

    table = _trials_table(read_study(seeded_study([0.970, 0.972, 0.971], [0.960, 0.962, 0.961])))
    assert "0.9710 ± 0.0010 (3 seeds)" in table
