"""Pieces the architecture strategies share: the layers of an MLP or ConvNet as ``Block``s, the
one-task-at-a-time rule, and ``GradientGate``, which scales gradients per entry and keeps frozen
entries bit-identical."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from forgetless.errors import ConfigurationError, ScenarioError


class Block(nn.Module):
    """One layer of a forgetless MLP or ConvNet as its forward pass applies it:
    ``pool(relu(norm(layer(h))))``, a Linear layer flattening its input first.

    ``pre_activation`` and ``finish`` are the two halves, so a PNN column can add its lateral
    connections in between; the output head is a Block without ReLU, norm or pooling."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, norm: nn.Module | None = None,
                 pool: nn.Module | None = None, activation: bool = True) -> None:
        super().__init__()
        self.layer, self.norm, self.pool, self.activation = layer, norm, pool, activation

    @property
    def convolutional(self) -> bool:
        return isinstance(self.layer, nn.Conv2d)

    @property
    def units(self) -> int:
        """Output units of a Linear layer, output channels (filters) of a convolution."""
        return self.layer.out_channels if self.convolutional else self.layer.out_features

    @property
    def input_units(self) -> int:
        return self.layer.in_channels if self.convolutional else self.layer.in_features

    def pre_activation(self, h: torch.Tensor) -> torch.Tensor:
        return self.layer(h if self.convolutional else h.flatten(1))

    def finish(self, z: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            z = self.norm(z)
        if self.activation:
            z = F.relu(z)
        return z if self.pool is None else self.pool(z)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.finish(self.pre_activation(h))

    def fresh_copy(self) -> Block:
        """The same layer shapes, re-initialised (PyTorch's own schemes, BatchNorm statistics
        reset) and trainable."""
        fresh = copy.deepcopy(self)
        for module in fresh.modules():
            if module is not fresh and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for p in fresh.parameters():
            p.requires_grad_(True)
        return fresh


#: Modules of a forgetless body that do not start a Block: the ReLU is the Block's own; Flatten
#: is done by the Linear layer that follows.
_PASS_THROUGH = (nn.ReLU, nn.Flatten)


def network_blocks(model: nn.Module, strategy: str) -> list[Block]:
    """The layers of a forgetless MLP or ConvNet as Blocks (sharing the model's own modules),
    hidden layers first and the output head last."""
    from forgetless.models.networks import MLP, ConvNet

    if not isinstance(model, (MLP, ConvNet)):
        problem = (f"{strategy} builds on the layers of an MLP or a ConvNet but the model is a "
                   f"{type(model).__name__}")
        raise ConfigurationError(
            f"{problem}; build it with build_model('mlp', ...) or build_model('convnet', ...).",
            cli=f"{problem}; use --model mlp or --model convnet.")
    blocks: list[Block] = []
    for module in model.body:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            blocks.append(Block(module))
        elif isinstance(module, nn.BatchNorm2d) and blocks and blocks[-1].norm is None:
            blocks[-1].norm = module
        elif isinstance(module, nn.MaxPool2d) and blocks and blocks[-1].pool is None:
            blocks[-1].pool = module
        elif not isinstance(module, _PASS_THROUGH):
            raise ConfigurationError(
                f"{strategy} does not know the {type(module).__name__} layer in this "
                f"{type(model).__name__}; build the model with build_model().")
    return [*blocks, Block(model.head, activation=False)]


def expect_next_task(strategy: str, task, tasks_started: int) -> None:
    """These strategies give each task its own parameters and freeze them when the next task
    starts, so tasks must arrive once each, in order."""
    if task.task_id != tasks_started:
        raise ScenarioError(
            f"{strategy} learns each task once, in order: the next task must have id "
            f"{tasks_started}, got {task.task_id}. The parameters of a finished task are frozen; "
            "to train a task again start a new learner."
        )


def finished_units(learner, task_id: int) -> torch.Tensor:
    """Output units that belong to tasks before ``task_id`` (their head rows are frozen)."""
    units = learner.output_mask.task_units[:task_id]
    return units.any(0) if units.shape[0] else torch.zeros(units.shape[1], dtype=torch.bool)


def head_row_scales(head: nn.Linear, frozen_units: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient scales (1 trainable, 0 frozen) for the head's weight and bias, by name: a
    finished task's output units keep their rows."""
    rows = (~frozen_units).to(head.weight.device, head.weight.dtype)
    scales = {"weight": rows[:, None].expand_as(head.weight).clone()}
    if head.bias is not None:
        scales["bias"] = rows.clone()
    return scales


class GradientGate:
    """Multiplies each parameter's gradient by a fixed tensor of scales and keeps the entries
    whose scale is 0 exactly as they were (buffers too, such as BatchNorm's running statistics,
    which have no gradient but change in every training forward pass).

    Zeroing a gradient is not enough to freeze a weight: Adam moves a weight whose gradient is
    zero while its moment estimates are not (optimiser state kept across tasks), and weight decay
    moves every weight. So ``restore`` writes the frozen entries back after each step from a
    snapshot taken when the gate was made (before the first step it guards)."""

    def __init__(self, params: list[torch.Tensor], scales: list[torch.Tensor]) -> None:
        self.params = list(params)
        self.scales = [s.detach().to(p.device, p.dtype) for p, s in zip(params, scales,
                                                                          strict=True)]
        self.keep = [(s != 0).to(s.dtype) for s in self.scales]
        # The frozen entries' values, zero where trainable: restore is p * keep + frozen.
        self.frozen = [p.detach() * (1 - k) for p, k in zip(self.params, self.keep, strict=True)]

    @torch.no_grad()
    def scale_gradients(self) -> None:
        pairs = [(p.grad, s) for p, s in zip(self.params, self.scales, strict=True)
                 if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [s for _, s in pairs])

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_mul_(self.params, self.keep)
        torch._foreach_add_(self.params, self.frozen)

    def tensors(self) -> list[torch.Tensor]:
        """What the gate holds (for footprints)."""
        return self.scales + self.keep + self.frozen
