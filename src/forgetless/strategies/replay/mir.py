"""MIR: maximally interfered retrieval (Aljundi, Caccia, Belilovsky, Caccia, Lin, Charlin &
Tuytelaars 2019, "Online Continual Learning with Maximally Interfered Retrieval", NeurIPS).

ER replays a uniform draw from its memory; MIR replays the memory samples that the coming
update would hurt most. At each step (Algorithm 1 of the paper):

1. draw ``candidates`` samples from the memory (C in the paper);
2. take a *virtual* SGD step on the incoming batch alone, ``theta' = theta - lr * grad L_in``,
   without touching the model: the gradient comes from ``torch.autograd.grad`` (``.grad`` and
   the optimiser's state are left alone) and the candidates are scored under ``theta'`` with
   ``torch.func.functional_call``, so no copy of the model is made;
3. score each candidate by the increase of its own loss, ``loss(theta') - loss(theta)``, and
   replay the ``replay_batch_size`` highest, concatenated with the incoming batch (one loss,
   as ER's).

The virtual step's size is the learner's learning rate unless ``virtual_lr`` is given. The
paper trains with SGD and takes the virtual step with that same learning rate (the authors'
``Scripts/ER_experiments.sh``: ``--lr 0.1`` on split MNIST and CIFAR-10, ``--subsample 50``
candidates). forgetless's default optimiser is Adam; its virtual step is
still the plain SGD step with the learner's lr: to first order the increase of a candidate's
loss is ``-lr * grad l_i . grad L_in``, so the ranking depends on the direction of the step,
not its size, and the small SGD step keeps the first-order picture the paper describes.

The scoring runs in eval mode (BatchNorm statistics untouched, no dropout noise between the
two forward passes) through the learner's forward (a composed strategy's own, e.g. HAT's
gates, included). The memory is a reservoir over the
stream: each incoming sample is offered once, on its first visit (ER's ``fill="stream"``,
the paper's), after the candidates are drawn; nothing happens at task boundaries, so MIR
learns from a task-free stream unchanged. The authors' code draws the candidates from the
earlier tasks' samples only (``buffer.sample(..., exclude_task=task)``); that needs the task
boundary, so here every held sample may be a candidate.

In a process group the candidates are drawn over the global buffer, each rank scores the ones
it holds after a virtual step along the ranks' mean gradient (the global batch's), and the
top ``replay_batch_size`` are chosen over every rank's scores: one process's choice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from forgetless import distributed
from forgetless.errors import ConfigurationError
from forgetless.models.heads import apply_mask
from forgetless.strategies import register
from forgetless.strategies.base import Batch, evaluating
from forgetless.strategies.replay.buffer import (
    MemoryStrategy,
    ReplayBuffer,
    check_batch_size,
    offer_first_visits,
)

#: Candidates drawn per replayed sample when ``candidates`` is unset: the paper's C = 50 for
#: 10 replayed samples.
CANDIDATES_PER_REPLAYED = 5


def check_virtual_lr(value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value > 0):
        raise ConfigurationError(
            f"virtual_lr must be a positive number (or unset to use the learner's learning "
            f"rate), got {value!r}; e.g. --set virtual_lr=0.1.")


def per_sample_loss(learner, logits: torch.Tensor, memory: Batch) -> torch.Tensor:
    """Each sample's cross-entropy over the output units the learner lets it train (the
    class-incremental seen classes, a task's own units), as in the learner's mean loss."""
    mask = learner.output_mask.for_training(memory.task_ids)
    return F.cross_entropy(apply_mask(logits, mask), memory.y, reduction="none")


class LearnerForward(torch.nn.Module):
    """The learner's forward (a strategy's own, e.g. HAT's gates, else the model's) as a module
    that holds the model, so that ``functional_call`` can run it with other parameters."""

    def __init__(self, learner) -> None:
        super().__init__()
        self.model, self.learner = learner.model, learner

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        return self.learner.forward(x, task_ids)


def virtual_parameters(network: LearnerForward, batch: Batch,
                       lr: float) -> dict[str, torch.Tensor]:
    """The trainable parameters after one SGD step of size ``lr`` on ``batch``'s loss, as new
    tensors: the model, its ``.grad`` and the optimiser are left untouched."""
    params = {n: p for n, p in network.named_parameters() if p.requires_grad}
    loss = network.learner.loss(network(batch.x, batch.task_ids), batch.y, batch.task_ids)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    if distributed.world().distributed:  # the step on the global batch: the ranks' mean
        grads = distributed.all_reduce_mean_(
            [torch.zeros_like(p) if g is None else g for p, g in zip(
                params.values(), grads, strict=True)], weight=len(batch))
    return {n: p.detach() if g is None else p.detach() - lr * g
            for (n, p), g in zip(params.items(), grads, strict=True)}


def interference(learner, batch: Batch, memory: Batch, lr: float) -> torch.Tensor:
    """Per memory sample, how much one virtual SGD step of size ``lr`` on ``batch`` raises its
    loss (MIR's score)."""
    network = LearnerForward(learner)
    inputs = (memory.x, memory.task_ids)
    with evaluating(learner.model):
        virtual = virtual_parameters(network, batch, lr)
        if not len(memory):  # a rank that holds none of the candidates
            return memory.x.new_zeros(0)
        with torch.no_grad():
            before = per_sample_loss(learner, network(*inputs), memory)
            after = per_sample_loss(learner, functional_call(network, virtual, inputs), memory)
    return after - before


@register("mir")
class MaximallyInterferedRetrieval(MemoryStrategy):
    """Replay the memory samples a virtual step on the incoming batch hurts most (Aljundi et
    al. 2019)."""

    objectives = frozenset({"classification"})
    why_not_objective = ("MIR ranks memory samples by each one's loss under a virtual step, a "
                         "per-sample cross-entropy that forgetless computes for classification "
                         "only.")

    def __init__(self, buffer_size: int = 500, candidates: int | None = None,
                 replay_batch_size: int | None = None, virtual_lr: float | None = None,
                 policy: str = "reservoir"):
        """buffer_size: samples held in memory (a reservoir over the stream).
        candidates: memory samples scored per step (C); None draws 5 per replayed sample (the
        paper's 50 for a replayed batch of 10).
        replay_batch_size: the most interfered candidates replayed per step; None uses the
        learner's batch size.
        virtual_lr: the virtual SGD step's size; None uses the learner's learning rate.
        policy: ``reservoir`` (the paper's) or ``class_balanced``."""
        check_batch_size(replay_batch_size, "replay_batch_size")
        check_batch_size(candidates, "candidates",
                         unset=f"{CANDIDATES_PER_REPLAYED} per replayed sample")
        check_virtual_lr(virtual_lr)
        self.candidates, self.replay_batch_size = candidates, replay_batch_size
        self.virtual_lr = None if virtual_lr is None else float(virtual_lr)
        self.buffer = ReplayBuffer(buffer_size, policy)

    def setup(self, learner) -> None:
        super().setup(learner)
        if self.candidates is not None and self.candidates < self.replayed_per_step():
            raise ConfigurationError(
                f"candidates ({self.candidates}) must be at least the replayed batch "
                f"({self.replayed_per_step()}): MIR replays the most interfered of them; raise "
                "--set candidates or lower --set replay_batch_size.")

    def replayed_per_step(self) -> int:
        return self.replay_batch_size or self.learner.batch_size

    def extend_batch(self, batch: Batch) -> Batch:
        replayed = self.most_interfered(batch) if len(self.buffer) else None
        offer_first_visits(self.buffer, self.learner, batch)
        return batch if replayed is None else batch.concat(replayed)

    def most_interfered(self, batch: Batch) -> Batch:
        """The ``replay_batch_size`` candidates whose loss the virtual step raises most."""
        learner, k = self.learner, self.replayed_per_step()
        pool = self.buffer.draw(self.candidates or CANDIDATES_PER_REPLAYED * k,
                                learner.generator)  # slots: the same on every rank
        held = self.buffer.held(pool)  # the candidates this rank holds (all in one process)
        scores = self.buffer.spread(pool, interference(learner, batch, held,
                                                       self.virtual_lr or learner.lr))
        chosen = scores.topk(min(k, len(pool))).indices
        replayed = self.buffer.held(pool[chosen])
        return Batch(replayed.x, replayed.y, replayed.task_ids)
