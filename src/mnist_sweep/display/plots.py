"""Every matplotlib figure of the project.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot, so they
need no display, keep no global state and can be made from worker threads. Each function
returns the figure; :func:`save` writes it as PNG and releases it. Optuna's own plots (in
:func:`study_plots`) go through pyplot: they are detached from it as soon as they exist, and the
global style they set is put back.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    import optuna
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

DPI = 100
TRAIN_COLOR = "tab:blue"
VAL_COLOR = "tab:orange"
RIGHT_COLOR = "tab:blue"
WRONG_COLOR = "tab:red"
NEUTRAL_COLOR = "#999999"
STUDY_FIGSIZE = (9.0, 5.5)
STUDY_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate")

_METRIC_LABELS = {
    "loss": "training loss",
    "accuracy": "training accuracy",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "seconds": "seconds per epoch",
}


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG (a missing ``.png`` suffix is added), then release it.

    The figure is cleared afterwards: save it last.
    """
    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(".png")
    elif target.suffix.lower() != ".png":
        raise ValueError(f"save() writes PNG files; got {str(target)!r} (use a .png name)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    _release(fig)
    return target


def learning_curves(history: Sequence[Mapping[str, float]], *, title: str = "") -> Figure:
    """Loss and accuracy per epoch, training against validation (as the TensorFlow CNN tutorial).

    ``history`` is :attr:`mnist_sweep.training.TrainResult.history`: one dict per epoch.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(history) + 1)
    for ax, metric, label in ((ax_loss, "loss", "Loss"), (ax_acc, "accuracy", "Accuracy")):
        for key, name, color in ((metric, "train", TRAIN_COLOR), (f"val_{metric}", "validation", VAL_COLOR)):
            values = [float(h.get(key, math.nan)) for h in history]
            if any(math.isfinite(v) for v in values):
                ax.plot(epochs, values, marker="o", markersize=4, color=color, label=name)
        _style(ax, title=label, xlabel="epoch", ylabel=label.lower())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(loc="best")
        else:
            _note(ax, "no finished epochs")
    if title:
        fig.suptitle(title)
    return fig


TRIAL_DPI = 72
TRIAL_CURVES_SIZE = (8.0, 3.2)
TRIAL_MATRIX_SIZE = (6.0, 5.4)


class TrialFigures:
    """The two figures every trial of a sweep logs, drawn cheaply: built once, redrawn per trial.

    The same content as :func:`learning_curves` and :func:`confusion_matrix` (both splits' loss
    and accuracy per epoch; every cell's count, the accuracy in the title), but each figure is
    made once per process and only its data, limits and texts change from trial to trial, with
    a fixed layout (no constrained-layout pass) at a small size and resolution. That cuts the
    cost of drawing and rendering both PNGs several-fold (bench/tracking_overhead.py), which
    matters because a sweep pays it for every trial. Each call returns the same figure object:
    save or log it before the next call. Not thread-safe; one instance per trial loop.
    """

    def __init__(self) -> None:
        self._curves: tuple[Figure, dict[str, Any]] | None = None
        self._matrices: dict[tuple[str, ...], tuple[Figure, dict[str, Any]]] = {}

    def learning_curves(self, history: Sequence[Mapping[str, float]], *, title: str = "") -> Figure:
        """:func:`learning_curves`, redrawn into this instance's figure (a fresh one when there is nothing to show)."""
        keys = ("loss", "val_loss", "accuracy", "val_accuracy")
        columns = {key: [float(h.get(key, math.nan)) for h in history] for key in keys}
        if not history or not all(any(math.isfinite(v) for v in columns[key]) for key in keys):
            return learning_curves(history, title=title)  # partial or empty histories: the general drawing
        if self._curves is None:
            self._curves = self._new_curves()
        fig, parts = self._curves
        epochs = np.arange(1, len(history) + 1)
        for key in keys:
            parts[key].set_data(epochs, columns[key])
        for ax in parts["axes"]:
            ax.relim()
            ax.autoscale_view()
        parts["title"].set_text(title)
        return fig

    def confusion_matrix(self, y_true: Any, y_pred: Any, class_names: Sequence[str], *, title: str = "") -> Figure:
        """:func:`confusion_matrix`, redrawn into this instance's figure for these class names."""
        counts, accuracy, n = _confusion_counts(y_true, y_pred, class_names)
        names = tuple(class_names)
        if names not in self._matrices:
            self._matrices[names] = self._new_matrix(names)
        fig, parts = self._matrices[names]
        image = parts["image"]
        image.set_data(counts)
        image.set_clim(0, max(1, int(counts.max()) if counts.size else 1))
        parts["colorbar"].update_normal(image)
        threshold = counts.max() / 2 if counts.size else 0
        for (row, col), text in np.ndenumerate(parts["texts"]):
            value = counts[row, col]
            text.set_text(str(value))
            text.set_color("white" if value > threshold else ("black" if value else "#bbbbbb"))
        parts["axes"].set_title(f"{title or 'Confusion matrix'}\naccuracy {accuracy:.2%} on {n:,} images")
        return fig

    @staticmethod
    def _new_curves() -> tuple[Figure, dict[str, Any]]:
        fig = Figure(figsize=TRIAL_CURVES_SIZE, dpi=TRIAL_DPI)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.82, wspace=0.25)
        parts: dict[str, Any] = {"axes": fig.subplots(1, 2)}
        for ax, metric, label in zip(parts["axes"], ("loss", "accuracy"), ("Loss", "Accuracy"), strict=True):
            for key, name, color in ((metric, "train", TRAIN_COLOR), (f"val_{metric}", "validation", VAL_COLOR)):
                (parts[key],) = ax.plot([], [], marker="o", markersize=4, color=color, label=name)
            _style(ax, title=label, xlabel="epoch", ylabel=label.lower())
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(loc="best")
        parts["title"] = fig.suptitle("")
        return fig, parts

    @staticmethod
    def _new_matrix(class_names: tuple[str, ...]) -> tuple[Figure, dict[str, Any]]:
        k = len(class_names)
        fig = Figure(figsize=TRIAL_MATRIX_SIZE, dpi=TRIAL_DPI)
        long_names = max((len(c) for c in class_names), default=0) > 3
        fig.subplots_adjust(left=0.22 if long_names else 0.1, right=0.98, bottom=0.22 if long_names else 0.1, top=0.88)
        ax = fig.add_subplot()
        image = ax.imshow(np.zeros((k, k)), cmap="Blues", interpolation="nearest", vmin=0, vmax=1)
        colorbar = fig.colorbar(image, ax=ax, label="images", shrink=0.85)
        texts = np.empty((k, k), dtype=object)
        for row in range(k):
            for col in range(k):
                texts[row, col] = ax.text(col, row, "", ha="center", va="center", fontsize=8)
        ticks = np.arange(k)
        ax.set_xticks(
            ticks, labels=list(class_names), rotation=45 if long_names else 0, ha="right" if long_names else "center"
        )
        ax.set_yticks(ticks, labels=list(class_names))
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        return fig, {"axes": ax, "image": image, "colorbar": colorbar, "texts": texts}


def prediction_gallery(
    images: Any,
    y_true: Any,
    probs: Any,
    class_names: Sequence[str],
    *,
    n: int = 12,
) -> Figure:
    """The first ``n`` images, each beside its ten predicted probabilities.

    As in the TensorFlow Fashion-MNIST tutorial: the caption reads "pred (confidence%) (true)",
    blue when the prediction is right and red when wrong; in the bar chart the predicted class is
    red and the true class blue (so a right prediction shows a single blue bar).
    """
    images, y_true, probs = _check_predictions(images, y_true, probs, class_names)
    n = max(0, min(n, len(images)))
    cols = 3
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(4.4 * cols, 2.3 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 2 * cols)
    classes = np.arange(probs.shape[1])
    for i in range(n):
        row, col = divmod(i, cols)
        ax_img = fig.add_subplot(grid[row, 2 * col])
        ax_bar = fig.add_subplot(grid[row, 2 * col + 1])
        pred, true = int(np.argmax(probs[i])), int(y_true[i])
        color = RIGHT_COLOR if pred == true else WRONG_COLOR
        ax_img.imshow(images[i], cmap="binary", interpolation="nearest")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_xlabel(
            f"{class_names[pred]} {100 * probs[i, pred]:.0f}% ({class_names[true]})", color=color, fontsize=9
        )
        bars = ax_bar.bar(classes, probs[i], color=NEUTRAL_COLOR)
        bars[pred].set_color(WRONG_COLOR)
        bars[true].set_color(RIGHT_COLOR)
        ax_bar.set_ylim(0, 1)
        ax_bar.set_xticks(classes)
        ax_bar.set_xticklabels([str(c) for c in classes], fontsize=7)
        ax_bar.set_yticks([])
    if n == 0:
        _note(fig.add_subplot(grid[0, :]), "no images")
    fig.suptitle(f"Predictions on {n} test images (blue: right, red: wrong)")
    return fig


def confusion_matrix(y_true: Any, y_pred: Any, class_names: Sequence[str], *, title: str = "") -> Figure:
    """Counts of true class (rows) against predicted class (columns), every cell annotated."""
    counts, accuracy, n = _confusion_counts(y_true, y_pred, class_names)
    k = len(class_names)
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="images", shrink=0.85)
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(k):
        for col in range(k):
            value = counts[row, col]
            ax.text(
                col,
                row,
                str(value),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > threshold else ("black" if value else "#bbbbbb"),
            )
    ticks = np.arange(k)
    long_names = max((len(c) for c in class_names), default=0) > 3
    ax.set_xticks(
        ticks, labels=list(class_names), rotation=45 if long_names else 0, ha="right" if long_names else "center"
    )
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"{title or 'Confusion matrix'}\naccuracy {accuracy:.2%} on {n:,} images")
    return fig


