"""The data contract has one owner: no module but ``contract.py`` spells a stored key as a literal.

Every Optuna user-attribute key and every ``mnist_sweep.``-prefixed MLflow tag key is a named
constant in :mod:`mnist_sweep.contract`; the scanner below reads the package's source with
``ast`` and reports each place that writes such a key as a string instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_sweep import contract

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnist_sweep"
# Folders still being rewritten to read keys through the contract; their author empties this
# tuple when they are done. Paths are relative to src/mnist_sweep/.
PENDING: tuple[str, ...] = ()

# Calls that store an attribute, with the position of their key argument.
ATTR_SETTERS = {
    "set_user_attr": 0,
    "set_system_attr": 0,
    "set_trial_user_attr": 1,
    "set_trial_system_attr": 1,
    "set_study_user_attr": 1,
    "set_study_system_attr": 1,
}
# Names that hold attribute mappings (``trial.user_attrs``, ``attrs = trial.user_attrs``).
ATTR_HOLDERS = {"user_attrs", "system_attrs", "attrs", "study_attrs"}
ATTR_KEYWORDS = {"user_attrs", "system_attrs"}  # study.enqueue_trial(..., user_attrs={...})
MAPPING_READERS = {"get", "setdefault", "pop"}
# ``mnist_sweep.<name>`` not followed by another dotted part: a tag key, unless ``name`` is one of
# the package's own modules (``python -m mnist_sweep.cli``, a logger name).
TAG_KEY = re.compile(r"(?<![\w.])mnist_sweep\.([A-Za-z_]\w*)(?![\w.])")
MODULES = frozenset(path.stem for path in PACKAGE.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists())


def _holder_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _is_text(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string statements: module, class, function and attribute docstrings."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and _is_text(node.value)}


def _attr_keys(node: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Literal attribute keys used by ``node``: (the literal, what it does with it)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        name = node.func.attr
        position = ATTR_SETTERS.get(name)
        if position is not None and len(node.args) > position and _is_text(node.args[position]):
            yield node.args[position], f"{name}(...)"
        reads = name in MAPPING_READERS and _holder_name(node.func.value) in ATTR_HOLDERS
        if reads and node.args and _is_text(node.args[0]):
            yield node.args[0], f"{_holder_name(node.func.value)}.{name}(...)"
    if isinstance(node, ast.Call):
        for keyword in node.keywords:
            if keyword.arg in ATTR_KEYWORDS and isinstance(keyword.value, ast.Dict):
                for key in keyword.value.keys:
                    if _is_text(key):
                        assert key is not None
                        yield key, f"{keyword.arg}={{...}}"
    if isinstance(node, ast.Subscript) and _holder_name(node.value) in ATTR_HOLDERS and _is_text(node.slice):
        yield node.slice, f"{_holder_name(node.value)}[...]"
    if isinstance(node, ast.Compare) and _is_text(node.left):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and _holder_name(right) in ATTR_HOLDERS:
                yield node.left, f"... in {_holder_name(right)}"


def scan(source: str, filename: str = "<snippet>") -> list[str]:
    """``file:line: problem`` for each stored key spelled as a literal in ``source``."""
    tree = ast.parse(source, filename=filename)
    skipped = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        for literal, use in _attr_keys(node):
            value = literal.value  # type: ignore[attr-defined]
            found.append(f"{filename}:{literal.lineno}: attribute key {value!r} as a literal in {use}")
        if _is_text(node) and id(node) not in skipped:
            value = node.value  # type: ignore[attr-defined]
            for match in TAG_KEY.finditer(value):
                if match.group(1) not in MODULES:
                    found.append(f"{filename}:{node.lineno}: tag key {match.group(0)!r} as a literal")  # type: ignore[attr-defined]
    return found


def _package_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "contract.py" or relative.startswith(PENDING):
            continue
        files.append(path)
    return files


def test_no_module_spells_a_stored_key_as_a_literal() -> None:
    files = _package_files()
    assert len(files) > 20, "the scan found too few modules; has the package moved?"
    found = [line for path in files for line in scan(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))]
    assert not found, "use the constants of mnist_sweep.contract:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('run.set_tags({"mnist_sweep.state": "FAIL"})', "tag key 'mnist_sweep.state'"),
        ('tags.get("mnist_sweep.study", "")', "tag key 'mnist_sweep.study'"),
        ("f = \"tags.`mnist_sweep.trial_number` != ''\"", "tag key 'mnist_sweep.trial_number'"),
        ('raise E(f"no mnist_sweep.model_uri tag on {run}")', "tag key 'mnist_sweep.model_uri'"),
        ('trial.set_user_attr("fail_reason", why)', "attribute key 'fail_reason' as a literal in set_user_attr"),
        ('storage.set_trial_user_attr(tid, "history", h)', "attribute key 'history'"),
        ('study.user_attrs.get("dataset")', "attribute key 'dataset' as a literal in user_attrs.get"),
        ('summary.user_attrs["objective_metric"]', "attribute key 'objective_metric' as a literal in user_attrs[...]"),
        ('attrs.get("model_uri") or None', "attribute key 'model_uri' as a literal in attrs.get"),
        ('trial.system_attrs.get("fixed_params")', "attribute key 'fixed_params'"),
        ('if "nightly_warm_start" not in study.user_attrs: pass', "attribute key 'nightly_warm_start'"),
        (
            'study.enqueue_trial(p, user_attrs={"warm_start": src})',
            "attribute key 'warm_start' as a literal in user_attrs=",
        ),
    ],
)
def test_the_scanner_flags_a_literal_key(snippet: str, expected: str) -> None:
    found = scan(snippet)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    "snippet",
    [
        'cmd = [sys.executable, "-m", "mnist_sweep.sweep._workers"]',
        'cmd = [sys.executable, "-m", "mnist_sweep.cli"]',
        'log = logging.getLogger("mnist_sweep")',
        'logging.getLogger("mnist_sweep.tracking")',
        "run.set_tags({TAG_STATE: STATE_FAIL})",
        "trial.set_user_attr(ATTR_FAIL_REASON, why)",
        "study.user_attrs.get(ATTR_DATASET)",
        'def f():\n    """Tagged ``mnist_sweep.night=<date>``: prose in a docstring."""',
        'params.get("limit")',
        'tags = {"versions.keras": keras.__version__}',
    ],
)
def test_the_scanner_leaves_the_rest_alone(snippet: str) -> None:
    assert scan(snippet) == []


def test_every_key_is_named_once_and_tags_share_the_prefix() -> None:
    keys = {name: value for name, value in vars(contract).items() if name.startswith(("ATTR_", "TAG_"))}
    tags = {name: value for name, value in keys.items() if name.startswith("TAG_") and name != "TAG_PREFIX"}
    assert all(value.startswith(contract.TAG_PREFIX) for value in tags.values())
    for group in ({k: v for k, v in keys.items() if k.startswith("ATTR_")}, tags):
        spelled: dict[str, str] = {}
        for name, value in group.items():
            assert value not in spelled, f"{name} and {spelled.get(value)} both spell {value!r}"
            spelled[value] = name
