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
            click.echo(
                f"error: internal error: {type(exc).__name__}: {first} (run with -vv for the traceback)", err=True
            )
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
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow configures its loggers
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
checkpoint_option = click.option(
    "--checkpoint-store",
    default=None,
    help="Folder or s3://bucket/prefix for trial checkpoints, readable by every worker; none: off "
    "(default: $MNIST_SWEEP_CHECKPOINTS, the file's checkpoint_store, else checkpoints/ beside a SQLite storage).",
)


def _preflight(storage: str | None, tracking_uri: str | None, *, tracking: bool) -> None:
    """One quick contact with the database and the tracking server: a wrong URL fails in seconds."""
    from mnist_sweep.stores import preflight_storage
    from mnist_sweep.tracking import default_tracking_uri, preflight_tracking

    if storage:
        preflight_storage(storage)
    if tracking:
        preflight_tracking(tracking_uri or default_tracking_uri())


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
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Folder for the learning-curve and prediction-gallery PNGs.",
)
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
    from mnist_sweep import app

    if list_presets:
        click.echo(app.presets_table())
        return
    job = app.TrainJob.from_cli(
        preset=preset_name,
        assignments=param_items,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        limit=limit,
        seed=seed,
    )
    result, written = app.run_train(job, data_dir=data_dir, out=out, quiet=quiet)
    click.echo(app.train_summary(job, result, written))


# --------------------------------------------------------------------------- validate / run


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
def validate(files: tuple[str, ...]) -> None:
    """Check search-space files without training anything."""
    from mnist_sweep.config import load_space

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
@checkpoint_option
@click.option("--experiment", default=None, help="MLflow experiment (default: the study name).")
@data_dir_option
@click.option("--limit", type=int, default=None, help="Train on N class-balanced images (quick runs).")
@click.option("--epochs", type=int, default=None, help="Override the epochs of every trial.")
@click.option("--seed", type=int, default=None, help="Override the seed.")
@click.option(
    "--workers", type=int, default=None, help="Worker processes on this machine (default: 1, or one per GPU slot)."
)
@click.option(
    "--workers-per-gpu",
    type=int,
    default=None,
    help="Workers sharing each GPU; alone it means that many per GPU, with --workers they are spread evenly.",
)
@click.option(
    "--max-trials-per-worker",
    type=int,
    default=None,
    help="Replace a worker process by a fresh one after N trials (bounds its memory over a long sweep).",
)
@click.option("--no-tracking", is_flag=True, help="Do not log to MLflow (for timing; not recommended).")
@click.option(
    "--system-metrics/--no-system-metrics",
    default=True,
    show_default=True,
    help="MLflow's CPU/memory (GPU with pynvml) samples in each trial run, every second.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the final table.")
@click.option("--top", type=int, default=5, show_default=True, help="Trials shown in the final table.")
def run(
    file: str,
    n_trials: int | None,
    timeout: float | None,
    study_name: str | None,
    storage: str | None,
    tracking_uri: str | None,
    checkpoint_store: str | None,
    experiment: str | None,
    data_dir: str | None,
    limit: int | None,
    epochs: int | None,
    seed: int | None,
    workers: int | None,
    workers_per_gpu: int | None,
    max_trials_per_worker: int | None,
    no_tracking: bool,
    system_metrics: bool,
    quiet: bool,
    top: int,
) -> None:
    """Run (or resume) the Optuna study a search-space FILE declares."""
    from mnist_sweep import app
    from mnist_sweep.config import load_space
    from mnist_sweep.sweep import SweepOptions, run_sweep

    space = load_space(file).with_overrides(
        n_trials=n_trials, timeout=timeout, study_name=study_name, epochs=epochs, seed=seed, limit=limit
    )
    _preflight(storage, tracking_uri, tracking=not no_tracking)
    options = SweepOptions(
        storage=storage,
        tracking_uri=tracking_uri,
        experiment=experiment,
        data_dir=data_dir,
        tracking=not no_tracking,
        system_metrics=system_metrics,
        quiet=quiet,
        checkpoint_store=checkpoint_store,
    )
    if workers is None and workers_per_gpu is None and max_trials_per_worker is None:
        result = run_sweep(space, options)
    else:
        from mnist_sweep.sweep import run_parallel

        result = run_parallel(
            space,
            options,
            workers=workers,
            workers_per_gpu=workers_per_gpu,
            max_trials_per_worker=max_trials_per_worker,
        )
    click.echo(app.sweep_table(result, top=top))


