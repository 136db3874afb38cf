"""What a study found, for people to look at: an HTML report per study, and a comparison of studies.

:func:`build_report` reads everything from the Optuna study (its trials, their params, histories
and test accuracies, the study's question) and the best trial's model from MLflow, and writes one
self-contained HTML page (every image inlined) with the same PNGs beside it. The page and its
PNGs are also logged to the study's parent MLflow run under ``report/``. :func:`answer_in_words`
turns the trials into the paragraph that answers the study's question; it is generic over any
search space. :func:`compare_studies` puts the best results of several studies side by side.
"""

from __future__ import annotations

import html
import logging
import math
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep import stats
from mnist_sweep.contract import (
    ATTR_DATASET,
    ATTR_EXPERIMENT,
    ATTR_HISTORY,
    ATTR_MODEL_URI,
    ATTR_OBJECTIVE_METRIC,
    ATTR_PARENT_RUN,
    ATTR_QUESTION,
    ATTR_SEED_VALUES,
    ATTR_SPACE_FILE,
    STATE_PAUSED,
    STATE_PROMOTED,
)
from mnist_sweep.display import PAGE_CSS, figure_html
from mnist_sweep.errors import MnistSweepError

if TYPE_CHECKING:
    import numpy as np
    import optuna
    from matplotlib.figure import Figure

    from mnist_sweep.sweep import TrialSummary

log = logging.getLogger(__name__)

CHANCE_ACCURACY = 0.15
"""A trial whose final validation accuracy is at most this stayed at chance (10 classes: 0.10)."""
REPORT_FILE = "report.html"
ARTIFACT_DIR = "report"
DEFAULT_OUT = Path("out") / "reports"
GALLERY_SIZE = 25


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote, and where it logged it."""

    study_name: str
    html: Path
    images: Mapping[str, Path]
    answer: str
    logged_run_id: str | None
    notes: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()  # ``answer`` as sentences: the headline, then one finding each


# --------------------------------------------------------------------------- reading a study


@dataclass(frozen=True)
class _Trial:
    """One trial with what the report needs, read once from the frozen trial."""

    number: int
    state: str
    value: float | None
    searched: dict[str, Any]
    params: dict[str, Any]
    history: list[dict[str, float]]
    test_accuracy: float | None
    seconds: float | None
    note: str
    run_id: str | None
    model_uri: str | None
    seed_values: tuple[float, ...] = ()  # each seed's final objective value, with ``repeats`` > 1

    @property
    def final_val_accuracy(self) -> float | None:
        for record in reversed(self.history):
            value = record.get("val_accuracy")
            if value is not None and math.isfinite(float(value)):
                return float(value)
        return None


@dataclass(frozen=True)
class _Study:
    name: str
    metric: str
    maximize: bool
    dataset: str
    question: str
    trials: tuple[_Trial, ...]
    categorical: dict[str, tuple[Any, ...]]  # searched categorical param -> its choices
    numeric: dict[str, Any]  # searched numeric param -> its distribution
    attrs: Mapping[str, Any]

    @property
    def complete(self) -> list[_Trial]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None and math.isfinite(t.value)]

    def ranked(self) -> list[_Trial]:
        """COMPLETE trials, best first."""
        return sorted(self.complete, key=lambda t: t.value or 0.0, reverse=self.maximize)

    @property
    def best(self) -> _Trial | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out


def read_study(study: optuna.Study) -> _Study:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from mnist_sweep.sweep import summarize
    from mnist_sweep.sweep._asha import closed_of, continued, paused

    summaries: dict[int, TrialSummary] = {s.number: s for s in summarize(study)}
    # asha: a paused trial is PRUNED in Optuna; the report calls it PAUSED while it waits for a
    # promotion and PROMOTED once a continuation trains its configuration on.
    every = study.get_trials(deepcopy=False)
    waiting = {t.number for t in paused(every, closed_of(study))}
    promoted = continued(every)
    trials = []
    categorical: dict[str, tuple[Any, ...]] = {}
    numeric: dict[str, Any] = {}
    for frozen in study.get_trials(deepcopy=False):
        summary = summaries[frozen.number]
        for name, dist in frozen.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                categorical.setdefault(name, tuple(dist.choices))
            else:
                numeric.setdefault(name, dist)
        attrs = frozen.user_attrs
        history = [dict(h) for h in attrs.get(ATTR_HISTORY) or [] if isinstance(h, Mapping)]
        trials.append(
            _Trial(
                number=frozen.number,
                state=(
                    STATE_PAUSED
                    if frozen.number in waiting
                    else STATE_PROMOTED
                    if frozen.number in promoted
                    else frozen.state.name
                ),
                value=frozen.value if frozen.state == optuna.trial.TrialState.COMPLETE else None,
                searched=dict(frozen.params),
                params=dict(summary.params),
                history=history,
                test_accuracy=summary.test_accuracy,
                seconds=summary.seconds,
                note=summary.note,
                run_id=summary.run_id,
                model_uri=attrs.get(ATTR_MODEL_URI) or None,
                seed_values=_seed_values(attrs.get(ATTR_SEED_VALUES)),
            )
        )
    attrs = study.user_attrs
    return _Study(
        name=study.study_name,
        metric=str(attrs.get(ATTR_OBJECTIVE_METRIC) or "objective"),
        maximize=study.directions[0] == optuna.study.StudyDirection.MAXIMIZE,
        dataset=str(attrs.get(ATTR_DATASET) or "mnist"),
        question=str(attrs.get(ATTR_QUESTION) or ""),
        trials=tuple(trials),
        categorical=categorical,
        numeric=numeric,
        attrs=dict(attrs),
    )


def _seed_values(raw: Any) -> tuple[float, ...]:
    if not isinstance(raw, list | tuple):
        return ()
    try:
        return tuple(float(v) for v in raw)
    except (TypeError, ValueError):
        return ()


# --------------------------------------------------------------------------- beyond noise?

FlagsOf = Callable[[_Trial], "np.ndarray | None"]
"""Which validation images a trial's model got right (None when its model cannot be had)."""


