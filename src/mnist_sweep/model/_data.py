"""MNIST and Fashion-MNIST from their original IDX ``.gz`` files, loaded once per process.

Where the files are looked for, in order:

1. ``data_dir`` (the ``--data-dir`` flag) or ``$MNIST_SWEEP_DATA_DIR``: a folder holding
   ``mnist/`` and ``fashion-mnist/``. Given explicitly, it must hold the files: no fallback.
2. ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` package puts
   Fashion-MNIST there).
3. Keras's own downloader (``keras.datasets.<name>.load_data()``), for machines with internet.

IDX files, once read and checked, are also kept as ``.npy`` arrays (the images already scaled
to float32) in ``$MNIST_SWEEP_CACHE_DIR`` (default ``~/.cache/mnist-sweep/arrays``), in a
folder named by the SHA-256 of the IDX files: later processes (every sweep worker) hash the
``.gz`` files as before, and when the hash matches, memory-map the arrays instead of
decompressing and scaling them again. A changed file has another hash and is read afresh.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mnist_sweep.errors import DataError

log = logging.getLogger(__name__)

DATASETS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SYSTEM_DIR = Path("/usr/share/datasets")
ENV_VAR = "MNIST_SWEEP_DATA_DIR"
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
DEFAULT_VAL_SIZE = 10_000
CACHE_ENV_VAR = "MNIST_SWEEP_CACHE_DIR"
CACHE_VERSION = 1


@dataclass(frozen=True)
class RawData:
    """The full train and test arrays as stored (uint8), with where they came from."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    sha256: str
    file_hashes: dict[str, str]
    train_scaled: np.ndarray | None = None  # the images as float32 in [0, 1], when cached
    test_scaled: np.ndarray | None = None


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits, pixels float32 in [0, 1], labels int64 0..9.

    The validation split is carved from the training set (by default its last 10,000 images)
    and is what sweeps select on; the test split is only for final evaluation.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str
    limit: int | None = None
    train_limit: int | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.name]

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test images from {self.source}"
        )


def check_name(name: str) -> str:
    """Normalise a dataset name (``fashion-mnist`` is accepted for ``fashion_mnist``)."""
    normalised = name.replace("-", "_").lower()
    if normalised not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return normalised