# --------------------------------------------------------------------------- ui


@main.command()
@click.argument("study", metavar="[STUDY]", required=False)
@tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless needed).")
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--open", "open_browser", is_flag=True, help="Open the study's page in a web browser.")
def ui(study: str | None, tracking_uri: str | None, host: str, port: int, open_browser: bool) -> None:
    """Start the MLflow UI on the sweeps' store and print the URL of STUDY's runs (default: the latest study).

    The page lists the study's trial runs sorted by its objective, with the searched params,
    dataset, source, model and test accuracy as columns. With an http(s) --tracking-uri the
    server is already running: the URL is printed (and opened) and nothing is started.
    """
    import subprocess
    import webbrowser

    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri, study_runs_page, ui_base_url

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    base = ui_base_url(uri, host=host, port=port)
    page = study_runs_page(study, tracking_uri=uri, base_url=base)
    url = page.url if page is not None else base
    click.echo(f"study {page.study!r}: {url}" if page is not None else f"no study yet: {url}")
    if uri.startswith(("http://", "https://")):
        if open_browser:
            webbrowser.open(url)
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:///"):
        command += ["--default-artifact-root", str(Path("mlruns").resolve())]
    click.echo(f"MLflow UI on {base} (store {uri}); Ctrl-C to stop", err=True)
    if not open_browser:
        sys.stdout.flush()  # exec does not flush Python's buffers: the URL would be lost in a pipe
        sys.stderr.flush()
        os.execv(sys.executable, command)
    from mnist_sweep.tracking.server import wait_until_up

    server = subprocess.Popen(command)
    try:
        if wait_until_up(f"{base}/health", server):
            webbrowser.open(url)
        server.wait()
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


# --------------------------------------------------------------------------- nightly


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--date", "night", default=None, metavar="YYYY-MM-DD", help="The night to run or finish (default: today)."
)
@storage_option
@tracking_option
@data_dir_option
@click.option("--check", is_flag=True, help="Only validate FILE and the search spaces it names; run nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the final summary.")
def nightly(
    file: str,
    night: str | None,
    storage: str | None,
    tracking_uri: str | None,
    data_dir: str | None,
    check: bool,
    quiet: bool,
) -> None:
    """Run one night of a nightly FILE: sweep, promote if better, report, retention.

    \b
    Exit codes: 0 done (promoted or not), 1 failed (re-run the same date to resume),
    2 bad file or flag, 3 already running (another instance holds the lock).
    """
    from mnist_sweep.app import NightlyOptions, format_result, run_nightly
    from mnist_sweep.config import describe_config, load_nightly

    config = load_nightly(file)
    if check:
        click.echo(describe_config(config))
        return
    options = NightlyOptions(date=night, storage=storage, tracking_uri=tracking_uri, data_dir=data_dir, quiet=quiet)
    # systemd, docker and cron stop jobs with SIGTERM: end like Ctrl-C (runs marked KILLED, the
    # lock released at once) rather than leave the lock to expire.
    import signal

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        result = run_nightly(config, options)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(format_result(result))


# --------------------------------------------------------------------------- report / compare / dashboard


@main.command()
@click.argument("study_name", metavar="STUDY")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for report.html and its PNGs (default: out/reports/STUDY).",
)
@click.option(
    "--top-k", type=int, default=5, show_default=True, callback=_positive, help="Trials whose curves share one chart."
)
@storage_option
@tracking_option
@data_dir_option
@click.option("--no-mlflow", is_flag=True, help="Do not log the report to the study's parent MLflow run.")
def report(
    study_name: str,
    out: Path | None,
    top_k: int,
    storage: str | None,
    tracking_uri: str | None,
    data_dir: str | None,
    no_mlflow: bool,
) -> None:
    """Write an HTML report of STUDY: plots, all trials, the best model's mistakes, the answer in words."""
    _preflight(storage, tracking_uri, tracking=True)
    from mnist_sweep.app import build_report

    result = build_report(
        study_name,
        storage=storage,
        tracking_uri=tracking_uri,
        data_dir=data_dir,
        out=out,
        top_k=top_k,
        log_to_mlflow=not no_mlflow,
    )
    click.echo("\n".join([result.findings[0], *(f"  - {f}" for f in result.findings[1:])]))
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {result.html} ({len(result.images)} figures beside it)")
    if result.logged_run_id:
        click.echo(f"logged to MLflow run {result.logged_run_id} under report/")


