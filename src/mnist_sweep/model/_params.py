"""The model/training parameters every design axis is made of, and their validation.

A parameter set is a plain ``dict`` (what Optuna's ``trial.params`` and a preset hold). This
module knows which keys exist, what values they take and what the defaults are, so that a
typo in a YAML file, a ``--param`` flag or a preset fails before anything trains. It imports
neither TensorFlow nor Optuna.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mnist_sweep.errors import ParamError

ARCHITECTURES = ("dense", "conv")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu")
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "mse")
OUTPUTS = ("softmax", "logits")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
PRECISIONS = ("float32", "mixed")
LR_SCHEDULES = ("constant", "cosine", "one_cycle", "plateau")
AUGMENTATIONS = ("none", "light", "strong", "flip")
POOLINGS = ("flatten", "global_avg")
DATA_PIPELINES = ("arrays", "dataset")
LEVERS = ("steps_per_execution", "jit_compile", "data_pipeline")
"""Speed levers: they change how fast a model trains, not what it learns; logged as chosen."""

MAX_DEPTH = 64
PER_LAYER_WIDTH = re.compile(r"^width_([1-9]\d*)$")
IMAGE_SIZE = 28


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its kind, bounds or choices, default and what it means."""

    name: str
    kind: str  # "int" | "float" | "choice" | "bool"
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    high_inclusive: bool = True
    auto: bool = False  # also takes "auto": chosen per device and model at training time


PARAMS: dict[str, ParamSpec] = {
    spec.name: spec
    for spec in (
        ParamSpec("architecture", "choice", "dense", "dense layers or conv blocks", ARCHITECTURES),
        ParamSpec("depth", "int", 1, "hidden dense layers (the conv head too)", low=1, high=MAX_DEPTH),
        ParamSpec("width", "int", 512, "units in each hidden dense layer", low=1, high=65536),
        ParamSpec("activation", "choice", "relu", "hidden-layer activation", ACTIVATIONS),
        ParamSpec("dropout", "float", 0.0, "dropout after each hidden layer", low=0.0, high=1.0, high_inclusive=False),
        ParamSpec("conv_blocks", "int", 2, "conv + max-pool blocks (conv only)", low=1, high=3),
        ParamSpec(
            "convs_per_block",
            "int",
            1,
            "stacked convolutions per conv block, VGG-style (the extra ones keep the side: 'same' padding)",
            low=1,
            high=3,
        ),
        ParamSpec("filters", "int", 32, "filters of the first conv block, doubled per block", low=1, high=1024),
        ParamSpec("kernel_size", "int", 3, "conv kernel size (conv only)", low=1, high=7),
        ParamSpec("loss", "choice", "sparse_categorical_crossentropy", "training loss", LOSSES),
        ParamSpec("output", "choice", "softmax", "softmax probabilities or logits", OUTPUTS),
        ParamSpec("optimizer", "choice", "rmsprop", "optimizer", OPTIMIZERS),
        ParamSpec("learning_rate", "float", 0.001, "optimizer learning rate", low=0.0, high=10.0),
        ParamSpec("momentum", "float", 0.9, "SGD momentum (sgd only)", low=0.0, high=1.0, high_inclusive=False),
        ParamSpec("epochs", "int", 5, "training epochs", low=1, high=10000),
        ParamSpec("batch_size", "int", 128, "mini-batch size", low=1, high=65536),
        ParamSpec(
            "steps_per_execution",
            "int",
            "auto",
            "batches per compiled training step (auto: per device and model)",
            low=1,
            high=1024,
            auto=True,
        ),
        ParamSpec(
            "jit_compile", "bool", "auto", "XLA-compile the training step (auto: per device and model)", auto=True
        ),
        ParamSpec(
            "data_pipeline",
            "choice",
            "auto",
            "fit on NumPy arrays, or on a tf.data pipeline cached once per process (auto: per device and model)",
            DATA_PIPELINES,
            auto=True,
        ),
        ParamSpec(
            "precision",
            "choice",
            "float32",
            "float32, or mixed (16-bit compute: float16 on a GPU, bfloat16 on a CPU; float32 outputs)",
            PRECISIONS,
        ),
        ParamSpec("batch_norm", "bool", False, "batch normalization before each hidden activation"),
        ParamSpec("pooling", "choice", "flatten", "how the conv features reach the head (conv only)", POOLINGS),
        ParamSpec("lr_schedule", "choice", "constant", "learning-rate schedule over the epochs", LR_SCHEDULES),
        ParamSpec("warmup_epochs", "int", 0, "epochs of linear learning-rate warm-up", low=0, high=10000),
        ParamSpec(
            "weight_decay",
            "float",
            0.0,
            "decoupled weight decay (AdamW for adam)",
            low=0.0,
            high=1.0,
            high_inclusive=False,
        ),
        ParamSpec(
            "augment",
            "choice",
            "none",
            "random shift, rotation, zoom (flip: left-right flips, shift) while training",
            AUGMENTATIONS,
        ),
        ParamSpec(
            "label_smoothing",
            "float",
            0.0,
            "label smoothing of the cross-entropy targets",
            low=0.0,
            high=1.0,
            high_inclusive=False,
        ),
    )
}


