"""User files -> MNIST-shaped model input, for ``mnist-sweep predict``.

numpy and Pillow only: no TensorFlow, no MLflow.

Two kinds of file are read:

* **Images** (anything Pillow decodes: PNG, JPEG, GIF, BMP, TIFF, WebP, ... in any mode, 8 or 16
  bit, EXIF rotation applied, transparency composited on white) are made to look like MNIST:
  grey levels, a bright digit on a black background, then the preprocessing of the original
  MNIST set (LeCun et al.): crop to the ink, scale the longer side to 20 px keeping the aspect
  ratio, and place it in a 28x28 field so that the centre of mass lands on pixel (14, 14) (where
  it lies, on average, in MNIST itself; placed to a fraction of a pixel, see :func:`normalize_digit`).

  An image that is already 28x28 is taken as already MNIST-normalised (an exported MNIST digit,
  or a drawing made on a 28x28 canvas): it only gets grey conversion and, if needed, inversion,
  so an MNIST digit saved as PNG comes back exactly as it was. Re-normalising it would move and
  resample a digit that the models were trained on unchanged.

* **NumPy arrays** (``.npy``, recognised by content): one image ``(28, 28)`` or a stack
  ``(n, 28, 28)``, ``(n, 28, 28, 1)``, ``(n, 784)``, taken as already MNIST-normalised. Integers
  must lie in 0..255 and are divided by 255; floats are taken as [0, 1], or as 0..255 when their
  maximum exceeds 1. Pickled (object) arrays are never loaded.

Every problem with a file raises :class:`~mnist_sweep.errors.DataError` with one line that names
the file.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_sweep.errors import DataError

log = logging.getLogger(__name__)

SIDE = 28
"""Side of an MNIST image, in pixels."""
DIGIT_BOX = 20
"""MNIST scales each digit so that its longer side is this many pixels."""
CENTRE = 14.0
"""Where MNIST digits have their centre of mass (row and column, 0-based): measured 14.00 +- 0.29."""
INK_THRESHOLD = 0.3
"""After background removal, pixels at least this bright count as ink for the bounding box."""
NOISE_FLOOR = 0.05
"""After background removal, fainter pixels are set to 0 (paper texture, JPEG ringing)."""
MIN_CONTRAST = 0.1
"""An image whose brightest ink is within this of its background is blank."""
MAX_WORKING_SIDE = 200
"""Larger digits are first shrunk to this (10x the final size) before placement."""

NPY_MAGIC = b"\x93NUMPY"
_EXCLUDED_FORMATS = frozenset({"EPS"})
_HIGH_DEPTH_SCALE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def load_images(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    invert: bool | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read image and ``.npy`` files into MNIST-like model input.

    Returns a float32 array ``(n, 28, 28)`` with values in [0, 1] (white digit on black) and one
    label per image: the path as given, or ``"<path>[i]"`` for image ``i`` of a stacked ``.npy``.

    ``invert`` forces (``True``) or forbids (``False``) inverting images; by default each image is
    inverted when it is dark ink on light paper (its border is mostly bright). ``.npy`` arrays are
    never inverted. A single path is accepted as well as a sequence of them.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    images: list[np.ndarray] = []
    labels: list[str] = []
    for path in paths:
        name = os.fspath(path)
        for image, label in _read_file(Path(name), name, invert=invert):
            images.append(image)
            labels.append(label)
    if not images:
        return np.zeros((0, SIDE, SIDE), dtype=np.float32), labels
    return np.stack(images).astype(np.float32, copy=False), labels


def is_dark_on_light(gray: np.ndarray) -> bool:
    """Whether a grey image (values in [0, 1]) shows dark ink on light paper.

    Decided by the border: a handwritten digit rarely covers most of it, so the median of the
    outermost rows and columns is the paper's level.
    """
    return bool(_border_level(gray) > 0.5)


def normalize_digit(ink: np.ndarray) -> np.ndarray:
    """MNIST-normalise a grey image of a bright digit on a dark background (any size, [0, 1]).

    Background level removed, cropped to the ink, longer side scaled to 20 px (Lanczos), placed
    in a 28x28 field with its centre of mass at (14, 14). A blank image gives all zeros.

    Unlike MNIST's integer shift, the placement is sub-pixel (the Lanczos resampling window is
    positioned on the exact centre of mass): a digit's pixels then vary smoothly with the input
    instead of jumping a whole pixel when the centre of mass crosses a half-pixel, which on real
    MNIST test digits redrawn at 10x raised the worst correlation with the original from about
    0.7 to about 0.87.
    """
    ink = np.asarray(ink, dtype=np.float64)
    level = _border_level(ink)
    peak = float(ink.max(initial=0.0))
    if peak - level < MIN_CONTRAST:
        return np.zeros((SIDE, SIDE), dtype=np.float32)
    ink = np.clip((ink - level) / (peak - level), 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    crop = Image.fromarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32))
    if max(crop.size) > MAX_WORKING_SIDE:
        # A photo's digit can be thousands of pixels wide: shrink it first so the padding below stays small.
        factor = MAX_WORKING_SIDE / max(crop.size)
        working = (max(1, round(crop.width * factor)), max(1, round(crop.height * factor)))
        crop = crop.resize(working, Image.Resampling.LANCZOS)
    return _place_centred(np.asarray(crop, dtype=np.float64))


def _place_centred(digit: np.ndarray) -> np.ndarray:
    total = digit.sum()
    if total <= 0:
        return np.zeros((SIDE, SIDE), dtype=np.float32)
    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    com_row = float((digit.sum(axis=1) * np.arange(height)).sum() / total)
    com_col = float((digit.sum(axis=0) * np.arange(width)).sum() / total)
    # Resize needs its source box inside the image: pad by a whole output field on each side.
    pad = math.ceil(SIDE / scale) + 1
    padded = Image.fromarray(np.pad(digit, pad).astype(np.float32))
    # Pixel i spans [i, i+1); the field's pixel 14 is centred on 14.5 in output coordinates.
    left = pad + com_col + 0.5 - (CENTRE + 0.5) / scale
    top = pad + com_row + 0.5 - (CENTRE + 0.5) / scale
    box = (left, top, left + SIDE / scale, top + SIDE / scale)
    field = padded.resize((SIDE, SIDE), Image.Resampling.LANCZOS, box=box)
    return np.clip(np.asarray(field, dtype=np.float32), 0.0, 1.0)


def _border_level(gray: np.ndarray) -> float:
    edges = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    return float(np.median(edges))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _read_file(path: Path, name: str, *, invert: bool | None) -> list[tuple[np.ndarray, str]]:
    try:
        with path.open("rb") as fh:
            is_npy = fh.read(len(NPY_MAGIC)) == NPY_MAGIC
            fh.seek(0)
            if is_npy:
                return _read_npy(fh, name)
            if path.suffix.lower() == ".npy":
                raise DataError(f"{name}: not a .npy file (no NumPy header)")
            return [(_read_picture(fh, name, invert=invert), name)]
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not an image or .npy file") from None
    except PermissionError:
        raise DataError(f"{name}: permission denied") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read file ({_one_line(exc)})") from None


def _read_picture(fh: IO[bytes], name: str, *, invert: bool | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # A decompression bomb (over ~89 megapixels) is refused rather than decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh, formats=_raster_formats()) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                gray = _to_gray(image)
    except UnidentifiedImageError:
        raise DataError(f"{name}: cannot read image (cannot identify image file)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{name}: image too large ({_one_line(exc)})") from None
    # Pillow reports corrupt data with whichever of these its decoder happens to raise.
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise DataError(f"{name}: cannot read image ({_one_line(exc)})") from None
    if gray.size == 0:
        raise DataError(f"{name}: image has no pixels")
    flip = is_dark_on_light(gray) if invert is None else invert
    log.debug("%s: %dx%d, %s", name, gray.shape[1], gray.shape[0], "inverted" if flip else "not inverted")
    if flip:
        gray = 1.0 - gray
    if gray.shape == (SIDE, SIDE):
        return gray.astype(np.float32)
    digit = normalize_digit(gray)
    if not digit.any():
        log.warning("%s: no digit found (blank image); using an empty 28x28 image", name)
    return digit


def _raster_formats() -> list[str]:
    # EPS is decoded by running Ghostscript on the file: not for files from strangers.
    Image.init()
    return [name for name in Image.OPEN if name not in _EXCLUDED_FORMATS]


def _to_gray(image: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] (float64): luminance, transparency composited on white."""
    if image.mode in _HIGH_DEPTH_SCALE or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode in _HIGH_DEPTH_SCALE:
            scale = _HIGH_DEPTH_SCALE[image.mode]
        else:
            peak = float(values.max(initial=0.0))
            scale = 1.0 if image.mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 else 65535.0
        if not np.isfinite(values).all():
            raise ValueError("pixel values are not finite")
        return np.clip(values / scale, 0.0, 1.0)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def _read_npy(fh: IO[bytes], name: str) -> list[tuple[np.ndarray, str]]:
    try:
        array = np.load(fh, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{name}: object arrays are not loaded (they would run pickled code)") from None
        raise DataError(f"{name}: not a readable .npy file ({_one_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{name}: not a readable .npy file ({_one_line(exc)})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{name}: not a .npy array")
    stack = _as_stack(array, name)
    pixels = _as_unit_range(stack, name)
    if array.ndim == 2 and array.shape == (SIDE, SIDE):
        return [(pixels[0], name)]
    return [(image, f"{name}[{i}]") for i, image in enumerate(pixels)]


def _as_stack(array: np.ndarray, name: str) -> np.ndarray:
    shape = array.shape
    if shape == (SIDE, SIDE):
        stack = array[np.newaxis]
    elif len(shape) == 3 and shape[1:] == (SIDE, SIDE):
        stack = array
    elif len(shape) == 4 and shape[1:] == (SIDE, SIDE, 1):
        stack = array[..., 0]
    elif len(shape) == 2 and shape[1] == SIDE * SIDE:
        stack = array.reshape(-1, SIDE, SIDE)
    else:
        raise DataError(f"{name}: array of shape {shape}; expected (28, 28), (n, 28, 28), (n, 28, 28, 1) or (n, 784)")
    if len(stack) == 0:
        raise DataError(f"{name}: array of shape {shape} holds no images")
    return stack


def _as_unit_range(stack: np.ndarray, name: str) -> np.ndarray:
    kind = stack.dtype.kind
    if kind in "ui":
        low, high = int(stack.min()), int(stack.max())
        if low < 0 or high > 255:
            raise DataError(f"{name}: integer pixels must lie in 0..255, found {low}..{high}")
        return stack.astype(np.float32) / np.float32(255)
    if kind != "f":
        raise DataError(f"{name}: unsupported dtype {stack.dtype}; expected uint8 0..255 or floats in [0, 1]")
    values = stack.astype(np.float32)
    if not np.isfinite(values).all():
        raise DataError(f"{name}: array contains NaN or infinite values")
    smallest, largest = float(values.min()), float(values.max())
    if smallest < 0.0 or largest > 255.0:
        raise DataError(f"{name}: float pixels must lie in [0, 1] (or 0..255), found {smallest:g}..{largest:g}")
    return values / np.float32(255) if largest > 1.0 else values
