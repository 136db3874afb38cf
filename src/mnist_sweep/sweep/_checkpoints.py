"""Trial checkpoints: the latest epoch of every running trial, where every worker can read it.

A checkpoint holds the model's weights, its optimizer's variables, the epochs done, their
history and the seed (:class:`~mnist_sweep.model.TrainingState`), as one ``.npz`` file per
trial, overwritten each epoch (only the latest is kept) and deleted when the trial ends.

The stores are Optuna's own artifact stores (``optuna.artifacts``): a folder
(:class:`~optuna.artifacts.FileSystemArtifactStore`'s layout, one file per artifact id; local,
or a shared filesystem for workers on several machines) or ``s3://bucket[/prefix]``
(:class:`~optuna.artifacts.Boto3ArtifactStore`, any S3-compatible server; needs ``boto3``).
Optuna's folder store writes in place, so a kill mid-write would leave a torn file; here the
folder write goes to a temporary file that is then renamed over the old one (atomic on POSIX),
and an S3 PUT is atomic by itself. MLflow's artifact store was the other choice: it cannot
overwrite or delete one artifact of a run, so it would keep every epoch's checkpoint.

Where: ``--checkpoint-store``, else ``$MNIST_SWEEP_CHECKPOINTS``, else the space file's
``checkpoint_store:``, else ``checkpoints/`` beside a SQLite storage file (the embedded default:
``./checkpoints``), else ``./checkpoints``. ``none`` turns checkpoints off.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from mnist_sweep.errors import CheckpointStoreError, CheckpointUnusable, first_line

if TYPE_CHECKING:
    from mnist_sweep.config import SearchSpace
    from mnist_sweep.model import TrainingState

log = logging.getLogger(__name__)

ENV_CHECKPOINTS = "MNIST_SWEEP_CHECKPOINTS"
DEFAULT_FOLDER = "checkpoints"
OFF = "none"
FORMAT = 1


@dataclass(frozen=True)
class StoreChoice:
    """Where checkpoints go (None: off), and who said so (for a one-line error naming it)."""

    location: str | None
    source: str | None = None
    key: str | None = None


def choose_store(*, flag: str | None, space: SearchSpace, storage_url: str) -> StoreChoice:
    """The checkpoint store of this invocation, by the precedence in the module docstring."""
    env = os.environ.get(ENV_CHECKPOINTS)
    if flag:
        choice = StoreChoice(flag, key="--checkpoint-store")
    elif env:
        choice = StoreChoice(env, key=f"${ENV_CHECKPOINTS}")
    elif space.checkpoint_store:
        choice = StoreChoice(space.checkpoint_store, source=space.source, key="checkpoint_store")
    else:
        choice = StoreChoice(str(_beside(storage_url) / DEFAULT_FOLDER))
    if choice.location is not None and choice.location.strip().lower() == OFF:
        return StoreChoice(None)
    return choice


def _beside(storage_url: str) -> Path:
    prefix = "sqlite:///"
    if storage_url.startswith(prefix) and storage_url[len(prefix) :] not in ("", ":memory:"):
        return Path(storage_url[len(prefix) :]).parent
    return Path(".")


def checkpoint_id(study_name: str, trial_number: int) -> str:
    """The artifact id of the checkpoint a trial starts (its retries keep using it)."""
    return f"{study_name}.trial-{trial_number}.ckpt.npz"


class _AtomicFolderStore:
    """Optuna's FileSystemArtifactStore with an atomic ``write`` (temporary file, then rename)."""

    def __init__(self, base_path: Path) -> None:
        from optuna.artifacts import FileSystemArtifactStore

        self.base_path = base_path
        self._plain = FileSystemArtifactStore(base_path)

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._plain.open_reader(artifact_id)

    def remove(self, artifact_id: str) -> None:
        self._plain.remove(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        target = self.base_path / artifact_id
        fd, temporary = tempfile.mkstemp(dir=self.base_path, prefix=f".{artifact_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content_body.read())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class _PrefixedStore:
    """An artifact store whose ids all start with ``prefix`` (an S3 key prefix)."""

    def __init__(self, store: Any, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._prefix + artifact_id)


class CheckpointStore:
    """Saves, loads and deletes trial checkpoints in one Optuna artifact store."""

    def __init__(self, choice: StoreChoice) -> None:
        assert choice.location is not None
        self.choice = choice
        self.location = choice.location
        self.seconds = 0.0
        """Time spent writing checkpoints in this process (the benchmark reads it)."""
        self.writes = 0
        self._backend: Any = None

    def _open(self) -> Any:
        if self._backend is not None:
            return self._backend
        location = self.location
        if location.startswith("s3://"):
            bucket, _, prefix = location[len("s3://") :].partition("/")
            try:
                from optuna.artifacts import Boto3ArtifactStore

                store: Any = Boto3ArtifactStore(bucket)
            except ImportError as exc:
                raise self._error(f"an s3:// store needs boto3 ({first_line(exc)})") from None
            self._backend = _PrefixedStore(store, f"{prefix.rstrip('/')}/" if prefix else "")
        else:
            folder = Path(location.removeprefix("file://")).expanduser()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._error(f"cannot create {folder}: {exc.strerror or exc}") from None
            self._backend = _AtomicFolderStore(folder)
        return self._backend

    def _error(self, what: str) -> CheckpointStoreError:
        return CheckpointStoreError(
            f"checkpoint store {self.location!r}: {what}", source=self.choice.source, key=self.choice.key
        )

    def check_writable(self) -> None:
        """Write, read back and delete a probe: CheckpointStoreError (one line) when that fails."""
        backend = self._open()
        probe = f".probe-{os.getpid()}"
        try:
            backend.write(probe, io.BytesIO(b"ok"))
            with backend.open_reader(probe) as reader:
                ok = reader.read() == b"ok"
            backend.remove(probe)
        except Exception as exc:
            raise self._error(f"cannot be written: {first_line(exc)}") from None
        if not ok:
            raise self._error("a probe written there read back different")

    def save(self, artifact_id: str, state: TrainingState, *, params_key: str) -> None:
        started = time.perf_counter()
        body = encode(state, params_key=params_key)
        self._open().write(artifact_id, io.BytesIO(body))
        self.seconds += time.perf_counter() - started
        self.writes += 1

    def load(self, artifact_id: str, *, params_key: str) -> TrainingState:
        """The checkpoint, or CheckpointUnusable saying why not (missing, corrupt, other params)."""
        try:
            with self._open().open_reader(artifact_id) as reader:
                body = reader.read()
        except Exception as exc:
            raise CheckpointUnusable(f"checkpoint {artifact_id} missing: {first_line(exc)}") from None
        return decode(body, params_key=params_key, name=artifact_id)

    def remove(self, artifact_id: str) -> None:
        """Best effort: a checkpoint left behind costs disk, not correctness."""
        try:
            self._open().remove(artifact_id)
        except Exception as exc:
            log.debug("checkpoint %s not removed: %s", artifact_id, first_line(exc))


def encode(state: TrainingState, *, params_key: str) -> bytes:
    meta = {
        "format": FORMAT,
        "epochs_done": state.epochs_done,
        "history": state.history,
        "seed": state.seed,
        "params_key": params_key,
        "weights": len(state.weights),
        "optimizer": len(state.optimizer),
    }
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    arrays.update({f"w{i}": w for i, w in enumerate(state.weights)})
    arrays.update({f"o{i}": v for i, v in enumerate(state.optimizer)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def decode(body: bytes, *, params_key: str, name: str = "checkpoint") -> TrainingState:
    from mnist_sweep.model import TrainingState

    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            weights = [data[f"w{i}"] for i in range(int(meta["weights"]))]
            optimizer = [data[f"o{i}"] for i in range(int(meta["optimizer"]))]
        state = TrainingState(
            epochs_done=int(meta["epochs_done"]),
            history=[{str(k): float(v) for k, v in h.items()} for h in meta["history"]],
            seed=int(meta["seed"]),
            weights=weights,
            optimizer=optimizer,
        )
    except Exception as exc:
        raise CheckpointUnusable(f"checkpoint {name} corrupt: {type(exc).__name__}: {first_line(exc)}") from None
    if meta.get("params_key") != params_key:
        raise CheckpointUnusable(f"checkpoint {name} was saved for other params or data")
    if state.epochs_done != len(state.history) or state.epochs_done < 1:
        raise CheckpointUnusable(
            f"checkpoint {name} corrupt: {state.epochs_done} epochs, {len(state.history)} in its history"
        )
    return state