def _confusion_counts(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> tuple[np.ndarray, float, int]:
    """(k x k counts, accuracy, number of images), after checking the labels fit the class names."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    k = len(class_names)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    for name, labels in (("true label", y_true), ("prediction", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"{name} outside 0..{k - 1} (there are {k} class names)")
    counts = np.bincount(k * y_true + y_pred, minlength=k * k).reshape(k, k)
    accuracy = float(np.trace(counts) / counts.sum()) if counts.sum() else math.nan
    return counts, accuracy, len(y_true)


def misclassified_gallery(
    images: Any,
    y_true: Any,
    y_pred: Any,
    probs: Any,
    class_names: Sequence[str],
    *,
    n: int = 25,
) -> Figure:
    """The ``n`` mistakes the model was surest of, captioned "true -> pred (p)"."""
    images, y_true, probs = _check_predictions(images, y_true, probs, class_names)
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if len(y_pred) != len(y_true):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probs[wrong, y_pred[wrong]]
    shown = wrong[np.argsort(-confidence, kind="stable")][: max(0, n)]
    cols = max(1, math.ceil(math.sqrt(len(shown))))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(max(4.0, 1.9 * cols), 0.6 + 2.0 * rows), layout="constrained")
    if len(shown) == 0:
        _note(fig.add_subplot(), "no misclassified images")
    for position, i in enumerate(shown):
        ax = fig.add_subplot(rows, cols, position + 1)
        ax.imshow(images[i], cmap="binary", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"{class_names[y_true[i]]} -> {class_names[y_pred[i]]} ({probs[i, y_pred[i]]:.2f})",
            fontsize=8,
            color=WRONG_COLOR,
        )
    fig.suptitle(f"Most confident mistakes: {len(shown)} of {len(wrong)} wrong out of {len(y_true):,}")
    return fig


def curves_overlay(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    metric: str = "val_accuracy",
    title: str = "",
) -> Figure:
    """One metric per epoch for several trials on one chart, one line per mapping key."""
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    ax = fig.add_subplot()
    for label, history in histories.items():
        values = [float(h.get(metric, math.nan)) for h in history]
        if any(math.isfinite(v) for v in values):
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, linewidth=1.5, label=str(label))
    pretty = _METRIC_LABELS.get(metric, metric)
    _style(ax, title=title or f"{pretty[0].upper()}{pretty[1:]} per epoch", xlabel="epoch", ylabel=pretty)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.lines:
        many = len(ax.lines) > 8
        ax.legend(
            loc="upper left" if many else "best",
            bbox_to_anchor=(1.01, 1.0) if many else None,
            fontsize="small",
            ncols=2 if len(ax.lines) > 20 else 1,
        )
    else:
        _note(ax, f"no {metric} values")
    return fig


def bar_comparison(labels: Sequence[str], values: Sequence[float], *, ylabel: str, title: str = "") -> Figure:
    """One bar per label (e.g. the best value of several studies), each annotated with its value."""
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels but {len(values)} values")
    fig = Figure(figsize=(max(5.0, 1.1 * len(labels) + 2.0), 4.8), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(labels))
    bars = ax.bar(positions, [float(v) for v in values], color="tab:blue", width=0.6)
    ax.bar_label(bars, labels=[f"{float(v):.4g}" for v in values], padding=3, fontsize=9)
    long_labels = max((len(str(label)) for label in labels), default=0) > 10
    ax.set_xticks(
        positions,
        labels=[str(label) for label in labels],
        rotation=30 if long_labels else 0,
        ha="right" if long_labels else "center",
    )
    ax.margins(y=0.12)
    _style(ax, title=title, xlabel="", ylabel=ylabel)
    ax.grid(axis="x", visible=False)
    if not labels:
        _note(ax, "nothing to compare")
    return fig


def study_plots(study: optuna.Study) -> dict[str, Figure]:
    """Optuna's optimization history, parameter importances and parallel coordinates.

    A plot the study cannot support yet (too few complete trials, no parameter that varies,
    several objectives) is left out and the reason logged at debug level: a small or young study
    never raises. Keys are those of :data:`STUDY_PLOTS`.
    """
    import matplotlib
    import optuna

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # Optuna's plots go through pyplot; never open a window for them.
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    name = study.study_name
    if len(study.directions) > 1:
        log.debug("study %s: several objectives; no study plots", name)
        return {}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = _varying_params(complete)
    plans: dict[str, Any] = {}
    if complete:
        plans["optimization_history"] = lambda: optuna_plots.plot_optimization_history(study)
    else:
        log.debug("study %s: no complete trial; no optimization history", name)
    if len(complete) >= 2 and varying:
        plans["param_importances"] = lambda: optuna_plots.plot_param_importances(study, params=varying)
        plans["parallel_coordinate"] = lambda: optuna_plots.plot_parallel_coordinate(study, params=varying)
    else:
        log.debug(
            "study %s: %d complete trial(s), %d varying parameter(s); importances and parallel "
            "coordinates need at least 2 and 1",
            name,
            len(complete),
            len(varying),
        )
    figures: dict[str, Figure] = {}
    # Optuna's plots switch pyplot to its ggplot style for good; rc_context puts ours back.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Importances of a study whose trials tie: Optuna says so and draws equal bars, which is right.
        warnings.filterwarnings("ignore", "Target and region quantiles select the same set", UserWarning)
        for key, plot in plans.items():
            try:
                axes = plot()
            except Exception as exc:  # a study plot must never cost the sweep its results
                log.warning("study %s: %s plot skipped: %s", name, key, exc)
                continue
            fig = _figure_of(axes)
            fig.set_size_inches(*STUDY_FIGSIZE)
            plt.close(fig)  # detach from pyplot's registry; the Figure itself stays usable
            figures[key] = fig
    return figures


def _varying_params(trials: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    seen: dict[str, set[str]] = {}
    for trial in trials:
        for key, value in trial.params.items():
            seen.setdefault(key, set()).add(repr(value))
    return sorted(key for key, values in seen.items() if len(values) > 1)


def _figure_of(axes: Any) -> Figure:
    figure = axes.figure
    if not isinstance(figure, Figure):  # pragma: no cover - optuna returns Axes on a Figure
        raise TypeError(f"expected Axes on a Figure, got {type(axes).__name__}")
    return figure


def _check_predictions(
    images: Any, y_true: Any, probs: Any, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.asarray(images)
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"images must be (n, height, width), got shape {images.shape}")
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probs must be (n, {len(class_names)}) for {len(class_names)} classes, got {probs.shape}")
    if not len(images) == len(y_true) == len(probs):
        raise ValueError(f"{len(images)} images, {len(y_true)} labels and {len(probs)} probability rows differ")
    return images, y_true, probs


def _style(ax: Axes, *, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")


def _release(fig: Figure) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()


def best_over_time(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    title: str = "",
) -> Figure:
    """One line per series over ordered labels (e.g. nights); None leaves a gap in that line."""
    for name, values in series.items():
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 3.0), 4.8), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(labels))
    styles = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))
    for index, (name, values) in enumerate(series.items()):
        ys = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
        line, marker = styles[index % len(styles)]
        if np.isfinite(ys).any():
            ax.plot(positions, ys, linestyle=line, marker=marker, markersize=5, linewidth=1.5, label=str(name))
    step = max(1, math.ceil(len(labels) / 15))
    ax.set_xticks(positions[::step], labels=[str(label) for label in labels][::step], rotation=30, ha="right")
    _style(ax, title=title, xlabel="", ylabel=ylabel)
    if ax.lines:
        ax.legend(loc="best", fontsize="small")
    else:
        _note(ax, "no values yet")
    return fig
