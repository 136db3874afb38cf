"""``mnist-sweep train`` as a library call, and the text tables the CLI prints."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep.display import text_table
from mnist_sweep.errors import ParamError, TrainingFailed
from mnist_sweep.model import PRESETS, get_preset, model_summary, parse_assignment, resolve_params

if TYPE_CHECKING:
    from mnist_sweep.model import TrainResult
    from mnist_sweep.sweep import SweepResult


@dataclass(frozen=True)
class TrainJob:
    """One model to train: its params, dataset, data limits and seed.

    ``limit`` cuts every split (quick runs); ``train_limit`` only the training split, so the
    model is still measured on the full test set (the lecture presets).
    """

    params: Mapping[str, Any]
    dataset: str = "mnist"
    limit: int | None = None
    train_limit: int | None = None
    seed: int = 0
    preset: str | None = None

    @classmethod
    def from_cli(
        cls,
        *,
        preset: str | None,
        assignments: Sequence[str],
        dataset: str | None,
        epochs: int | None,
        batch_size: int | None,
        limit: int | None,
        seed: int,
    ) -> TrainJob:
        """Preset, then ``--param`` assignments, then ``--epochs`` / ``--batch-size``; validated.

        An explicit ``--limit`` replaces the preset's training-set cut with a cut of every split.
        """
        from mnist_sweep.model import check_name

        params: dict[str, Any] = {}
        chosen_dataset = "mnist"
        chosen_train_limit = None
        if preset is not None:
            p = get_preset(preset)
            params.update(p.params)
            chosen_dataset = p.dataset
            chosen_train_limit = p.train_limit
        for item in assignments:
            key, value = parse_assignment(item)
            params[key] = value
        if epochs is not None:
            params["epochs"] = epochs
        if batch_size is not None:
            params["batch_size"] = batch_size
        try:
            resolve_params(params)
        except ParamError as exc:
            raise ParamError(f"--param: {exc}") from None
        return cls(
            params=params,
            dataset=check_name(dataset) if dataset else chosen_dataset,
            limit=limit,
            train_limit=None if limit is not None else chosen_train_limit,
            seed=seed,
            preset=preset,
        )


def run_train(job: TrainJob, *, data_dir: str | None, out: Path, quiet: bool = False) -> tuple[TrainResult, list[Path]]:
    """Train ``job``'s model with per-epoch progress; write the two PNGs into ``out``.

    Returns the result and the PNGs written.
    """
    import click
    import numpy as np

    from mnist_sweep.display import plots
    from mnist_sweep.model import load_dataset, probabilities, runtime, train

    dataset = load_dataset(job.dataset, data_dir=data_dir, limit=job.limit, train_limit=job.train_limit)
    epochs = resolve_params(job.params)["epochs"]
    if not quiet:
        click.echo(f"{model_summary(job.params)} on {dataset.describe()}; {runtime.device_description()}", err=True)

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        if not quiet:
            click.echo(
                f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f} accuracy {record['accuracy']:.4f} "
                f"val_loss {record['val_loss']:.4f} val_accuracy {record['val_accuracy']:.4f} "
                f"({record['seconds']:.1f}s)",
                err=True,
            )

    result = train(job.params, dataset, seed=job.seed, on_epoch=on_epoch)
    if not result.ok or result.model is None:
        raise TrainingFailed(f"training failed: {result.failure}")
    out.mkdir(parents=True, exist_ok=True)
    title = job.preset or model_summary(job.params)
    curves = plots.save(plots.learning_curves(result.history, title=title), out / "learning_curves.png")
    sample = np.arange(min(12, len(dataset.x_test)))
    probs = probabilities(result.model, dataset.x_test[sample])
    gallery = plots.save(
        plots.prediction_gallery(dataset.x_test[sample], dataset.y_test[sample], probs, dataset.class_names),
        out / "predictions.png",
    )
    return result, [curves, gallery]


def train_summary(job: TrainJob, result: TrainResult, written: Sequence[Path] = ()) -> str:
    lines = [
        f"train accuracy {result.final('accuracy'):.4f}  val accuracy {result.final('val_accuracy'):.4f}  "
        f"test accuracy {result.test_accuracy:.4f}  test loss {result.test_loss:.4f}",
        f"{result.param_count:,} parameters, {result.epochs_trained} epochs, {result.wall_seconds:.1f} s",
    ]
    if job.preset:
        lines.append(f"reference ({job.preset}): {get_preset(job.preset).reference}")
    lines += [f"wrote {path}" for path in written]
    return "\n".join(lines)


def presets_table() -> str:
    rows = [("preset", "dataset", "model", "params", "reference result")]
    for p in PRESETS.values():
        model = model_summary(p.params)
        extra = f" (on {p.train_limit:,} training images)" if p.train_limit else ""
        rows.append((p.name, p.dataset, model + extra, f"{p.param_count:,}", p.reference))
    return text_table(rows)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def sweep_table(result: SweepResult, *, top: int = 5) -> str:
    """The final table of ``mnist-sweep run``: top trials, then the best trial."""
    shown = result.top(top)
    varying = _varying_params([t.params for t in result.trials])
    header = ["trial", "state", result.metric, "test_acc", "epochs", *varying, "mlflow run"]
    rows: list[list[str]] = [header]
    for t in shown:
        rows.append(
            [
                str(t.number),
                t.state,
                _fmt(t.value),
                _fmt(t.test_accuracy),
                str(t.epochs),
                *[_short(t.params.get(k)) for k in varying],
                t.run_id or "-",
            ]
        )
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    lines = [
        "",
        f"study {result.study_name!r}: {len(result.trials)} trials ("
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"); this run: {result.trials_run}"
        + (f"; stopped: {result.stopped_reason}" if result.stopped_reason else ""),
        text_table(rows),
    ]
    best = result.best
    if best is None:
        lines.append("no COMPLETE trial yet")
    else:
        lines += [
            "",
            f"best: trial {best.number}  {result.metric} {_fmt(best.value)}  test accuracy {_fmt(best.test_accuracy)}",
            f"  params: {json.dumps(dict(best.params), sort_keys=True, default=str)}",
            f"  MLflow run: {best.run_id or '-'} (experiment {result.experiment!r}, parent run {result.parent_run_id})",
        ]
    return "\n".join(lines)


def _varying_params(param_sets: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for params in param_sets:
        keys += [k for k in params if k not in keys]
    return [k for k in keys if len({json.dumps(p.get(k), default=str) for p in param_sets}) > 1]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)
