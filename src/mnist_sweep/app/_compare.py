"""Several studies side by side: ``mnist-sweep compare`` writes a text table, a CSV, a bar chart and an HTML page."""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep.app._report import (
    DEFAULT_OUT,
    ValidationFlags,
    _Study,
    lead_sentence,
    metric_text,
    read_study,
    settings_text,
)
from mnist_sweep.display import PAGE_CSS, figure_html, text_table
from mnist_sweep.errors import MnistSweepError

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class StudyBest:
    """One study's row in a comparison."""

    study: str
    dataset: str
    metric: str
    direction: str
    question: str
    trials: int
    complete: int
    pruned: int
    failed: int
    best_trial: int | None = None
    best_value: float | None = None
    test_accuracy: float | None = None
    searched: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_studies` found and wrote."""

    rows: tuple[StudyBest, ...]
    table: str
    chart: Path
    csv: Path
    html: Path
    chart_label: str
    verdict: str = ""
    """Whether the best study leads the runner-up beyond noise (empty when it cannot be told)."""
    notes: tuple[str, ...] = ()


def study_best(study: optuna.Study) -> StudyBest:
    """The row :func:`compare_studies` shows for ``study``: its counts and its best trial."""
    return _row(read_study(study))


def _row(s: _Study) -> StudyBest:
    counts = s.counts()
    best = s.best
    row = StudyBest(
        study=s.name,
        dataset=s.dataset,
        metric=s.metric,
        direction="maximize" if s.maximize else "minimize",
        question=s.question,
        trials=len(s.trials),
        complete=counts.get("COMPLETE", 0),
        pruned=counts.get("PRUNED", 0),
        failed=counts.get("FAIL", 0),
    )
    if best is None:
        return row
    return replace(
        row,
        best_trial=best.number,
        best_value=best.value,
        test_accuracy=best.test_accuracy,
        searched=best.searched,
        epochs=len(best.history) if best.history else None,
        seconds=best.seconds,
    )


def compare_studies(
    names: Sequence[str],
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    out: str | Path | None = None,
    data_dir: str | None = None,
) -> Comparison:
    """The best results of several studies side by side: a text table, a CSV, a bar chart, an HTML page.

    The chart shows the best objective value when every study optimizes the same metric, else
    the test accuracy of each study's best trial (comparable whatever the objective). When they
    share a metric, ``verdict`` says whether the best study's lead over the runner-up is beyond
    noise (Welch's t-test over seeds, or McNemar's test on the two best models' predictions
    when both studies validated on the same images).
    """
    from mnist_sweep.display import plots
    from mnist_sweep.stores import default_storage, load_study

    names = list(dict.fromkeys(names))  # each study once, in the order given
    if not names:
        raise MnistSweepError("compare needs at least one study name")
    storage = storage or default_storage(tracking_uri)
    read = [read_study(load_study(name, storage)) for name in names]
    rows = tuple(_row(s) for s in read)
    target = Path(out) if out is not None else DEFAULT_OUT / "compare"
    target.mkdir(parents=True, exist_ok=True)
    metrics = {r.metric for r in rows}
    if len(metrics) == 1:
        label = f"best {next(iter(metrics))}"
        values = [r.best_value for r in rows]
    else:
        label = "test accuracy of the best trial"
        values = [r.test_accuracy for r in rows]
    shown = [(r.study, v) for r, v in zip(rows, values, strict=True) if v is not None]
    chart = plots.save(
        plots.bar_comparison(
            [name for name, _ in shown],
            [float(v) for _, v in shown],
            ylabel=label,
            title=f"{label} per study",
        ),
        target / "compare.png",
    )
    table_rows = _comparison_rows(rows)
    csv_path = target / "compare.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table_rows)
    validation = ValidationFlags(tracking_uri=tracking_uri, data_dir=data_dir)
    verdict = _verdict(read, validation) if len(metrics) == 1 else ""
    html_path = target / "compare.html"
    html_path.write_text(_render_comparison(table_rows, chart, label, verdict), encoding="utf-8")
    return Comparison(
        rows=rows,
        table=text_table(table_rows),
        chart=chart,
        csv=csv_path,
        html=html_path,
        chart_label=label,
        verdict=verdict,
        notes=tuple(validation.notes),
    )


def _verdict(studies: Sequence[_Study], validation: ValidationFlags) -> str:
    """The leading study against the runner-up, beyond noise or not."""
    done = [s for s in studies if s.best is not None]
    if len(done) < 2:
        return ""
    maximize = done[0].maximize
    ranked = sorted(done, key=lambda s: float(s.best.value or 0.0) if s.best else 0.0, reverse=maximize)
    first, second = ranked[0], ranked[1]
    a, b = first.best, second.best
    assert a is not None and b is not None

    def flags(t: Any) -> Any:
        study = first if t is a else second
        return validation.of(study, t)

    paired = first.dataset == second.dataset
    sentence = lead_sentence(
        f"study {first.name}", f"study {second.name}", a, b, metric=first.metric, maximize=maximize,
        flags=flags if paired else None,
    )  # fmt: skip
    splits = {validation.splits.get((s.name, t.number)) for s, t in ((first, a), (second, b))}
    if len(splits) > 1:  # different validation images: predictions cannot be paired
        return ""
    return sentence


def _comparison_rows(rows: Sequence[StudyBest]) -> list[list[str]]:
    out = [["study", "dataset", "objective", "best", "test_acc", "trial", "trials", "best params", "epochs", "seconds"]]
    for r in rows:
        out.append(
            [
                r.study,
                r.dataset,
                f"{r.direction[:3]} {r.metric}",
                metric_text(r.best_value),
                metric_text(r.test_accuracy),
                "-" if r.best_trial is None else str(r.best_trial),
                f"{r.complete}/{r.trials}"
                + (f" ({r.pruned} pruned, {r.failed} failed)" if r.pruned or r.failed else ""),
                settings_text(r.searched) or "-",
                "-" if r.epochs is None else str(r.epochs),
                "-" if r.seconds is None else f"{r.seconds:.1f}",
            ]
        )
    return out


def _render_comparison(rows: Sequence[Sequence[str]], chart: Path, label: str, verdict: str = "") -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    names = ", ".join(row[0] for row in rows[1:])
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Compare: {e(names)}</title><style>{PAGE_CSS}</style></head><body><main>"
        f'<header><h1>Studies side by side</h1><div class="meta">{e(names)}</div></header>'
        f'<section><h2>Best results</h2><div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div></section>"
        + (f'<section><h2>Beyond noise?</h2><p class="answer">{e(verdict)}</p></section>' if verdict else "")
        + f"<section>{figure_html(chart, label.capitalize(), 'One bar per study.')}</section>"
        "</main></body></html>\n"
    )
