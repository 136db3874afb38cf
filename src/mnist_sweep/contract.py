"""The data contract: every key mnist-sweep stores in Optuna and MLflow, in one place.

Workers of different versions share one study and one tracking server, and the report,
registry, nightly, dashboard and inspect code read back what the sweep wrote. They agree
because every key is named here once, with its meaning, and read through these constants.
The stored strings never change: studies and runs written by earlier versions must still read.
``tests/test_contract.py`` fails when another module spells one of these keys as a literal.
"""

from __future__ import annotations

from typing import Final

# --------------------------------------------------------------------------- Optuna trial user attributes

ATTR_PARAMS: Final = "params"
"""The trial's complete resolved params (sampled and fixed), as trained."""
ATTR_PARAMS_KEY: Final = "params_key"
"""Canonical JSON of ``params``: two trials with equal keys trained the same model."""
ATTR_SAMPLED: Final = "sampled_params"
"""Names of the params the sampler chose (the rest were fixed or defaulted)."""
ATTR_RUN_ID: Final = "mlflow_run_id"
"""The trial's nested MLflow run."""
ATTR_FAIL_REASON: Final = "fail_reason"
"""Why a FAIL (or abandoned) trial ended, in one line."""
ATTR_DUPLICATE_OF: Final = "duplicate_of"
"""Number of the COMPLETE trial whose value this one reused (same params)."""
ATTR_HISTORY: Final = "history"
"""Per-epoch metrics, a list of dicts, one per trained epoch."""
ATTR_RESAMPLED: Final = "resampled_duplicate_of"
"""Set on a trial closed FAIL at once because the sampler proposed a visited point (the number
of the trial it repeated); it is asked again, and such trials count neither as trials nor failures."""
ATTR_DEVICE: Final = "device"
"""Where the trial trains: ``CPU (2 cores)``, ``GPU 1: NVIDIA H200``."""
ATTR_WORKER: Final = "worker"
"""``host:pid`` of the process that runs the trial (liveness of local workers)."""
ATTR_TEST_ACCURACY: Final = "test_accuracy"
"""Test-set accuracy of the trained model (never used for selection)."""
ATTR_TEST_LOSS: Final = "test_loss"
"""Test-set loss of the trained model."""
ATTR_PARAM_COUNT: Final = "param_count"
"""Number of weights of the trained model."""
ATTR_MODEL_URI: Final = "model_uri"
"""The trial's logged MLflow model (``models:/m-...``)."""
ATTR_SEED_VALUES: Final = "seed_values"
"""With ``repeats: k`` > 1: each seed's final objective value, in seed order (the trial's value is their mean)."""
ATTR_VALUE_STD: Final = "value_std"
"""With ``repeats`` > 1: the sample standard deviation of those values."""
ATTR_VALUE_CI_LOW: Final = "value_ci_low"
"""With ``repeats`` > 1: lower end of the Student-t 95% CI of their mean."""
ATTR_VALUE_CI_HIGH: Final = "value_ci_high"
"""With ``repeats`` > 1: upper end of that interval."""
ATTR_LOGGED_SEED: Final = "logged_seed"
"""With ``repeats`` > 1: which seed (1-based) is the logged model: the one with the median validation score."""
ATTR_WARM_START_SOURCE: Final = "warm_start"
"""Where an enqueued warm-start trial's params came from (the champion, or an earlier night's top trial)."""
ATTR_CHECKPOINT: Final = "checkpoint"
"""The id of the trial's checkpoint in the study's checkpoint store; a retry inherits it (and resumes from it)."""
ATTR_RESUMED_FROM_EPOCH: Final = "resumed_from_epoch"
"""On a trial that continued a dead one's checkpoint: how many epochs it did not train again."""
ATTR_CONTINUES: Final = "continues_trial"
"""On a trial that continued a dead one's checkpoint: the number of the trial it continued."""

# --------------------------------------------------------------------------- Optuna study user attributes

