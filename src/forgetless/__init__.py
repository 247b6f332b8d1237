"""forgetless: continual learning on PyTorch — see catastrophic forgetting, fix it, measure it.

Heavy modules (torch, the strategies) load on first use, so ``import forgetless`` and
``forgetless --help`` stay quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Learner": "forgetless.learner",
    "Stream": "forgetless.data.stream",
    "Task": "forgetless.data.stream",
    "Scenario": "forgetless.data.stream",
    "Source": "forgetless.data.sources",
    "build_stream": "forgetless.data.benchmarks",
    "build_model": "forgetless.models",
    "build_strategy": "forgetless.strategies",
    "Strategy": "forgetless.strategies",
    "register": "forgetless.strategies",
    "RunConfig": "forgetless.config",
    "RunResult": "forgetless.results",
    "run": "forgetless.experiments.runner",
    "metrics": "forgetless.metrics",
    "seed": "forgetless.seeding",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forgetless' has no attribute '{name}'")
    value = importlib.import_module(module)
    return value if name == "metrics" else getattr(value, name)
