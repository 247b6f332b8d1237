"""GEM: Gradient Episodic Memory (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for
Continual Learning", NeurIPS).

Each finished task keeps an episodic memory of ``memory_per_task`` of its training samples
(drawn uniformly, the paper's 256 on MNIST). At every step the gradient ``g_k`` of the loss on
each old task's memory is computed (one backward pass per old task). If the current gradient
``g`` conflicts with any of them (``g . g_k < 0``) it is replaced by the closest vector that
conflicts with none, the QP of the paper's eq. 10:

    minimise 1/2 ||z - g||^2   subject to   G z >= 0     (G: the rows g_k)

solved through its dual (eq. 11), which has one variable per old task:

    minimise 1/2 v^T G G^T v + (G g)^T v   subject to   v >= 0,   then  z = g + G^T v.

``memory_strength`` is the paper's gamma "added to v*" to favour backward transfer; as in the
authors' code (``project2cone2``: quadprog with the constraint ``v >= margin``, margin 0.5 in
their MNIST experiments) it is a lower bound on ``v``, and ``1e-3`` is added to the diagonal of
``G G^T`` as there. The dual is solved exactly in torch (Lawson & Hanson's active-set method on
the Gram matrix, ``dual_nonnegative_qp``), so GEM needs no extra package.

In a process group each memory is sharded over the ranks and its gradient is the mean over
every rank's rows (``memory_gradient``), so every rank solves the same QP as one process.
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.base import ANY_OBJECTIVE, Footprint, Strategy
from forgetless.strategies.replay.buffer import ReplayBuffer, check_buffer_size, offer_task
from forgetless.strategies.replay.common import check_strength, memory_gradient


def dual_nonnegative_qp(gram: torch.Tensor, linear: torch.Tensor,
                        lower: float = 0.0) -> torch.Tensor:
    """``argmin_v 1/2 v^T gram v + linear^T v`` subject to ``v >= lower``, for a small positive
    definite ``gram``: Lawson & Hanson's active-set method (exact; a few passes per variable),
    on ``u = v - lower >= 0``, in float64."""
    gram, linear = gram.double(), linear.double()
    n = linear.shape[0]
    linear = linear + lower * gram.sum(1)
    u = torch.zeros(n, dtype=gram.dtype, device=gram.device)
    free = torch.zeros(n, dtype=torch.bool, device=gram.device)  # variables off their bound
    tolerance = 1e-12 * max(1.0, float(linear.abs().max()))
    for _ in range(3 * n):
        descent = -(gram @ u + linear)  # minus the gradient
        if free.all() or float(descent[~free].max()) <= tolerance:
            break
        free[torch.where(free, -torch.inf, descent).argmax()] = True
        for _ in range(n):  # drop the variables that would cross their bound
            trial = torch.zeros_like(u)
            index = free.nonzero().flatten()
            trial[index] = torch.linalg.solve(gram[index][:, index], -linear[index])
            if bool((trial[index] > 0).all()):
                break
            ratio = torch.where(free & (trial <= 0), u / (u - trial).clamp_min(1e-300),
                                torch.inf)
            first = ratio.argmin()
            u = (u + ratio[first] * (trial - u)).clamp_min(0)
            u[first] = 0.0
            free &= u > 0
        u = trial
    return u + lower


def project_to_memories(gradient: torch.Tensor, memories: torch.Tensor,
                        margin: float = 0.0, eps: float = 1e-3) -> torch.Tensor:
    """The flat ``gradient`` itself when it conflicts with no row of ``memories`` (one flat
    gradient per old task), else ``gradient + memories^T v`` with ``v`` the dual solution."""
    if not bool((memories @ gradient < 0).any()):
        return gradient
    gram = memories @ memories.T
    gram = gram + eps * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    v = dual_nonnegative_qp(gram, memories @ gradient, margin)
    return gradient + (v.to(memories.dtype) @ memories)


@register("gem")
class GEM(Strategy):
    """Project the gradient so that no old task's memory loss increases (Lopez-Paz & Ranzato
    2017); one QP per conflicting step over the per-task memory gradients."""

    why_not_task_free = ("it keeps one episodic memory per task, filled when the task ends, "
                         "which a task-free stream does not announce; use er(fill=stream), "
                         "er-ace or derpp, whose memories fill from the stream.")

    family = "replay"
    stores_raw_data = True
    objectives = ANY_OBJECTIVE

    def __init__(self, memory_per_task: int = 256, memory_strength: float = 0.5):
        """memory_per_task: samples of each finished task kept in its episodic memory (the
        paper's 256); every step costs one backward pass over each old task's memory.
        memory_strength: the dual variables' lower bound on a conflict (the paper's gamma, 0.5
        in the authors' MNIST runs; 0 is the plain projection)."""
        self.memory_per_task = check_buffer_size(memory_per_task)
        self.memory_strength = check_strength(memory_strength, "the plain projection")
        self.memories: list[ReplayBuffer] = []
        self.projections = 0  # steps whose gradient was moved (diagnostic)

    def before_step(self) -> None:
        if not self.memories:
            return
        learner = self.learner
        params = [p for p in learner.trainable_parameters() if p.grad is not None]
        rows = [memory_gradient(learner, params, held["x"], held["y"], held["task_ids"])
                for held in (memory.local_tensors() for memory in self.memories)]
        gradient = torch.cat([p.grad.reshape(-1) for p in params])
        projected = project_to_memories(gradient, torch.stack(rows), self.memory_strength)
        if projected is not gradient:
            self.projections += 1
            torch.nn.utils.vector_to_parameters(projected, [p.grad for p in params])

    def after_task(self, task) -> None:
        if task.train_x.shape[0] == 0:  # a task with nothing to remember (a probe task)
            return
        memory = ReplayBuffer(self.memory_per_task)  # reservoir over the task: a uniform subset
        offer_task(memory, self.learner, task)
        self.memories.append(memory)

    def state_dict(self) -> dict:
        return {"memories": [m.state_dict() for m in self.memories],
                "projections": self.projections}

    def load_state_dict(self, state: dict) -> None:
        self.memories = []
        for saved in state["memories"]:
            memory = ReplayBuffer(self.memory_per_task)
            memory.load_state_dict(saved)
            self.memories.append(memory)
        self.projections = int(state["projections"])

    def footprint(self) -> Footprint:
        return Footprint(sum(m.run_nbytes for m in self.memories), stores_raw_data=True)
