"""Process-wide TensorFlow settings: threads, GPU memory growth, device description."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

_configured = False


def configure(*, threads: int | None = None) -> None:
    """Set TensorFlow's thread pools and GPU memory growth, once, before any model is built.

    ``threads`` caps intra- and inter-op threads (used when several workers share one machine).
    """
    global _configured
    if _configured:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    # Keras's own progress bars (from predict() inside MLflow's model logging, say) would
    # interleave with ours on stdout; route them to logging instead.
    keras.utils.disable_interactive_logging()
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised: growth can no longer change
            log.debug("memory growth not set on %s: %s", gpu.name, exc)
    _configured = True


def device_description() -> str:
    """``GPU: <name>`` when TensorFlow sees a GPU, else ``CPU (<n> cores)``."""
    configure()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(str(details.get("device_name", gpu.name)))
        return (f"GPU {pinned}: " if pinned else "GPU: ") + ", ".join(names)
    if pinned and pinned != "-1":  # pinned to a GPU that TensorFlow cannot use: say so
        return f"CPU ({os.cpu_count()} cores; no GPU usable at CUDA_VISIBLE_DEVICES={pinned})"
    return f"CPU ({os.cpu_count()} cores)"


def has_gpu() -> bool:
    """Whether TensorFlow trains on a GPU in this process."""
    configure()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
