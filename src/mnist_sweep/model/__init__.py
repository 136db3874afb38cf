"""Params, presets, data, imaging, building and training Keras models.

Nothing here knows Optuna or MLflow. The TensorFlow-heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.model._build import build_model, probabilities
    from mnist_sweep.model._callbacks import PruningCallback, StopAtEpoch, TrialTimeout
    from mnist_sweep.model._data import CLASS_NAMES, Dataset, check_name, load_dataset, load_raw
    from mnist_sweep.model._imaging import load_images
    from mnist_sweep.model._params import (
        PARAMS,
        PER_LAYER_WIDTH,
        Params,
        allowed_names,
        check_value,
        is_param_name,
        model_summary,
        parse_assignment,
        resolve_params,
    )
    from mnist_sweep.model._presets import PRESETS, get_preset
    from mnist_sweep.model._repeats import train_seeds
    from mnist_sweep.model._robust import TRANSFORMS, Robustness, RobustSet, robust_set, robustness
    from mnist_sweep.model._state import CheckpointHook, TrainingState, capture_state, restore_state
    from mnist_sweep.model._training import Levers, TrainResult, choose_levers, train

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CLASS_NAMES": "_data",
        "Dataset": "_data",
        "PARAMS": "_params",
        "Params": "_params",
        "PER_LAYER_WIDTH": "_params",
        "PRESETS": "_presets",
        "PruningCallback": "_callbacks",
        "TrainResult": "_training",
        "Levers": "_training",
        "choose_levers": "_training",
        "TrialTimeout": "_callbacks",
        "StopAtEpoch": "_callbacks",
        "allowed_names": "_params",
        "check_name": "_data",
        "check_value": "_params",
        "get_preset": "_presets",
        "is_param_name": "_params",
        "load_dataset": "_data",
        "load_images": "_imaging",
        "load_raw": "_data",
        "model_summary": "_params",
        "parse_assignment": "_params",
        "probabilities": "_build",
        "build_model": "_build",
        "resolve_params": "_params",
        "train": "_training",
        "train_seeds": "_repeats",
        "TRANSFORMS": "_robust",
        "RobustSet": "_robust",
        "Robustness": "_robust",
        "robust_set": "_robust",
        "robustness": "_robust",
        "CheckpointHook": "_state",
        "TrainingState": "_state",
        "capture_state": "_state",
        "restore_state": "_state",
    },
)