def is_param_name(name: str) -> bool:
    """True for a known parameter name, per-layer widths (``width_1`` ...) included."""
    match = PER_LAYER_WIDTH.match(name)
    if match:
        return 1 <= int(match.group(1)) <= MAX_DEPTH
    return name in PARAMS


def allowed_names() -> str:
    return ", ".join([*PARAMS, "width_1..width_N"])


def check_value(name: str, value: Any) -> Any:
    """Return ``value`` checked (and ints widened to float where a float is expected).

    Raises :class:`ParamError` naming the parameter, the value and what is allowed.
    """
    if not is_param_name(name):
        raise ParamError(f"unknown parameter {name!r} (= {value!r}); allowed: {allowed_names()}")
    spec = PARAMS["width"] if PER_LAYER_WIDTH.match(name) else PARAMS[name]
    if spec.auto and value == "auto":
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ParamError(
                f"parameter {name!r} = {value!r} must be " + ("true, false or auto" if spec.auto else "true or false")
            )
        return value
    if spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise ParamError(f"parameter {name!r} = {value!r} is not allowed; choose one of {', '.join(spec.choices)}")
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ParamError(f"parameter {name!r} = {value!r} must be an integer ({_range(spec, name)})")
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(
                f"parameter {name!r} = {value!r} must be a number ({_range(spec, name)})"
                + (" (write 1.0e-5, not 1e-5, in YAML)" if isinstance(value, str) else "")
            )
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(f"parameter {name!r} = {value!r} must be finite ({_range(spec, name)})")
    low, high = spec.low, spec.high
    if (low is not None and value < low) or (spec.kind == "float" and name == "learning_rate" and value <= 0):
        raise ParamError(f"parameter {name!r} = {value!r} is below the allowed range ({_range(spec, name)})")
    if high is not None and (value > high or (not spec.high_inclusive and value >= high)):
        raise ParamError(f"parameter {name!r} = {value!r} is above the allowed range ({_range(spec, name)})")
    return value


def _range(spec: ParamSpec, name: str) -> str:
    if spec.name == "learning_rate":
        return f"0 < {name} <= {spec.high:g}"
    upper = "<=" if spec.high_inclusive else "<"
    return f"{spec.low:g} <= {name} {upper} {spec.high:g}" + (", or auto" if spec.auto else "")


