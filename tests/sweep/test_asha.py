"""asha end to end on tiny real data: pause at rungs, promote the top 1/eta, one run per configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mnist_sweep.config import load_space
from mnist_sweep.sweep import SweepOptions, _asha, run_sweep
from spaces import write_space

N_CONFIGURATIONS, EPOCHS = 6, 4


def _asha_file(tmp_path: Path, *, widths: list[int], epochs: int, options: str) -> Path:
    """A tiny space over ``widths`` (one configuration each) under ``pruner: {name: asha, options: ...}``."""
    space_text = f"  width: {{type: categorical, choices: {widths}}}\n"
    path = write_space(tmp_path, n_trials=len(widths), fixed=f"{{epochs: {epochs}, batch_size: 64}}", space=space_text)
    path.write_text(path.read_text().replace("pruner: {name: none}", f"pruner: {{name: asha, options: {options}}}"))
    return path


@pytest.mark.slow  # about 3 minutes on 2 busy cores
def test_asha_pauses_promotes_and_closes(tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    widths = [8, 16, 24, 32, 48, 64][:N_CONFIGURATIONS]
    path = _asha_file(tmp_path, widths=widths, epochs=EPOCHS, options="{min_resource: 1, reduction_factor: 2}")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(storage=storage, tracking_uri=tracking, quiet=True, log_models=False, system_metrics=False)
    run_sweep(load_space(path), options)

    every = optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)
    by_number = {t.number: t for t in every}
    trials = [t for t in every if "resampled_duplicate_of" not in t.user_attrs]  # the sampler's repeats, closed
    originals = [t for t in trials if "promotion_of" not in t.user_attrs]
    continuations = [t for t in trials if "promotion_of" in t.user_attrs]
    assert len(originals) == N_CONFIGURATIONS, "the budget counts configurations"
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials), [t.state.name for t in trials]
    assert continuations, "some paused trial was promoted"
    promoted = [t.user_attrs["promotion_of"] for t in continuations]
    assert len(set(promoted)) == len(promoted), "no paused trial is continued twice"
    for t in continuations:
        assert t.params == by_number[t.user_attrs["promotion_of"]].params
        assert (
            t.user_attrs["resumed_from_epoch"] == by_number[t.user_attrs["promotion_of"]].user_attrs["paused_at_epoch"]
        )
    # Rungs 1, 2, 4: with eta 2, at most half of each rung goes on.
    at_two = [t for t in continuations if t.user_attrs["resumed_from_epoch"] == 1]
    assert 1 <= len(at_two) <= N_CONFIGURATIONS // 2
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert complete and all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in complete)
    trained = sum(
        t.user_attrs.get("paused_at_epoch", EPOCHS) - t.user_attrs.get("resumed_from_epoch", 0) for t in trials
    )
    # Asynchronous halving may promote a trial that a later arrival pushes out of its rung's top
    # half, so the bound is what the rule allows, not synchronous halving's 6 + 3 + 2: every
    # configuration's first epoch, at most 3 promotions from rung 1 (asserted above), and at most
    # 2 from rung 2 (top 1 of 2, then top 1 of 3), 2 epochs each. Without asha: 24.
    assert trained <= N_CONFIGURATIONS + N_CONFIGURATIONS // 2 + 2 * 2, f"{trained} epochs trained"
    assert list(Path("checkpoints").glob("*.npz")) == [], "closed and finished trials' checkpoints are deleted"

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("tiny")
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id], max_results=100)
        if "mnist_sweep.trial_number" in r.data.tags
    ]
    assert len(runs) == N_CONFIGURATIONS, "one run per configuration spans all its rungs"
    assert all(r.info.status == "FINISHED" for r in runs)
    states = sorted(r.data.tags["mnist_sweep.state"] for r in runs)
    assert set(states) == {"COMPLETE", "PRUNED"}, states  # paused ones were closed at the study's end
    for r in runs:
        steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy"))
        assert steps == list(range(1, len(steps) + 1)), f"each epoch once: {steps}"
        if r.data.tags["mnist_sweep.state"] == "COMPLETE":
            assert steps == [1, 2, 3, 4]


def test_paused_trials_show_as_paused_until_promoted_or_closed(tmp_path: Path) -> None:
    import optuna

    from mnist_sweep.app._inspect import format_status, study_status
    from mnist_sweep.tracking import Tracker

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    dist = {"width": optuna.distributions.CategoricalDistribution([8, 16, 24])}
    for number, width in enumerate([8, 16, 24]):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED,
                params={"width": width},
                distributions=dist,
                intermediate_values={1: 0.1 * (number + 1)},
                user_attrs={"paused_at_epoch": 1, "params_key": str(width), "checkpoint": f"c{number}"},
            )
        )
    status = study_status("p", storage)
    assert status.counts["PAUSED"] == 3 and status.counts["PRUNED"] == 0
    assert "3 PAUSED" in format_status(status)
    from mnist_sweep.app._report import answer_in_words, read_study

    assert [t.state for t in read_study(study).trials] == ["PAUSED"] * 3
    assert "3 are paused at a rung, waiting for a promotion" in answer_in_words(study)
    rungs = _asha.Rungs(min_resource=1, max_resource=4, reduction_factor=3)
    trials = study.get_trials(deepcopy=False)
    best = _asha.promotable(trials, rungs, maximize=True)
    assert best is not None and best.number == 2, "the top 1/3 of rung 1: the best of three"
    patient = _asha.Rungs(min_resource=1, max_resource=4, reduction_factor=3, bootstrap_count=4)
    assert _asha.promotable(trials, patient, maximize=True) is None, "3 configurations at rung 1, bootstrap 4"
    last = _asha.promotable(trials, patient, maximize=True, sampling_done=True)
    assert last is not None and last.number == 2, "no new configuration will come: the rung promotes as it is"
    _asha.promote(study, best)
    trials = study.get_trials(deepcopy=False)
    assert _asha.promotable(trials, rungs, maximize=True) is None, "promoted once, and the others are not in the top"
    continuation = trials[-1]
    assert continuation.state.name == "WAITING" and continuation.user_attrs["promotion_of"] == 2
    assert continuation.intermediate_values == best.intermediate_values, "the pruner sees the whole curve"
    closed = _asha.close_paused(study, trials, tracker=Tracker(experiment="p", enabled=False), checkpoints=None)
    assert closed == [0, 1]
    status = study_status("p", storage)
    assert status.counts.get("PAUSED", 0) == 0 and status.counts["PRUNED"] == 3
    assert [t.state for t in read_study(study).trials] == ["PRUNED", "PRUNED", "PROMOTED", "WAITING"]
    answer = answer_in_words(study)
    assert "2 trials were pruned and 1 was promoted to a later rung (asha)" in answer and "paused" not in answer


def _arrivals_promoted(rungs: _asha.Rungs, values: list[float]) -> list[float]:
    """Configurations reach rung 1 one by one (in-memory study); after each, promote all that can be."""
    import optuna

    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    promoted = []
    for number, value in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED,
                params={"x": value},
                distributions=dist,
                intermediate_values={1: value},
                user_attrs={"paused_at_epoch": 1, "params_key": f"x={value}", "checkpoint": f"c{number}"},
            )
        )
        while (chosen := _asha.promotable(study.get_trials(deepcopy=False), rungs, maximize=True)) is not None:
            _asha.promote(study, chosen)
            promoted.append(chosen.intermediate_values[1])
    return promoted


def test_promotion_quota_promotes_as_many_as_synchronous_halving() -> None:
    improving = [0.1 * (n + 1) for n in range(9)]  # a sampler that improves: every arrival is the best so far
    plain = _asha.Rungs(min_resource=1, max_resource=3, reduction_factor=3)
    assert _arrivals_promoted(plain, improving) == improving[2:], "each new best enters the top third"
    quota = _asha.Rungs(min_resource=1, max_resource=3, reduction_factor=3, promotion_quota=True)
    assert _arrivals_promoted(quota, improving) == [improving[2], improving[5], improving[8]], "9 // 3 promotions"
    # A slot goes to the best paused trial of the top third, not to the first one found.
    assert _arrivals_promoted(quota, [0.5, 0.9, 0.1, 0.2, 0.3, 0.95]) == [0.9, 0.95]


def test_a_repeat_of_a_configuration_asha_stopped_is_not_trained_again(tmp_path: Path) -> None:
    """Once the space has no unvisited point, a repeat of a configuration stopped at a rung takes its
    curve (PRUNED, duplicate_of) and trains nothing; it has no rung of its own, so it is never promoted."""
    import optuna
    from mlflow import MlflowClient

    from mnist_sweep.model import train

    epochs: list[tuple[int, int]] = []

    def counting(params: Any, dataset: Any, *, checkpoint: Any = None, resume: Any = None, **kw: Any) -> Any:
        given = kw.pop("on_epoch")

        def on_epoch(epoch: int, record: Any) -> None:
            epochs.append((int(params["width"]), epoch + 1))
            given(epoch, record)

        return train(params, dataset, on_epoch=on_epoch, checkpoint=checkpoint, resume=resume, **kw)

    path = _asha_file(tmp_path, widths=[8, 16, 24], epochs=2, options="{min_resource: 1, reduction_factor: 3}")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(
        storage=storage,
        tracking_uri=tracking,
        checkpoint_store=str(tmp_path / "ckpt"),
        quiet=True,
        log_models=False,
        system_metrics=False,
    )
    space = load_space(path)
    run_sweep(space, options, trainer=counting)
    study = optuna.load_study(study_name="tiny", storage=storage)
    stopped = [t for t in study.trials if "paused_at_epoch" in t.user_attrs and "promotion_of" not in t.user_attrs]
    stopped = [t for t in stopped if all(o.user_attrs.get("promotion_of") != t.number for o in study.trials)]
    assert stopped, "of three configurations at rung 1, asha promoted one: two stopped there"
    source = stopped[0]
    study.enqueue_trial(source.params)  # what a sampler does once every point was visited
    epochs.clear()

    result = run_sweep(space.with_overrides(n_trials=4), options, trainer=counting)
    assert epochs == [], "nothing trained again"
    repeat = optuna.load_study(study_name="tiny", storage=storage).trials[-1]
    assert repeat.state.name == "PRUNED" and repeat.params == source.params
    assert repeat.user_attrs["duplicate_of"] == source.number and "paused_at_epoch" not in repeat.user_attrs
    assert repeat.intermediate_values == source.intermediate_values, "the sampler sees the configuration's curve"
    summary = next(t for t in result.trials if t.number == repeat.number)
    assert summary.epochs == 0 and f"trial {source.number}" in summary.note
    run = MlflowClient(tracking).get_run(repeat.user_attrs["mlflow_run_id"])
    assert run.data.tags["mnist_sweep.state"] == "PRUNED"
    assert run.data.tags["mnist_sweep.duplicate_of"] == str(source.number)


def test_brackets_fill_in_hyperband_proportions_and_promote_within_themselves() -> None:
    import optuna

    rungs = _asha.Rungs(min_resource=1, max_resource=8, reduction_factor=3, brackets=3)
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    assigned = []
    for number in range(11):
        bracket = _asha.assign_bracket(study.get_trials(deepcopy=False), rungs)
        assigned.append(bracket)
        first = rungs.bracket(bracket).epochs[0]
        value = 0.5 + 0.01 * number if bracket else 0.9 - 0.01 * number  # bracket 0: the earliest is its best
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED if first < 8 else optuna.trial.TrialState.COMPLETE,
                value=value,
                params={"x": value},
                distributions=dist,
                intermediate_values={first: value},
                user_attrs={
                    "asha_bracket": bracket,
                    "params_key": f"x={value}",
                    "checkpoint": f"c{number}",
                    **({"paused_at_epoch": first} if first < 8 else {}),
                },
            )
        )
    # Shares 3 : 1.5 : 1 of 11 configurations: 6, 3, 2; each goes to the bracket furthest below its share.
    assert assigned == [0, 0, 1, 0, 2, 0, 1, 0, 0, 1, 2]
    trials = study.get_trials(deepcopy=False)
    # Bracket 0 (trials 0, 1, 3, 5, 7, 8 at epoch 1) promotes its top 2, its earliest; bracket 1 (2, 6, 9
    # at epoch 3) promotes its best, although every value of bracket 1 is below every one of bracket 0.
    chosen = _asha.promotable(trials, rungs, maximize=True)
    assert chosen is not None and chosen.number == 0
    _asha.promote(study, chosen)
    continuation = study.get_trials(deepcopy=False)[-1]
    assert continuation.user_attrs["asha_bracket"] == 0, "a continuation stays in its configuration's bracket"
    chosen = _asha.promotable(study.get_trials(deepcopy=False), rungs, maximize=True)
    assert chosen is not None and chosen.number == 1
    _asha.promote(study, chosen)
    chosen = _asha.promotable(study.get_trials(deepcopy=False), rungs, maximize=True)
    assert chosen is not None and chosen.number == 9, "bracket 1's best at epoch 3 (0.59)"
    _asha.promote(study, chosen)
    assert _asha.promotable(study.get_trials(deepcopy=False), rungs, maximize=True) is None
    # 6, 3, 2 configurations: the next joins bracket 0 (7/3 < 4/1.5 < 3/1); counting the three
    # continuations as configurations would have sent it to bracket 1.
    assert _asha.assign_bracket(study.get_trials(deepcopy=False), rungs) == 0


def test_brackets_end_to_end_a_later_bracket_trains_straight_to_its_first_rung(tmp_path: Path) -> None:
    """brackets: 2 with rungs 1, 3: configurations join brackets 0, 1, 0, 0; bracket 1's trains all 3 epochs."""
    import optuna
    from mlflow import MlflowClient

    options_text = "{min_resource: 1, reduction_factor: 3, brackets: 2}"
    path = _asha_file(tmp_path, widths=[8, 16, 24, 32], epochs=3, options=options_text)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(storage=storage, tracking_uri=tracking, quiet=True, log_models=False, system_metrics=False)
    result = run_sweep(load_space(path), options)

    trials = [
        t
        for t in optuna.load_study(study_name="tiny", storage=storage).trials
        if "resampled_duplicate_of" not in t.user_attrs
    ]
    originals = [t for t in trials if "promotion_of" not in t.user_attrs]
    assert [t.user_attrs["asha_bracket"] for t in originals] == [0, 1, 0, 0]
    straight = originals[1]
    assert straight.state.name == "COMPLETE" and sorted(straight.intermediate_values) == [1, 2, 3]
    assert "paused_at_epoch" not in straight.user_attrs, "bracket 1's only rung is the last epoch"
    paused = [t for t in originals if t.user_attrs["asha_bracket"] == 0]
    assert all(t.user_attrs["paused_at_epoch"] == 1 for t in paused)
    (continuation,) = [t for t in trials if "promotion_of" in t.user_attrs]
    assert continuation.user_attrs["asha_bracket"] == 0 and continuation.state.name == "COMPLETE"
    best_of_bracket = max(paused, key=lambda t: t.intermediate_values[1])
    assert continuation.user_attrs["promotion_of"] == best_of_bracket.number, "ranked within bracket 0 only"
    assert sum(t.epochs for t in result.trials) == 3 * 1 + 3 + 2, "three first rungs, one straight run, one promotion"
    notes = [t.note for t in result.trials if t.state == "PRUNED"]
    assert notes and all("asha: stopped at rung epoch 1 (bracket 0)" in n for n in notes), notes
    client = MlflowClient(tracking)
    run = client.get_run(straight.user_attrs["mlflow_run_id"])
    assert run.data.tags["mnist_sweep.asha_bracket"] == "1"