def lead_sentence(
    leader: str, other: str, a: _Trial, b: _Trial, *, metric: str, maximize: bool, flags: FlagsOf | None = None
) -> str:
    """Whether ``a`` (named ``leader``) leads ``b`` beyond noise, in one sentence; empty with no evidence.

    With at least two seeds on each side: Welch's t-test over the seeds' values. Otherwise
    McNemar's exact test on the two models' validation predictions (``flags``), with the
    bootstrap CI of their accuracy difference.
    """
    if len(a.seed_values) >= 2 and len(b.seed_values) >= 2:
        test = stats.welch(a.seed_values, b.seed_values)
        sign = 1 if maximize else -1
        lead, half, p = sign * test.difference, test.interval.half_width, test.p_value
        how = f"Welch's t-test over {len(a.seed_values)} and {len(b.seed_values)} seeds"
        more = f"`repeats: {max(3, 2 * max(len(a.seed_values), len(b.seed_values)))}`"
        accuracy = "accuracy" in metric
    elif flags is not None:
        right_a, right_b = flags(a), flags(b)
        if right_a is None or right_b is None or len(right_a) != len(right_b):
            return ""
        paired = stats.mcnemar_flags(right_a, right_b)
        interval = stats.bootstrap_difference(paired)
        lead, half, p = paired.difference, interval.half_width, paired.p_value
        how = (
            f"McNemar's exact test on both models' {paired.n:,} validation predictions, {paired.discordant} discordant"
        )
        more, accuracy = "`repeats: 3`", True
    else:
        return ""
    amount = f"{lead * 100:.2f} ± {half * 100:.2f} points" if accuracy else f"{lead:.4f} ± {half:.4f}"
    if accuracy and "accuracy" not in metric:
        amount += " of validation accuracy"
    shown = f"{p:.2g}" if p < 0.001 else f"{p:.3f}"
    if p < stats.ALPHA:
        return f"{leader} leads {other} by {amount} (95% CI), p = {shown}: beyond noise at 5% ({how})."
    return (
        f"{leader} leads {other} by {amount} (95% CI), within noise (p = {shown}; {how}): "
        f"run with {more} to tell them apart."
    )


