"""`mnist-sweep promote`: the held-out gate, registry aliases and version tags, on real tiny models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mnist_sweep.app import _promote as registry
from mnist_sweep.cli import main
from mnist_sweep.tracking import Registry, load_model
from registry_helpers import Studies, trained_studies

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_TAGS = (
    "study",
    "trial_number",
    "params",
    "val_accuracy",
    "test_accuracy",
    "dataset",
    "data_sha256",
    "version",
    "git_commit",
)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Studies:
    return trained_studies(tmp_path_factory, data_dir)


def promote(studies: Studies, study: str, model_name: str, *extra: str) -> Any:
    result = CliRunner().invoke(
        main, ["promote", study, "--model-name", model_name, *studies.options(), *extra], catch_exceptions=False
    )
    return result


def holder(studies: Studies, model_name: str, alias: str = "champion") -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return studies.client().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def versions(studies: Studies, model_name: str) -> list[Any]:
    return list(studies.client().search_model_versions(f"name = '{model_name}'"))


def numbers(studies: Studies, model_name: str) -> list[str]:
    return sorted(str(v.version) for v in versions(studies, model_name))


def test_first_promotion_registers_a_tagged_version_and_sets_the_alias(studies: Studies) -> None:
    best = studies.best(studies.strong)

    result = promote(studies, studies.strong, "first")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("promoted: study 'strong' trial")
    assert "no version held champion before" in result.output
    assert "test accuracy" in result.output
    version = holder(studies, "first")
    assert version is not None and str(version.version) == "1"
    assert version.source == best.model_uri
    assert version.run_id == best.run_id
    tags = version.tags
    for key in REQUIRED_TAGS:
        assert tags.get(f"mnist_sweep.{key}"), key
    assert tags["mnist_sweep.study"] == "strong"
    assert tags["mnist_sweep.trial_number"] == str(best.number)
    assert tags["mnist_sweep.dataset"] == "mnist"
    assert tags["mnist_sweep.test_images"] == "10000"
    assert float(tags["mnist_sweep.test_accuracy"]) > 0.7
    assert float(tags["mnist_sweep.val_accuracy"]) == pytest.approx(best.validation["val_accuracy"])
    assert len(tags["mnist_sweep.data_sha256"]) == 64
    assert "test accuracy" in version.description and "strong" in version.description
    assert studies.client().get_registered_model("first").aliases == {"champion": 1}


def test_better_candidate_moves_the_alias(studies: Studies) -> None:
    first = promote(studies, studies.weak, "better")
    assert first.exit_code == 0 and first.output.startswith("promoted:"), first.output

    second = promote(studies, studies.strong, "better")

    assert second.exit_code == 0, second.output
    assert second.output.startswith("promoted: study 'strong'")
    assert "vs" in second.output and "for version 1" in second.output
    version = holder(studies, "better")
    assert str(version.version) == "2"
    assert version.tags["mnist_sweep.previous_version"] == "1"
    weak = float(versions_by_number(studies, "better")["1"].tags["mnist_sweep.test_accuracy"])
    assert float(version.tags["mnist_sweep.previous_test_accuracy"]) == pytest.approx(weak)
    assert float(version.tags["mnist_sweep.test_accuracy"]) > weak + 0.001


def test_the_gate_records_its_decision_on_the_run_and_the_version(studies: Studies) -> None:
    first = promote(studies, studies.weak, "gated")
    assert first.exit_code == 0, first.output
    weak_run = studies.client().get_run(studies.best(studies.weak).run_id).data.tags
    assert weak_run["mnist_sweep.gate.decision"] == "promoted: no champion"
    assert "mnist_sweep.gate.p_value" not in weak_run
    assert holder(studies, "gated").tags["mnist_sweep.gate.decision"] == "promoted: no champion"

    second = promote(studies, studies.strong, "gated", "--min-improvement", "0")

    assert second.exit_code == 0 and second.output.startswith("promoted:"), second.output
    assert "McNemar p = " in second.output and "discordant images" in second.output
    run = studies.client().get_run(studies.best(studies.strong).run_id).data.tags
    version = holder(studies, "gated").tags
    for tags in (run, version):
        assert tags["mnist_sweep.gate.decision"].startswith("promoted: better by +")
        assert float(tags["mnist_sweep.gate.p_value"]) < 0.05
        strong_only, weak_only = (int(n) for n in tags["mnist_sweep.gate.discordant"].split(","))
        assert strong_only > weak_only
        assert 0 < float(tags["mnist_sweep.gate.ci_low"]) < float(tags["mnist_sweep.gate.ci_high"])
    assert 0 < float(version["mnist_sweep.robust_accuracy"]) < 1 and version["mnist_sweep.robust_seed"] == "0"
    assert {f"mnist_sweep.robust.{t}" for t in ("rotation", "shift", "scale", "erode", "dilate", "noise")} <= set(run)
    artifacts = {a.path for a in studies.client().list_artifacts(studies.best(studies.strong).run_id, "robustness")}
    assert artifacts == {"robustness/robust_accuracy.png"}
    gain = float(version["mnist_sweep.test_accuracy"]) - float(version["mnist_sweep.previous_test_accuracy"])
    assert gain == pytest.approx((strong_only - weak_only) / 10_000)


def test_robust_gate_metric_and_floor(studies: Studies) -> None:
    assert promote(studies, studies.weak, "robust").exit_code == 0

    floor = promote(studies, studies.strong, "robust", "--min-robust-accuracy", "0.999")
    assert floor.exit_code == 0 and floor.output.startswith("not promoted:"), floor.output
    assert "Gate decision: rejected: robust accuracy 0." in floor.output and "below the floor 0.999" in floor.output
    assert holder(studies, "robust").tags["mnist_sweep.study"] == "weak"

    result = promote(studies, studies.strong, "robust", "--metric", "robust_accuracy", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "on robust accuracy: McNemar p = " in result.output and "would promote" in result.output


def test_evaluate_prints_the_same_robust_figures_on_every_run(studies: Studies, tmp_path: Path) -> None:
    uri = studies.best(studies.strong).model_uri
    args = ["evaluate", uri, "--tracking-uri", studies.tracking_uri]
    first = CliRunner().invoke(main, [*args, "--figure", str(tmp_path / "r.png")], catch_exceptions=False)
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    lines = first.output.splitlines()
    assert lines[1].startswith("test accuracy 0.") and "/10000 mnist test images" in lines[1]
    assert lines[2].startswith("robust accuracy 0.") and "/60000 transformed test images, seed 0" in lines[2]
    assert [line.split()[0] for line in lines[3:9]] == ["rotation", "shift", "scale", "erode", "dilate", "noise"]
    assert again.output.splitlines()[:9] == lines[:9]  # the transformed set is seeded: reproducible
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def versions_by_number(studies: Studies, model_name: str) -> dict[str, Any]:
    return {str(v.version): v for v in versions(studies, model_name)}


def test_worse_candidate_changes_nothing_and_exits_zero(studies: Studies) -> None:
    assert promote(studies, studies.strong, "worse").exit_code == 0

    result = promote(studies, studies.weak, "worse")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("not promoted: study 'weak'")
    assert "Nothing changed." in result.output
    champion = float(holder(studies, "worse").tags["mnist_sweep.test_accuracy"])
    assert f"vs {champion:.4f} for version 1" in result.output
    assert numbers(studies, "worse") == ["1"]
    assert str(holder(studies, "worse").version) == "1"


def test_dry_run_never_changes_anything(studies: Studies) -> None:
    nothing = promote(studies, studies.strong, "dry", "--dry-run")
    assert nothing.exit_code == 0, nothing.output
    assert nothing.output.startswith("dry run: would promote study 'strong'")
    assert versions(studies, "dry") == []

    assert promote(studies, studies.weak, "dry").exit_code == 0
    result = promote(studies, studies.strong, "dry", "--dry-run")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("dry run: would promote") and "Nothing changed." in result.output
    assert "McNemar p = " in result.output and "95% CI of the gain" in result.output
    assert "Gate decision: promoted: better by" in result.output
    assert numbers(studies, "dry") == ["1"]
    assert holder(studies, "dry").tags["mnist_sweep.study"] == "weak"


def test_margin_is_required(studies: Studies) -> None:
    assert promote(studies, studies.weak, "margin").exit_code == 0

    result = promote(studies, studies.strong, "margin", "--min-improvement", "0.99")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("not promoted:") and "at least +0.9900" in result.output
    assert holder(studies, "margin").tags["mnist_sweep.study"] == "weak"


def test_same_model_again_is_already_the_champion(studies: Studies) -> None:
    assert promote(studies, studies.strong, "again").exit_code == 0

    result = promote(studies, studies.strong, "again")

    assert result.exit_code == 0
    assert "already is again@champion (version 1)" in result.output
    assert len(versions(studies, "again")) == 1


@pytest.mark.parametrize(("champion", "candidate"), [("strong", "fashion"), ("fashion", "strong")])
def test_dataset_mismatch_is_refused(studies: Studies, champion: str, candidate: str) -> None:
    name = f"mismatch-{champion}"
    assert promote(studies, champion, name).exit_code == 0

    result = CliRunner().invoke(main, ["promote", candidate, "--model-name", name, *studies.options()])

    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: refused:")
    assert "fashion_mnist" in result.output and "mnist model" in result.output
    assert numbers(studies, name) == ["1"]


def test_unknown_study_exits_non_zero_in_a_real_process(studies: Studies, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mnist_sweep.cli", "promote", "nosuch", *studies.options()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stderr
    assert "error: no study 'nosuch'" in done.stderr
    assert "strong" in done.stderr  # the studies that do exist are listed
    assert "Traceback" not in done.stderr


def synthetic_study(tmp_path: Path, *, model_uri: str | None) -> str:
    """A study whose only trial is COMPLETE (with ``model_uri``) or, without one, FAIL."""
    import optuna
    from optuna.trial import TrialState, create_trial

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="synthetic", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "mnist")
    attrs = {"params": {"width": 8}, "mlflow_run_id": None}
    if model_uri is None:
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=attrs))
    else:
        study.add_trial(create_trial(value=0.5, user_attrs={**attrs, "model_uri": model_uri}))
    return storage


def test_no_complete_trial_and_missing_model_are_errors(studies: Studies, tmp_path: Path) -> None:
    tracking = ["--tracking-uri", studies.tracking_uri, "--model-name", "synthetic"]  # a fresh store costs seconds
    storage = synthetic_study(tmp_path, model_uri=None)
    result = CliRunner().invoke(main, ["promote", "synthetic", "--storage", storage, *tracking])
    assert result.exit_code == 1
    assert "error: study 'synthetic' has no COMPLETE trial yet (0 COMPLETE, 0 PRUNED, 1 FAIL" in result.output

    (tmp_path / "optuna.db").unlink()
    storage = synthetic_study(tmp_path, model_uri="")
    result = CliRunner().invoke(main, ["promote", "synthetic", "--storage", storage, *tracking])
    assert result.exit_code == 1
    assert "error: study 'synthetic' trial 0 logged no model" in result.output

    (tmp_path / "optuna.db").unlink()
    storage = synthetic_study(tmp_path, model_uri="models:/m-0123456789abcdef0123456789abcdef")
    result = CliRunner().invoke(main, ["promote", "synthetic", "--storage", storage, *tracking])
    assert result.exit_code == 1
    assert result.output.startswith("error: models:/m-0123456789abcdef0123456789abcdef: tracking store")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--alias", "latest"], "reserves 'latest'"),
        (["--alias", "v3"], "reserves 'latest' and 'v<number>'"),
        (["--alias", "a b"], "letters, digits"),
        (["--model-name", "a/b"], "without '/'"),
        (["--min-improvement", "-0.1"], "-0.1 is not in the range"),
    ],
)
def test_bad_requests_are_refused_before_anything_runs(tmp_path: Path, flags: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["promote", "whatever", "--storage", "sqlite:///nowhere.db", *flags])

    assert result.exit_code == 2
    assert message in result.output


# --------------------------------------------------------------------------- races


def test_a_better_model_that_takes_the_alias_meanwhile_keeps_it(
    studies: Studies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weak candidate passes against no champion; the strong one is promoted before weak moves the alias."""
    real_register = Registry.register
    racing: list[registry.Promotion] = []

    def register_then_race(self: Any, name: str, **kwargs: Any) -> Any:
        ours = real_register(self, name, **kwargs)
        monkeypatch.setattr(Registry, "register", real_register)
        racing.append(lib_promote(studies, studies.strong, "race-better"))
        return ours

    monkeypatch.setattr(Registry, "register", register_then_race)
    result = lib_promote(studies, studies.weak, "race-better")

    assert racing[0].promoted and racing[0].version == "2"
    assert result.decision == "superseded" and not result.promoted
    assert result.version == "1" and result.champion_version == "2"
    assert "while this promotion ran, version 2 took race-better@champion" in result.message()
    assert str(holder(studies, "race-better").version) == "2"
    assert versions_by_number(studies, "race-better")["1"].tags["mnist_sweep.superseded_by"] == "2"