@main.command()
@click.argument("study_names", metavar="STUDY...", nargs=-1, required=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for compare.png, compare.csv and compare.html (default: out/reports/compare).",
)
@storage_option
@tracking_option
@data_dir_option
def compare(
    study_names: tuple[str, ...], out: Path | None, storage: str | None, tracking_uri: str | None, data_dir: str | None
) -> None:
    """Put the best results of several studies side by side (a table, a bar chart, and whether the lead is noise)."""
    _preflight(storage, tracking_uri, tracking=True)
    from mnist_sweep.app import compare_studies

    result = compare_studies(study_names, storage=storage, tracking_uri=tracking_uri, out=out, data_dir=data_dir)
    click.echo(result.table)
    if result.verdict:
        click.echo(f"\n{result.verdict}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"\nwrote {result.chart} ({result.chart_label}), {result.csv} and {result.html}")


@main.command()
@click.argument("study_name", metavar="[STUDY]", required=False)
@storage_option
@tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless needed).")
@click.option("--port", type=int, default=8080, show_default=True)
def dashboard(study_name: str | None, storage: str | None, tracking_uri: str | None, host: str, port: int) -> None:
    """Start optuna-dashboard on the study storage (opening on STUDY's page when given)."""
    _preflight(storage, None, tracking=False)
    from mnist_sweep.app import prepare_dashboard
    from mnist_sweep.stores import default_storage

    launch = prepare_dashboard(storage or default_storage(tracking_uri), study=study_name, host=host, port=port)
    click.echo(f"optuna-dashboard on {launch.url} (storage {launch.storage_shown}); Ctrl-C to stop", err=True)
    sys.stdout.flush()
    os.execve(launch.argv[0], launch.argv, {**os.environ, **launch.env})


# --------------------------------------------------------------------------- inspect / promote / predict

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


@main.command()
@storage_option
@tracking_option
@json_option
def studies(storage: str | None, tracking_uri: str | None, as_json: bool) -> None:
    """List the studies in a storage: trial counts, best value, start time."""
    _preflight(storage, None, tracking=False)
    import json

    from mnist_sweep.app import format_studies, list_studies, resolve_storage

    url = resolve_storage(storage, tracking_uri)
    found = list_studies(url)
    click.echo(json.dumps([s.to_dict() for s in found], indent=2) if as_json else format_studies(found, url))


@main.command()
@click.argument("study_name", metavar="STUDY")
@storage_option
@tracking_option
@json_option
def status(study_name: str, storage: str | None, tracking_uri: str | None, as_json: bool) -> None:
    """Trial counts by state, the best trial so far, and the trials running now (and for how long)."""
    _preflight(storage, None, tracking=False)
    import json

    from mnist_sweep.app import format_status, resolve_storage, study_status
    from mnist_sweep.tracking import ui_base_url

    found = study_status(study_name, resolve_storage(storage, tracking_uri))
    click.echo(
        json.dumps(found.to_dict(), indent=2) if as_json else format_status(found, ui_url=ui_base_url(tracking_uri))
    )


@main.command()
@click.argument("study_name", metavar="STUDY")
@storage_option
@tracking_option
@json_option
def best(study_name: str, storage: str | None, tracking_uri: str | None, as_json: bool) -> None:
    """The best COMPLETE trial: params, validation and test metrics, MLflow run id and model URI."""
    _preflight(storage, None, tracking=False)
    import json

    from mnist_sweep.app import best_trial, format_best, resolve_storage
    from mnist_sweep.tracking import ui_base_url

    found = best_trial(study_name, resolve_storage(storage, tracking_uri))
    click.echo(
        json.dumps(found.to_dict(), indent=2) if as_json else format_best(found, ui_url=ui_base_url(tracking_uri))
    )


