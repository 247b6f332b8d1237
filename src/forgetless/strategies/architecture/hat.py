"""Hard Attention to the Task (Serra, Suris, Miron & Karatzoglou 2018, "Overcoming Catastrophic
Forgetting with Hard Attention to the Task", ICML).

Each task t has a learned embedding ``e_l^t`` per hidden layer; it gates the layer's units with
``a_l^t = sigmoid(s * e_l^t)``, so a task uses a (near-binary) subset of units. On a
convolutional layer a unit is a filter: the gate scales the output channel at every position
(the paper's AlexNet). Following the paper:

- the scale ``s`` is annealed within each epoch from ``1/s_max`` to ``s_max`` (batch b of B:
  ``s = 1/s_max + (s_max - 1/s_max)(b - 1)/(B - 1)``, eq. 3); at test time ``s = s_max``;
- after task t the cumulative attention ``a^{<=t} = max(a^t, a^{<=t-1})`` records the units used
  so far, and while learning later tasks the gradient of the weight between unit i and input j
  of layer l is multiplied by ``1 - min(a_{l,i}^{<t}, a_{l-1,j}^{<t})`` (eq. 2; the input layer
  counts as fully used, a bias by ``1 - a_{l,i}^{<t}``), so units of earlier tasks are not moved.
  For a convolution i is the output channel and j the input channel, for every kernel position;
  a Linear layer reading flattened feature maps takes j's channel at each of its positions;
- the loss adds ``c * sum a^t (1 - a^{<t}) / sum (1 - a^{<t})`` over all gated units (eq. 5),
  which keeps each task's mask sparse and leaves capacity for later tasks;
- the embedding's gradient is compensated for the annealing:
  ``q' = s_max (cosh(s e) + 1) / (s (cosh(e) + 1)) q`` (eq. 6).

As numerical safeguards (not in the equations), ``s e`` is clipped to +-50 inside ``cosh`` and
embeddings to +-6 after each step (``sigmoid(400 * 6)`` is 1 in float32 anyway). Weights whose
gradient factor is exactly 0 (in float32 ``sigmoid(s_max e)`` is exactly 1 for e > 0.05) are also
written back after each step, so weight decay or carried-over Adam moments cannot move them.
The gates are binary up to float32 rounding, not exactly, so forgetting is near zero rather than
exactly zero. The output head is shared by all tasks (one row per output unit); a finished
task's rows are frozen. The paper's networks have no BatchNorm; the ConvNet's does, so a
channel's BatchNorm scale and shift are gated like its bias, and its running statistics are
written back with its frozen weights (else the new task's batches would renormalise an old
task's channels). MLP or ConvNet models: ``learner.model`` becomes a ``GatedNetwork``.
"""

from __future__ import annotations

import torch
from torch import nn

from forgetless import distributed
from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.architecture.common import (
    Block,
    GradientGate,
    expect_next_task,
    finished_units,
    head_row_scales,
    network_blocks,
)
from forgetless.strategies.base import Footprint, Strategy, tensor_bytes

COSH_CLIP, EMBEDDING_CLIP = 50.0, 6.0


