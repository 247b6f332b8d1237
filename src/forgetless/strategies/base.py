"""The strategy interface: a few hooks that the one training loop (the Learner) calls.

A strategy with no hooks is naive fine-tuning. A strategy never copies the loop: replay adds
samples in ``extend_batch``, a regulariser returns a ``penalty``, a projection edits gradients in
``before_step``, an architecture grows the model in ``before_task``. Strategies compose with
``+``: ``EWC() + ExperienceReplay()`` calls each hook of each part in order.

Order of calls for one task (``Composite`` keeps it for every part, left to right)::

    training_data(task)? -> before_task(task)
    per step: extend_batch(batch) -> forward -> loss + penalty(batch, logits) -> backward
              -> before_step() -> optimiser step -> after_step()
    after_task(task) -> evaluation (forward or predict)

Parts that anchor parameters (EWC, SI, MAS, L2) run their ``after_task`` after every other
part's, whatever their place in the sum: an anchor is taken of the weights the task ends with,
after PackNet has pruned and fine-tuned them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:  # pragma: no cover
    from forgetless.data.stream import Task
    from forgetless.learner import Learner

ALL_SCENARIOS = frozenset({"task", "domain", "class"})
#: Both objectives (``forgetless.objectives``): for strategies that serve a language model too.
ANY_OBJECTIVE = frozenset({"classification", "language_modelling"})


@dataclass
class Batch:
    """A training batch. ``task_ids`` says which task each sample belongs to (replay mixes them);
    ``extras`` carries what a strategy attaches, e.g. stored logits."""

    x: torch.Tensor
    y: torch.Tensor
    task_ids: torch.Tensor
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def concat(self, other: Batch) -> Batch:
        """This batch followed by ``other`` (extras are not merged: they describe one part)."""
        return Batch(torch.cat([self.x, other.x]), torch.cat([self.y, other.y]),
                     torch.cat([self.task_ids, other.task_ids]), dict(self.extras))


@dataclass
class TrainingData:
    """What a task trains on: usually the task's own data, or more for joint / cumulative."""

    x: torch.Tensor
    y: torch.Tensor
    task_ids: torch.Tensor


@dataclass(frozen=True)
class Footprint:
    """What a strategy costs beyond the plain model."""

    bytes_held: int = 0  # buffers, anchors, importances, generators, frozen copies
    stores_raw_data: bool = False
    parameters_added: int = 0

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(self.bytes_held + other.bytes_held,
                         self.stores_raw_data or other.stores_raw_data,
                         self.parameters_added + other.parameters_added)


def tensor_bytes(*objects) -> int:
    """Bytes of every tensor in (nested lists / tuples / dicts of) tensors or modules."""
    total = 0
    for obj in objects:
        if isinstance(obj, torch.Tensor):
            total += obj.numel() * obj.element_size()
        elif isinstance(obj, torch.nn.Module):
            total += tensor_bytes(*obj.state_dict().values())
        elif isinstance(obj, dict):
            total += tensor_bytes(*obj.values())
        elif isinstance(obj, (list, tuple)):
            total += tensor_bytes(*obj)
    return total


