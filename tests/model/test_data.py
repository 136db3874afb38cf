"""The IDX loader against the facts published for MNIST and Fashion-MNIST, and its failure modes."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_sweep.model import _data as data
from mnist_sweep.model._data import FILES, DataError, load_dataset, load_raw, read_idx

README_HASH = re.compile(r"^\s*([0-9a-f]{64})\s+(\S+)\s*$")


def _readme_hashes(data_dir: Path) -> dict[str, str]:
    table = {}
    for line in (data_dir / "README.md").read_text().splitlines():
        match = README_HASH.match(line)
        if match:
            table[match.group(2)] = match.group(1)
    return table


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], data.RawData]:
    """An empty per-process cache, so a test sees its own reads (the real cache is left alone)."""
    cache: dict[tuple[str, str], data.RawData] = {}
    monkeypatch.setattr(data, "_RAW_CACHE", cache)
    return cache


# --- the shipped files ---------------------------------------------------------------------


def test_every_file_matches_the_readme_sha256(data_dir: Path) -> None:
    expected = _readme_hashes(data_dir)
    assert len(expected) == 8
    on_disk = {
        str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data_dir.glob("*/*.gz"))
    }
    assert on_disk == expected
    loaded = {**load_raw("mnist", data_dir).file_hashes, **load_raw("fashion_mnist", data_dir).file_hashes}
    assert loaded == expected


def test_mnist_matches_the_published_facts(data_dir: Path) -> None:
    raw = load_raw("mnist", data_dir)
    assert raw.train_images.shape == (60_000, 28, 28)
    assert raw.test_images.shape == (10_000, 28, 28)
    assert raw.train_images.dtype == np.uint8
    assert raw.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(raw.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert raw.train_images.mean() == pytest.approx(33.318, abs=5e-4)
    ds = load_dataset("mnist", data_dir=data_dir)
    all_train = np.concatenate([ds.x_train, ds.x_val])
    assert float(all_train.mean(dtype=np.float64)) == pytest.approx(0.1307, abs=5e-5)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.class_names == tuple("0123456789")


def test_fashion_mnist_shapes_and_counts(data_dir: Path) -> None:
    raw = load_raw("fashion-mnist", data_dir)
    assert raw.name == "fashion_mnist"
    assert raw.train_images.shape == (60_000, 28, 28)
    assert raw.test_images.shape == (10_000, 28, 28)
    assert np.bincount(raw.train_labels).tolist() == [6000] * 10
    assert np.bincount(raw.test_labels).tolist() == [1000] * 10
    ds = load_dataset("fashion_mnist", data_dir=data_dir)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert len(ds.class_names) == 10


# --- splits --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_default_split_holds_out_the_last_10000_training_images(data_dir: Path, name: str) -> None:
    raw = load_raw(name, data_dir)
    ds = load_dataset(name, data_dir=data_dir)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (50_000, 10_000, 10_000)
    assert len(ds.y_train) == 50_000 and len(ds.y_val) == 10_000 and len(ds.y_test) == 10_000
    np.testing.assert_array_equal(ds.x_val, raw.train_images[50_000:] / np.float32(255))
    np.testing.assert_array_equal(ds.y_val, raw.train_labels[50_000:])
    np.testing.assert_array_equal(ds.y_train, raw.train_labels[:50_000])
    np.testing.assert_array_equal(ds.y_test, raw.test_labels)
    train_images = {image.tobytes() for image in raw.train_images[:50_000]}
    assert not any(image.tobytes() in train_images for image in raw.train_images[50_000:])
    assert ds.describe().startswith(f"{name}: 50000 train / 10000 validation / 10000 test")


def test_val_size_is_checked(data_dir: Path) -> None:
    assert len(load_dataset("mnist", data_dir=data_dir, val_size=5_000).x_val) == 5_000
    for bad in (0, 60_000, -1):
        with pytest.raises(DataError, match=rf"validation size {bad} must be between 1 and 59999"):
            load_dataset("mnist", data_dir=data_dir, val_size=bad)


@pytest.mark.parametrize(("limit", "train_counts", "small_counts"), [(300, [30] * 10, [6] * 10), (305, None, None)])
def test_limit_gives_balanced_classes(
    data_dir: Path, limit: int, train_counts: list[int] | None, small_counts: list[int] | None
) -> None:
    ds = load_dataset("mnist", data_dir=data_dir, limit=limit)
    assert len(ds.x_train) == limit and ds.limit == limit
    assert len(ds.x_val) == len(ds.x_test) == limit // 5
    for labels, expected in ((ds.y_train, train_counts), (ds.y_val, small_counts), (ds.y_test, small_counts)):
        counts = np.bincount(labels, minlength=10)
        assert counts.max() - counts.min() <= 1
        if expected is not None:
            assert counts.tolist() == expected
    again = load_dataset("mnist", data_dir=data_dir, limit=limit)
    np.testing.assert_array_equal(ds.x_train, again.x_train)


def test_limit_keeps_at_least_ten_validation_images_and_rejects_tiny_limits(data_dir: Path) -> None:
    ds = load_dataset("mnist", data_dir=data_dir, limit=20)
    assert len(ds.x_val) == len(ds.x_test) == 10
    assert np.bincount(ds.y_val).tolist() == [1] * 10
    with pytest.raises(DataError, match="limit 9 is too small"):
        load_dataset("mnist", data_dir=data_dir, limit=9)


def test_train_limit_cuts_only_the_training_split(data_dir: Path) -> None:
    ds = load_dataset("mnist", data_dir=data_dir, train_limit=300)
    assert ds.train_limit == 300 and ds.limit is None
    assert np.bincount(ds.y_train, minlength=10).tolist() == [30] * 10
    assert len(ds.x_val) == 10_000 and len(ds.x_test) == 10_000
    assert ds.describe().startswith("mnist: 300 train / 10000 validation / 10000 test images")
    full = load_dataset("mnist", data_dir=data_dir)
    np.testing.assert_array_equal(ds.x_test, full.x_test)
    np.testing.assert_array_equal(ds.y_val, full.y_val)
    # the same class-balanced training images as ``limit`` picks
    np.testing.assert_array_equal(ds.x_train, load_dataset("mnist", data_dir=data_dir, limit=300).x_train)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_limit": 9}, "train_limit 9 is too small"),
        ({"limit": 300, "train_limit": 300}, "limit 300 and train_limit 300 both given"),
    ],
)
def test_train_limit_is_checked(data_dir: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", data_dir=data_dir, **kwargs)


def test_balanced_indices_are_sorted_and_capped() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert data.balanced_indices(labels, 3).tolist() == [0, 3, 5]
    assert data.balanced_indices(labels, 4).tolist() == [0, 1, 3, 5]
    assert data.balanced_indices(labels, 100).tolist() == list(range(9))


def test_data_is_read_once_per_process(
    data_dir: Path, fresh_cache: dict[tuple[str, str], data.RawData], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_read_folder = data.read_folder

    def counting_read_folder(name: str, folder: Path) -> data.RawData:
        calls.append(name)
        return real_read_folder(name, folder)

    monkeypatch.setattr(data, "read_folder", counting_read_folder)
    first = load_raw("mnist", data_dir)
    load_dataset("mnist", data_dir=data_dir, limit=300)
    load_dataset("mnist", data_dir=data_dir)
    assert load_raw("mnist", data_dir / "mnist") is first  # the same folder, named another way
    assert calls == ["mnist"]
    load_raw("fashion_mnist", data_dir)
    assert calls == ["mnist", "fashion_mnist"]
    with pytest.raises(ValueError, match="read-only"):
        first.train_images[0, 0, 0] = 1  # the cached arrays cannot be changed behind the cache's back


# --- where the files are looked for ---------------------------------------------------------


def test_env_var_is_used_and_an_explicit_folder_wins(data_dir: Path, tmp_path: Path) -> None:
    assert load_raw("mnist").source == str(data_dir / "mnist")  # conftest sets $MNIST_SWEEP_DATA_DIR
    assert data.locate("mnist", data_dir / "mnist") == data_dir / "mnist"  # the data set's own folder
    with pytest.raises(DataError, match="--data-dir"):
        data.locate("mnist", tmp_path)


def test_missing_folder_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"--data-dir {re.escape(str(missing))}: no such folder"):
        load_dataset("mnist", data_dir=missing)
    monkeypatch.setenv(data.ENV_VAR, str(missing))
    with pytest.raises(DataError, match=rf"\$MNIST_SWEEP_DATA_DIR {re.escape(str(missing))}: no such folder"):
        load_dataset("mnist")


def test_relative_data_dir_is_reported_as_an_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "rel"))):
        load_dataset("mnist", data_dir="rel")  # conftest makes tmp_path the working folder


def test_folder_without_the_files_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "fashion-mnist" / FILES["train_images"]) in message
    assert str(tmp_path / FILES["train_images"]) in message


def test_empty_data_dir_is_an_error_not_a_fallback() -> None:
    with pytest.raises(DataError, match="--data-dir is empty"):
        load_dataset("mnist", data_dir="")


def test_the_other_data_sets_folder_is_not_taken_for_this_one(data_dir: Path) -> None:
    with pytest.raises(DataError, match="no fashion_mnist data"):
        load_raw("fashion_mnist", data_dir / "mnist")


@pytest.mark.parametrize("name", ["cifar10", "emnist", ""])
def test_unknown_dataset_name(name: str) -> None:
    with pytest.raises(DataError, match=rf"unknown dataset {name!r}; choose one of mnist, fashion_mnist"):
        load_dataset(name)


@pytest.mark.parametrize(("given", "normalised"), [("mnist", "mnist"), ("Fashion-MNIST", "fashion_mnist")])
def test_dataset_names_are_normalised(given: str, normalised: str) -> None:
    assert data.check_name(given) == normalised


# --- damaged files --------------------------------------------------------------------------


def _copy_of_mnist(data_dir: Path, target: Path) -> Path:
    folder = target / "mnist"
    folder.mkdir(parents=True)
    for filename in FILES.values():
        shutil.copy(data_dir / "mnist" / filename, folder / filename)
    return folder


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    with gzip.open(path, "rb") as fh:
        content = fh.read()
    path.write_bytes(gzip.compress(change(content), compresslevel=1))


def _header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims)


DAMAGE: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "truncated gzip": (
        FILES["test_images"],
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "not a readable gzip file",
    ),
    "not gzip at all": (FILES["test_labels"], lambda p: p.write_bytes(b"plain text, not gzip\n" * 10), "gzip"),
    "corrupt deflate stream": (
        FILES["test_images"],
        lambda p: p.write_bytes(p.read_bytes()[:100] + bytes(200) + p.read_bytes()[300:]),
        "not a readable gzip file",
    ),
    "wrong magic": (
        FILES["test_images"],
        lambda p: _rewrite(p, lambda b: _header(2049, 10_000, 28, 28) + b[16:]),
        "magic number 2049, expected 2051",
    ),
    "data shorter than header says": (
        FILES["test_images"],
        lambda p: _rewrite(p, lambda b: b[:-784]),
        "expected 7840000 bytes of data for shape (10000, 28, 28), found 7839216",
    ),
    "data longer than header says": (
        FILES["train_labels"],
        lambda p: _rewrite(p, lambda b: b + b"\x00"),
        "expected 60000 bytes of data",
    ),
    "header cut short": (FILES["test_labels"], lambda p: _rewrite(p, lambda b: b[:6]), "too short for an IDX header"),
    "fewer labels than images": (
        FILES["test_labels"],
        lambda p: _rewrite(p, lambda b: _header(2049, 9_999) + b[8:-1]),
        "9999 labels for 10000 images",
    ),
    "label out of range": (
        FILES["test_labels"],
        lambda p: _rewrite(p, lambda b: b[:8] + b"\x0c" + b[9:]),
        "labels outside 0..9",
    ),
    "images not 28x28": (
        FILES["test_images"],
        lambda p: _rewrite(p, lambda b: _header(2051, 10_000, 56, 14) + b[16:]),
        "images of shape (56, 14), expected (28, 28)",
    ),
    "empty file": (FILES["train_images"], lambda p: p.write_bytes(b""), "too short for an IDX header"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_file_gives_a_data_error_naming_it(data_dir: Path, tmp_path: Path, case: str) -> None:
    filename, damage, message = DAMAGE[case]
    folder = _copy_of_mnist(data_dir, tmp_path / "copy")
    damage(folder / filename)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path / "copy")
    assert str(folder / filename) in str(info.value)
    assert message in str(info.value)


def test_missing_file_is_named(data_dir: Path, tmp_path: Path) -> None:
    folder = _copy_of_mnist(data_dir, tmp_path / "copy")
    (folder / FILES["test_labels"]).unlink()
    with pytest.raises(DataError, match=re.escape(str(folder / FILES["test_labels"]))):
        load_dataset("mnist", data_dir=tmp_path / "copy")


def test_read_idx_reads_a_small_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_header(2049, 3) + bytes([1, 2, 3])))
    assert read_idx(path, magic=2049).tolist() == [1, 2, 3]
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'absent.gz'}: file not found")):
        read_idx(tmp_path / "absent.gz", magic=2049)


# --- Keras's downloader, for machines without a local copy (never called for real here) ----


@pytest.fixture
def no_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: dict[tuple[str, str], data.RawData]
) -> None:
    import keras

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "no-system-copy")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(keras.utils, "get_file", no_download)


def _small_arrays(n_train: int = 40, n_test: int = 20) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    rng = np.random.default_rng(0)
    return (
        (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train, dtype=np.uint8) % 10),
        (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), np.arange(n_test, dtype=np.uint8) % 10),
    )


@pytest.mark.usefixtures("no_local_copy")
def test_keras_downloader_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    arrays = _small_arrays()
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: arrays)
    assert data.locate("mnist") is None
    raw = load_raw("mnist")
    assert raw.source == "keras.datasets.mnist"
    assert raw.train_images.shape == (40, 28, 28) and raw.test_labels.tolist() == list(range(10)) * 2
    assert set(raw.file_hashes) == {f"keras:mnist/{key}" for key in FILES}
    ds = load_dataset("mnist", val_size=10)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (30, 10, 20)
    assert ds.source == "keras.datasets.mnist"


@pytest.mark.usefixtures("no_local_copy")
def test_keras_downloader_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import keras

    def offline() -> None:
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DataError) as info:
        load_raw("fashion_mnist")
    message = str(info.value)
    assert "Keras's downloader failed: URL fetch failure: no network" in message
    assert str(tmp_path / "no-system-copy" / "fashion-mnist") in message
    assert "MNIST_SWEEP_DATA_DIR" in message and "--data-dir" in message
    assert not data._RAW_CACHE  # a failure is not cached


@pytest.mark.usefixtures("no_local_copy")
def test_keras_downloader_returning_bad_arrays_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    (x_train, y_train), test = _small_arrays()
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: ((x_train, y_train[:-1]), test))
    with pytest.raises(DataError, match=r"keras.datasets.mnist.load_data\(\) train labels: 39 labels for 40 images"):
        load_raw("mnist")


# --- the .npy cache ------------------------------------------------------------------------


def test_a_second_process_memory_maps_the_cached_arrays_and_gets_the_same_data(
    data_dir: Path, tmp_path: Path, fresh_cache: dict[tuple[str, str], data.RawData], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    first = load_dataset("mnist", data_dir=data_dir, limit=500)  # reads the IDX files, writes the cache
    (folder,) = (tmp_path / "cache").iterdir()
    assert folder.name.startswith(f"mnist-{first.sha256[:32]}")
    fresh_cache.clear()  # as a new process would start

    def no_gunzip(path: Path, *, magic: int) -> np.ndarray:
        raise AssertionError(f"{path} decompressed again")

    monkeypatch.setattr(data, "read_idx", no_gunzip)
    raw = load_raw("mnist", data_dir)
    assert isinstance(raw.train_scaled, np.memmap) and isinstance(raw.train_images, np.memmap)
    again = load_dataset("mnist", data_dir=data_dir, limit=500)
    assert again.sha256 == first.sha256 and again.source == first.source
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, split), getattr(first, split))
        assert getattr(again, split).dtype == getattr(first, split).dtype
    full = load_dataset("mnist", data_dir=data_dir)
    assert full.x_train.dtype == np.float32 and float(full.x_train.max()) == 1.0
    with pytest.raises(ValueError, match="read-only"):
        raw.train_scaled[0, 0, 0] = 1


def test_a_changed_file_is_read_afresh_and_checked_not_taken_from_the_cache(
    data_dir: Path, tmp_path: Path, fresh_cache: dict[tuple[str, str], data.RawData], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    folder = _copy_of_mnist(data_dir, tmp_path / "copy")
    load_raw("mnist", tmp_path / "copy")  # cached under the intact files' hash
    fresh_cache.clear()
    _rewrite(folder / FILES["test_labels"], lambda b: b[:8] + b"\x0c" + b[9:])
    with pytest.raises(DataError, match=r"labels outside 0\.\.9"):
        load_raw("mnist", tmp_path / "copy")


def test_an_unwritable_cache_only_costs_time(
    data_dir: Path, tmp_path: Path, fresh_cache: dict[tuple[str, str], data.RawData], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(blocked / "cache"))
    raw = load_raw("mnist", data_dir)
    assert raw.train_scaled is not None and len(raw.train_images) == 60_000
    assert blocked.read_text() == ""