class ValidationFlags:
    """Validation predictions of trials' logged models, each model loaded and run once.

    The validation split is rebuilt as the study cut it (its ``limit``), so two models of the
    same study are paired image by image. ``notes`` collects why a model could not be used.
    """

    def __init__(self, *, tracking_uri: str | None, data_dir: str | None) -> None:
        self.tracking_uri = tracking_uri
        self.data_dir = data_dir
        self.notes: list[str] = []
        self._cache: dict[tuple[str, int], np.ndarray | None] = {}
        self.splits: dict[tuple[str, int], tuple[str, int | None]] = {}

    def of(self, s: _Study, t: _Trial) -> np.ndarray | None:
        key = (s.name, t.number)
        if key not in self._cache:
            self._cache[key] = self._measure(s, t)
        return self._cache[key]

    def for_study(self, s: _Study) -> FlagsOf:
        return lambda t: self.of(s, t)

    def _measure(self, s: _Study, t: _Trial) -> np.ndarray | None:
        import numpy as np

        from mnist_sweep.model import load_dataset, probabilities
        from mnist_sweep.tracking import load_logged_model

        if not t.model_uri:
            self.notes.append(f"Significance: trial {t.number} of {s.name} logged no model, so it was not tested.")
            return None
        limit, _ = _data_limit(s, t, tracking_uri=self.tracking_uri)
        try:
            model = load_logged_model(t.model_uri, tracking_uri=self.tracking_uri)
            dataset = load_dataset(s.dataset, data_dir=self.data_dir, limit=limit)
        except MnistSweepError as exc:
            self.notes.append(f"Significance: trial {t.number} of {s.name}: {exc}")
            return None
        self.splits[(s.name, t.number)] = (s.dataset, limit)
        return np.asarray(np.argmax(probabilities(model, dataset.x_val), axis=1) == dataset.y_val)


# --------------------------------------------------------------------------- the answer in words


def answer_in_words(study: optuna.Study) -> str:
    """A paragraph that answers the study's question from its trials, for any search space.

    For each searched categorical param: which value won (best and mean objective per value) and
    by how much, whether the winner held at every value of the other categorical params, and
    which settings, alone or in pairs, stayed at chance (validation accuracy <=
    :data:`CHANCE_ACCURACY`). For each numeric param: the range the best trials used. Then the
    pruned and failed trials.
    """
    return " ".join(_findings(read_study(study)))


def _findings(s: _Study, flags: FlagsOf | None = None) -> list[str]:
    """The answer as sentences: the headline first, then one finding each."""
    ranked = s.ranked()
    if not ranked:
        return [
            f"No trial has completed yet ({_count_phrase(s.counts(), len(s.trials))}), so the study cannot "
            "answer its question yet.",
            *_failures(s),
        ]
    best = ranked[0]
    sentences = [
        f"{len(ranked)} of {len(s.trials)} trials completed; the best, trial {best.number}, reached {s.metric} "
        f"{metric_text(best.value)}"
        + (f" (test accuracy {metric_text(best.test_accuracy)})" if best.test_accuracy is not None else "")
        + (f" with {settings_text(best.searched)}" if best.searched else "")
        + "."
    ]
    varied = [p for p in s.categorical if len({_key(t.searched[p]) for t in ranked if p in t.searched}) > 1]
    for param in varied:
        sentences += _categorical_sentences(s, param, [q for q in varied if q != param], flags)
    sentences += _chance_sentences(s, varied)
    sentences += [text for param in s.numeric if (text := _numeric_sentence(s, param))]
    return sentences + _failures(s)


def _categorical_sentences(s: _Study, param: str, others: Sequence[str], flags: FlagsOf | None = None) -> list[str]:
    groups = _group(s.complete, param)
    ranked_values = sorted(groups, key=lambda v: _best_of(s, groups[v]), reverse=s.maximize)
    winner, *rest = ranked_values
    win_best = _best_of(s, groups[winner])
    n = len(groups[winner])
    behind = [
        f"{_show(value)} (best {metric_text(_best_of(s, groups[value]))}, mean {metric_text(_mean(groups[value]))}; "
        f"{abs(win_best - _best_of(s, groups[value])):.4f} behind)"
        for value in rest
    ]
    sentences = [
        f"{param}: {_show(winner)} won with best {s.metric} {metric_text(win_best)} (mean "
        f"{metric_text(_mean(groups[winner]))} over {n} trial{'s' if n != 1 else ''}), ahead of {', '.join(behind)}."
    ]
    if rest:
        leader, runner = _best_trial(s, groups[winner]), _best_trial(s, groups[rest[0]])
        sentence = lead_sentence(
            f"{param}: {_show(winner)}",
            _show(rest[0]),
            leader,
            runner,
            metric=s.metric,
            maximize=s.maximize,
            flags=flags,
        )
        if sentence:
            sentences.append(sentence)
    missing = [c for c in s.categorical[param] if _key(c) not in {_key(v) for v in groups}]
    if missing:
        sentences.append(f"No trial with {param}={', '.join(_show(m) for m in missing)} completed.")
    for other in others:
        sentence = _interaction_sentence(s, param, other, groups)
        if sentence:
            sentences.append(sentence)
    return sentences


