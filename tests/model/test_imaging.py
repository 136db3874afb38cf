"""mnist_sweep.model._imaging on real MNIST test digits, written out the ways users hand them to `predict`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_sweep.errors import DataError
from mnist_sweep.model._data import Dataset
from mnist_sweep.model._imaging import is_dark_on_light, load_images, normalize_digit

N = 20  # real test digits per variant: enough to catch a bad case, fast on 2 cores
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits(tiny_mnist: Dataset) -> np.ndarray:
    """Real MNIST test digits as stored: uint8, white on black, 28x28."""
    return np.rint(tiny_mnist.x_test[:N] * 255).astype(np.uint8)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    idx = np.arange(image.shape[0])
    total = image.sum()
    return float((image.sum(axis=1) * idx).sum() / total), float((image.sum(axis=0) * idx).sum() / total)


def _upscale(digit: np.ndarray, factor: int) -> np.ndarray:
    side = digit.shape[0] * factor
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.LANCZOS))


# ---------------------------------------------------------------------------------------------
# 28x28 files: taken as already MNIST-normalised, so they come back exactly


def test_mnist_digit_saved_as_png_comes_back_exactly(digits: np.ndarray, tmp_path: Path) -> None:
    paths = []
    for i, digit in enumerate(digits):
        Image.fromarray(digit).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    images, labels = load_images(paths)
    assert images.dtype == np.float32
    assert images.shape == (N, 28, 28)
    assert labels == paths
    np.testing.assert_allclose(images, digits / 255.0, atol=1 / 255 / 2)


def test_dark_on_light_png_is_inverted(digits: np.ndarray, tmp_path: Path) -> None:
    paths = []
    for i, digit in enumerate(digits):
        Image.fromarray(255 - digit).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    images, _ = load_images(paths)
    np.testing.assert_allclose(images, digits / 255.0, atol=1 / 255 / 2)


def test_exif_orientation_is_applied(digits: np.ndarray, tmp_path: Path) -> None:
    """A phone photo stored sideways with an EXIF "rotate 90° clockwise" tag loads upright."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels need a 90° clockwise turn
    Image.fromarray(digits[0]).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    images, _ = load_images([tmp_path / "sideways.png"])
    np.testing.assert_allclose(images[0], digits[0] / 255.0, atol=1 / 255 / 2)


# ---------------------------------------------------------------------------------------------
# other sizes and formats: MNIST-normalised, so close to (not equal to) the original digit


def _upscaled_rgb_jpeg_dark_on_light(digit: np.ndarray, path: Path) -> Path:
    path = path.with_suffix(".jpg")
    Image.fromarray(255 - _upscale(digit, 10)).convert("RGB").save(path, quality=85)
    return path


def _upscaled_rgb_jpeg_light_on_dark(digit: np.ndarray, path: Path) -> Path:
    path = path.with_suffix(".jpeg")
    Image.fromarray(_upscale(digit, 10)).convert("RGB").save(path, quality=90)
    return path


def _off_centre_on_bigger_canvas(digit: np.ndarray, path: Path) -> Path:
    canvas = np.zeros((120, 90), dtype=np.uint8)
    canvas[70:98, 5:33] = digit
    Image.fromarray(canvas).save(path)
    return path


def _off_centre_dark_on_light_canvas(digit: np.ndarray, path: Path) -> Path:
    canvas = np.full((64, 200), 255, dtype=np.uint8)
    canvas[3:31, 150:178] = 255 - digit
    Image.fromarray(canvas).save(path)
    return path


def _black_ink_on_transparent_rgba(digit: np.ndarray, path: Path) -> Path:
    """What drawing apps export: black strokes whose alpha is the ink; composited on white."""
    rgba = np.zeros((100, 100, 4), dtype=np.uint8)
    rgba[20:76, 30:86, 3] = _upscale(digit, 2)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def _sixteen_bit_grey_dark_on_light(digit: np.ndarray, path: Path) -> Path:
    big = _upscale(255 - digit, 4).astype(np.uint16) * 257
    Image.fromarray(big).save(path)
    with Image.open(path) as written:
        assert written.mode.startswith("I")
    return path