ATTR_PARENT_RUN: Final = "mlflow_parent_run_id"
"""The MLflow parent run the study's trials nest under (the latest invocation's)."""
ATTR_PARENT_OWNER: Final = "mlflow_parent_owner"
"""``host:pid`` of the invocation that owns (and must end) that parent run."""
ATTR_EXPERIMENT: Final = "mlflow_experiment"
"""The MLflow experiment of the study's runs."""
ATTR_TRACKING_URI: Final = "mlflow_tracking_uri"
"""The tracking URI (password redacted) the runs were written to."""
ATTR_DATASET: Final = "dataset"
"""``mnist`` or ``fashion_mnist``: a study never changes data set."""
ATTR_OBJECTIVE_METRIC: Final = "objective_metric"
"""The metric the study optimizes (``val_accuracy``, ...)."""
ATTR_QUESTION: Final = "question"
"""The space file's ``question:``, for the report."""
ATTR_SPACE_FILE: Final = "space_file"
"""The search-space file the study was created from."""
ATTR_NIGHTLY_JOB: Final = "nightly_job"
"""Name of the nightly job a night study belongs to."""
ATTR_NIGHTLY_DATE: Final = "nightly_date"
"""The night (ISO date) of a night study."""
ATTR_NIGHTLY_WARM_START: Final = "nightly_warm_start"
"""Params enqueued first on that night."""
ATTR_NIGHTLY_PROMOTION: Final = "nightly_promotion"
"""The night's promotion decision, made once."""

# --------------------------------------------------------------------------- Optuna's own system attributes

ATTR_ENQUEUED: Final = "fixed_params"
"""Optuna's system attribute on an enqueued trial (a retry, a warm start): its params were given, not sampled."""
ATTR_RETRY_OF: Final = "failed_trial"
"""Optuna's system attribute on a retry (``RetryFailedTrialCallback``): the trial it replays, params included."""
ATTR_RETRY_HISTORY: Final = "retry_history"
"""Set by Optuna's ``RetryFailedTrialCallback``: the numbers of the trials a retry replays (read only)."""

# --------------------------------------------------------------------------- MLflow tags

TAG_PREFIX: Final = "mnist_sweep."
"""Every project tag starts with this."""
TAG_STATE: Final = "mnist_sweep.state"
"""A trial run's outcome: RUNNING, COMPLETE, PRUNED or FAIL (MLflow's status says FINISHED/FAILED/KILLED)."""
TAG_FAIL_REASON: Final = "mnist_sweep.fail_reason"
"""Why a trial run failed, or why a parent run was ended FAILED."""
TAG_STUDY: Final = "mnist_sweep.study"
"""The Optuna study a run belongs to."""
TAG_ROLE: Final = "mnist_sweep.role"
"""``study`` for a parent run, ``nightly`` for a night's run."""
TAG_TRIAL_NUMBER: Final = "mnist_sweep.trial_number"
"""The Optuna trial number of a trial run."""
TAG_WORKER: Final = "mnist_sweep.worker"
"""``host:pid`` of the process that ran the trial."""
TAG_OWNER: Final = "mnist_sweep.owner"
"""``host:pid`` of the invocation that owns a parent run."""
TAG_DATASET: Final = "mnist_sweep.dataset"
"""The data set a run trained on."""
TAG_LIMIT: Final = "mnist_sweep.limit"
"""The ``limit`` that cut the training data, when one did."""
TAG_STORAGE: Final = "mnist_sweep.storage"
"""The Optuna storage URL (password redacted)."""
TAG_SAMPLER: Final = "mnist_sweep.sampler"
TAG_PRUNER: Final = "mnist_sweep.pruner"
TAG_OBJECTIVE: Final = "mnist_sweep.objective"
"""``maximize val_accuracy`` and the like."""
TAG_N_TRIALS: Final = "mnist_sweep.n_trials"
TAG_QUESTION: Final = "mnist_sweep.question"
TAG_WORKERS: Final = "mnist_sweep.workers"
"""How many local worker processes an invocation started."""
TAG_HOST: Final = "mnist_sweep.host"
TAG_VERSION: Final = "mnist_sweep.version"
"""The mnist-sweep version that wrote the run."""
TAG_GIT_COMMIT: Final = "mnist_sweep.git_commit"
TAG_DATA_SHA256: Final = "mnist_sweep.data_sha256"
"""SHA-256 of the data files a run trained on."""
TAG_SEED: Final = "mnist_sweep.seed"
TAG_DEVICE: Final = "mnist_sweep.device"
TAG_MODEL_URI: Final = "mnist_sweep.model_uri"
"""The logged model of a trial run (``models:/m-...``)."""
TAG_SAMPLED: Final = "mnist_sweep.sampled"
"""Comma-separated names of the params the sampler chose; every other param was fixed or defaulted."""
TAG_DUPLICATE_OF: Final = "mnist_sweep.duplicate_of"
TAG_DUPLICATE_OF_RUN: Final = "mnist_sweep.duplicate_of_run"
TAG_PRUNED_AT_EPOCH: Final = "mnist_sweep.pruned_at_epoch"
TAG_RESUMED_FROM_EPOCH: Final = "mnist_sweep.resumed_from_epoch"
"""On a trial run reopened by the trial that continued it from its checkpoint: the epoch it continued after."""
TAG_CONTINUES_TRIAL: Final = "mnist_sweep.continues_trial"
"""On a reopened trial run: the dead trial whose epochs it holds too (``trial_number`` is now the continuing one)."""
TAG_CHECKPOINT_LOST: Final = "mnist_sweep.checkpoint_lost"
"""On a dead trial's run whose checkpoint could not be used: why (the trial restarted from epoch 0 in a new run)."""
TAG_BEST_TRIAL: Final = "mnist_sweep.best_trial"
TAG_BEST_RUN_ID: Final = "mnist_sweep.best_run_id"
TAG_BEST_PARAMS: Final = "mnist_sweep.best_params"
TAG_NIGHT: Final = "mnist_sweep.night"
TAG_NIGHTLY_JOB: Final = "mnist_sweep.nightly_job"
TAG_NIGHT_STATE: Final = "mnist_sweep.night_state"
TAG_NIGHT_PROMOTION: Final = "mnist_sweep.night_promotion"
TAG_NIGHT_REPORTED: Final = "mnist_sweep.night_reported"
"""``true`` once the night's report is logged (a re-run with nothing new keeps it)."""