class GatedNetwork(nn.Module):
    """An MLP or ConvNet whose hidden units (filters) are gated by per-task embeddings (one row
    of units per task). A task without an embedding (not yet trained, evaluated for forward
    transfer) is ungated."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(network_blocks(model, "hat"))  # the head last, not gated
        self.widths = [block.units for block in self.blocks[:-1]]
        self.embeddings = nn.ParameterList()  # one vector of sum(widths) per task

    def add_task(self) -> None:
        """Freeze the existing embeddings; add one for a new task (standard normal)."""
        for e in self.embeddings:
            e.requires_grad_(False)
        device = self.blocks[0].layer.weight.device
        self.embeddings.append(nn.Parameter(torch.randn(sum(self.widths), device=device)))

    def attention(self, task_ids: torch.Tensor, s: float) -> torch.Tensor:
        """Per sample, the gates of all hidden units, shape (batch, sum(widths))."""
        known = len(self.embeddings)
        table = torch.sigmoid(s * torch.stack(list(self.embeddings)))
        table = torch.cat([table, table.new_ones(1, table.shape[1])])  # row `known`: ungated
        return table[task_ids.clamp(max=known)]

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None,
                s: float = 400.0) -> torch.Tensor:
        h = x
        gates = None
        if task_ids is not None and len(self.embeddings):
            gates = self.attention(task_ids, s).split(self.widths, dim=1)
        for i, block in enumerate(self.blocks[:-1]):
            h = block(h)
            if gates is not None:  # (batch, units), broadcast over a feature map's positions
                h = h * gates[i].view(*gates[i].shape, *[1] * (h.ndim - 2))
        return self.blocks[-1](h)


def _weight_scales(block: Block, used_out: torch.Tensor, used_in: torch.Tensor) -> torch.Tensor:
    """eq. 2's ``1 - min(a_out, a_in)`` for every entry of ``block``'s weight."""
    weight = block.layer.weight
    if not block.convolutional:  # flattened maps: each input channel covers several positions
        used_in = used_in.repeat_interleave(weight.shape[1] // used_in.numel())
    kernel = (1,) * (weight.ndim - 2)  # a convolution's kernel positions share the scale
    pair = torch.minimum(used_out.view(-1, 1, *kernel), used_in.view(1, -1, *kernel))
    return (1 - pair).expand_as(weight)


@register("hat")
class HardAttentionToTheTask(Strategy):
    """Hard Attention to the Task: task embeddings gate hidden units; gradients to units used
    by earlier tasks are blocked (Serra and coauthors 2018; MLP or ConvNet)."""

    why_not_task_free = ("it adds a task's attention embedding when the task starts and records "
                         "the units the task used when it ends, which a task-free stream does "
                         "not announce; use er(fill=stream), er-ace or derpp, whose memories "
                         "fill from the stream.")

    serves_pretrained = False

    family = "architecture"
    scenarios = frozenset({"task"})
    needs_task_id = True
    stores_raw_data = False
    adds_parameters = True

    def __init__(self, s_max: float = 400.0, c: float = 0.75) -> None:
        """s_max: the largest gate scale (sharper gates; the paper's 400). c: strength of the
        sparsity regulariser (the paper's 0.75; larger leaves more units for later tasks)."""
        if not s_max > 1:
            raise ConfigurationError(f"hat: s_max must be > 1 (the paper uses 400), got {s_max!r}.")
        if not c >= 0:
            raise ConfigurationError(f"hat: c must be >= 0 (the paper uses 0.75), got {c!r}.")
        self.s_max, self.c = float(s_max), float(c)
        self.tasks_started = 0
        self._gate: GradientGate | None = None

    def setup(self, learner) -> None:
        super().setup(learner)
        learner.model = GatedNetwork(learner.model)
        self.used = torch.zeros(sum(self.network.widths), device=learner.device)  # a^{<t}

    @property
    def network(self) -> GatedNetwork:
        return self.learner.model

    def scale(self) -> float:
        """The gate scale s: annealed over the batches of each epoch in training, s_max else."""
        batches = self.learner.batches_per_epoch
        if not self.network.training or batches < 2:
            return self.s_max
        b = self.learner.step_in_task % batches
        return 1 / self.s_max + (self.s_max - 1 / self.s_max) * b / (batches - 1)

    def before_task(self, task) -> None:
        expect_next_task("hat", task, self.tasks_started)
        self.network.add_task()
        self.tasks_started += 1
        self._gate = self._make_gate()  # before the task's first forward pass moves BatchNorm

    def forward(self, x, task_ids):
        return self.network(x, task_ids, self.scale())

    def penalty(self, batch, logits):
        attention = torch.sigmoid(self.scale() * self.network.embeddings[-1])
        free = 1 - self.used
        return self.c * (attention * free).sum() / free.sum().clamp_min(1e-12)

    def _make_gate(self) -> GradientGate:
        blocks = self.network.blocks
        used = [torch.ones(blocks[0].input_units, device=self.used.device),
                *self.used.split(self.network.widths)]
        params, scales = [], []
        for i, block in enumerate(blocks[:-1]):
            unit_scale = 1 - used[i + 1]  # of what belongs to one unit: bias, BatchNorm
            params += [block.layer.weight, block.layer.bias]
            scales += [_weight_scales(block, used[i + 1], used[i]), unit_scale]
            if block.norm is not None:
                norm = block.norm
                params += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
                scales += [unit_scale] * 4
        head = blocks[-1].layer
        head_scales = head_row_scales(head, finished_units(self.learner, self.tasks_started - 1))
        params += [head.weight, head.bias]
        scales += [head_scales["weight"], head_scales["bias"]]
        return GradientGate(params, scales)

    def before_step(self) -> None:
        self._gate.scale_gradients()
        embedding, s = self.network.embeddings[-1], self.scale()
        if embedding.grad is not None:
            e = embedding.detach()
            numerator = torch.cosh((s * e).clamp(-COSH_CLIP, COSH_CLIP)) + 1
            embedding.grad.mul_(self.s_max / s * numerator / (torch.cosh(e) + 1))

    def after_step(self) -> None:
        self._gate.restore()
        with torch.no_grad():
            self.network.embeddings[-1].clamp_(-EMBEDDING_CLIP, EMBEDDING_CLIP)

    def after_task(self, task) -> None:
        with torch.no_grad():
            attention = torch.sigmoid(self.s_max * self.network.embeddings[-1])
            self.used = torch.maximum(self.used, attention)
        distributed.check_identical([self.used], f"hat's used units after task {task.task_id}")

    def state_dict(self) -> dict:
        return {"tasks_started": self.tasks_started, "used": self.used.clone()}

    def load_state_dict(self, state: dict) -> None:
        if len(self.network.embeddings) > state["tasks_started"]:
            raise ConfigurationError("hat: load the checkpoint into a freshly built learner.")
        while len(self.network.embeddings) < state["tasks_started"]:
            self.network.add_task()
        self.tasks_started = state["tasks_started"]
        self.used = state["used"].clone().to(self.learner.device)
        self._gate = None

    def footprint(self) -> Footprint:
        embeddings = list(self.network.embeddings)
        held = tensor_bytes(embeddings, self.used, self._gate.tensors() if self._gate else [])
        return Footprint(held, stores_raw_data=False,
                         parameters_added=sum(e.numel() for e in embeddings))
