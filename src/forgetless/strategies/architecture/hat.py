"""Hard Attention to the Task (Serra, Suris, Miron & Karatzoglou 2018, "Overcoming Catastrophic
Forgetting with Hard Attention to the Task", ICML).

Each task t has a learned embedding ``e_l^t`` per hidden layer; it gates the layer's units with
``a_l^t = sigmoid(s * e_l^t)``, so a task uses a (near-binary) subset of units. Following the
paper:

- the scale ``s`` is annealed within each epoch from ``1/s_max`` to ``s_max`` (batch b of B:
  ``s = 1/s_max + (s_max - 1/s_max)(b - 1)/(B - 1)``, eq. 3); at test time ``s = s_max``;
- after task t the cumulative attention ``a^{<=t} = max(a^t, a^{<=t-1})`` records the units used
  so far, and while learning later tasks the gradient of the weight between unit i and input j
  of layer l is multiplied by ``1 - min(a_{l,i}^{<t}, a_{l-1,j}^{<t})`` (eq. 2; the input layer
  counts as fully used, a bias by ``1 - a_{l,i}^{<t}``), so units of earlier tasks are not moved;
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
task's rows are frozen. MLP models only: ``learner.model`` becomes a ``GatedMLP``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.architecture.common import (
    GradientGate,
    expect_next_task,
    finished_units,
    head_row_scales,
    mlp_layers,
)
from forgetless.strategies.base import Footprint, Strategy, tensor_bytes

COSH_CLIP, EMBEDDING_CLIP = 50.0, 6.0


class GatedMLP(nn.Module):
    """An MLP whose hidden units are gated by per-task embeddings (one row of units per task).

    A task without an embedding (not yet trained, evaluated for forward transfer) is ungated."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(mlp_layers(mlp, "hat"))
        self.widths = [layer.out_features for layer in self.layers[:-1]]
        self.embeddings = nn.ParameterList()  # one vector of sum(widths) per task

    def add_task(self) -> None:
        """Freeze the existing embeddings; add one for a new task (standard normal)."""
        for e in self.embeddings:
            e.requires_grad_(False)
        device = self.layers[0].weight.device
        self.embeddings.append(nn.Parameter(torch.randn(sum(self.widths), device=device)))

    def attention(self, task_ids: torch.Tensor, s: float) -> torch.Tensor:
        """Per sample, the gates of all hidden units, shape (batch, sum(widths))."""
        known = len(self.embeddings)
        table = torch.sigmoid(s * torch.stack(list(self.embeddings)))
        table = torch.cat([table, table.new_ones(1, table.shape[1])])  # row `known`: ungated
        return table[task_ids.clamp(max=known)]

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None,
                s: float = 400.0) -> torch.Tensor:
        h = x.flatten(1)
        gates = None
        if task_ids is not None and len(self.embeddings):
            gates = self.attention(task_ids, s).split(self.widths, dim=1)
        for i, layer in enumerate(self.layers[:-1]):
            h = F.relu(layer(h))
            if gates is not None:
                h = h * gates[i]
        return self.layers[-1](h)


@register("hat")
class HardAttentionToTheTask(Strategy):
    """Hard Attention to the Task: task embeddings gate hidden units; gradients to units used
    by earlier tasks are blocked (Serra and coauthors 2018; MLP models only)."""

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
        learner.model = GatedMLP(learner.model)
        self.used = torch.zeros(sum(self.network.widths), device=learner.device)  # a^{<t}

    @property
    def network(self) -> GatedMLP:
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
        self._gate = None

    def forward(self, x, task_ids):
        return self.network(x, task_ids, self.scale())

    def penalty(self, batch, logits):
        attention = torch.sigmoid(self.scale() * self.network.embeddings[-1])
        free = 1 - self.used
        return self.c * (attention * free).sum() / free.sum().clamp_min(1e-12)

    def _make_gate(self) -> GradientGate:
        layers = self.network.layers
        used = [torch.ones(layers[0].in_features, device=self.used.device),
                *self.used.split(self.network.widths)]
        params, scales = [], []
        for i, layer in enumerate(layers[:-1]):
            params += [layer.weight, layer.bias]
            scales += [1 - torch.minimum(used[i + 1][:, None], used[i][None, :]), 1 - used[i + 1]]
        head = layers[-1]
        head_scales = head_row_scales(head, finished_units(self.learner, self.tasks_started - 1))
        params += [head.weight, head.bias]
        scales += [head_scales["weight"], head_scales["bias"]]
        return GradientGate(params, scales)

    def before_step(self) -> None:
        if self._gate is None:
            self._gate = self._make_gate()
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
