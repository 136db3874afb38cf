"""``mnist-sweep predict``: the class a registered or logged model gives each image or ``.npy`` file.

Files are read by :func:`mnist_sweep.imaging.load_images` (any image size, made MNIST-like;
dark ink on light paper inverted), one at a time, so one unreadable file is reported by name
while the others are still predicted. The model is loaded only when some file was readable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mnist_sweep.errors import ConfigError, MnistSweepError

MAX_TOP_K = 10


@dataclass(frozen=True)
class ClassProbability:
    """One class and the probability the model gives it."""

    index: int
    name: str
    probability: float

    @property
    def label(self) -> str:
        """``7`` for a digit, ``9 Ankle boot`` for a Fashion-MNIST class."""
        return str(self.index) if self.name == str(self.index) else f"{self.index} {self.name}"


@dataclass(frozen=True)
class Prediction:
    """The top classes for one input image (``top[0]`` is the predicted class)."""

    input: str
    top: tuple[ClassProbability, ...]

    @property
    def predicted(self) -> ClassProbability:
        return self.top[0]


@dataclass(frozen=True)
class FileError:
    """A file that could not be read, and why (one line naming the file)."""

    path: str
    message: str


@dataclass
class PredictionReport:
    """Predictions for every readable input, and the files that could not be read."""

    model_uri: str
    model: str
    dataset: str | None
    predictions: list[Prediction] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "model": self.model,
            "dataset": self.dataset,
            "predictions": [
                {
                    "input": p.input,
                    "class": p.predicted.index,
                    "label": p.predicted.name,
                    "probability": p.predicted.probability,
                    "top_k": [{"class": c.index, "label": c.name, "probability": c.probability} for c in p.top],
                }
                for p in self.predictions
            ],
            "errors": [{"input": e.path, "error": e.message} for e in self.errors],
        }

    def lines(self) -> list[str]:
        """One line per input: ``FILE  7 (0.981)``, then the other top classes when asked."""
        width = max((len(p.input) for p in self.predictions), default=0)
        return [
            f"{p.input:<{width}}  " + "  ".join(f"{c.label} ({c.probability:.3f})" for c in p.top)
            for p in self.predictions
        ]


def read_inputs(
    files: Sequence[str | os.PathLike[str]], *, invert: bool | None = None
) -> tuple[Any, list[str], list[FileError]]:
    """``(images (n, 28, 28), labels, errors)``: every readable image, and a FileError per unreadable file."""
    import numpy as np

    from mnist_sweep.model import load_images

    stacks, labels, errors = [], [], []
    for path in files:
        try:
            images, names = load_images([path], invert=invert)
        except MnistSweepError as exc:
            errors.append(FileError(os.fspath(path), str(exc)))
            continue
        stacks.append(images)
        labels += names
    images = np.concatenate(stacks) if stacks else np.zeros((0, 28, 28), dtype=np.float32)
    return images, labels, errors


def top_classes(probabilities: Any, class_names: Sequence[str], k: int) -> list[tuple[ClassProbability, ...]]:
    """The ``k`` most probable classes of each row of ``probabilities``, most probable first."""
    import numpy as np

    probs = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        tuple(ClassProbability(int(i), class_names[int(i)], float(row[i])) for i in indices)
        for row, indices in zip(probs, order, strict=True)
    ]


def predict_files(
    model_uri: str,
    files: Sequence[str | os.PathLike[str]],
    *,
    top_k: int = 1,
    tracking_uri: str | None = None,
    invert: bool | None = None,
) -> PredictionReport:
    """Predict the class of every image in ``files`` with the model at ``model_uri``.

    ``model_uri``: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, a trial's ``models:/m-...``
    or ``runs:/<run id>/model``. ``invert`` forces or forbids inverting images (default: by
    looking at each). Unreadable files end up in ``errors``; raises ModelMissing when the model
    cannot be loaded.
    """
    from mnist_sweep.model import CLASS_NAMES, probabilities
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri, load_resolved, resolve_model

    if not 1 <= top_k <= MAX_TOP_K:
        raise ConfigError(f"--top-k {top_k}: must be between 1 and {MAX_TOP_K}")
    images, labels, errors = read_inputs(files, invert=invert)
    if not labels:
        return PredictionReport(model_uri=model_uri, model=model_uri, dataset=None, errors=errors)
    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    resolved = resolve_model(model_uri, tracking_uri=uri)
    model = load_resolved(resolved, tracking_uri=uri)
    class_names = CLASS_NAMES.get(resolved.dataset or "mnist", CLASS_NAMES["mnist"])
    tops = top_classes(probabilities(model, images), class_names, top_k)
    return PredictionReport(
        model_uri=model_uri,
        model=resolved.describe(),
        dataset=resolved.dataset,
        predictions=[Prediction(label, top) for label, top in zip(labels, tops, strict=True)],
        errors=errors,
    )