@contextlib.contextmanager
def modes_restored(model: torch.nn.Module):
    """Every module's own train/eval flag is restored after the body, even when it raises;
    modules the body added (a new PNN column) take the mode the model itself had."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        model.train(modes[0][1])
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """Eval mode for the duration; every module's own train/eval flag is restored after, even
    when the body raises."""
    with modes_restored(model):
        model.eval()
        yield


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` in eval mode with gradients off: the teacher of distillation (LwF,
    generative replay's labeller)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class Strategy:
    """Base class of every strategy; each hook's default does nothing.

    Subclasses declare on the class: ``name`` (set by ``@register``), ``family``, the
    ``scenarios`` they serve meaningfully, ``needs_task_id`` at test time and
    ``stores_raw_data``. Hyper-parameters are keyword arguments of ``__init__``.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "baseline"
    scenarios: ClassVar[frozenset[str]] = ALL_SCENARIOS
    needs_task_id: ClassVar[bool] = False
    stores_raw_data: ClassVar[bool] = False
    #: True for strategies that add trainable parameters per task (new columns, embeddings).
    adds_parameters: ClassVar[bool] = False
    #: True for strategies that keep one anchor per trainable parameter across tasks.
    anchors_parameters: ClassVar[bool] = False
    #: True for strategies that train on tasks before they arrive (``joint``): no FWT.
    sees_future: ClassVar[bool] = False
    #: True for strategies that train over the whole head in class-incremental runs instead of
    #: the classes seen so far (``models.heads``); every other scenario masks as usual.
    trains_whole_head: ClassVar[bool] = False
    #: False for strategies that never train the model (frozen-feature learners: NCM, SLDA,
    #: RanPAC): the Learner takes no optimiser steps; the task hooks and ``predict`` still run.
    trains_model: ClassVar[bool] = True
    #: Methods designed for a pretrained model (adapters, weight merging, frozen features): the
    #: default comparison on the image benchmarks, which train from scratch, leaves them out
    #: (``--strategies`` still runs them); a text benchmark's includes them.
    meant_for_pretrained: ClassVar[bool] = False
    #: False for strategies built on the layers of forgetless's own MLP or images (PNN, PackNet,
    #: HAT, generative replay, GDumb's re-initialisation): a text benchmark's default
    #: comparison leaves them out.
    serves_pretrained: ClassVar[bool] = True
    #: Hyper-parameters that change which published method this is: a non-default value is
    #: shown in the strategy's label in every table and report (``agem(memory_strength=0.5)``).
    labelled_hyperparameters: ClassVar[tuple[str, ...]] = ()
    #: The objectives (``forgetless.objectives``) the strategy serves meaningfully; the Learner
    #: refuses the others, saying why (``why_not_objective``).
    objectives: ClassVar[frozenset[str]] = frozenset({"classification"})
    #: Why a language model is refused, for strategies that do not serve one.
    why_not_objective: ClassVar[str] = ""
    #: For strategies whose boundary hooks carry the method: what they do at a task boundary
    #: and what to use instead, one sentence (``boundary_reason``).
    why_not_task_free: ClassVar[str] = ""

    learner: Learner

    def __init_subclass__(cls, **kwargs) -> None:
        """Record each subclass's constructor arguments (defaults applied) as its
        hyper-parameters, so the run's config and run id name every value that was used."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if type(self).__init__ is recording_init:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                self._hyperparameters = {k: v for k, v in list(bound.arguments.items())[1:]
                                         if signature.parameters[k].kind
                                         is inspect.Parameter.KEYWORD_ONLY
                                         or signature.parameters[k].kind
                                         is inspect.Parameter.POSITIONAL_OR_KEYWORD}
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def setup(self, learner: Learner) -> None:
        """Called once when a Learner adopts the strategy."""
        self.learner = learner

    def training_data(self, task: Task) -> TrainingData | None:
        """Replace what the task trains on (joint, cumulative); None keeps the task's data."""
        return None

    def before_task(self, task: Task) -> None:
        """Before training on ``task`` (may grow or wrap the model)."""

    def extend_batch(self, batch: Batch) -> Batch:
        """Add remembered or generated samples to the batch."""
        return batch

    def penalty(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor | None:
        """A term added to the loss (regularisers, distillation). ``logits`` are unmasked."""
        return None

    def before_step(self) -> None:
        """After backward, before the optimiser step: mask, project or record gradients."""

    def after_step(self) -> None:
        """After the optimiser step."""

    def after_task(self, task: Task) -> None:
        """After training on ``task``, before evaluation."""

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor | None:
        """Logits for ``x`` when the model must be called differently (a PNN column chosen by
        task id). ``task_ids`` is None at test time unless the scenario gives the task id."""
        return None

    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor | None:
        """Predicted labels when classification is not the argmax of the logits (iCaRL)."""
        return None

    def released_weights(self) -> dict[str, torch.Tensor]:
        """Per parameter name, a boolean mask of the entries this strategy emptied for later
        tasks (PackNet's pruned weights): what they hold carries no knowledge, so a part that
        anchors weights gives them no importance. Not a loop hook: anchoring parts ask for it."""
        return {}

    def state_dict(self) -> dict:
        """Everything needed to resume or continue learning later (tensors, numbers, lists)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""

    def footprint(self) -> Footprint:
        return Footprint(stores_raw_data=self.stores_raw_data)

    def boundary_reason(self) -> str | None:
        """Why this strategy cannot learn from a task-free stream (one whose task boundaries
        the learner is not told: ``forgetless.data.task_free``), or None when it can. In a
        task-free fit ``training_data``, ``before_task`` and ``after_task`` are never called
        (``learner.task_free`` is True), so by default a strategy that implements one of them
        needs boundaries, for the reason its class states in ``why_not_task_free``; a strategy
        whose boundary hooks are optional (ER filling its buffer from the stream) or that
        consolidates on its own clock (SI, Online EWC) overrides this."""
        hooks = [h for h in BOUNDARY_HOOKS if overrides(self, h)]
        if not hooks:
            return None
        if self.why_not_task_free:
            return self.why_not_task_free
        return (f"its {' and '.join(hooks)} act{'s' if len(hooks) == 1 else ''} at task "
                "boundaries, which a task-free stream does not announce.")

    def hyperparameters(self) -> dict:
        """The constructor's keyword arguments as set (for the run's config and run id)."""
        return dict(getattr(self, "_hyperparameters", {}))

    def __add__(self, other: Strategy) -> Strategy:
        from forgetless.strategies.composite import Composite

        return Composite(self, other)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


#: The hooks a task-free fit never calls (``Strategy.boundary_reason``).
BOUNDARY_HOOKS = ("training_data", "before_task", "after_task")


def overrides(strategy: Strategy, hook: str) -> bool:
    """Whether ``strategy`` implements ``hook`` itself (the loop skips hooks nobody uses)."""
    return getattr(type(strategy), hook) is not getattr(Strategy, hook)
