"""Progressive Neural Networks (Rusu et al. 2016, "Progressive Neural Networks", arXiv:1606.04671).

Each task gets a new column (a fresh copy of the MLP's layers); every earlier column is frozen.
Column k's layer i also reads the previous layer of every earlier column through an *adapter*
(the paper's eq. 2 with non-linear lateral connections)::

    h_i^(k) = relu( W_i^(k) h_{i-1}^(k) + U_i^(k) relu( V_i^(k) (alpha_i^(k) [h_{i-1}^(<k)]) ) )

``[h^(<k)]`` is the concatenation of the earlier columns' activations, ``alpha`` a learned
scalar initialised to a small random value, ``V`` projects the concatenation down to
``adapter_width`` units (the paper: the width of the layer it reads, the default here) and ``U``
maps it into the layer. The first hidden layer reads only the input. Frozen columns never change,
so backward transfer is exactly zero; the cost is growth: a column per task plus adapters whose
``V`` grows with the number of earlier columns, so the parameter count is quadratic in the number
of tasks. At test time the task id picks the column, which is why the scenario must be
task-incremental. The columns and adapters live in ``nn.ModuleList``s inside ``learner.model``
(a ``ProgressiveColumns`` that replaces the MLP it was given), so checkpoints carry them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.architecture.common import expect_next_task, mlp_layers
from forgetless.strategies.base import Footprint, Strategy, tensor_bytes


class Adapter(nn.Module):
    """Lateral connection into one layer of a column from the previous layer of ``earlier``
    columns: ``U relu(V (alpha * h))``."""

    def __init__(self, earlier: int, source_width: int, width: int, target_width: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(()).uniform_(0.0, 0.1))
        self.project = nn.Linear(earlier * source_width, width)  # V
        self.lateral = nn.Linear(width, target_width, bias=False)  # U

    def forward(self, earlier_activations: list[torch.Tensor]) -> torch.Tensor:
        joined = torch.cat(earlier_activations, dim=1)
        return self.lateral(F.relu(self.project(self.alpha * joined)))


class ProgressiveColumns(nn.Module):
    """The columns of a progressive network built from an MLP (which becomes column 0).

    ``forward(x, task_ids)`` answers each sample with its task's column; a task without a
    column yet (one not trained, evaluated for forward transfer) is answered by the newest."""

    def __init__(self, first: nn.Module, adapter_width: int | None = None) -> None:
        super().__init__()
        layers = mlp_layers(first, "pnn")
        self.sizes = [(layer.in_features, layer.out_features) for layer in layers]
        self.adapter_width = adapter_width
        self.columns = nn.ModuleList([nn.ModuleList(layers)])
        self.adapters = nn.ModuleList([nn.ModuleList()])  # column 0 reads no earlier column

    def add_column(self) -> None:
        """Freeze every existing column and adapter; add a fresh column with its adapters."""
        for p in self.parameters():
            p.requires_grad_(False)
        earlier = len(self.columns)
        device = self.columns[0][0].weight.device
        self.columns.append(nn.ModuleList(nn.Linear(i, o) for i, o in self.sizes).to(device))
        self.adapters.append(nn.ModuleList(
            Adapter(earlier, source, self.adapter_width or source, target)
            for source, target in self.sizes[1:]  # layer i reads layer i-1's outputs
        ).to(device))

    def column_outputs(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """Logits of the first ``count`` columns, shape (count, batch, outputs)."""
        inputs = x.flatten(1)
        hidden = [inputs] * count
        last = len(self.sizes) - 1
        for i in range(len(self.sizes)):
            new = []
            for k in range(count):
                z = self.columns[k][i](hidden[k])
                if i > 0 and k > 0:
                    z = z + self.adapters[k][i - 1](hidden[:k])
                new.append(z if i == last else F.relu(z))
            hidden = new
        return torch.stack(hidden)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        newest = len(self.columns) - 1
        if task_ids is None:
            return self.column_outputs(x, newest + 1)[newest]
        column = task_ids.clamp(max=newest)
        outputs = self.column_outputs(x, int(column.max()) + 1)
        return outputs[column, torch.arange(x.shape[0], device=x.device)]


@register("pnn")
class ProgressiveNeuralNetworks(Strategy):
    """Progressive Neural Networks: a new column per task with lateral adapters from every
    earlier column; earlier columns frozen (Rusu and coauthors 2016; MLP models only)."""

    why_not_task_free = ("it adds a column for each task when the task starts (and chooses a "
                         "column by task id at test time), which a task-free stream does not "
                         "announce; use er(fill=stream), er-ace or derpp, whose memories fill "
                         "from the stream.")

    serves_pretrained = False


    family = "architecture"
    scenarios = frozenset({"task"})
    needs_task_id = True
    stores_raw_data = False
    adds_parameters = True

    def __init__(self, adapter_width: int | None = None) -> None:
        """adapter_width: units of each adapter's projection ``V`` of the earlier columns'
        activations; None (the paper's choice) uses the width of the layer it reads. Smaller
        values slow the quadratic growth of the adapters."""
        if adapter_width is not None and (not isinstance(adapter_width, int) or adapter_width < 1):
            raise ConfigurationError(
                f"pnn: adapter_width must be a positive whole number or unset, got "
                f"{adapter_width!r} (e.g. --set adapter_width=64)."
            )
        self.adapter_width = adapter_width
        self.tasks_started = 0

    def setup(self, learner) -> None:
        super().setup(learner)
        learner.model = ProgressiveColumns(learner.model, self.adapter_width)

    @property
    def network(self) -> ProgressiveColumns:
        return self.learner.model

    def before_task(self, task) -> None:
        expect_next_task("pnn", task, self.tasks_started)
        if self.tasks_started > 0:  # task 0 trains column 0, the model it was given
            self.network.add_column()
        self.tasks_started += 1

    def forward(self, x, task_ids):
        return self.network(x, task_ids)

    def state_dict(self) -> dict:
        return {"tasks_started": self.tasks_started}

    def load_state_dict(self, state: dict) -> None:
        columns = max(1, state["tasks_started"])
        if len(self.network.columns) > columns:
            raise ConfigurationError(
                f"pnn: this learner already has {len(self.network.columns)} columns, the "
                f"checkpoint {columns}; load it into a freshly built learner."
            )
        while len(self.network.columns) < columns:
            self.network.add_column()
        self.tasks_started = state["tasks_started"]

    def footprint(self) -> Footprint:
        added = [*self.network.columns[1:], *self.network.adapters]
        count = sum(p.numel() for module in added for p in module.parameters())
        return Footprint(tensor_bytes(*added), stores_raw_data=False, parameters_added=count)