def _interaction_sentence(s: _Study, param: str, other: str, groups: Mapping[Any, list[_Trial]]) -> str:
    """Whether ``param``'s winner held at every value of ``other``."""
    winners: dict[Any, Any] = {}
    for other_value, trials in _group(s.complete, other).items():
        at_value = _group(trials, param)
        if len(at_value) >= 2:
            winners[other_value] = max(at_value, key=lambda v: _best_of(s, at_value[v]) * (1 if s.maximize else -1))
    if len(winners) < 2:
        return ""
    order = sorted(winners, key=_sort_key)
    tried = ", ".join(_show(v) for v in order)
    if len({_key(w) for w in winners.values()}) == 1:
        winner = next(iter(winners.values()))
        losers = [v for v in groups if _key(v) != _key(winner)]
        if len(losers) == 1:
            return f"{_show(winner)} beat {_show(losers[0])} at every {other} tried ({tried})."
        return f"{_show(winner)} was the best {param} at every {other} tried ({tried})."
    by_winner: dict[str, list[Any]] = {}
    for value in order:
        by_winner.setdefault(_show(winners[value]), []).append(value)
    listing = "; ".join(f"{w} at {other} {', '.join(_show(v) for v in vs)}" for w, vs in by_winner.items())
    return f"The best {param} depended on {other}: {listing}."


def _chance_sentences(s: _Study, varied: Sequence[str]) -> list[str]:
    finished = [t for t in s.trials if t.state in ("COMPLETE", "PRUNED")]
    stuck = [t for t in finished if t.final_val_accuracy is not None and t.final_val_accuracy <= CHANCE_ACCURACY]
    if not stuck:
        return []
    stuck_numbers = {t.number for t in stuck}
    sentences = []
    covered = set()
    for param in varied:
        for value, trials in _group(finished, param).items():
            if len(trials) >= 2 and all(t.number in stuck_numbers for t in trials):
                sentences.append(f"Every trial with {param}={_show(value)} stayed at chance.")
                covered.add((param, _key(value)))
    for i, param in enumerate(varied):
        for other in varied[i + 1 :]:
            for value, trials in _group(finished, param).items():
                for other_value, pair in _group(trials, other).items():
                    if {(param, _key(value)), (other, _key(other_value))} & covered:
                        continue
                    if len(pair) >= 2 and all(t.number in stuck_numbers for t in pair):
                        both = f"{param}={_show(value)} and {other}={_show(other_value)}"
                        sentences.append(f"Every trial with {both} stayed at chance.")
    settings: dict[str, list[_Trial]] = {}
    for t in stuck:
        chosen = {k: t.searched[k] for k in s.categorical if k in t.searched}
        settings.setdefault(" with ".join(f"{k}={_show(v)}" for k, v in chosen.items()), []).append(t)
    listed = []
    for setting, trials in settings.items():
        which = ", ".join(f"trial {t.number}: {metric_text(t.final_val_accuracy)}" for t in trials)
        listed.append(f"{setting} ({which})" if setting else which)
    sentences.append(f"Stayed at chance (val_accuracy <= {CHANCE_ACCURACY:g}): {'; '.join(listed)}.")
    return sentences


