"""Package faces that import nothing until a name is used (PEP 562).

Each subpackage's ``__init__`` lists its public names and the private module that defines each.
Importing a package is then free: ``import mnist_sweep.model`` loads no Keras, and
``mnist-sweep --help`` no TensorFlow or MLflow, while ``from mnist_sweep.model import train``
still works. Packages import each other's faces without import cycles, because nothing runs
until first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``, whose names live in the modules ``table`` names."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__, sorted(table)
