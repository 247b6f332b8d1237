"""``forgetless.seed(n)``: one call that makes a script's random numbers repeatable."""

from __future__ import annotations


def seed(value: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA), so what a script
    builds before the Learner (a model, a shuffled dataset) is the same at every run. The
    Learner seeds its data order and every sampler from its own ``seed=``;
    ``build_model(..., seed=)`` seeds one model without touching the global RNG."""
    import random

    import numpy as np
    import torch

    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        from forgetless.errors import ConfigurationError

        raise ConfigurationError(f"a seed is a whole number >= 0, got {value!r}.")
    random.seed(value)
    np.random.seed(value % 2 ** 32)
    torch.manual_seed(value)
