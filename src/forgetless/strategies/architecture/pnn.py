"""Progressive Neural Networks (Rusu et al. 2016, "Progressive Neural Networks", arXiv:1606.04671).

Each task gets a new column (a fresh copy of the model's layers); every earlier column is frozen.
Column k's layer i also reads the previous layer of every earlier column through an *adapter*
(the paper's eq. 2 with non-linear lateral connections)::

    h_i^(k) = f( W_i^(k) h_{i-1}^(k) + U_i^(k) relu( V_i^(k) (alpha_i^(k) [h_{i-1}^(<k)]) ) )

``[h^(<k)]`` is the concatenation of the earlier columns' activations, ``alpha`` a learned
scalar initialised to a small random value, ``V`` projects the concatenation down to
``adapter_width`` units or channels (the paper: the width of the layer it reads, the default
here) and ``U`` maps it into the layer, with the layer's own shape. On an MLP ``V`` and ``U`` are
Linear. On the ConvNet, as the paper does for its convolutional columns (Atari), ``V`` is a 1x1
convolution that reduces the earlier columns' feature maps channel-wise; ``U`` is a convolution
with the target layer's kernel, stride and padding, or, into the first Linear layer after the
feature maps, a Linear layer on the flattened reduced maps. The sum passes through the
layer's own BatchNorm, ReLU and pooling (``f``). The first layer reads only the input.

Frozen columns never change (their BatchNorm layers stay in eval mode, keeping their task's
statistics), so backward transfer is exactly zero; the cost is growth: a column per task plus
adapters whose ``V`` grows with the number of earlier columns, so the parameter count is
quadratic in the number of tasks (``benchmarks/architecture.md``). At test time the task id
picks the column, which is why the scenario must be task-incremental. The columns and adapters
live in ``nn.ModuleList``s inside ``learner.model`` (a ``ProgressiveColumns`` that replaces the
model it was given), so checkpoints carry them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetless import distributed
from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.architecture.common import Block, expect_next_task, network_blocks
from forgetless.strategies.base import Footprint, Strategy, tensor_bytes


class Adapter(nn.Module):
    """Lateral connection into ``target`` from the outputs of ``source`` (the layer before it)
    in ``earlier`` columns: ``U relu(V (alpha * h))``, convolutional where ``h`` is feature maps."""

    def __init__(self, earlier: int, source: Block, target: Block, width: int | None) -> None:
        super().__init__()
        width = width or source.units
        self.alpha = nn.Parameter(torch.empty(()).uniform_(0.0, 0.1))
        joined = earlier * source.units
        self.project = (nn.Conv2d(joined, width, 1) if source.convolutional  # V
                        else nn.Linear(joined, width))
        layer = target.layer
        if target.convolutional:  # U
            self.lateral = nn.Conv2d(width, layer.out_channels, layer.kernel_size, layer.stride,
                                     layer.padding, bias=False)
        else:  # a Linear layer reads the flattened maps: in_features / channels positions each
            positions = layer.in_features // source.units
            self.lateral = nn.Linear(width * positions, layer.out_features, bias=False)

    def forward(self, earlier_activations: list[torch.Tensor]) -> torch.Tensor:
        joined = torch.cat(earlier_activations, dim=1)
        reduced = F.relu(self.project(self.alpha * joined))
        if isinstance(self.lateral, nn.Linear):
            reduced = reduced.flatten(1)
        return self.lateral(reduced)


class ProgressiveColumns(nn.Module):
    """The columns of a progressive network built from an MLP or ConvNet (which becomes
    column 0).

    ``forward(x, task_ids)`` answers each sample with its task's column; a task without a
    column yet (one not trained, evaluated for forward transfer) is answered by the newest."""

    def __init__(self, first: nn.Module, adapter_width: int | None = None) -> None:
        super().__init__()
        self.adapter_width = adapter_width
        self.columns = nn.ModuleList([nn.ModuleList(network_blocks(first, "pnn"))])
        self.adapters = nn.ModuleList([nn.ModuleList()])  # column 0 reads no earlier column

    def add_column(self) -> None:
        """Freeze every existing column and adapter; add a fresh column with its adapters."""
        for p in self.parameters():
            p.requires_grad_(False)
        earlier, template = len(self.columns), self.columns[0]
        self.columns.append(nn.ModuleList(block.fresh_copy() for block in template))
        device = next(template.parameters()).device
        self.adapters.append(nn.ModuleList(
            Adapter(earlier, source, target, self.adapter_width)
            for source, target in zip(template, template[1:], strict=False)  # i reads i-1
        ).to(device))
        self.train(self.training)  # the column just frozen goes to eval mode

    def train(self, mode: bool = True) -> ProgressiveColumns:
        """Only the newest column and its adapters train: a frozen column's BatchNorm keeps the
        statistics of its own task instead of updating them on the new task's batches."""
        super().train(mode)
        for frozen in (*self.columns[:-1], *self.adapters[:-1]):
            frozen.eval()
        return self

    def column_outputs(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """Logits of the first ``count`` columns, shape (count, batch, outputs)."""
        hidden = [x] * count
        for i in range(len(self.columns[0])):
            new = []
            for k in range(count):
                block = self.columns[k][i]
                z = block.pre_activation(hidden[k])
                if i > 0 and k > 0:
                    z = z + self.adapters[k][i - 1](hidden[:k])
                new.append(block.finish(z))
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
    earlier column; earlier columns frozen (Rusu and coauthors 2016; MLP or ConvNet)."""

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

    def after_task(self, task) -> None:
        """In a process group: refuse to go on if the ranks' columns differ (the count, and
        the task's column and adapters; the weights before them were checked already)."""
        network = self.network
        held = [torch.tensor([float(len(network.columns))]),
                *network.columns[-1].state_dict().values(),
                *network.adapters[-1].state_dict().values()]
        distributed.check_identical(held, f"pnn's column for task {task.task_id}")

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