def test_a_stale_worse_write_after_ours_is_undone(studies: Studies, monkeypatch: pytest.MonkeyPatch) -> None:
    """A racing promotion of the weak model read the alias before we moved it, and writes after us."""
    real_set_alias = Registry.set_alias
    writes: list[str] = []

    def set_then_stale_write(self: Any, name: str, alias: str, version: str) -> None:
        real_set_alias(self, name, alias, version)
        writes.append(version)
        if len(writes) == 1:
            stale = register_like_a_promotion(studies, self, name, studies.weak)
            real_set_alias(self, name, alias, stale)

    monkeypatch.setattr(Registry, "set_alias", set_then_stale_write)
    result = lib_promote(studies, studies.strong, "race-stale")

    assert result.promoted and result.version == "1"
    assert writes == ["1", "1"]  # moved, overwritten by the stale weak version 2, moved back
    assert str(holder(studies, "race-stale").version) == "1"


def lib_promote(studies: Studies, study: str, model_name: str) -> registry.Promotion:
    return registry.promote(study, storage=studies.storage, tracking_uri=studies.tracking_uri, model_name=model_name)


def register_like_a_promotion(studies: Studies, reg: Any, name: str, study: str) -> str:
    """Register ``study``'s best model with the tags its own (passed) promotion would record."""
    from mnist_sweep.model._data import load_raw

    best = studies.best(study)
    raw = load_raw("mnist")
    model = load_model(best.model_uri, tracking_uri=studies.tracking_uri)
    score = registry.evaluate(model, raw.test_images / 255.0, raw.test_labels)
    tags = {
        "mnist_sweep.gate": "passed",
        "mnist_sweep.dataset": "mnist",
        "mnist_sweep.data_sha256": raw.sha256,
        "mnist_sweep.test_correct": str(score.correct),
        "mnist_sweep.test_images": str(score.total),
    }
    version = reg.register(name, source=best.model_uri, run_id=best.run_id, tags=tags, description="stale racer")
    return str(version.version)