def resolve_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a parameter set and fill in the defaults.

    The result is complete: every key of :data:`PARAMS` is present, and per-layer widths
    (``width_1`` ... ``width_<depth>``), when given, are folded into a ``widths`` list.
    """
    params = dict(params)
    given_widths = params.pop("widths", None)
    checked = {str(name): check_value(str(name), value) for name, value in params.items()}
    resolved: dict[str, Any] = {name: spec.default for name, spec in PARAMS.items()}
    if checked.get("optimizer") == "sgd" and "learning_rate" not in checked:
        resolved["learning_rate"] = 0.01
    resolved.update({k: v for k, v in checked.items() if not PER_LAYER_WIDTH.match(k)})
    depth = resolved["depth"]
    layer_widths = {int(m.group(1)): v for k, v in checked.items() if (m := PER_LAYER_WIDTH.match(k))}
    if given_widths is not None:
        layer_widths = _merge_widths(given_widths, layer_widths, depth)
    extra = sorted(i for i in layer_widths if i > depth)
    if extra:
        raise ParamError(f"parameter 'width_{extra[0]}' given but depth is {depth}")
    resolved["widths"] = [layer_widths.get(i, resolved["width"]) for i in range(1, depth + 1)]
    if resolved["loss"] == "mse" and resolved["output"] == "logits":
        raise ParamError("parameter 'output' = 'logits' cannot go with loss 'mse'; use 'softmax'")
    if resolved["architecture"] == "conv":
        _check_conv_geometry(resolved["conv_blocks"], resolved["kernel_size"])
    _check_training_axes(resolved)
    return resolved


def _check_training_axes(p: Mapping[str, Any]) -> None:
    if p["label_smoothing"] > 0 and p["loss"] == "mse":
        raise ParamError(
            f"parameter 'label_smoothing' = {p['label_smoothing']!r} needs a cross-entropy loss, not 'mse'"
        )
    if p["warmup_epochs"] and p["warmup_epochs"] >= p["epochs"]:
        raise ParamError(f"parameter 'warmup_epochs' = {p['warmup_epochs']!r} must be below 'epochs' = {p['epochs']!r}")


def _merge_widths(given: Any, layer_widths: dict[int, int], depth: int) -> dict[int, int]:
    """Fold a ``widths`` list (what :func:`resolve_params` returns) back in, so resolving is idempotent."""
    if not isinstance(given, list | tuple) or len(given) != depth:
        raise ParamError(f"parameter 'widths' = {given!r} must be a list of {depth} layer widths (one per depth)")
    from_list = {i: check_value(f"width_{i}", w) for i, w in enumerate(given, start=1)}
    clash = sorted(i for i in layer_widths if layer_widths[i] != from_list[i])
    if clash:
        i = clash[0]
        raise ParamError(f"parameter 'width_{i}' = {layer_widths[i]!r} contradicts 'widths' = {list(given)!r}")
    return from_list


def conv_output_size(conv_blocks: int, kernel_size: int) -> int:
    """Side of the feature map after ``conv_blocks`` (valid conv + 2x2 max-pool) blocks; <= 0 if none."""
    size = IMAGE_SIZE
    for _ in range(conv_blocks):
        size = (size - kernel_size + 1) // 2
        if size <= 0:
            return 0
    return size


def _check_conv_geometry(conv_blocks: int, kernel_size: int) -> None:
    if conv_output_size(conv_blocks, kernel_size) > 0:
        return
    fits = max((b for b in range(1, conv_blocks) if conv_output_size(b, kernel_size) > 0), default=0)
    raise ParamError(
        f"parameters 'conv_blocks' = {conv_blocks} and 'kernel_size' = {kernel_size} shrink the "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} image to nothing; with kernel_size {kernel_size} use conv_blocks <= {fits}"
        + ("" if fits else " (no conv block fits: lower kernel_size)")
    )


def model_summary(params: Mapping[str, Any]) -> str:
    """A short human description, e.g. ``dense 2x500 sigmoid, mse, adam``."""
    p = resolve_params(params)
    widths = p["widths"]
    shape = f"{len(widths)}x{widths[0]}" if len(set(widths)) == 1 else "-".join(str(w) for w in widths)
    if p["architecture"] == "conv":
        kernel = f"{p['kernel_size']}x{p['kernel_size']}"
        stacked = f"{p['convs_per_block']}x" if p["convs_per_block"] > 1 else ""
        body = f"conv {p['conv_blocks']} blocks ({stacked}{p['filters']} filters, {kernel}) + dense {shape}"
    else:
        body = f"dense {shape}"
    return f"{body} {p['activation']}, {p['loss']}, {p['optimizer']} lr={p['learning_rate']:g}" + "".join(
        _axes_summary(p)
    )


def _axes_summary(p: Mapping[str, Any]) -> list[str]:
    """The newer axes, named only where they differ from their defaults (old summaries stay as they were)."""
    parts = []
    if p["lr_schedule"] != "constant":
        parts.append(f" {p['lr_schedule']}")
    if p["warmup_epochs"]:
        parts.append(f" warmup={p['warmup_epochs']}")
    if p["weight_decay"]:
        parts.append(f" wd={p['weight_decay']:g}")
    if p["batch_norm"]:
        parts.append(", batch norm")
    if p["architecture"] == "conv" and p["pooling"] != "flatten":
        parts.append(f", {p['pooling']} pooling")
    if p["augment"] != "none":
        parts.append(f", {p['augment']} augmentation")
    if p["label_smoothing"]:
        parts.append(f", label smoothing {p['label_smoothing']:g}")
    return parts


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a ``key=value`` CLI assignment; the value is read as YAML (numbers, strings).

    ``1e-5`` is read as a float here, unlike plain PyYAML.
    """
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParamError(f"--param {text!r} is not of the form key=value (e.g. depth=2; keys: {allowed_names()})")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if value is None:
        raise ParamError(f"--param {text!r} gives {key!r} no value; write {key}=VALUE")
    return key, value