TAG_REPEATS: Final = "mnist_sweep.repeats"
"""Seeds a trial run trained (only with ``repeats`` > 1)."""
TAG_LOGGED_SEED: Final = "mnist_sweep.logged_seed"
"""Which of them (1-based) is the run's logged model: the median validation score."""

TAG_GIT_DIRTY: Final = "mnist_sweep.git_dirty"
"""``true`` when the checkout had uncommitted changes (``mlflow.source.git.commit`` alone would hide them)."""
TAG_TRAIN_LIMIT: Final = "mnist_sweep.train_limit"
"""The ``train_limit`` that cut only the training split, when one did."""

# --------------------------------------------------------------------------- MLflow's own run tags (read by its UI)

MLFLOW_SOURCE_NAME: Final = "mlflow.source.name"
"""What produced the run (``mnist-sweep``): the Source column."""
MLFLOW_SOURCE_TYPE: Final = "mlflow.source.type"
"""MLflow's source kind; ``LOCAL`` for a command run on this machine."""
MLFLOW_SOURCE_GIT_COMMIT: Final = "mlflow.source.git.commit"
"""The checkout's commit: the Source column shows its first characters."""
MLFLOW_SHARED_VIEW_PREFIX: Final = "mlflow.sharedViewState."
"""Experiment tag prefix of a saved runs-table view (the UI's ``viewStateShareKey`` URL parameter)."""

# --------------------------------------------------------------------------- dataset-input tags (MLflow datasets)
# Each trial run logs three inputs, one per split, all named after the data set (``mnist``), each
# with its own digest: the first DIGEST_LENGTH hex digits of the split's SHA-256.

INPUT_CONTEXT: Final = "mlflow.data.context"
"""MLflow's input tag for the role of a dataset in a run: ``train``, ``validation`` or ``test``."""
INPUT_SHA256: Final = "mnist_sweep.split_sha256"
"""The split's full SHA-256 (images then labels, as trained on); the digest is its prefix."""
INPUT_IMAGES: Final = "mnist_sweep.images"
"""How many images the split has."""
INPUT_SOURCE_SHA256: Final = "mnist_sweep.source_sha256"
"""SHA-256 of the data files the split was cut from (the run's ``mnist_sweep.data_sha256``)."""
SPLIT_TRAIN: Final = "train"
SPLIT_VALIDATION: Final = "validation"
SPLIT_TEST: Final = "test"

# --------------------------------------------------------------------------- model-version tags (registry)
# A promoted version also carries TAG_STUDY, TAG_TRIAL_NUMBER, TAG_STORAGE, TAG_OBJECTIVE,
# TAG_DATASET, TAG_DATA_SHA256, TAG_VERSION and TAG_GIT_COMMIT, and ``TAG_PREFIX + <metric>``
# for each validation metric of the trial's last epoch.