def _numeric_sentence(s: _Study, param: str) -> str:
    ranked = [t for t in s.ranked() if param in t.searched]
    if not ranked:
        return ""
    dist = s.numeric[param]
    searched = f"searched {_num(dist.low)} to {_num(dist.high)}{', log scale' if getattr(dist, 'log', False) else ''}"
    if len(ranked) < 4:
        return f"{param}: the best trial used {_num(ranked[0].searched[param])} ({searched})."
    top = ranked[: max(2, math.ceil(len(ranked) / 4))]
    values = [float(t.searched[param]) for t in top]
    return (
        f"{param}: the best {len(top)} of {len(ranked)} completed trials used {_num(min(values))} to "
        f"{_num(max(values))} ({searched}); the best trial {_num(ranked[0].searched[param])}."
    )


def _failures(s: _Study) -> list[str]:
    counts = s.counts()
    pruned, failed, waiting = counts.get("PRUNED", 0), counts.get("FAIL", 0), counts.get(STATE_PAUSED, 0)
    if not pruned and not failed and not waiting and not counts.get(STATE_PROMOTED):
        return []
    parts = []
    if pruned:
        parts.append(f"{pruned} trial{'s were' if pruned > 1 else ' was'} pruned")
    promoted = counts.get(STATE_PROMOTED, 0)
    if promoted:
        parts.append(f"{promoted} {'were' if promoted > 1 else 'was'} promoted to a later rung (asha)")
    if waiting:
        parts.append(f"{waiting} {'are' if waiting > 1 else 'is'} paused at a rung, waiting for a promotion (asha)")
    if failed:
        reasons: dict[str, int] = {}
        for t in s.trials:
            if t.state == "FAIL":
                reason = (t.note or "unknown reason").split(":")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
        why = ", ".join(f"{r} x{n}" if n > 1 else r for r, n in sorted(reasons.items(), key=lambda i: -i[1]))
        parts.append(f"{failed} failed ({why})")
    text = " and ".join(parts)
    return [text[0].upper() + text[1:] + "."]


def _group(trials: Sequence[_Trial], param: str) -> dict[Any, list[_Trial]]:
    groups: dict[str, tuple[Any, list[_Trial]]] = {}
    for t in trials:
        if param in t.searched:
            value = t.searched[param]
            groups.setdefault(_key(value), (value, []))[1].append(t)
    return {value: members for value, members in groups.values()}


def _best_of(s: _Study, trials: Sequence[_Trial]) -> float:
    values = [float(t.value) for t in trials if t.value is not None]
    return max(values) if s.maximize else min(values)


def _best_trial(s: _Study, trials: Sequence[_Trial]) -> _Trial:
    done = [t for t in trials if t.value is not None]
    return (
        max(done, key=lambda t: float(t.value or 0.0)) if s.maximize else min(done, key=lambda t: float(t.value or 0.0))
    )


def _mean(trials: Sequence[_Trial]) -> float:
    return statistics.fmean(float(t.value) for t in trials if t.value is not None)


def _count_phrase(counts: Mapping[str, int], total: int) -> str:
    if not total:
        return "no trials"
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))


def _key(value: Any) -> str:
    return repr(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else (1, str(value))


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.4g}"


def metric_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def settings_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in params.items())


# --------------------------------------------------------------------------- the report


