"""One GPU per worker: count the GPUs without TensorFlow, and give each local worker its own.

The supervisor of ``run --workers N`` must not import TensorFlow (it would take every GPU's
memory), so the GPUs are counted from ``$CUDA_VISIBLE_DEVICES`` when it is set, else from
``nvidia-smi -L``. Worker ``i`` is pinned to GPU ``i mod G`` with ``CUDA_VISIBLE_DEVICES``, set
before TensorFlow is imported in the child; memory growth (always on) lets several share one.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from mnist_sweep.errors import ConfigError

log = logging.getLogger(__name__)


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The ids of the GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [part.strip() for part in listed.split(",") if part.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi -L failed (%s): training on the CPU", exc)
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def plan_workers(*, workers: int | None, per_gpu: int | None, gpus: Sequence[str]) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each local worker (None: leave it as it is).

    ``--workers N`` wins and spreads N workers evenly over the GPUs; ``--workers-per-gpu K``
    alone means K workers on each GPU; neither means one worker. Without GPUs nothing is pinned.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    if per_gpu is not None and per_gpu < 1:
        raise ConfigError(f"--workers-per-gpu {per_gpu}: must be at least 1")
    if not gpus:
        return [None] * (workers or 1)
    count = workers if workers is not None else (per_gpu or 1) * len(gpus) if per_gpu else 1
    return [gpus[i % len(gpus)] for i in range(count)]