@main.command()
@click.argument("study_name", metavar="STUDY")
@click.option("--model-name", default="mnist-classifier", show_default=True, help="Registered model to promote into.")
@click.option("--alias", default="champion", show_default=True, help="The alias that marks the model in use.")
@click.option(
    "--min-improvement",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.001,
    show_default=True,
    help="Test accuracy the candidate must gain over the alias holder.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.05,
    show_default=True,
    help="Significance level: promote only when McNemar's exact test gives p below it.",
)
@click.option(
    "--metric",
    type=click.Choice(["test_accuracy", "robust_accuracy"]),
    default="test_accuracy",
    show_default=True,
    help="What the gate compares: the test set, or its seeded transformed copy.",
)
@click.option(
    "--min-robust-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Also require this accuracy on the transformed test set.",
)
@click.option("--dry-run", is_flag=True, help="Evaluate both models and report; register and move nothing.")
@storage_option
@tracking_option
@data_dir_option
@json_option
def promote(
    study_name: str,
    model_name: str,
    alias: str,
    min_improvement: float,
    alpha: float,
    metric: str,
    min_robust_accuracy: float | None,
    dry_run: bool,
    storage: str | None,
    tracking_uri: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Promote STUDY's best trial to MODEL_NAME@ALIAS if it wins on the held-out test set beyond noise.

    The best COMPLETE trial (chosen on validation data) and the model holding the alias are
    both evaluated on the full test set; only a candidate whose test accuracy is higher by
    --min-improvement, with McNemar's exact test on the paired predictions at p < --alpha, is
    registered as a new version and gets the alias. A candidate that loses or wins within
    noise changes nothing in the registry (exit code 0); the decision is tagged on its run.
    """
    _preflight(storage, tracking_uri, tracking=True)
    import json

    from mnist_sweep.app import promote as promote_study

    result = promote_study(
        study_name,
        storage=storage,
        tracking_uri=tracking_uri,
        data_dir=data_dir,
        model_name=model_name,
        alias=alias,
        min_improvement=min_improvement,
        alpha=alpha,
        metric=metric,
        min_robust_accuracy=min_robust_accuracy,
        dry_run=dry_run,
    )
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.message())


@main.command()
@click.argument("model_uri")
@click.option("--dataset", default=None, help="mnist or fashion_mnist, when the model records none.")
@click.option("--seed", type=int, default=None, help="Seed of the transformed test set (default: the gate's, 0).")
@click.option(
    "--figure",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the per-transform bar chart (PNG) here.",
)
@tracking_option
@data_dir_option
@json_option
def evaluate(
    model_uri: str,
    dataset: str | None,
    seed: int | None,
    figure: Path | None,
    tracking_uri: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Test accuracy and robust accuracy (rotation, shift, scale, stroke width, noise) of MODEL_URI.

    MODEL_URI is models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-... or runs:/<run id>/model. The
    transformed test set is seeded, so the figures are the same on every run and match the gate's.
    """
    _preflight(None, tracking_uri, tracking=True)
    import json

    from mnist_sweep.app import evaluate_model

    result = evaluate_model(
        model_uri, tracking_uri=tracking_uri, data_dir=data_dir, dataset=dataset, seed=seed, figure=figure
    )
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else "\n".join(result.lines()))


