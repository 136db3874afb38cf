"""The command line: one-line errors and exit codes, fast --help, train and run end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_sweep.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mnist_sweep.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_does_not_import_tensorflow_or_mlflow() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from mnist_sweep.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'optuna') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == ""


def test_list_presets_shows_reference_results() -> None:
    result = CliRunner().invoke(main, ["train", "--list-presets"])
    assert result.exit_code == 0
    for name in ("dense-512", "cnn", "fashion-128", "lecture-10-relu-ce"):
        assert name in result.output
    assert "0.9804" in result.output and "121,930" in result.output


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train", "--preset", "nope"], ["unknown preset 'nope'", "dense-512"]),
        (["train", "--param", "depth"], ["--param", "key=value"]),
        (["train", "--param", "depth=abc"], ["'depth'", "'abc'", "integer"]),
        (["train", "--param", "activation=relux"], ["'activation'", "relux", "relu, sigmoid"]),
        (["train", "--param", "colour=red"], ["unknown parameter 'colour'"]),
        (["train", "--dataset", "cifar10", "--epochs", "1"], ["unknown dataset 'cifar10'"]),
    ],
)
def test_bad_train_input_is_one_line(args: list[str], fragments: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0]


def test_missing_data_dir_names_the_folder(tmp_path: Path) -> None:
    proc = cli("train", "--preset", "dense-512", "--data-dir", str(tmp_path / "nowhere"))
    assert_one_line_error(proc, "nowhere", "no such folder")


def test_corrupt_data_file_names_the_file(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "data" / "mnist"
    bad.mkdir(parents=True)
    for f in (data_dir / "mnist").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    target = bad / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:2000])
    proc = cli("train", "--preset", "dense-512", "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(proc, "train-labels-idx1-ubyte.gz")


def test_train_writes_pngs_and_metrics(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["train", "--preset", "dense-512", "--epochs", "1", "--limit", "300", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    assert "epoch 1/1" in result.output
    for name in ("learning_curves.png", "predictions.png"):
        png = tmp_path / "o" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_reports_each_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\ndataset: mnist\nbudget: {n_trials: 2}\nspace:\n  depht: {type: int, low: 1, high: 3}\n")
    proc = cli("validate", str(ROOT / "search_spaces" / "activation.yaml"), str(bad))
    assert proc.returncode == 2
    assert "ok: " in proc.stdout and "activation" in proc.stdout
    assert_one_line_error(proc, "bad.yaml", "depht")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--storage", "redis://x"], ["storage", "unsupported"]),
        (["--tracking-uri", "ftp://x"], ["tracking URI", "unsupported"]),
        (["--n-trials", "0"], ["--n-trials"]),
    ],
)
def test_bad_run_flags_are_one_line(tmp_path: Path, extra: list[str], fragments: list[str]) -> None:
    proc = cli("run", str(ROOT / "search_spaces" / "activation.yaml"), "--limit", "300", *extra)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "optuna.db").exists(), "a rejected run must not leave a study behind"


def test_run_subprocess_prints_table_and_resumes(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(
        "study: clitiny\ndataset: mnist\nlimit: 300\nsampler: {name: grid}\npruner: none\n"
        "budget: {n_trials: 2}\nfixed: {epochs: 1, batch_size: 64}\n"
        "space:\n  width: {type: categorical, choices: [16, 32]}\n"
    )
    proc = cli("run", str(space), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "study 'clitiny': 2 trials (2 COMPLETE)" in proc.stdout
    assert "best: trial" in proc.stdout
    assert (tmp_path / "optuna.db").exists() and (tmp_path / "mlflow.db").exists()
    again = cli("run", str(space), "--quiet")
    assert again.returncode == 0
    assert "this run: 0" in again.stdout
