"""What a night did, as data and as a report: the result records, the Markdown/HTML report, the summary.

The report (tonight's best against the champion, the night's learning curves, the best accuracy
across nights) is logged to the night's MLflow run under ``report/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_sweep.config import Objective, PromotionPolicy

REPORT_DIR = "report"


@dataclass
class NightStudy:
    """One space's study of the night and what this invocation did with it."""

    space: str
    study_name: str
    created: bool
    warm_start: list[dict[str, Any]] = field(default_factory=list)
    trials_run: int = 0
    trials: int = 0
    complete: int = 0
    best_value: float | None = None
    best_test_accuracy: float | None = None
    best_trial: int | None = None
    stopped_reason: str | None = None
    promotion: dict[str, Any] | None = None
    promotion_now: bool = False


@dataclass
class NightlyResult:
    """What one ``mnist-sweep nightly`` invocation did."""

    name: str
    night: dt.date
    storage: str
    experiment: str
    run_id: str | None = None
    studies: list[NightStudy] = field(default_factory=list)
    report_logged: bool = False
    deleted_studies: list[str] = field(default_factory=list)
    deleted_runs: int = 0
    taken_over_from: str | None = None

    @property
    def promoted(self) -> bool:
        return any(s.promotion and s.promotion.get("promoted") for s in self.studies)


def describe_promotion(decision: Mapping[str, Any] | None) -> str:
    """A recorded promotion decision in one line (its reason)."""
    if not decision:
        return "no decision"
    return str(decision.get("reason") or decision.get("decision") or "no decision")


def gate_score(decision: Mapping[str, Any] | None, who: str) -> float | None:
    """The gate's test accuracy of the ``candidate`` or the ``champion`` in a recorded decision."""
    value = (decision or {}).get(f"{who}_score")
    return None if value is None else float(value)


def champion_after(studies: Sequence[NightStudy]) -> float | None:
    """The alias holder's test accuracy after tonight's gates (the last decision that knows it)."""
    score = None
    for entry in studies:
        decision = entry.promotion or {}
        if decision.get("promoted"):
            score = gate_score(decision, "candidate")
        elif gate_score(decision, "champion") is not None:
            score = gate_score(decision, "champion")
    return score


def night_metrics(result: NightlyResult, objective: Objective) -> dict[str, float]:
    """The night in numbers, logged on the nightly run (the across-nights chart reads them)."""
    studies = result.studies
    metrics: dict[str, float] = {
        "promoted": float(result.promoted),
        "night_trials": float(sum(s.trials for s in studies)),
    }
    values = [s.best_value for s in studies if s.best_value is not None]
    if values:
        pick = max if objective.direction == "maximize" else min
        metrics[f"night_best_{objective.metric}"] = float(pick(values))
    candidates = [gate_score(s.promotion, "candidate") for s in studies]
    scored = [c for c in candidates if c is not None]
    if scored:
        metrics["candidate_test_accuracy"] = max(scored)
    champion = champion_after(studies)
    if champion is not None:
        metrics["champion_test_accuracy"] = champion
    return metrics


def write_report(
    folder: Path,
    *,
    result: NightlyResult,
    policy: PromotionPolicy,
    history: Sequence[Mapping[str, Any]],
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    metric: str,
) -> list[Path]:
    """The night's PNGs, ``report.md`` and a self-contained ``report.html`` in ``folder``."""
    from mnist_sweep.display import plots

    folder.mkdir(parents=True, exist_ok=True)
    night = result.night.isoformat()
    labels: list[str] = []
    values: list[float] = []
    before = next((s.promotion for s in result.studies if gate_score(s.promotion, "champion") is not None), None)
    if before is not None:
        labels.append(f"@{policy.alias} (version {before.get('champion_version')})")
        values.append(float(before["champion_score"]))
    several = len(result.studies) > 1
    for entry in result.studies:
        score = gate_score(entry.promotion, "candidate")
        if score is not None:
            trial = (entry.promotion or {}).get("trial")
            space = entry.study_name.removeprefix(f"{result.name}-").removesuffix(f"-{night}")
            labels.append(f"{space + ' ' if several else ''}tonight's best (trial {trial})")
            values.append(score)
    pngs = {
        "tonight_vs_champion.png": plots.bar_comparison(
            labels,
            values,
            ylabel=f"{policy.metric} (held-out test set)",
            title=f"Tonight's best vs the champion, {night}",
        ),
        "learning_curves.png": plots.curves_overlay(
            histories, metric=metric, title=f"The night's learning curves ({metric}), {night}"
        ),
        "best_over_time.png": plots.best_over_time(
            [row["night"] for row in history],
            {
                "the night's best": [row.get("candidate_test_accuracy") for row in history],
                f"@{policy.alias} after the night": [row.get("champion_test_accuracy") for row in history],
            },
            ylabel=policy.metric,
            title=f"Best {policy.metric.replace('_', ' ')} across nights ({result.name})",
        ),
    }
    files = [plots.save(figure, folder / name) for name, figure in pngs.items()]
    markdown = report_markdown(result, policy=policy, metric=metric, images=list(pngs))
    md_path = folder / "report.md"
    md_path.write_text(markdown, encoding="utf-8")
    html_path = folder / "report.html"
    html_path.write_text(_markdown_page_as_html(result, markdown, folder, list(pngs)), encoding="utf-8")
    return [md_path, html_path, *files]


