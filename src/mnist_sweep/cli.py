"""The ``mnist-sweep`` command: parses flags, calls one library function, prints.

TensorFlow, Optuna and MLflow are imported inside the command bodies, so ``mnist-sweep --help``
stays fast. Every :class:`~mnist_sweep.errors.MnistSweepError` becomes a one-line ``error:``
message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from mnist_sweep import __version__
from mnist_sweep.errors import MnistSweepError

EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Turns the project's errors into one-line messages with their exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistSweepError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: runs in progress were marked KILLED; run the same command to resume", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            # A bug, not bad input: one line by default, the traceback with -vv.
            logging.getLogger("mnist_sweep").debug("unexpected error", exc_info=True)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: internal error: {type(exc).__name__}: {first} (run with -vv for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mnist-sweep")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Hyperparameter sweeps over the MNIST / Fashion-MNIST tutorials, tracked in MLflow.

    \b
    Quick start:
      mnist-sweep train --preset dense-512        train one tutorial model
      mnist-sweep run search_spaces/activation.yaml   run an Optuna study, every trial in MLflow
      mnist-sweep ui                              browse the runs in the MLflow UI
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        for noisy in ("mlflow", "alembic", "optuna", "urllib3", "matplotlib", "absl", "h5py", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- shared options

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Folder holding mnist/ and fashion-mnist/ IDX files (default: $MNIST_SWEEP_DATA_DIR, "
    "/usr/share/datasets, then Keras's downloader).",
)
storage_option = click.option(
    "--storage",
    default=None,
    envvar="MNIST_SWEEP_STORAGE",
    help="Optuna storage URL (default: sqlite:///optuna.db beside the MLflow store; $MNIST_SWEEP_STORAGE).",
)
tracking_option = click.option(
    "--tracking-uri",
    default=None,
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: sqlite:///mlflow.db; $MLFLOW_TRACKING_URI).",
)


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be > 0, got {value}")
    return value


# --------------------------------------------------------------------------- train


@main.command()
@click.option("--preset", "preset_name", default=None, help="A tutorial preset (see --list-presets).")
@click.option("--param", "param_items", multiple=True, metavar="KEY=VALUE", help="Set a model/training parameter.")
@click.option("--dataset", default=None, help="mnist or fashion_mnist (default: the preset's, else mnist).")
@click.option("--epochs", type=int, default=None, callback=_positive, help="Override the epochs.")
@click.option("--batch-size", type=int, default=None, callback=_positive, help="Override the batch size.")
@data_dir_option
@click.option("--limit", type=int, default=None, callback=_positive, help="Train on N class-balanced images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Folder for the learning-curve and prediction-gallery PNGs.")
@click.option("--list-presets", is_flag=True, help="List the presets with their reference results and exit.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final metrics.")
def train(
    preset_name: str | None,
    param_items: tuple[str, ...],
    dataset: str | None,
    epochs: int | None,
    batch_size: int | None,
    data_dir: str | None,
    limit: int | None,
    seed: int,
    out: Path,
    list_presets: bool,
    quiet: bool,
) -> None:
    """Train one model (a tutorial preset and/or --param settings) and plot it."""
    from mnist_sweep import runner

    if list_presets:
        click.echo(runner.presets_table())
        return
    job = runner.TrainJob.from_cli(
        preset=preset_name,
        assignments=param_items,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        limit=limit,
        seed=seed,
    )
    result = runner.run_train(job, data_dir=data_dir, out=out, quiet=quiet)
    click.echo(runner.train_summary(job, result))


# --------------------------------------------------------------------------- validate / run


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
def validate(files: tuple[str, ...]) -> None:
    """Check search-space files without training anything."""
    from mnist_sweep.space import load_space

    errors = []
    for path in files:
        try:
            space = load_space(path)
        except MnistSweepError as exc:
            errors.append(str(exc))
            click.echo(f"error: {exc}", err=True)
            continue
        n = space.budget.n_trials
        click.echo(
            f"ok: {path}: study {space.study_name!r}, {len(space.params)} searched params, "
            f"{n if n is not None else 'unlimited'} trials, sampler {space.sampler.name}, pruner {space.pruner.name}"
        )
    if errors:
        sys.exit(2)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--n-trials", type=int, default=None, help="Override the study's trial budget.")
@click.option("--timeout", type=float, default=None, help="Override the wall-clock budget (seconds).")
@click.option("--study-name", default=None, help="Override the study name.")
@storage_option
@tracking_option
@click.option("--experiment", default=None, help="MLflow experiment (default: the study name).")
@data_dir_option
@click.option("--limit", type=int, default=None, help="Train on N class-balanced images (quick runs).")
@click.option("--epochs", type=int, default=None, help="Override the epochs of every trial.")
@click.option("--seed", type=int, default=None, help="Override the seed.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--no-tracking", is_flag=True, help="Do not log to MLflow (for timing; not recommended).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the final table.")
@click.option("--top", type=int, default=5, show_default=True, help="Trials shown in the final table.")
def run(
    file: str,
    n_trials: int | None,
    timeout: float | None,
    study_name: str | None,
    storage: str | None,
    tracking_uri: str | None,
    experiment: str | None,
    data_dir: str | None,
    limit: int | None,
    epochs: int | None,
    seed: int | None,
    workers: int,
    no_tracking: bool,
    quiet: bool,
    top: int,
) -> None:
    """Run (or resume) the Optuna study a search-space FILE declares."""
    from mnist_sweep import runner
    from mnist_sweep.space import load_space
    from mnist_sweep.study import SweepOptions, run_sweep

    space = load_space(file).with_overrides(
        n_trials=n_trials, timeout=timeout, study_name=study_name, epochs=epochs, seed=seed, limit=limit
    )
    options = SweepOptions(
        storage=storage,
        tracking_uri=tracking_uri,
        experiment=experiment,
        data_dir=data_dir,
        tracking=not no_tracking,
        quiet=quiet,
    )
    if workers != 1:
        from mnist_sweep import workers as workers_mod

        result = workers_mod.run_parallel(space, options, workers=workers)
    else:
        result = run_sweep(space, options)
    click.echo(runner.sweep_table(result, top=top))


# --------------------------------------------------------------------------- ui


@main.command()
@tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless needed).")
@click.option("--port", type=int, default=5000, show_default=True)
def ui(tracking_uri: str | None, host: str, port: int) -> None:
    """Start the MLflow UI on the same store the sweeps log to."""
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    if uri.startswith(("http://", "https://")):
        raise click.UsageError(f"{uri} is already a tracking server: open it in a browser")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:///"):
        command += ["--default-artifact-root", str(Path("mlruns").resolve())]
    click.echo(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C to stop", err=True)
    os.execv(sys.executable, command)


# --------------------------------------------------------------------------- nightly


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--date", "night", default=None, metavar="YYYY-MM-DD", help="The night to run or finish (default: today)."
)
@storage_option
@tracking_option
@data_dir_option
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the final summary.")
def nightly(
    file: str, night: str | None, storage: str | None, tracking_uri: str | None, data_dir: str | None, quiet: bool
) -> None:
    """Run one night of a nightly FILE: sweep, promote if better, report, retention.

    \b
    Exit codes: 0 done (promoted or not), 1 failed (re-run the same date to resume),
    2 bad file or flag, 3 already running (another instance holds the lock).
    """
    from mnist_sweep.nightly import NightlyOptions, format_result, load_nightly, run_nightly

    config = load_nightly(file)
    options = NightlyOptions(date=night, storage=storage, tracking_uri=tracking_uri, data_dir=data_dir, quiet=quiet)
    click.echo(format_result(run_nightly(config, options)))


if __name__ == "__main__":  # pragma: no cover
    main()
