"""The sweep engine: the loop, the budget decision, one trial lifecycle, one parent-run lifecycle,
recovery of what dead workers left, results, local worker processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.sweep._engine import (
        SweepOptions,
        SweepResult,
        TrialSummary,
        create_or_load_study,
        finished_count,
        log_space,
        record_parent_run,
        run_sweep,
        study_tags,
        summarize,
    )
    from mnist_sweep.sweep._workers import run_parallel, run_worker

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SweepOptions": "_engine",
        "SweepResult": "_engine",
        "TrialSummary": "_engine",
        "create_or_load_study": "_engine",
        "finished_count": "_engine",
        "log_space": "_engine",
        "record_parent_run": "_engine",
        "run_parallel": "_workers",
        "run_sweep": "_engine",
        "run_worker": "_workers",
        "study_tags": "_engine",
        "summarize": "_engine",
    },
)