def _palette_gif(digit: np.ndarray, path: Path) -> Path:
    path = path.with_suffix(".gif")
    Image.fromarray(255 - _upscale(digit, 3)).convert("P").save(path)
    return path


def _phone_photo_of_paper(digit: np.ndarray, path: Path) -> Path:
    """Grey paper with grain and a lighting gradient, dark ink, digit away from the centre."""
    rng = np.random.default_rng(int(digit.sum()))
    height, width = 400, 300
    paper = 190 + 30 * np.linspace(0, 1, width)[None, :] + rng.normal(0, 6, (height, width))
    ink = _upscale(digit, 7) / 255.0
    paper[40:236, 60:256] = paper[40:236, 60:256] * (1 - ink) + 35 * ink
    rgb = np.stack([paper, paper * 0.97, paper * 0.9], axis=-1)
    path = path.with_suffix(".jpg")
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(path, quality=80)
    return path


VARIANTS: list[tuple[Callable[[np.ndarray, Path], Path], bool]] = [
    # (writer, whether the file is dark ink on light paper)
    (_upscaled_rgb_jpeg_dark_on_light, True),
    (_upscaled_rgb_jpeg_light_on_dark, False),
    (_off_centre_on_bigger_canvas, False),
    (_off_centre_dark_on_light_canvas, True),
    (_black_ink_on_transparent_rgba, True),
    (_sixteen_bit_grey_dark_on_light, True),
    (_palette_gif, True),
    (_phone_photo_of_paper, True),
]


def _grey_as_stored(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode == "RGBA":
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)  # type: ignore[assignment]
        if image.mode.startswith("I"):
            return np.asarray(image, dtype=np.float64) / 65535
        return np.asarray(image.convert("L"), dtype=np.float64) / 255


@pytest.mark.parametrize(("write", "dark_on_light"), VARIANTS, ids=lambda v: getattr(v, "__name__", "").strip("_"))
def test_normalised_like_mnist_and_close_to_the_original(
    digits: np.ndarray, tmp_path: Path, write: Callable[[np.ndarray, Path], Path], dark_on_light: bool
) -> None:
    paths = [write(digit, tmp_path / f"digit{i}.png") for i, digit in enumerate(digits)]
    assert [is_dark_on_light(_grey_as_stored(p)) for p in paths] == [dark_on_light] * N

    images, labels = load_images(paths)

    assert labels == [str(p) for p in paths]
    assert images.shape == (N, 28, 28)
    assert images.dtype == np.float32
    assert images.min() >= 0.0
    assert images.max() <= 1.0
    originals = digits / 255.0
    correlations = [_correlation(image, original) for image, original in zip(images, originals, strict=True)]
    assert min(correlations) > 0.8, correlations
    assert np.mean(correlations) > 0.9, correlations
    for image in images:
        assert image.max() > 0.9  # contrast restored: ink at full strength
        assert np.median(image) < 0.02  # background black, as in MNIST
        row, col = _centre_of_mass(image)
        assert abs(row - 14) < 0.5
        assert abs(col - 14) < 0.5


def test_invert_can_be_forced(digits: np.ndarray, tmp_path: Path) -> None:
    Image.fromarray(digits[0]).save(tmp_path / "small.png")
    flipped, _ = load_images([tmp_path / "small.png"], invert=True)
    np.testing.assert_allclose(flipped[0], 1.0 - digits[0] / 255.0, atol=1 / 255 / 2)
    # Not inverting dark-on-light paper leaves a bright background and no ink above it: blank.
    path = _upscaled_rgb_jpeg_dark_on_light(digits[0], tmp_path / "d.jpg")
    automatic, _ = load_images([path])
    kept, _ = load_images([path], invert=False)
    assert _correlation(automatic[0], digits[0] / 255.0) > 0.8
    assert not kept.any()