def build_report(
    study_name: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
    top_k: int = 5,
    log_to_mlflow: bool = True,
) -> ReportResult:
    """Write ``study_name``'s HTML report and its PNGs into ``out``; log them to the parent run.

    Whatever cannot be shown (no complete trial yet, no logged model, no MLflow run) is left out
    with a note on the page saying why; only a missing study or storage is an error.
    """
    from mnist_sweep.display import plots
    from mnist_sweep.stores import default_storage, load_study, redact_url

    storage = storage or default_storage(tracking_uri)
    study = load_study(study_name, storage)
    s = read_study(study)
    target = Path(out) if out is not None else DEFAULT_OUT / _safe_name(study_name)
    target.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    images: dict[str, Path] = {}

    def keep(key: str, figure: Figure) -> None:
        images[key] = plots.save(figure, target / f"{key}.png")

    for key, figure in plots.study_plots(study).items():
        keep(key, figure)
    for key in plots.STUDY_PLOTS:
        if key not in images:
            needs = "a complete trial" if key == "optimization_history" else "two complete trials and a varied param"
            notes.append(f"{_TITLES[key]}: needs {needs}.")
    curves = _top_k_histories(s, top_k)
    if curves:
        metric = s.metric if any(s.metric in h for hs in curves.values() for h in hs) else "val_accuracy"
        keep("top_k_curves", plots.curves_overlay(curves, metric=metric, title=f"Top {len(curves)} trials: {metric}"))
    else:
        notes.append("Learning curves: no complete trial with a recorded history.")
    best_eval = _best_model_figures(s, tracking_uri=tracking_uri, data_dir=data_dir, notes=notes)
    if best_eval is not None:
        caption, matrix, gallery, robust = best_eval
        keep("confusion_matrix", matrix)
        keep("misclassified", gallery)
        keep("robustness", robust)
    else:
        caption = ""
    validation = ValidationFlags(tracking_uri=tracking_uri, data_dir=data_dir)
    findings = _findings(s, validation.for_study(s))
    notes += validation.notes
    answer = " ".join(findings)
    if log_to_mlflow and not s.attrs.get(ATTR_PARENT_RUN):
        notes.append("MLflow: the study has no parent run (it ran without tracking); the report was not logged.")
    page = _render_report(
        s,
        images=images,
        findings=findings,
        notes=notes,
        best_caption=caption,
        storage=redact_url(storage),
        curves_shown=len(curves),
    )
    html_path = target / REPORT_FILE
    html_path.write_text(page, encoding="utf-8")
    logged = _log_report(s, html_path, images, tracking_uri=tracking_uri, notes=notes) if log_to_mlflow else None
    return ReportResult(
        study_name=study_name,
        html=html_path,
        images=images,
        answer=answer,
        logged_run_id=logged,
        notes=tuple(notes),
        findings=tuple(findings),
    )


_TITLES = {
    "optimization_history": "Optimization history",
    "param_importances": "Parameter importances",
    "parallel_coordinate": "Parallel coordinates",
    "top_k_curves": "Learning curves of the top trials",
    "confusion_matrix": "Confusion matrix of the best model",
    "misclassified": "Misclassified test images",
    "robustness": "Robustness of the best model",
}


def _top_k_histories(s: _Study, k: int) -> dict[str, list[dict[str, float]]]:
    out = {}
    for t in s.ranked()[: max(0, k)]:
        if t.history:
            label = f"trial {t.number}" + (f": {settings_text(t.searched)}" if t.searched else "")
            out[f"{label} ({metric_text(t.value)})"] = t.history
    return out


def _best_model_figures(
    s: _Study, *, tracking_uri: str | None, data_dir: str | None, notes: list[str]
) -> tuple[str, Figure, Figure, Figure] | None:
    """Confusion matrix, misclassified gallery and robustness of the best trial's logged model on the test set."""
    import numpy as np

    from mnist_sweep.app._evaluate import measure_robustness, robust_images, robustness_figure, robustness_text
    from mnist_sweep.display import plots
    from mnist_sweep.model import load_dataset, probabilities
    from mnist_sweep.tracking import load_logged_model

    best = s.best
    if best is None:
        notes.append("Best model: no complete trial yet.")
        return None
    if not best.model_uri:
        notes.append(f"Best model: trial {best.number} logged no model (tracking or model logging was off).")
        return None
    limit, where = _data_limit(s, best, tracking_uri=tracking_uri)
    try:
        model = load_logged_model(best.model_uri, tracking_uri=tracking_uri)
        dataset = load_dataset(s.dataset, data_dir=data_dir, limit=limit)
    except MnistSweepError as exc:
        notes.append(f"Best model: {exc}")
        return None
    probs = probabilities(model, dataset.x_test)
    predicted = np.argmax(probs, axis=1)
    title = f"{s.name}: best trial {best.number} on the test set"
    matrix = plots.confusion_matrix(dataset.y_test, predicted, dataset.class_names, title=title)
    gallery = plots.misclassified_gallery(
        dataset.x_test, dataset.y_test, predicted, probs, dataset.class_names, n=GALLERY_SIZE
    )
    robust = measure_robustness(model, robust_images(dataset.x_test, dataset.y_test, key=f"{dataset.sha256}:{limit}"))
    robust_figure = robustness_figure(robust, title=f"{s.name}: best trial {best.number} on transformed test images")
    caption = (
        f"Trial {best.number}'s model ({best.model_uri}) on {len(dataset.y_test):,} {s.dataset} test images "
        + (f"(limit {limit}, {where})" if limit else "(the full test set)")
        + f"; {robustness_text(robust)}."
    )
    return caption, matrix, gallery, robust_figure


