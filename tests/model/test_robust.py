"""The seeded transformed test set: reproducible, and each transform does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_sweep.model import TRANSFORMS, robust_set, robustness
from mnist_sweep.model._robust import _affine


def test_the_set_is_reproducible_run_to_run_and_changes_with_the_seed(tiny_mnist) -> None:  # type: ignore[no-untyped-def]
    x, y = tiny_mnist.x_test, tiny_mnist.y_test
    first, again = robust_set(x, y), robust_set(x, y)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.labels, again.labels)
    assert first.images.shape == (len(TRANSFORMS) * len(x), 28, 28) and first.images.dtype == np.float32
    assert first.images.min() >= 0.0 and first.images.max() <= 1.0
    assert not np.array_equal(robust_set(x, y, seed=1).images, first.images)
    for i, _ in enumerate(TRANSFORMS):
        assert not np.array_equal(first.images[first.transform == i], x), "every transform changes the images"
    erode, dilate = (first.images[first.transform == TRANSFORMS.index(k)] for k in ("erode", "dilate"))
    assert erode.sum() < x.sum() < dilate.sum()


def test_geometry_by_hand() -> None:
    image = np.zeros((1, 28, 28), dtype=np.float32)
    image[0, 10, 20] = 1.0
    same = _affine(image, np.zeros(1), np.zeros((1, 2)), np.ones(1))
    assert np.array_equal(same, image)
    moved = _affine(image, np.zeros(1), np.array([[2.0, -3.0]]), np.ones(1))
    assert moved[0, 12, 17] == 1.0 and moved.sum() == 1.0
    turned = _affine(image, np.array([np.pi / 2]), np.zeros((1, 2)), np.ones(1))
    # A quarter turn: output (r, c) reads input (c, 27 - r), so the dot at (10, 20) lands at (7, 10).
    assert turned[0, 7, 10] == pytest.approx(1.0) and turned.sum() == pytest.approx(1.0)


def test_robust_accuracy_is_reproducible_and_broken_down_per_transform(tiny_mnist) -> None:  # type: ignore[no-untyped-def]
    rset = robust_set(tiny_mnist.x_test, tiny_mnist.y_test)

    def predict(images: np.ndarray) -> np.ndarray:  # a fixed "model": ink in the centre means class 1
        return (images[:, 10:18, 12:16].mean(axis=(1, 2)) > 0.3).astype(int)

    first, again = robustness(predict, rset), robustness(predict, rset)
    assert first == again
    assert set(first.per_transform) == set(TRANSFORMS)
    assert first.total == len(rset) and first.accuracy == first.correct / first.total
    assert np.mean(list(first.per_transform.values())) == pytest.approx(
        first.accuracy
    )  # each transform weighs the same
