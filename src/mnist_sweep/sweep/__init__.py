"""The sweep engine: the loop, the budget decision, one trial lifecycle, one parent-run lifecycle,
recovery of what dead workers left, results, local worker processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.sweep._budget import Decision, Tally, decide
    from mnist_sweep.sweep._engine import run_sweep
    from mnist_sweep.sweep._options import SweepOptions, Trainer
    from mnist_sweep.sweep._parent import ParentRun, log_space, log_study_artifacts, record_parent_run, study_tags
    from mnist_sweep.sweep._results import SweepResult, TrialSummary, finished_count, summarize, trials_frame
    from mnist_sweep.sweep._study import create_or_load_study
    from mnist_sweep.sweep._trial import TrialOutcome
    from mnist_sweep.sweep._workers import run_parallel, run_worker

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Decision": "_budget",
        "ParentRun": "_parent",
        "SweepOptions": "_options",
        "SweepResult": "_results",
        "Tally": "_budget",
        "Trainer": "_options",
        "TrialOutcome": "_trial",
        "TrialSummary": "_results",
        "create_or_load_study": "_study",
        "decide": "_budget",
        "finished_count": "_results",
        "log_space": "_parent",
        "log_study_artifacts": "_parent",
        "record_parent_run": "_parent",
        "run_parallel": "_workers",
        "run_sweep": "_engine",
        "run_worker": "_workers",
        "study_tags": "_parent",
        "summarize": "_results",
        "trials_frame": "_results",
    },
)