def _data_limit(s: _Study, best: _Trial, *, tracking_uri: str | None) -> tuple[int | None, str]:
    """The data limit the study trained with: the trial run's ``limit`` param, else the space file's.

    The run's param wins because ``mnist-sweep run --limit`` overrides the file without changing it.
    """
    from mnist_sweep.tracking import run_params

    if best.run_id:
        try:
            value = run_params(best.run_id, tracking_uri=tracking_uri).get("limit")
        except MnistSweepError as exc:
            log.debug("no params for run %s: %s", best.run_id, exc)
        else:
            if value is not None:
                return (int(value), "as the trial's MLflow run recorded") if value.isdigit() else (None, "")
    space_file = s.attrs.get(ATTR_SPACE_FILE)
    if space_file and Path(space_file).is_file():
        from mnist_sweep.config import load_space

        try:
            return load_space(space_file).limit, f"from {space_file}"
        except MnistSweepError as exc:
            log.debug("cannot read %s: %s", space_file, exc)
    return None, ""


def _log_report(
    s: _Study, html_path: Path, images: Mapping[str, Path], *, tracking_uri: str | None, notes: list[str]
) -> str | None:
    from mnist_sweep.tracking import existing_run, log_files

    run_id = s.attrs.get(ATTR_PARENT_RUN)
    if not run_id:
        return None
    try:
        run = existing_run(str(run_id), tracking_uri=tracking_uri)
        log_files(run, [html_path, *images.values()], ARTIFACT_DIR)
    except MnistSweepError as exc:
        notes.append(f"MLflow: report not logged: {exc}")
        return None
    return str(run_id)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


# --------------------------------------------------------------------------- HTML


