"""A deterministic, seeded set of transformed test images, and a model's accuracy on it.

Each test image appears once per transform: a small rotation (uniform in ±15°), a shift
(uniform in ±3 px on each axis), a scale (uniform in 0.8-1.2, about the centre), thinner
strokes (grey erosion, 2x2), thicker strokes (grey dilation, 2x2) and Gaussian pixel noise
(sigma 0.15, clipped to [0, 1]). The draws come from one ``numpy`` generator seeded with
``seed``, so the same test images and seed give the same set, bit for bit, on every run.
``robust_accuracy`` is the accuracy over all of them (every transform weighs the same).

numpy and ``scipy.ndimage`` only: the geometric transforms are one vectorised bilinear
resampling of all images per transform (zeros outside the frame), not a loop over images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

TRANSFORMS = ("rotation", "shift", "scale", "erode", "dilate", "noise")
ROBUST_SEED = 0
MAX_DEGREES = 15.0
MAX_SHIFT = 3.0
SCALE_RANGE = (0.8, 1.2)
NOISE_SIGMA = 0.15
STROKE_SIZE = (1, 2, 2)


@dataclass(frozen=True)
class RobustSet:
    """``len(TRANSFORMS)`` transformed copies of a test set, transform by transform."""

    images: np.ndarray  # (T * n, 28, 28) float32 in [0, 1]
    labels: np.ndarray  # (T * n,)
    transform: np.ndarray  # (T * n,) index into TRANSFORMS
    seed: int

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Robustness:
    """A model's accuracy on a :class:`RobustSet`, overall and per transform."""

    accuracy: float
    per_transform: Mapping[str, float]
    correct: int
    total: int
    seed: int
    right: np.ndarray = field(compare=False, repr=False)

    def as_dict(self) -> dict[str, float]:
        return {"robust_accuracy": self.accuracy, **{f"robust_{k}": v for k, v in self.per_transform.items()}}


def robust_set(images: np.ndarray, labels: np.ndarray, *, seed: int = ROBUST_SEED) -> RobustSet:
    """The transformed copies of ``images`` ((n, 28, 28) in [0, 1]); deterministic for a given ``seed``."""
    from scipy import ndimage

    base = np.asarray(images, dtype=np.float32)
    n = len(base)
    rng = np.random.default_rng(seed)
    angles = np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES, n))
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (n, 2))
    scales = rng.uniform(*SCALE_RANGE, n)
    noise = rng.normal(0.0, NOISE_SIGMA, base.shape).astype(np.float32)
    zero, one = np.zeros(n), np.ones(n)
    parts = [
        _affine(base, angles, np.zeros((n, 2)), one),
        _affine(base, zero, shifts, one),
        _affine(base, zero, np.zeros((n, 2)), scales),
        ndimage.grey_erosion(base, size=STROKE_SIZE),
        ndimage.grey_dilation(base, size=STROKE_SIZE),
        np.clip(base + noise, 0.0, 1.0),
    ]
    return RobustSet(
        images=np.concatenate(parts).astype(np.float32),
        labels=np.tile(np.asarray(labels), len(TRANSFORMS)),
        transform=np.repeat(np.arange(len(TRANSFORMS)), n),
        seed=seed,
    )


def _affine(images: np.ndarray, angles: np.ndarray, shifts: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Rotate by ``angles``, scale by ``scales`` about the centre, then shift, each image its own."""
    _, height, width = images.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    centre_r, centre_c = (height - 1) / 2, (width - 1) / 2
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    scale = scales[:, None, None]
    dr = rows[None] - centre_r - shifts[:, 0, None, None]
    dc = cols[None] - centre_c - shifts[:, 1, None, None]
    source_r = (cos * dr + sin * dc) / scale + centre_r  # the inverse map: output pixel <- input point
    source_c = (-sin * dr + cos * dc) / scale + centre_c
    return _bilinear(images, source_r, source_c)


def _bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``images[i]`` sampled at (``rows[i]``, ``cols[i]``), bilinearly, with zeros outside the frame."""
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1))).ravel()
    stride = width + 2
    r = (rows + 1.0).astype(np.float32)  # into the padded frame
    c = (cols + 1.0).astype(np.float32)
    inside = (r >= 0) & (r <= height + 1) & (c >= 0) & (c <= width + 1)
    r0 = np.clip(np.floor(r), 0, height).astype(np.intp)
    c0 = np.clip(np.floor(c), 0, width).astype(np.intp)
    fr = np.clip(r - r0, 0.0, 1.0)
    fc = np.clip(c - c0, 0.0, 1.0)
    flat = np.arange(n, dtype=np.intp)[:, None, None] * ((height + 2) * stride) + r0 * stride + c0
    top = np.take(padded, flat) * (1 - fc) + np.take(padded, flat + 1) * fc
    bottom = np.take(padded, flat + stride) * (1 - fc) + np.take(padded, flat + stride + 1) * fc
    out = top * (1 - fr) + bottom * fr
    out[~inside] = 0.0
    return out.astype(np.float32, copy=False)


def robustness(predict: Callable[[np.ndarray], np.ndarray], rset: RobustSet) -> Robustness:
    """Accuracy of ``predict`` (images -> class indices or class scores) on ``rset``."""
    predicted = np.asarray(predict(rset.images))
    if predicted.ndim == 2:
        predicted = np.argmax(predicted, axis=1)
    right = np.asarray(predicted == rset.labels)
    per = {
        name: float(right[rset.transform == i].mean()) if np.any(rset.transform == i) else 0.0
        for i, name in enumerate(TRANSFORMS)
    }
    return Robustness(
        accuracy=float(right.mean()) if len(right) else 0.0,
        per_transform=per,
        correct=int(right.sum()),
        total=len(right),
        seed=rset.seed,
        right=right,
    )