@main.command()
@click.argument("model_uri")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--top-k", type=click.IntRange(1, 10), default=1, show_default=True, help="Classes shown per input.")
@click.option(
    "--invert/--no-invert",
    default=None,
    help="Force or forbid inverting images (default: invert dark ink on light paper).",
)
@tracking_option
@json_option
def predict(
    model_uri: str, files: tuple[str, ...], top_k: int, invert: bool | None, tracking_uri: str | None, as_json: bool
) -> None:
    """Predict the class of image files (PNG, JPEG, ...; any size) and .npy arrays of 28x28 images.

    MODEL_URI is models:/NAME@ALIAS, models:/NAME/VERSION, or a trial's model URI (models:/m-...,
    as `mnist-sweep best` prints). Unreadable files are reported by name (exit code 2); the
    others are still predicted.
    """
    _preflight(None, tracking_uri, tracking=True)
    import json

    from mnist_sweep.app import predict_files

    report = predict_files(model_uri, files, top_k=top_k, tracking_uri=tracking_uri, invert=invert)
    for problem in report.errors:
        click.echo(f"error: {problem.message}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.predictions:
        click.echo(f"model: {report.model}", err=True)
        for line in report.lines():
            click.echo(line)
    if report.errors:
        sys.exit(2)


# --------------------------------------------------------------------------- worker / server


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@storage_option
@tracking_option
@checkpoint_option
@click.option("--experiment", default=None, help="MLflow experiment (default: the study name).")
@click.option("--parent-run-id", default=None, help="Nest trial runs under this run (default: the study's own).")
@data_dir_option
@click.option("--n-trials", type=int, default=None, help="Override the study's trial budget (same on every worker).")
@click.option("--timeout", type=float, default=None, help="Stop this worker after this many seconds.")
@click.option("--study-name", default=None, help="Override the study name.")
@click.option("--limit", type=int, default=None, help="Train on N class-balanced images (quick runs).")
@click.option("--epochs", type=int, default=None, help="Override the epochs of every trial.")
@click.option("--no-tracking", is_flag=True, help="Do not log to MLflow (for timing; not recommended).")
@click.option(
    "--system-metrics/--no-system-metrics",
    default=True,
    show_default=True,
    help="MLflow's CPU/memory (GPU with pynvml) samples in each trial run, every second.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the final table.")
@click.option("--top", type=int, default=5, show_default=True, help="Trials shown in the final table.")
def worker(
    file: str,
    storage: str | None,
    tracking_uri: str | None,
    checkpoint_store: str | None,
    experiment: str | None,
    parent_run_id: str | None,
    data_dir: str | None,
    n_trials: int | None,
    timeout: float | None,
    study_name: str | None,
    limit: int | None,
    epochs: int | None,
    no_tracking: bool,
    system_metrics: bool,
    quiet: bool,
    top: int,
) -> None:
    """Run trials of FILE's study until its budget is spent, sharing it with other workers.

    Start any number of workers, on any number of machines, with the same FILE, --storage
    (postgresql://..., or journal:///path.log on one machine) and --tracking-uri (an MLflow
    server, see `mnist-sweep server`). Exits 0 once the study has its trials.
    """
    from mnist_sweep import app
    from mnist_sweep.config import load_space
    from mnist_sweep.sweep import SweepOptions, run_worker

    space = load_space(file).with_overrides(
        n_trials=n_trials, timeout=timeout, study_name=study_name, epochs=epochs, limit=limit
    )
    _preflight(storage, tracking_uri, tracking=not no_tracking)
    options = SweepOptions(
        storage=storage,
        tracking_uri=tracking_uri,
        experiment=experiment,
        data_dir=data_dir,
        tracking=not no_tracking,
        system_metrics=system_metrics,
        quiet=quiet,
        parent_run_id=parent_run_id,
        checkpoint_store=checkpoint_store,
    )
    result = run_worker(space, options)
    click.echo(app.sweep_table(result, top=top))


@main.command()
@click.option(
    "--backend-store-uri",
    default=None,
    envvar="MNIST_SWEEP_BACKEND_STORE_URI",
    help="Where runs are stored (default: postgresql://localhost:5432/mlflow; $MNIST_SWEEP_BACKEND_STORE_URI).",
)
@click.option(
    "--artifacts-destination",
    default=None,
    help="Folder or s3://bucket/prefix the server keeps artifacts in (default: ./mlartifacts).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it local unless needed).")
@click.option("--port", type=int, default=5000, show_default=True)
@click.option(
    "--allowed-hosts",
    default=None,
    help="Comma-separated Host headers to answer (default: localhost and 127.0.0.1, plus this machine's "
    "names when bound beyond loopback).",
)
@click.option("--workers", type=int, default=None, help="Server processes (MLflow's default: 4).")
@click.option("--dry-run", is_flag=True, help="Check the settings and print the mlflow command; start nothing.")
def server(
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    host: str,
    port: int,
    allowed_hosts: str | None,
    workers: int | None,
    dry_run: bool,
) -> None:
    """Start an MLflow tracking server for many workers (PostgreSQL store, served artifacts)."""
    from mnist_sweep.tracking import server as server_mod

    config = server_mod.build_config(
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        workers=workers,
    )
    if dry_run:
        click.echo(server_mod.shown_command(config))
        return
    server_mod.check_ready(config)
    click.echo(f"MLflow tracking server on {config.url} (give workers --tracking-uri {config.url})", err=True)
    server_mod.serve(config)


if __name__ == "__main__":  # pragma: no cover
    main()