def _render_report(
    s: _Study,
    *,
    images: Mapping[str, Path],
    findings: Sequence[str],
    notes: Sequence[str],
    best_caption: str,
    storage: str,
    curves_shown: int,
) -> str:
    e = html.escape
    counts = s.counts()
    best = s.best
    direction = "maximize" if s.maximize else "minimize"
    head = [
        f"<header><h1>Study {e(s.name)}</h1>",
        f'<div class="meta">{e(s.dataset)} &middot; objective: {direction} {e(s.metric)} &middot; '
        f"{len(s.trials)} trials ({e(_count_phrase(counts, len(s.trials)))}) &middot; storage {e(storage)}"
        f" &middot; generated {e(time.strftime('%Y-%m-%d %H:%M'))}</div></header>",
    ]
    answer_html = [
        '<section id="answer"><h2>What the study found</h2>',
        f'<p class="question">{e(s.question)}</p>' if s.question else "",
        f'<p class="answer">{e(findings[0])}</p>' if findings else "",
        '<ul class="findings">' + "".join(f"<li>{e(f)}</li>" for f in findings[1:]) + "</ul>" if findings[1:] else "",
        "</section>",
    ]
    body = head + answer_html + [_best_section(s, best), _figures_section(images, best_caption, curves_shown)]
    body.append(_trials_table(s))
    if notes:
        body.append('<section id="notes"><h2>Left out</h2><ul class="notes">')
        body += [f"<li>{e(n)}</li>" for n in notes]
        body.append("</ul></section>")
    parent = s.attrs.get(ATTR_PARENT_RUN)
    body.append(
        "<footer>Made by <code>mnist-sweep report</code>. "
        + (
            f"MLflow experiment <code>{e(str(s.attrs.get(ATTR_EXPERIMENT, '')))}</code>, parent run "
            f"<code>{e(str(parent))}</code> (browse with <code>mnist-sweep ui</code>). "
            if parent
            else ""
        )
        + f"Interactive view: <code>mnist-sweep dashboard {e(s.name)}</code>.</footer>"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Study {e(s.name)}: report</title><style>{PAGE_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _best_section(s: _Study, best: _Trial | None) -> str:
    e = html.escape
    if best is None:
        return '<section id="best"><h2>Best trial</h2><p>No trial has completed yet.</p></section>'
    rows = [
        ("trial", str(best.number)),
        (s.metric, metric_text(best.value)),
        ("test accuracy", metric_text(best.test_accuracy)),
        ("epochs trained", str(len(best.history)) if best.history else "-"),
        ("seconds", f"{best.seconds:.1f}" if best.seconds is not None else "-"),
        ("searched params", settings_text(best.searched) or "-"),
        ("all params", settings_text(best.params) or "-"),
        ("MLflow run", best.run_id or "-"),
        ("model", best.model_uri or "-"),
    ]
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return f'<section id="best"><h2>Best trial</h2><dl class="kv">{items}</dl></section>'


def _figures_section(images: Mapping[str, Path], best_caption: str, curves_shown: int) -> str:
    captions = {
        "optimization_history": "Each trial's objective value, and the best so far.",
        "param_importances": "How much each searched param explains the objective (fANOVA).",
        "parallel_coordinate": "Every complete trial as a line through its param values to its objective.",
        "top_k_curves": f"Per-epoch curves of the {curves_shown} best complete trial(s), one line each.",
        "confusion_matrix": best_caption,
        "misclassified": "The mistakes the best model was surest of: true -> predicted (confidence).",
        "robustness": "Accuracy on the seeded transformed test set, per transform (rotation ±15°, shift ±3 px, "
        "scale 0.8-1.2, erode, dilate, noise) and overall: robust accuracy.",
    }
    parts = []
    for group, keys in (
        ("Search", ("optimization_history", "param_importances", "parallel_coordinate", "top_k_curves")),
        ("Best model", ("confusion_matrix", "misclassified", "robustness")),
    ):
        shown = [k for k in keys if k in images]
        if not shown:
            continue
        parts.append(f'<section id="{group.lower().replace(" ", "-")}"><h2>{group}</h2><div class="grid">')
        parts += [figure_html(images[k], _TITLES[k], captions[k]) for k in shown]
        parts.append("</div></section>")
    return "".join(parts)


def _trials_table(s: _Study) -> str:
    e = html.escape
    searched = [*s.categorical, *s.numeric]
    extra_val = s.metric != "val_accuracy"
    header = ["trial", "state", *searched, s.metric, *(["val_accuracy"] if extra_val else [])]
    header += ["test accuracy", "epochs", "seconds", "MLflow run", "note"]
    best = s.best
    rows = []
    for t in sorted(s.trials, key=lambda t: t.number):
        cells = [
            f'<td class="num">{t.number}</td>',
            f'<td><span class="state state-{e(t.state)}">{e(t.state)}</span></td>',
            *[f"<td>{e(_show(t.searched[p])) if p in t.searched else '-'}</td>" for p in searched],
            f'<td class="num">{e(_value_text(t))}</td>',
        ]
        if extra_val:
            cells.append(f'<td class="num">{metric_text(t.final_val_accuracy)}</td>')
        cells += [
            f'<td class="num">{metric_text(t.test_accuracy)}</td>',
            f'<td class="num">{len(t.history) if t.history else "-"}</td>',
            f'<td class="num">{f"{t.seconds:.1f}" if t.seconds is not None else "-"}</td>',
            f'<td><code title="{e(t.run_id or "")}">{e((t.run_id or "-")[:12])}</code></td>',
            f'<td class="note">{e(t.note)}</td>',
        ]
        css = ' class="best"' if best is not None and t.number == best.number else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    fixed = _fixed_params(s)
    fixed_html = f'<p class="note">Fixed for every trial: {e(settings_text(fixed))}.</p>' if fixed else ""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    return (
        f'<section id="trials"><h2>All trials</h2>{fixed_html}<div class="table-wrap"><table>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _value_text(t: _Trial) -> str:
    """The objective, with its spread over seeds when the trial trained several (``repeats``)."""
    if len(t.seed_values) < 2:
        return metric_text(t.value)
    return f"{metric_text(t.value)} ± {statistics.stdev(t.seed_values):.4f} ({len(t.seed_values)} seeds)"


def _fixed_params(s: _Study) -> dict[str, Any]:
    searched = set(s.categorical) | set(s.numeric)
    values: dict[str, set[str]] = {}
    first: dict[str, Any] = {}
    for t in s.trials:
        for k, v in t.params.items():
            if k not in searched:
                values.setdefault(k, set()).add(_key(v))
                first.setdefault(k, v)
    return {k: first[k] for k in sorted(values) if len(values[k]) == 1}