CONV_ONLY = ("conv_blocks", "convs_per_block", "filters", "kernel_size", "pooling")


@dataclass(frozen=True)
class Params:
    """One model's parameters, resolved once: complete, checked, and which of them were sampled.

    ``given`` is what the caller asked for (a study's fixed plus sampled params, a preset, the
    ``--param`` flags); ``values`` is that with every default filled in, what
    :func:`~mnist_sweep.model.build_model` and :func:`~mnist_sweep.model.train` use without
    resolving again.
    """

    given: Mapping[str, Any]
    values: Mapping[str, Any]
    sampled: frozenset[str] = frozenset()

    @classmethod
    def resolve(cls, given: Mapping[str, Any] | Params, *, sampled: Iterable[str] = ()) -> Params:
        """Check ``given`` and fill in the defaults (ParamError names a bad name or value)."""
        if isinstance(given, Params):
            return given
        return cls(MappingProxyType(dict(given)), MappingProxyType(resolve_params(given)), frozenset(sampled))

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def key(self) -> str:
        """Canonical JSON of ``given``: trials with equal keys train the same model."""
        return json.dumps(dict(self.given), sort_keys=True, default=str)

    def logged(self) -> dict[str, Any]:
        """Every param that shaped the model, defaults included, for a run's params.

        Conv-only params appear only for conv models; per-layer widths as the ``widths`` list;
        the speed levers (:data:`LEVERS`) are logged as training chose them, not here.
        """
        out = {k: v for k, v in self.values.items() if k not in LEVERS}
        if out["architecture"] != "conv":
            for name in CONV_ONLY:
                out.pop(name, None)
        return out

    def fixed_names(self) -> list[str]:
        """The logged params the sampler did not choose (fixed in the file or defaulted)."""
        return sorted(set(self.logged()) - self.sampled)


def resolved(params: Mapping[str, Any] | Params) -> Mapping[str, Any]:
    """The complete values of ``params``: as they are for a :class:`Params`, else resolved."""
    return params.values if isinstance(params, Params) else resolve_params(params)
