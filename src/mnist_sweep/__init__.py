"""mnist-sweep: Optuna sweeps over the MNIST / Fashion-MNIST tutorials, tracked in MLflow.

Importing the package is cheap: TensorFlow and MLflow load only when a command needs them.
"""

from __future__ import annotations

import os as _os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
