"""Every MLflow call: runs, tags, metrics, artifacts, logged models, the model registry, the tracking-server launcher
(:mod:`mnist_sweep.tracking.server`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.tracking._links import StudyPage, run_link, study_runs_page, ui_base_url
    from mnist_sweep.tracking._registry import (
        Champion,
        Registry,
        ResolvedModel,
        current_champion,
        load_model,
        load_resolved,
        resolve_model,
        run_dataset,
        version_dataset,
    )
    from mnist_sweep.tracking._retention import delete_old_trial_runs
    from mnist_sweep.tracking._runs import (
        NullRun,
        RunHandle,
        Tracker,
        check_tracking_uri,
        default_tracking_uri,
        existing_run,
        git_commit,
        lineage_tags,
        load_logged_model,
        log_files,
        logged_model,
        preflight_tracking,
        process_tracking_uri,
        run_params,
        run_tags,
        scratch_dir,
        source_tags,
    )

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Champion": "_registry",
        "NullRun": "_runs",
        "Registry": "_registry",
        "ResolvedModel": "_registry",
        "current_champion": "_registry",
        "load_model": "_registry",
        "load_resolved": "_registry",
        "resolve_model": "_registry",
        "run_dataset": "_registry",
        "version_dataset": "_registry",
        "RunHandle": "_runs",
        "Tracker": "_runs",
        "check_tracking_uri": "_runs",
        "default_tracking_uri": "_runs",
        "delete_old_trial_runs": "_retention",
        "existing_run": "_runs",
        "git_commit": "_runs",
        "lineage_tags": "_runs",
        "load_logged_model": "_runs",
        "log_files": "_runs",
        "logged_model": "_runs",
        "preflight_tracking": "_runs",
        "process_tracking_uri": "_runs",
        "run_params": "_runs",
        "run_tags": "_runs",
        "scratch_dir": "_runs",
        "source_tags": "_runs",
        "StudyPage": "_links",
        "run_link": "_links",
        "study_runs_page": "_links",
        "ui_base_url": "_links",
    },
)
