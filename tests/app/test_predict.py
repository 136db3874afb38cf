"""`mnist-sweep predict` on real test digits saved as files, and the champion served by `mlflow models serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnist_sweep.app import _promote as registry
from mnist_sweep.cli import main
from mnist_sweep.tracking import load_model
from registry_helpers import Studies, trained_studies

MODEL = "predict-model"
CHAMPION = f"models:/{MODEL}@champion"
N = 12  # real test digits
SERVER_START_SECONDS = 120


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Studies:
    """The strong study's model registered as ``predict-model@champion``."""
    studies = trained_studies(tmp_path_factory, data_dir)
    result = registry.promote(
        studies.strong,
        storage=studies.storage,
        tracking_uri=studies.tracking_uri,
        data_dir=str(data_dir),
        model_name=MODEL,
    )
    assert result.decision in ("promoted", "already"), result.message()
    return studies


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first N MNIST test images (uint8) and labels."""
    from mnist_sweep.model._data import load_raw

    raw = load_raw("mnist", data_dir)
    return raw.test_images[:N], raw.test_labels[:N]


@pytest.fixture(scope="module")
def own(champion: Studies, digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The champion's own probabilities for the digits, straight from the arrays."""
    from mnist_sweep.model._build import probabilities

    model = load_model(CHAMPION, tracking_uri=champion.tracking_uri)
    return np.asarray(probabilities(model, digits[0].astype(np.float32) / 255.0))


def predict(champion: Studies, *args: str) -> Any:
    return CliRunner().invoke(main, ["predict", *args, "--tracking-uri", champion.tracking_uri])


def write_inputs(folder: Path, images: np.ndarray) -> list[str]:
    """Digits 0-5 as PNGs, 6 inverted (dark ink on light paper), 7.. in one .npy stack."""
    paths = []
    for i in range(6):
        Image.fromarray(images[i]).save(folder / f"d{i}.png")
        paths.append(str(folder / f"d{i}.png"))
    Image.fromarray(255 - images[6]).save(folder / "d6-paper.png")
    paths.append(str(folder / "d6-paper.png"))
    np.save(folder / "rest.npy", images[7:])
    paths.append(str(folder / "rest.npy"))
    return paths


def test_predictions_on_png_and_npy_files_match_the_model(
    champion: Studies, digits: tuple[np.ndarray, np.ndarray], own: np.ndarray, tmp_path: Path
) -> None:
    paths = write_inputs(tmp_path, digits[0])

    result = predict(champion, CHAMPION, *paths, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == "mnist" and "version 1" in report["model"]
    rows = report["predictions"]
    expected_inputs = [*paths[:7], *[f"{paths[7]}[{i}]" for i in range(N - 7)]]
    assert [r["input"] for r in rows] == expected_inputs
    assert [r["class"] for r in rows] == np.argmax(own, axis=1).tolist()
    np.testing.assert_allclose([r["probability"] for r in rows], own.max(axis=1), atol=1e-5)
    assert report["errors"] == []


def test_every_kind_of_model_uri_gives_the_same_classes(
    champion: Studies, digits: tuple[np.ndarray, np.ndarray], own: np.ndarray, tmp_path: Path
) -> None:
    paths = write_inputs(tmp_path, digits[0])[:3]
    best = champion.best(champion.strong)
    expected = np.argmax(own[:3], axis=1)

    for uri in (CHAMPION, f"models:/{MODEL}/1", best.model_uri, f"runs:/{best.run_id}/model"):
        result = predict(champion, uri, *paths)
        assert result.exit_code == 0, (uri, result.output)
        lines = result.stdout.splitlines()
        assert [line.split()[0] for line in lines] == paths, uri
        assert [int(line.split()[1]) for line in lines] == expected.tolist(), uri
        assert result.stderr.startswith(f"model: {uri}")


def test_top_k_and_a_large_photo_like_image(
    champion: Studies, digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    photo = Image.fromarray(255 - digits[0][0]).resize((280, 280), Image.Resampling.BICUBIC)
    photo.save(tmp_path / "photo.jpg", quality=90)

    result = predict(champion, CHAMPION, str(tmp_path / "photo.jpg"), "--top-k", "3", "--json")

    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["predictions"]
    top = row["top_k"]
    assert len(top) == 3 and top[0]["class"] == row["class"]
    probabilities = [t["probability"] for t in top]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    text = predict(champion, CHAMPION, str(tmp_path / "photo.jpg"), "--top-k", "3")
    assert len(text.stdout.split("(")) == 4  # three "class (probability)" entries


def test_unreadable_files_are_named_and_the_rest_predicted(
    champion: Studies, digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    Image.fromarray(digits[0][0]).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "bad.npy").write_text("not an array")

    result = predict(champion, CHAMPION, "good.png", "bad.png", "missing.png", "bad.npy")

    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert "error: bad.png: cannot read image (cannot identify image file)" in errors
    assert "error: missing.png: file not found" in errors
    assert "error: bad.npy: not a .npy file (no NumPy header)" in errors
    assert result.stdout.splitlines()[0].startswith("good.png  ")


def test_files_are_read_before_the_model_is_loaded(champion: Studies, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")

    only_bad = predict(champion, "models:/nope@champion", "bad.png")
    assert only_bad.exit_code == 2
    assert only_bad.stderr.strip() == "error: bad.png: cannot read image (cannot identify image file)"

    Image.new("L", (28, 28)).save(tmp_path / "blank.png")
    unknown = predict(champion, "models:/nope@champion", "blank.png")
    assert unknown.exit_code == 1
    assert unknown.output.strip() == (
        f"error: models:/nope@champion: no version of registered model 'nope' holds alias 'champion' "
        f"in {champion.tracking_uri}"
    )


# --------------------------------------------------------------------------- mlflow models serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(champion: Studies, tmp_path: Path) -> Iterator[str]:
    """``mlflow models serve -m models:/predict-model@champion`` on a free local port; always stopped."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion.tracking_uri,
        # the server starts `uvicorn` by name: the venv's bin must be on PATH, as in an activated venv
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION, "--env-manager", "local"]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the uvicorn child is stopped with it
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + SERVER_START_SECONDS
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"no /ping answer in {SERVER_START_SECONDS} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_served_champion_answers_with_ten_class_probabilities(
    served: str, digits: tuple[np.ndarray, np.ndarray], own: np.ndarray
) -> None:
    images = (digits[0].astype(np.float32) / 255.0).tolist()  # the documented input: {"inputs": [28x28, ...]}
    request = urllib.request.Request(
        f"{served}/invocations",
        data=json.dumps({"inputs": images}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        body = json.loads(answer.read())

    served_probabilities = np.asarray(body["predictions"])
    assert served_probabilities.shape == (N, 10)
    np.testing.assert_allclose(served_probabilities.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(served_probabilities, own, atol=1e-5)
    assert (np.argmax(served_probabilities, axis=1) == digits[1]).mean() >= 0.5  # a real model, not noise
