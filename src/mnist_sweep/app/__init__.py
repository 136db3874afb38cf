"""What the commands do: train, inspect, report, promote, evaluate, predict, dashboard, nightly.

Each is one library call that the CLI wraps; none prints or exits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.app._compare import compare_studies
    from mnist_sweep.app._dashboard import prepare_dashboard
    from mnist_sweep.app._evaluate import evaluate_model
    from mnist_sweep.app._inspect import (
        best_trial,
        format_best,
        format_status,
        format_studies,
        list_studies,
        resolve_storage,
        study_status,
    )
    from mnist_sweep.app._nightly import NightlyOptions, run_nightly
    from mnist_sweep.app._nightly_report import format_result
    from mnist_sweep.app._predict import predict_files
    from mnist_sweep.app._promote import promote
    from mnist_sweep.app._report import build_report
    from mnist_sweep.app._train import TrainJob, presets_table, run_train, sweep_table, train_summary

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "NightlyOptions": "_nightly",
        "TrainJob": "_train",
        "best_trial": "_inspect",
        "build_report": "_report",
        "compare_studies": "_compare",
        "evaluate_model": "_evaluate",
        "format_best": "_inspect",
        "format_result": "_nightly_report",
        "format_status": "_inspect",
        "format_studies": "_inspect",
        "list_studies": "_inspect",
        "predict_files": "_predict",
        "prepare_dashboard": "_dashboard",
        "presets_table": "_train",
        "promote": "_promote",
        "resolve_storage": "_inspect",
        "run_nightly": "_nightly",
        "run_train": "_train",
        "study_status": "_inspect",
        "sweep_table": "_train",
        "train_summary": "_train",
    },
)