def read_idx(path: Path, *, magic: int) -> np.ndarray:
    """Read one gzip-compressed IDX file, checking its magic number, header and length."""
    try:
        with gzip.open(path, "rb") as fh:
            blob = fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    if len(blob) < 8:
        raise DataError(f"{path}: too short for an IDX header ({len(blob)} bytes)")
    found_magic = struct.unpack(">I", blob[:4])[0]
    if found_magic != magic:
        raise DataError(f"{path}: magic number {found_magic}, expected {magic}")
    ndim = found_magic & 0xFF
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    expected = int(np.prod(shape))
    if len(blob) - header != expected:
        raise DataError(f"{path}: expected {expected} bytes of data for shape {shape}, found {len(blob) - header}")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _combined_hash(file_hashes: dict[str, str]) -> str:
    joined = "\n".join(f"{h}  {name}" for name, h in sorted(file_hashes.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


def _check_split(images: np.ndarray, labels: np.ndarray, *, images_at: str, labels_at: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_at}: images of shape {images.shape[1:]}, expected (28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_at}: {len(labels)} labels for {len(images)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{labels_at}: labels outside 0..9 (found {labels.min()}..{labels.max()})")


def read_folder(name: str, folder: Path, *, cache: bool = True) -> RawData:
    """Read the four IDX files of one dataset from ``folder`` and check they agree.

    With ``cache``, the arrays come from (or go to) the ``.npy`` cache of these exact files.
    """
    paths = {key: folder / filename for key, filename in FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)}")
    if cache:
        file_hashes = {f"{DATASETS[name]}/{p.name}": _sha256(p) for p in paths.values()}
        sha256 = _combined_hash(file_hashes)
        cached = _read_cache(name, sha256, source=str(folder), file_hashes=file_hashes)
        if cached is not None:
            return cached
        raw = _read_files(name, folder, paths)
        if raw.sha256 == sha256:  # unchanged while it was read
            return _write_cache(raw)
        return raw
    return _read_files(name, folder, paths)


def _read_files(name: str, folder: Path, paths: dict[str, Path]) -> RawData:
    arrays = {
        key: read_idx(path, magic=IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC) for key, path in paths.items()
    }
    for split in ("train", "test"):
        _check_split(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            images_at=str(paths[f"{split}_images"]),
            labels_at=str(paths[f"{split}_labels"]),
        )
    file_hashes = {f"{DATASETS[name]}/{p.name}": _sha256(p) for p in paths.values()}
    return RawData(
        name=name,
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        source=str(folder),
        sha256=_combined_hash(file_hashes),
        file_hashes=file_hashes,
    )


def cache_dir() -> Path:
    """Where the ``.npy`` copies of read data sets are kept."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    return Path.home() / ".cache" / "mnist-sweep" / "arrays"


_CACHED_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels", "train_scaled", "test_scaled")


def _cache_folder(name: str, sha256: str) -> Path:
    return cache_dir() / f"{name}-{sha256[:32]}-v{CACHE_VERSION}"


def _read_cache(name: str, sha256: str, *, source: str, file_hashes: dict[str, str]) -> RawData | None:
    """The cached arrays of the files whose combined hash is ``sha256``, memory-mapped; None when absent."""
    folder = _cache_folder(name, sha256)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("sha256") != sha256 or meta.get("version") != CACHE_VERSION:
            return None
        arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in _CACHED_ARRAYS}
    except (OSError, ValueError) as exc:
        log.debug("no usable array cache for %s in %s: %s", name, folder, exc)
        return None
    for split in ("train", "test"):
        images, labels, scaled = arrays[f"{split}_images"], arrays[f"{split}_labels"], arrays[f"{split}_scaled"]
        if images.dtype != np.uint8 or labels.dtype != np.uint8 or scaled.dtype != np.float32:
            return None
        if scaled.shape != images.shape:
            return None
        _check_split(images, labels, images_at=str(folder), labels_at=str(folder))
    log.info("reading %s from the array cache %s", name, folder)
    return RawData(
        name=name,
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        source=source,
        sha256=sha256,
        file_hashes=file_hashes,
        train_scaled=arrays["train_scaled"],
        test_scaled=arrays["test_scaled"],
    )


def _write_cache(raw: RawData) -> RawData:
    """Keep ``raw``'s arrays (and the scaled images) in the cache; ``raw`` with the scaled images.

    Written into a temporary folder and renamed into place, so a reader never sees half a cache;
    a cache that cannot be written (read-only home, full disk) only costs the next process time.
    """
    train_scaled, test_scaled = _scale(raw.train_images), _scale(raw.test_images)
    for array in (train_scaled, test_scaled):
        array.setflags(write=False)  # as read-only as the arrays read from the files
    scaled = replace(raw, train_scaled=train_scaled, test_scaled=test_scaled)
    folder = _cache_folder(raw.name, raw.sha256)
    if folder.exists():
        return scaled
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            for key in _CACHED_ARRAYS:
                np.save(partial / f"{key}.npy", np.ascontiguousarray(getattr(scaled, key)), allow_pickle=False)
            (partial / "meta.json").write_text(json.dumps({"sha256": raw.sha256, "version": CACHE_VERSION}))
            partial.rename(folder)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not folder.exists():  # another process renaming its copy first is fine
                raise
    except OSError as exc:
        log.debug("array cache not written to %s: %s", folder, exc)
    return scaled


def _from_keras(name: str) -> RawData:
    looked = SYSTEM_DIR / DATASETS[name]
    try:
        import keras

        loader = getattr(keras.datasets, name)
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # the downloader raises many kinds: no network, bad cache, ...
        raise DataError(
            f"{name}: no local copy found (looked in {looked}; set --data-dir or ${ENV_VAR} to a folder "
            f"holding {DATASETS[name]}/ with the IDX .gz files) and Keras's downloader failed: {exc}"
        ) from None
    arrays = {"train_images": x_train, "train_labels": y_train, "test_images": x_test, "test_labels": y_test}
    arrays = {key: np.asarray(a) for key, a in arrays.items()}
    for split in ("train", "test"):
        where = f"keras.datasets.{name}.load_data() {split}"
        _check_split(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            images_at=f"{where} images",
            labels_at=f"{where} labels",
        )
    file_hashes = {
        f"keras:{name}/{key}": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        for key, a in arrays.items()
    }
    return RawData(
        name=name,
        train_images=arrays["train_images"].astype(np.uint8, copy=False),
        train_labels=arrays["train_labels"].astype(np.uint8, copy=False),
        test_images=arrays["test_images"].astype(np.uint8, copy=False),
        test_labels=arrays["test_labels"].astype(np.uint8, copy=False),
        source=f"keras.datasets.{name}",
        sha256=_combined_hash(file_hashes),
        file_hashes=file_hashes,
    )


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding ``name``'s IDX files, or None when only the downloader is left.

    An explicit ``data_dir`` (or ``$MNIST_SWEEP_DATA_DIR``) must hold the files.
    """
    name = check_name(name)
    sub = DATASETS[name]
    origin = "--data-dir" if data_dir is not None else f"${ENV_VAR}"
    explicit = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        if not str(explicit).strip():
            raise DataError(f"{origin} is empty: give the folder holding {', '.join(DATASETS.values())}/")
        root = Path(explicit).expanduser().absolute()
        if not root.is_dir():
            raise DataError(f"{origin} {root}: no such folder")
        # The files may sit in root itself, unless root is plainly the other data set's folder.
        others = {folder for folder in DATASETS.values() if folder != sub}
        candidates = [root / sub] + ([root] if root.name not in others else [])
        for candidate in candidates:
            if (candidate / FILES["train_images"]).is_file():
                return candidate
        looked = " or ".join(str(c / FILES["train_images"]) for c in candidates)
        raise DataError(f"{origin} {root}: no {name} data (looked for {looked})")
    system = SYSTEM_DIR / sub
    if (system / FILES["train_images"]).is_file():
        return system
    return None


_RAW_CACHE: dict[tuple[str, str], RawData] = {}


def load_raw(name: str, data_dir: str | os.PathLike[str] | None = None) -> RawData:
    """The full arrays of ``name``, read (and checked) once per process."""
    name = check_name(name)
    folder = locate(name, data_dir)
    key = (name, str(folder.resolve()) if folder else "keras")
    if key not in _RAW_CACHE:
        log.info("reading %s from %s", name, folder or "keras.datasets")
        _RAW_CACHE[key] = read_folder(name, folder) if folder else _from_keras(name)
    return _RAW_CACHE[key]


def balanced_indices(labels: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` indices taking classes in turn, so every class gets n/10 (±1).

    Deterministic; the indices are returned in their original order.
    """
    if n >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per_class = {int(c): np.flatnonzero(labels == c) for c in classes}
    quota = {c: n // len(classes) for c in per_class}
    for c in list(per_class)[: n % len(classes)]:
        quota[c] += 1
    chosen = np.concatenate([idx[: quota[c]] for c, idx in per_class.items()])
    return np.sort(chosen)


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    train_limit: int | None = None,
    val_size: int = DEFAULT_VAL_SIZE,
) -> Dataset:
    """Train / validation / test splits of ``name``.

    ``limit`` keeps ``limit`` training images and ``limit // 5`` (at least 10) validation and
    test images, each with classes balanced: for quick runs and tests. ``train_limit`` cuts only
    the training split (class-balanced) and keeps every validation and test image: a small
    training set measured on the full test set, as the lecture presets need. Give one or neither.
    """
    raw = load_raw(name, data_dir)
    if limit is not None and train_limit is not None:
        raise DataError(f"limit {limit} and train_limit {train_limit} both given: choose one")
    for label, value in (("limit", limit), ("train_limit", train_limit)):
        if value is not None and value < 10:
            raise DataError(f"{label} {value} is too small: at least 10 images (one per class)")
    n_train = len(raw.train_images)
    if not 0 < val_size < n_train:
        raise DataError(f"validation size {val_size} must be between 1 and {n_train - 1}")
    # The scaled images when the cache has them (memory-mapped: nothing to decompress or convert).
    train_images = raw.train_scaled if raw.train_scaled is not None else raw.train_images
    test_images = raw.test_scaled if raw.test_scaled is not None else raw.test_images
    train_x, train_y = train_images[: n_train - val_size], raw.train_labels[: n_train - val_size]
    val_x, val_y = train_images[n_train - val_size :], raw.train_labels[n_train - val_size :]
    test_x, test_y = test_images, raw.test_labels
    cut = limit if limit is not None else train_limit
    if cut is not None:
        i_train = balanced_indices(train_y, cut)
        train_x, train_y = train_x[i_train], train_y[i_train]
    if limit is not None:
        small = max(limit // 5, 10)
        i_val = balanced_indices(val_y, small)
        i_test = balanced_indices(test_y, small)
        val_x, val_y = val_x[i_val], val_y[i_val]
        test_x, test_y = test_x[i_test], test_y[i_test]
    return Dataset(
        name=raw.name,
        x_train=_scale(train_x),
        y_train=train_y.astype(np.int64),
        x_val=_scale(val_x),
        y_val=val_y.astype(np.int64),
        x_test=_scale(test_x),
        y_test=test_y.astype(np.int64),
        source=raw.source,
        sha256=raw.sha256,
        limit=limit,
        train_limit=train_limit,
    )


def _scale(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.float32:  # scaled already (the array cache)
        return images
    return images.astype(np.float32) / np.float32(255.0)