def report_markdown(result: NightlyResult, *, policy: PromotionPolicy, metric: str, images: Sequence[str]) -> str:
    """The night in Markdown: the studies, the promotion decisions, the warm start, the images."""
    lines = [
        f"# Nightly sweep {result.night.isoformat()} ({result.name})",
        "",
        f"Storage `{result.storage}`, MLflow experiment `{result.experiment}`, run `{result.run_id}`.",
        f"Promotion gate: {policy.metric} on the held-out test set, better by at least {policy.margin:g}, "
        f"into `{policy.model_name}@{policy.alias}`.",
        "",
        f"| study | trials (complete) | run now | warm start | best {metric} | best trial | its test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result.studies:
        lines.append(
            f"| `{s.study_name}` | {s.trials} ({s.complete}) | {s.trials_run} | {len(s.warm_start)} | "
            f"{_fmt(s.best_value)} | {'-' if s.best_trial is None else s.best_trial} | {_fmt(s.best_test_accuracy)} |"
        )
    lines += ["", "## Promotion", ""]
    lines += [f"- `{s.study_name}`: {describe_promotion(s.promotion)}" for s in result.studies]
    warm = [(s, item) for s in result.studies for item in s.warm_start]
    if warm:
        lines += ["", "## Warm start", ""]
        lines += [
            f"- `{s.study_name}`: {item['source']}: `{json.dumps(item['params'])}`"
            + (" (continues its kept checkpoint)" if item.get("checkpoint") else "")
            for s, item in warm
        ]
    lines.append("")
    for name in images:
        lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({name})", ""]
    return "\n".join(lines)


def _markdown_page_as_html(result: NightlyResult, markdown: str, folder: Path, images: Sequence[str]) -> str:
    """A self-contained HTML page (images inlined), so MLflow's artifact viewer shows it whole."""
    body: list[str] = []
    table: list[list[str]] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        if table:
            head, *rows = table
            body.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>"
            )
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            if name in images:
                data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
                body.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}"
    )
    title = html.escape(f"Nightly sweep {result.night.isoformat()} ({result.name})")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>" + (
        "<body>" + "\n".join(body) + "</body></html>\n"
    )


def format_result(result: NightlyResult) -> str:
    """The summary ``mnist-sweep nightly`` prints."""
    lines = [f"night {result.night.isoformat()} of {result.name!r} (storage {result.storage})"]
    if result.taken_over_from:
        lines.append(f"  took over an expired lock: {result.taken_over_from}")
    for s in result.studies:
        lines.append(
            f"  {s.study_name}: {s.trials} trials ({s.complete} complete, {s.trials_run} run now), "
            f"best {_fmt(s.best_value)} (trial {'-' if s.best_trial is None else s.best_trial}), "
            f"warm start {len(s.warm_start)}" + (f"; stopped: {s.stopped_reason}" if s.stopped_reason else "")
        )
        lines.append(f"    promotion: {describe_promotion(s.promotion)}")
    if result.run_id:
        lines.append(
            f"  report: MLflow run {result.run_id} (experiment {result.experiment!r}), {REPORT_DIR}/report.html"
            + ("" if result.report_logged else " (unchanged)")
        )
    if result.deleted_studies or result.deleted_runs:
        lines.append(f"  retention: deleted {len(result.deleted_studies)} studies, {result.deleted_runs} trial runs")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