def test_normalize_digit_scales_the_longer_side_to_20_pixels() -> None:
    tall = np.zeros((300, 500))
    tall[50:250, 100:140] = 1.0  # a 200x40 bar: becomes 20x4
    image = normalize_digit(tall)
    rows = np.flatnonzero((image > 0.5).any(axis=1))
    cols = np.flatnonzero((image > 0.5).any(axis=0))
    assert 19 <= len(rows) <= 21
    assert 3 <= len(cols) <= 5
    assert _centre_of_mass(image) == pytest.approx((14.0, 14.0), abs=0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (50, 40), 255),
        lambda: Image.new("L", (50, 40), 0),
        lambda: Image.new("RGB", (64, 64), (128, 128, 128)),
        lambda: Image.new("RGBA", (30, 30), (0, 0, 0, 0)),
        lambda: Image.new("L", (1, 1), 0),
        lambda: Image.new("L", (28, 28), 255),
    ],
    ids=["white", "black", "grey-rgb", "transparent", "one-pixel", "white-28x28"],
)
def test_blank_image_gives_zeros(make: Callable[[], Image.Image], tmp_path: Path) -> None:
    make().save(tmp_path / "blank.png")
    images, _ = load_images([tmp_path / "blank.png"])
    assert images.shape == (1, 28, 28)
    assert not images.any()


# ---------------------------------------------------------------------------------------------
# .npy


def test_npy_variants(digits: np.ndarray, tmp_path: Path) -> None:
    unit = digits / np.float32(255)
    np.save(tmp_path / "one.npy", digits[0])
    np.save(tmp_path / "stack.npy", digits[:3])
    np.save(tmp_path / "flat.npy", unit[:2].reshape(2, 784).astype(np.float64))
    np.save(tmp_path / "channel.npy", digits[:2, :, :, None].astype(np.float32))  # floats 0..255
    np.save(tmp_path / "ints.npy", digits[:1].astype(np.int64))
    os.chdir(tmp_path)

    images, labels = load_images(["one.npy", "stack.npy", "flat.npy", "channel.npy", "ints.npy"])

    assert labels == [
        "one.npy",
        "stack.npy[0]",
        "stack.npy[1]",
        "stack.npy[2]",
        "flat.npy[0]",
        "flat.npy[1]",
        "channel.npy[0]",
        "channel.npy[1]",
        "ints.npy[0]",
    ]
    expected = np.concatenate([unit[:1], unit[:3], unit[:2], unit[:2], unit[:1]])
    assert images.dtype == np.float32
    np.testing.assert_allclose(images, expected, atol=1e-6)