TAG_PARAMS: Final = "mnist_sweep.params"
"""JSON of the promoted trial's params (what a warm start replays)."""
TAG_OBJECTIVE_VALUE: Final = "mnist_sweep.objective_value"
"""The trial's objective value in its study."""
TAG_TEST_ACCURACY: Final = "mnist_sweep.test_accuracy"
"""The gate's test accuracy of the version."""
TAG_TEST_CORRECT: Final = "mnist_sweep.test_correct"
"""Test images the version classified correctly (the gate score, exact)."""
TAG_TEST_IMAGES: Final = "mnist_sweep.test_images"
"""Test images the gate evaluated on."""
TAG_GATE: Final = "mnist_sweep.gate"
"""``passed`` when the version passed the promotion gate."""
TAG_GATE_RULE: Final = "mnist_sweep.gate_rule"
"""The gate's rule in words."""
TAG_PREVIOUS_VERSION: Final = "mnist_sweep.previous_version"
"""The version that held the alias when this one was compared (``none`` if none)."""
TAG_PREVIOUS_TEST_ACCURACY: Final = "mnist_sweep.previous_test_accuracy"
"""That version's test accuracy on the same images."""
TAG_SUPERSEDED_BY: Final = "mnist_sweep.superseded_by"
"""The version that took the alias while this one was being promoted."""

# --------------------------------------------------------------------------- the significance gate (issue 13)
# Set on the candidate's trial run by every promote decision (not by --dry-run), and on the
# model version when one is registered.

TAG_GATE_DECISION: Final = "mnist_sweep.gate.decision"
"""What the gate decided, in words: ``promoted: no champion``, ``not significant: ...``, ``rejected: ...``."""
TAG_GATE_P_VALUE: Final = "mnist_sweep.gate.p_value"
"""Two-sided p-value of McNemar's exact test, candidate vs alias holder (absent with no champion)."""
TAG_GATE_DISCORDANT: Final = "mnist_sweep.gate.discordant"
"""Both discordant counts: ``<images only the candidate got right>,<images only the holder got right>``."""
TAG_GATE_CI_LOW: Final = "mnist_sweep.gate.ci_low"
"""Lower end of the bootstrap 95% CI of candidate minus holder accuracy."""
TAG_GATE_CI_HIGH: Final = "mnist_sweep.gate.ci_high"
"""Upper end of that interval."""
TAG_GATE_ALPHA: Final = "mnist_sweep.gate.alpha"
"""The significance level the gate required (p below it)."""
TAG_ROBUST_ACCURACY: Final = "mnist_sweep.robust_accuracy"
"""Accuracy on the seeded transformed test set (every transform of every test image), on run and version."""
TAG_ROBUST_PREFIX: Final = "mnist_sweep.robust."
"""``TAG_ROBUST_PREFIX + <transform>``: the accuracy on one transform (rotation, shift, scale, erode, dilate, noise)."""
TAG_ROBUST_SEED: Final = "mnist_sweep.robust_seed"
"""The seed of the transformed test set those accuracies were measured on."""

# --------------------------------------------------------------------------- metric names of repeated trials
# A trial run with ``repeats: k`` logs each seed's epoch metrics as ``seed<i>/<name>`` (i = 1..k) and
# their mean under the plain name, and for the objective metric ``<metric>_std``, ``_ci_low``, ``_ci_high``.

SEED_METRIC: Final = "seed{index}/{name}"
"""Format of a per-seed metric name."""
METRIC_STD_SUFFIX: Final = "_std"
METRIC_CI_LOW_SUFFIX: Final = "_ci_low"
METRIC_CI_HIGH_SUFFIX: Final = "_ci_high"

# --------------------------------------------------------------------------- values

STATE_RUNNING: Final = "RUNNING"
STATE_COMPLETE: Final = "COMPLETE"
STATE_PRUNED: Final = "PRUNED"
STATE_FAIL: Final = "FAIL"
ROLE_STUDY: Final = "study"
ROLE_NIGHTLY: Final = "nightly"
GATE_PASSED: Final = "passed"
"""TAG_GATE of a version that passed the promotion gate."""
# TAG_NIGHT_STATE values, in the order a night goes through them.
NIGHT_SWEEPING: Final = "sweeping"
NIGHT_PROMOTING: Final = "promoting"
NIGHT_REPORTING: Final = "reporting"
NIGHT_DONE: Final = "done"
