"""Every figure, made from a real model's predictions on real images, and written as PNG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mnist_sweep.display import plots
from mnist_sweep.model._data import Dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def predictions(tiny_mnist: Dataset) -> dict[str, Any]:
    """A small model trained two epochs on the tiny set, with its history and test predictions."""
    from mnist_sweep.model._build import probabilities
    from mnist_sweep.model._training import train

    result = train({"width": 32, "epochs": 2, "batch_size": 32}, tiny_mnist, seed=0)
    assert result.ok and result.model is not None
    probs = probabilities(result.model, tiny_mnist.x_test)
    return {"history": result.history, "probs": probs, "pred": probs.argmax(axis=1)}


def _saved_png(fig: Figure, path: Path) -> Path:
    written = plots.save(fig, path)
    content = written.read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    assert len(content) > 5_000
    return written


def _height(patch: Any) -> float:
    assert isinstance(patch, Rectangle)
    return float(patch.get_height())


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_learning_curves(predictions: dict[str, Any], tmp_path: Path) -> None:
    history = predictions["history"]
    fig = plots.learning_curves(history, title="width 32")
    assert len(fig.axes) == 2
    assert _titles(fig) == ["Loss", "Accuracy"]
    assert fig.get_suptitle() == "width 32"
    for ax, key in zip(fig.axes, ("loss", "accuracy"), strict=True):
        assert [line.get_label() for line in ax.lines] == ["train", "validation"]
        train_line, val_line = ax.lines
        assert np.asarray(train_line.get_xdata()).tolist() == [1, 2]  # epochs count from 1
        assert np.asarray(train_line.get_ydata()).tolist() == [epoch[key] for epoch in history]
        assert np.asarray(val_line.get_ydata()).tolist() == [epoch[f"val_{key}"] for epoch in history]
        assert ax.get_xlabel() == "epoch" and ax.get_legend() is not None
    _saved_png(fig, tmp_path / "curves.png")


def test_learning_curves_of_a_run_without_epochs(tmp_path: Path) -> None:
    fig = plots.learning_curves([])
    assert len(fig.axes) == 2 and all(not ax.lines for ax in fig.axes)
    assert any("no finished epochs" in text.get_text() for text in fig.axes[0].texts)
    _saved_png(fig, tmp_path / "empty.png")


def test_prediction_gallery(tiny_mnist: Dataset, predictions: dict[str, Any], tmp_path: Path) -> None:
    probs, names = predictions["probs"], tiny_mnist.class_names
    fig = plots.prediction_gallery(tiny_mnist.x_test, tiny_mnist.y_test, probs, names, n=12)
    assert len(fig.axes) == 24  # an image and a bar chart for each
    for i in range(12):
        image_ax, bar_ax = fig.axes[2 * i], fig.axes[2 * i + 1]
        pred, true = int(probs[i].argmax()), int(tiny_mnist.y_test[i])
        label = image_ax.xaxis.label
        assert label.get_text() == f"{names[pred]} {100 * probs[i, pred]:.0f}% ({names[true]})"
        expected = matplotlib.colors.to_rgba("tab:blue" if pred == true else "tab:red")
        assert matplotlib.colors.to_rgba(label.get_color()) == expected
        bars = bar_ax.patches
        assert len(bars) == 10
        np.testing.assert_allclose([_height(bar) for bar in bars], probs[i])
        assert bars[true].get_facecolor() == matplotlib.colors.to_rgba("tab:blue")
        if pred != true:
            assert bars[pred].get_facecolor() == matplotlib.colors.to_rgba("tab:red")
    _saved_png(fig, tmp_path / "gallery.png")


def test_prediction_gallery_shows_no_more_images_than_given(tiny_mnist: Dataset, predictions: dict[str, Any]) -> None:
    fig = plots.prediction_gallery(
        tiny_mnist.x_test[:5], tiny_mnist.y_test[:5], predictions["probs"][:5], tiny_mnist.class_names, n=12
    )
    assert len(fig.axes) == 10


def test_prediction_gallery_checks_its_inputs(tiny_mnist: Dataset, predictions: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="differ"):
        plots.prediction_gallery(tiny_mnist.x_test, tiny_mnist.y_test[:3], predictions["probs"], tiny_mnist.class_names)
    with pytest.raises(ValueError, match=r"probs must be \(n, 3\)"):
        plots.prediction_gallery(tiny_mnist.x_test, tiny_mnist.y_test, predictions["probs"], ["a", "b", "c"])


def test_confusion_matrix(tiny_mnist: Dataset, predictions: dict[str, Any], tmp_path: Path) -> None:
    y_true, y_pred = tiny_mnist.y_test, predictions["pred"]
    fig = plots.confusion_matrix(y_true, y_pred, tiny_mnist.class_names, title="width 32")
    assert len(fig.axes) == 2  # the matrix and its colour bar
    ax = fig.axes[0]
    accuracy = float((y_true == y_pred).mean())
    assert ax.get_title() == f"width 32\naccuracy {accuracy:.2%} on {len(y_true)} images"
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(tiny_mnist.class_names)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert len(cells) == 100 and sum(cells.values()) == len(y_true)
    for row in range(10):
        for col in range(10):
            assert cells[row, col] == int(((y_true == row) & (y_pred == col)).sum())
    _saved_png(fig, tmp_path / "confusion.png")


def test_confusion_matrix_with_fashion_names(tmp_path: Path) -> None:
    from mnist_sweep.model._data import CLASS_NAMES

    labels = np.arange(10)
    fig = plots.confusion_matrix(labels, labels, CLASS_NAMES["fashion_mnist"])
    assert "accuracy 100.00% on 10 images" in fig.axes[0].get_title()
    _saved_png(fig, tmp_path / "fashion.png")
    with pytest.raises(ValueError, match=r"outside 0\.\.9"):
        plots.confusion_matrix([0, 10], [0, 1], CLASS_NAMES["mnist"])


def test_misclassified_gallery(tiny_mnist: Dataset, predictions: dict[str, Any], tmp_path: Path) -> None:
    y_true, y_pred, probs = tiny_mnist.y_test, predictions["pred"], predictions["probs"]
    wrong = np.flatnonzero(y_pred != y_true)
    assert len(wrong) > 0, "the tiny model should make mistakes"
    n = min(25, len(wrong))
    fig = plots.misclassified_gallery(tiny_mnist.x_test, y_true, y_pred, probs, tiny_mnist.class_names, n=25)
    assert len(fig.axes) == n
    shown = []
    for title in _titles(fig):
        pair, confidence = title.rsplit(" (", 1)
        true, pred = pair.split(" -> ")
        assert true != pred
        shown.append(float(confidence.rstrip(")")))
    assert shown == sorted(shown, reverse=True)  # the surest mistakes first
    assert shown[0] == pytest.approx(max(probs[i, y_pred[i]] for i in wrong), abs=0.005)
    assert f"{n} of {len(wrong)} wrong" in fig.get_suptitle()
    _saved_png(fig, tmp_path / "mistakes.png")


def test_misclassified_gallery_without_mistakes(tiny_mnist: Dataset, predictions: dict[str, Any]) -> None:
    y_true = tiny_mnist.y_test
    fig = plots.misclassified_gallery(
        tiny_mnist.x_test, y_true, y_true, predictions["probs"], tiny_mnist.class_names, n=4
    )
    assert len(fig.axes) == 1
    assert fig.axes[0].texts[0].get_text() == "no misclassified images"


def test_curves_overlay(predictions: dict[str, Any], tmp_path: Path) -> None:
    history = predictions["history"]
    histories = {"trial 0": history, "trial 1": history[:1], "trial 2 (failed)": []}
    fig = plots.curves_overlay(histories, metric="val_loss", title="Three trials")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "Three trials" and ax.get_ylabel() == "validation loss"
    assert [line.get_label() for line in ax.lines] == ["trial 0", "trial 1"]  # nothing to draw for the failed one
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["trial 0", "trial 1"]
    assert np.asarray(ax.lines[0].get_xdata()).tolist() == [1, 2]
    default = plots.curves_overlay(histories)
    assert default.axes[0].get_title() == "Validation accuracy per epoch"
    _saved_png(fig, tmp_path / "overlay.png")


def test_curves_overlay_with_many_trials(predictions: dict[str, Any], tmp_path: Path) -> None:
    fig = plots.curves_overlay({f"trial {i}": predictions["history"] for i in range(30)})
    assert len(fig.axes[0].lines) == 30
    _saved_png(fig, tmp_path / "many.png")


def test_bar_comparison(tmp_path: Path) -> None:
    labels = ["activation", "depth-width", "optimizer"]
    fig = plots.bar_comparison(labels, [0.9812, 0.979, 0.9764], ylabel="best validation accuracy", title="Studies")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "Studies" and ax.get_ylabel() == "best validation accuracy"
    assert [round(_height(bar), 4) for bar in ax.patches] == [0.9812, 0.979, 0.9764]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.texts] == ["0.9812", "0.979", "0.9764"]
    _saved_png(fig, tmp_path / "bars.png")
    with pytest.raises(ValueError, match="2 labels but 1 values"):
        plots.bar_comparison(["a", "b"], [1.0], ylabel="x")


def test_save_adds_the_suffix_creates_folders_and_releases(tmp_path: Path) -> None:
    fig = plots.bar_comparison(["a"], [1.0], ylabel="x")
    written = plots.save(fig, tmp_path / "deep" / "folder" / "bars")
    assert written == tmp_path / "deep" / "folder" / "bars.png" and written.is_file()
    assert fig.axes == []  # released
    with pytest.raises(ValueError, match="writes PNG"):
        plots.save(plots.bar_comparison(["a"], [1.0], ylabel="x"), tmp_path / "bars.jpg")


def test_plots_do_not_touch_pyplot() -> None:
    plots.learning_curves([])
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


# --- Optuna's plots ------------------------------------------------------------------------


def _study(n_complete: int, *, n_failed: int = 0, constant: bool = False) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"s{n_complete}", direction="maximize", sampler=optuna.samplers.RandomSampler(0)
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        depth = trial.suggest_int("depth", 1, 1 if constant else 4)
        activation = trial.suggest_categorical("activation", ["relu"] if constant else ["relu", "tanh"])
        return -abs(np.log10(lr) + 2) + 0.01 * depth + (0.02 if activation == "relu" else 0.0)

    if n_complete:
        study.optimize(objective, n_trials=n_complete)
    for _ in range(n_failed):
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    return study


@pytest.mark.parametrize(
    ("n_complete", "n_failed", "expected"),
    [
        (0, 0, set()),
        (0, 3, set()),
        (1, 0, {"optimization_history"}),
        (1, 2, {"optimization_history"}),
        (5, 0, set(plots.STUDY_PLOTS)),
    ],
)
def test_study_plots(n_complete: int, n_failed: int, expected: set[str], tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    style_before = dict(matplotlib.rcParams)
    figures = plots.study_plots(_study(n_complete, n_failed=n_failed))
    assert set(figures) == expected
    for name, fig in figures.items():
        assert isinstance(fig, Figure) and fig.axes
        _saved_png(fig, tmp_path / f"{name}.png")
    assert plt.get_fignums() == []  # nothing left in pyplot's registry
    assert dict(matplotlib.rcParams) == style_before  # Optuna's ggplot style did not leak out


def test_study_plots_leave_out_parameters_that_never_vary() -> None:
    figures = plots.study_plots(_study(4, constant=True))  # depth and activation are fixed
    assert set(figures) == set(plots.STUDY_PLOTS)
    ranked = [t.get_text() for t in figures["param_importances"].axes[0].get_yticklabels()]
    assert ranked == ["learning_rate"]
    import optuna

    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_int("depth", 2, 2) * 1.0, n_trials=3)
    assert set(plots.study_plots(study)) == {"optimization_history"}  # nothing to rank or spread


def test_study_plots_of_a_multi_objective_study_are_empty() -> None:
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), 1.0), n_trials=3)
    assert plots.study_plots(study) == {}


def _png_bytes(fig: Figure) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    content = buffer.getvalue()
    assert content.startswith(PNG_SIGNATURE) and len(content) > 5_000
    return content


def test_trial_figures_redraw_one_figure_per_kind_with_each_trials_data(
    tiny_mnist: Dataset, predictions: dict[str, Any]
) -> None:
    figures = plots.TrialFigures()
    history = predictions["history"]
    curves = figures.learning_curves(history, title="tiny trial 0")
    shorter = [{key: value * 0.5 for key, value in epoch.items()} for epoch in history[:1]]
    assert figures.learning_curves(shorter, title="tiny trial 1") is curves  # built once, redrawn
    loss_ax, accuracy_ax = curves.axes
    assert [ax.get_title() for ax in curves.axes] == ["Loss", "Accuracy"]
    assert curves.get_suptitle() == "tiny trial 1"
    lines = {line.get_label(): line for line in loss_ax.lines}
    assert list(lines["train"].get_ydata()) == [history[0]["loss"] * 0.5]
    assert list(lines["validation"].get_ydata()) == [history[0]["val_loss"] * 0.5]
    assert list(accuracy_ax.lines[1].get_ydata()) == [history[0]["val_accuracy"] * 0.5]
    lo, hi = accuracy_ax.get_ylim()
    assert lo <= history[0]["accuracy"] * 0.5 <= hi  # limits follow the data
    _png_bytes(curves)
    assert figures.learning_curves([], title="empty") is not curves  # nothing to show: the general drawing

    y_true, y_pred = tiny_mnist.y_test, predictions["pred"]
    matrix = figures.confusion_matrix(y_true, y_true, tiny_mnist.class_names, title="first")
    assert figures.confusion_matrix(y_true, y_pred, tiny_mnist.class_names, title="second") is matrix
    ax = matrix.axes[0]
    accuracy = float((y_true == y_pred).mean())
    assert ax.get_title() == f"second\naccuracy {accuracy:.2%} on {len(y_true)} images"
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert len(cells) == 100
    for row in range(10):
        for col in range(10):
            assert cells[row, col] == int(((y_true == row) & (y_pred == col)).sum())
    assert ax.images[0].get_clim() == (0, max(1, int(max(cells.values()))))
    _png_bytes(matrix)


def test_trial_figures_keep_one_matrix_per_set_of_class_names() -> None:
    from mnist_sweep.model._data import CLASS_NAMES

    figures = plots.TrialFigures()
    labels = np.arange(10)
    digits = figures.confusion_matrix(labels, labels, CLASS_NAMES["mnist"])
    fashion = figures.confusion_matrix(labels, labels, CLASS_NAMES["fashion_mnist"], title="fashion")
    assert fashion is not digits
    assert [t.get_text() for t in fashion.axes[0].get_yticklabels()] == list(CLASS_NAMES["fashion_mnist"])
    assert "accuracy 100.00% on 10 images" in fashion.axes[0].get_title()
    with pytest.raises(ValueError, match=r"outside 0\.\.9"):
        figures.confusion_matrix([0, 10], [0, 1], CLASS_NAMES["mnist"])
