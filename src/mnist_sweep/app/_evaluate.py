"""Test and robust accuracy of any model: ``mnist-sweep evaluate MODEL_URI``, and what the gate and report share.

The robust set (:mod:`mnist_sweep.model._robust`) is built once per process for each test set
and seed, so the gate's candidate and champion, and a report's best model, are measured on
exactly the same transformed images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep.errors import ModelMissing

if TYPE_CHECKING:
    import keras
    import numpy as np
    from matplotlib.figure import Figure

    from mnist_sweep.model import Robustness, RobustSet

ROBUST_FIGURE = "robustness/robust_accuracy.png"
"""Where the per-transform figure goes among a run's artifacts."""

_ROBUST_CACHE: dict[tuple[str, int, int], RobustSet] = {}


def robust_images(images: np.ndarray, labels: np.ndarray, *, key: str, seed: int | None = None) -> RobustSet:
    """The transformed copies of a test set (``key`` names it, e.g. its SHA-256), built once per process."""
    from mnist_sweep.model import robust_set
    from mnist_sweep.model._robust import ROBUST_SEED

    chosen = ROBUST_SEED if seed is None else seed
    cache_key = (key, len(labels), chosen)
    if cache_key not in _ROBUST_CACHE:
        _ROBUST_CACHE[cache_key] = robust_set(images, labels, seed=chosen)
    return _ROBUST_CACHE[cache_key]


def measure_robustness(model: keras.Model, rset: RobustSet) -> Robustness:
    """``model``'s accuracy on ``rset``, overall and per transform."""
    from mnist_sweep.model import probabilities, robustness

    return robustness(lambda images: probabilities(model, images), rset)


def robustness_figure(result: Robustness, *, title: str) -> Figure:
    """One bar per transform, and one for all of them together."""
    from mnist_sweep.display import plots

    names = [*result.per_transform, "all"]
    values = [*result.per_transform.values(), result.accuracy]
    return plots.bar_comparison(names, values, ylabel="accuracy on transformed test images", title=title)


def robustness_text(result: Robustness) -> str:
    """``robust accuracy 0.9123 (rotation 0.95, shift 0.80, ...)``."""
    parts = ", ".join(f"{name} {value:.4f}" for name, value in result.per_transform.items())
    return f"robust accuracy {result.accuracy:.4f} ({parts})"


@dataclass(frozen=True)
class ModelEvaluation:
    """What ``mnist-sweep evaluate`` measured."""

    model_uri: str
    described: str
    dataset: str
    test_correct: int
    test_total: int
    robust: Robustness
    figure: Path | None = None

    @property
    def test_accuracy(self) -> float:
        return self.test_correct / self.test_total if self.test_total else 0.0

    def lines(self) -> list[str]:
        out = [
            f"model: {self.described}",
            f"test accuracy {self.test_accuracy:.4f} "
            f"({self.test_correct}/{self.test_total} {self.dataset} test images)",
            f"robust accuracy {self.robust.accuracy:.4f} ({self.robust.correct}/{self.robust.total} transformed "
            f"test images, seed {self.robust.seed})",
        ]
        out += [f"  {name:<9} {value:.4f}" for name, value in self.robust.per_transform.items()]
        if self.figure is not None:
            out.append(f"wrote {self.figure}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "dataset": self.dataset,
            "test_accuracy": self.test_accuracy,
            "test_images": self.test_total,
            "robust_accuracy": self.robust.accuracy,
            "robust_images": self.robust.total,
            "robust_seed": self.robust.seed,
            "per_transform": dict(self.robust.per_transform),
            "figure": str(self.figure) if self.figure else None,
        }


def evaluate_model(
    model_uri: str,
    *,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    figure: str | Path | None = None,
) -> ModelEvaluation:
    """Test accuracy and robust accuracy (per transform) of ``model_uri`` on its dataset's full test set.

    ``dataset`` is needed only when the model's registry version or run does not record one.
    ``figure``: also write the per-transform bar chart there.
    """
    import numpy as np

    from mnist_sweep.display import plots
    from mnist_sweep.model import check_name, load_raw, probabilities
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri, load_resolved, resolve_model

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    resolved = resolve_model(model_uri, tracking_uri=uri)
    name = dataset or resolved.dataset
    if not name:
        raise ModelMissing(f"{model_uri}: it records no dataset; pass --dataset mnist or --dataset fashion_mnist")
    raw = load_raw(check_name(name), data_dir)
    model = load_resolved(resolved, tracking_uri=uri)
    images = raw.test_images.astype(np.float32) / np.float32(255.0)
    labels = raw.test_labels.astype(np.int64)
    right = np.argmax(probabilities(model, images), axis=1) == labels
    robust = measure_robustness(model, robust_images(images, labels, key=raw.sha256, seed=seed))
    written = None
    if figure is not None:
        written = plots.save(robustness_figure(robust, title=f"{model_uri}: accuracy per transform"), figure)
    return ModelEvaluation(
        model_uri=model_uri,
        described=resolved.describe(),
        dataset=raw.name,
        test_correct=int(right.sum()),
        test_total=len(labels),
        robust=robust,
        figure=written,
    )
