"""``TrainJob.from_cli``: which data cut a preset and ``--limit`` choose."""

from __future__ import annotations

from mnist_sweep.app._train import TrainJob, presets_table


def _job(preset: str | None, limit: int | None = None) -> TrainJob:
    return TrainJob.from_cli(
        preset=preset, assignments=[], dataset=None, epochs=None, batch_size=None, limit=limit, seed=0
    )


def test_a_lecture_preset_cuts_only_the_training_split() -> None:
    job = _job("lecture-10-relu-ce")
    assert job.train_limit == 10_000 and job.limit is None


def test_an_explicit_limit_cuts_every_split_instead() -> None:
    job = _job("lecture-10-relu-ce", limit=300)
    assert job.limit == 300 and job.train_limit is None
    plain = _job(None)
    assert plain.limit is None and plain.train_limit is None


def test_presets_table_names_the_training_cut_and_the_measured_figure() -> None:
    row = next(line for line in presets_table().splitlines() if line.startswith("lecture-10-relu-ce "))
    assert "dense 12x500 relu" in row and "(on 10,000 training images)" in row
    assert "test 0.95" in row and "on 10,000 test images" in row