def test_npy_is_recognised_by_content_and_mixes_with_images(digits: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", digits[:2])
    (tmp_path / "a.npy").rename(tmp_path / "digits.bin")
    Image.fromarray(digits[2]).save(tmp_path / "c.png")
    images, labels = load_images([tmp_path / "digits.bin", tmp_path / "c.png"])
    assert labels == [f"{tmp_path / 'digits.bin'}[0]", f"{tmp_path / 'digits.bin'}[1]", str(tmp_path / "c.png")]
    np.testing.assert_allclose(images, digits[:3] / 255.0, atol=1e-6)


def test_single_path_and_empty_list(digits: np.ndarray, tmp_path: Path) -> None:
    Image.fromarray(digits[0]).save(tmp_path / "d.png")
    images, labels = load_images(tmp_path / "d.png")
    assert images.shape == (1, 28, 28)
    assert labels == [str(tmp_path / "d.png")]
    empty, none = load_images([])
    assert empty.shape == (0, 28, 28)
    assert empty.dtype == np.float32
    assert none == []


# ---------------------------------------------------------------------------------------------
# bad files: one DataError, one line, naming the file; nothing left open


def _text_renamed_png(folder: Path) -> Path:
    (folder / "notes.png").write_text("this is a shopping list, not a digit\n")
    return folder / "notes.png"


def _truncated_png(folder: Path) -> Path:
    image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(image).save(folder / "whole.png")
    blob = (folder / "whole.png").read_bytes()
    (folder / "cut.png").write_bytes(blob[: len(blob) // 2])
    return folder / "cut.png"


def _truncated_jpeg(folder: Path) -> Path:
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "whole.jpg")
    blob = (folder / "whole.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    return folder / "cut.jpg"


def _npy_wrong_shape(folder: Path) -> Path:
    np.save(folder / "shape.npy", np.zeros((3, 5), dtype=np.uint8))
    return folder / "shape.npy"


def _npy_object_array(folder: Path) -> Path:
    np.save(folder / "objects.npy", np.array([{"x": 1}, "a"], dtype=object), allow_pickle=True)
    return folder / "objects.npy"


def _npy_with_nan(folder: Path) -> Path:
    array = np.zeros((28, 28), dtype=np.float32)
    array[3, 4] = np.nan
    np.save(folder / "nan.npy", array)
    return folder / "nan.npy"


def _npy_ints_out_of_range(folder: Path) -> Path:
    np.save(folder / "wide.npy", np.full((1, 28, 28), 1000, dtype=np.int32))
    return folder / "wide.npy"


def _npy_negative_floats(folder: Path) -> Path:
    np.save(folder / "negative.npy", np.full((28, 28), -0.5))
    return folder / "negative.npy"


def _npy_no_images(folder: Path) -> Path:
    np.save(folder / "empty.npy", np.zeros((0, 784), dtype=np.uint8))
    return folder / "empty.npy"


def _npy_truncated(folder: Path) -> Path:
    np.save(folder / "whole.npy", np.zeros((4, 28, 28), dtype=np.uint8))
    (folder / "cut.npy").write_bytes((folder / "whole.npy").read_bytes()[:300])
    return folder / "cut.npy"


def _text_renamed_npy(folder: Path) -> Path:
    (folder / "fake.npy").write_text("0 0 0\n")
    return folder / "fake.npy"


def _postscript_renamed_png(folder: Path) -> Path:
    """EPS would be rendered by Ghostscript: refused like any file that is not a raster image."""
    (folder / "art.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n")
    return folder / "art.png"


def _missing_file(folder: Path) -> Path:
    return folder / "no-such-digit.png"


def _a_directory(folder: Path) -> Path:
    (folder / "images.png").mkdir()
    return folder / "images.png"


BAD_FILES: list[tuple[Callable[[Path], Path], str]] = [
    (_text_renamed_png, "cannot read image (cannot identify image file)"),
    (_truncated_png, "cannot read image"),
    (_truncated_jpeg, "cannot read image"),
    (_npy_wrong_shape, "shape (3, 5)"),
    (_npy_object_array, "object arrays are not loaded"),
    (_npy_with_nan, "NaN"),
    (_npy_ints_out_of_range, "0..255"),
    (_npy_negative_floats, "[0, 1]"),
    (_npy_no_images, "no images"),
    (_npy_truncated, "not a readable .npy file"),
    (_text_renamed_npy, "not a .npy file"),
    (_postscript_renamed_png, "cannot identify image file"),
    (_missing_file, "file not found"),
    (_a_directory, "is a directory"),
]


def _open_files() -> set[str]:
    fd_dir = Path("/proc/self/fd")
    return {os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir) if (fd_dir / fd).is_symlink()}


@pytest.mark.parametrize(("make", "reason"), BAD_FILES, ids=lambda v: getattr(v, "__name__", "").strip("_"))
def test_bad_file_raises_data_error_naming_it(
    digits: np.ndarray, tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    bad = make(tmp_path)
    good = tmp_path / "good.png"
    Image.fromarray(digits[0]).save(good)
    before = _open_files()

    with pytest.raises(DataError) as caught:
        load_images([good, bad, good])

    message = str(caught.value)
    assert message.startswith(f"{bad}: ")
    assert reason in message
    assert "\n" not in message
    assert not {f for f in _open_files() - before if str(tmp_path) in f}, "a file was left open"


def test_importing_imaging_loads_neither_tensorflow_nor_mlflow() -> None:
    code = "import sys, mnist_sweep.model._imaging; print(sorted({'tensorflow', 'keras', 'mlflow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
