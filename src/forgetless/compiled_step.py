"""The opt-in compiled step (``Learner(compile=True)``, ``--compile``): the model's forward pass
and the objective's loss as one ``torch.compile`` graph, whose backward AOTAutograd compiles
too. Strategies' penalties and gradient edits stay eager around it.

It pays only where the step's time is in many small element-wise kernels that compilation fuses;
where it goes to matrix products (the MLP on a CPU: ``benchmarks/loop_speed.md``) it does not, and
the first steps pay seconds of compilation (again for each new batch shape). So it is off by
default. Where ``torch.compile`` cannot run (no C++ compiler, an unsupported Python), the
Learner takes the eager step, saying so once.
"""

from __future__ import annotations

import warnings

import torch

#: ``torch.compile``'s backend (the tests take ``aot_eager``: the same graphs, no C++ build).
BACKEND = "inductor"


class CompiledStep:
    """``step(x, y, task_ids) -> (logits, loss)`` through ``torch.compile``, or None once
    compilation has failed (the caller then runs the eager step)."""

    def __init__(self, learner) -> None:
        self.learner = learner
        self.failed = False
        self._compiled = None

    def _eager(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor):
        learner = self.learner
        logits = learner.model(x)
        return logits, learner.loss(logits, y, task_ids)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor):
        if self.failed:
            return None
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self._eager, backend=BACKEND)
            return self._compiled(x, y, task_ids)
        except Exception as error:  # noqa: BLE001 - any failure to compile falls back
            self.failed = True
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            warnings.warn(f"torch.compile cannot run here ({first[:200]}); training with the "
                          "eager step instead.", RuntimeWarning, stacklevel=2)
            return None
