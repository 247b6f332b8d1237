"""DER++: Dark Experience Replay++ (Buzzega, Boschini, Porrello, Abati & Calderara 2020,
"Dark Experience for General Continual Learning: a Strong, Simple Baseline", NeurIPS).

The buffer (reservoir) keeps each sample with the logits the network gave it when it was seen.
Besides the loss on the current batch, each step adds (eq. 6 of the paper)

    alpha * || f(x') - z' ||^2       on one buffer batch (x', z'): match the stored logits,
    beta  * CE(f(x''), y'')          on another buffer batch (x'', y''): the stored labels.

The logits matched are the whole output layer, unmasked, as stored. The current batch (the
samples present when this strategy's ``extend_batch`` runs) is offered to the buffer with its
logits from this step's forward pass, each sample once: on its first visit in its task, so the
logits kept are those of the first visit, as in the paper.

In a process group both replay terms are means over the whole replayed draw, each rank's
share of it weighted by ``ReplayShare``, so the step is one process's.
"""

from __future__ import annotations

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.base import ANY_OBJECTIVE, Batch
from forgetless.strategies.replay.buffer import (
    MemoryStrategy,
    ReplayBuffer,
    check_batch_size,
    offer_first_visits,
)
from forgetless.strategies.replay.common import ReplayShare


@register("derpp")
class DERPlusPlus(MemoryStrategy):
    """Replay with stored logits (MSE) and stored labels (Buzzega et al. 2020)."""

    objectives = ANY_OBJECTIVE

    def __init__(self, buffer_size: int = 500, alpha: float = 0.3, beta: float = 1.0,
                 policy: str = "reservoir", replay_batch_size: int | None = None):
        """buffer_size: samples held (with their logits).
        alpha: weight of the logit-matching (MSE) term.
        beta: weight of the cross-entropy on replayed labels (0 gives plain DER).
        policy: ``reservoir`` (the paper's) or ``class_balanced``.
        replay_batch_size: samples per replayed batch; None uses the learner's batch size."""
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not value >= 0:
                raise ConfigurationError(f"{name} must be >= 0, got {value!r}.")
        check_batch_size(replay_batch_size, "replay_batch_size")
        self.alpha, self.beta = float(alpha), float(beta)
        self.replay_batch_size = replay_batch_size
        self.buffer = ReplayBuffer(buffer_size, policy)
        self._fresh = 0

    def extend_batch(self, batch):
        self._fresh = len(batch)  # the samples that arrived from the stream this step
        return batch

    def penalty(self, batch, logits):
        learner, generator = self.learner, self.learner.generator
        term = None
        if len(self.buffer):
            n = self.replay_batch_size or learner.batch_size
            share, drawn = ReplayShare(batch), min(n, len(self.buffer))
            memory = self.buffer.sample(n, generator)
            if len(memory):  # this rank's part of the draw (all of it in one process)
                replay_logits = learner.forward(memory.x, memory.task_ids)
                term = self.alpha * share.of(learner.objective.logit_matching(
                    replay_logits, memory.extras["logits"]), len(memory), drawn)
            if self.beta > 0:
                memory = self.buffer.sample(n, generator)
                replay_logits = learner.forward(memory.x, memory.task_ids) if len(memory) \
                    else None
                if replay_logits is not None:
                    labels = self.beta * share.of(learner.loss(
                        replay_logits, memory.y, memory.task_ids), len(memory), drawn)
                    term = labels if term is None else term + labels
        fresh = self._fresh
        offer_first_visits(self.buffer, learner, Batch(batch.x[:fresh], batch.y[:fresh],
                                                       batch.task_ids[:fresh]),
                           learner.objective.logit_memory(logits[:fresh], batch.x[:fresh]))
        return term
