"""What the parameter-efficient strategies share: checking LoRA options, which layers get
adapters by default, injecting a named adapter through PEFT, which parameters train, which
adapters are applied, and what the adapters cost.

``peft.inject_adapter_in_model`` works on any ``nn.Module`` (no ``PeftModel`` wrapper): each
target layer becomes a PEFT ``LoraLayer`` that keeps the original as ``base_layer`` and holds one
``lora_A`` / ``lora_B`` pair per named adapter. The module tree changes in place, so the Learner
keeps the same model object and a checkpoint's keys name the adapters
(``body.1.lora_A.task0.weight``)."""

from __future__ import annotations

import warnings

from torch import nn

from forgetless.errors import ConfigurationError
from forgetless.strategies.architecture.common import expect_next_task
from forgetless.strategies.base import Footprint, Strategy, tensor_bytes

#: Attention projections adapted by default, first match wins: Llama-style, then BERT-style.
#: Hu et al. (2022, section 7.1) adapt the query and value projections.
ATTENTION_TARGETS = (("q_proj", "v_proj"), ("query", "value"))
#: Families whose strategies rebuild or wrap the model's layers themselves.
LAYER_OWNERS = ("architecture", "parameter-efficient")
#: Strategies that re-initialise every weight at each task (GDumb trains a fresh model on its
#: memory), which would overwrite the pretrained weights the adapters are meant to leave alone.
REINITIALISES = ("gdumb",)


def require_peft(strategy: str):
    """The ``peft`` module, or a one-line error saying how to install it."""
    try:
        import peft
    except ModuleNotFoundError:
        raise ConfigurationError(
            f"{strategy} needs the peft package, which is not installed; install it with "
            "pip install -e '.[llm]' (or pip install 'peft>=0.21,<1').") from None
    return peft


def check_lora_options(strategy: str, r, alpha, dropout, target_modules) -> tuple:
    """(r, alpha, dropout, targets) checked; ``targets`` a tuple of names, or None (the
    default rule). ``target_modules`` may be a list of names or one comma-separated string."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigurationError(f"{strategy}: r (the adapters' rank) must be a positive whole "
                                 f"number, got {r!r} (e.g. --set r=8).")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ConfigurationError(f"{strategy}: alpha must be a number > 0 (the update is scaled "
                                 f"by alpha / r), got {alpha!r}.")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigurationError(f"{strategy}: dropout must be in [0, 1), got {dropout!r}.")
    if target_modules is None:
        return r, float(alpha), float(dropout), None
    names = target_modules.split(",") if isinstance(target_modules, str) else target_modules
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{strategy}: target_modules must be module names, e.g. "
                                 f"--set target_modules=q_proj,v_proj; got {target_modules!r}.")
    targets = tuple(n.strip() for n in names if n.strip())
    if not targets:
        raise ConfigurationError(f"{strategy}: target_modules names no module; leave it unset "
                                 "for the default rule or name some, e.g. q_proj,v_proj.")
    return r, float(alpha), float(dropout), targets


def classification_head(model: nn.Module) -> nn.Module | None:
    """The classification head ``model.head`` (the MLP's, the text encoder classifier's)."""
    head = getattr(model, "head", None)
    return head if isinstance(head, nn.Module) else None


def default_targets(model: nn.Module) -> tuple[str, ...]:
    """The modules that get adapters when none are named: every ``q_proj`` and ``v_proj``
    (Llama-style attention) when the model has them, else every ``query`` and ``value``
    (BERT-style), else every ``nn.Linear`` except the classification head (an MLP)."""
    names = [name for name, _ in model.named_modules()]
    for pair in ATTENTION_TARGETS:
        found = tuple(n for n in names if n.rpartition(".")[2] in pair)
        if found:
            return found
    head = classification_head(model)
    found = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Linear) and (
        head is None or m is not head))
    if not found:
        raise ConfigurationError(
            f"the model ({type(model).__name__}) has no attention projections and no Linear "
            "layer besides its head to put LoRA adapters on; name the layers with "
            "--set target_modules=NAME,NAME.")
    return found


def add_adapter(model: nn.Module, adapter: str, r: int, alpha: float, dropout: float,
                targets: tuple[str, ...], strategy: str) -> None:
    """Inject a fresh LoRA adapter named ``adapter`` into the ``targets`` layers (PEFT's own
    initialisation: ``A`` Kaiming-uniform, ``B`` zero, so the model's function is unchanged)."""
    peft = require_peft(strategy)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=list(targets), bias="none")
    with warnings.catch_warnings():  # a second adapter is what we mean
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        try:
            peft.inject_adapter_in_model(config, model, adapter_name=adapter)
        except ValueError as error:
            if "not found in the base model" not in str(error):
                raise
            raise ConfigurationError(
                f"{strategy}: no module of the model is named {', '.join(targets)}; name "
                "existing Linear layers with --set target_modules=..., or leave it unset for the "
                "default rule.") from None


def lora_parameters(model: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """The ``A`` and ``B`` parameters of one adapter by name, in the model's order."""
    marks = (f".lora_A.{adapter}.", f".lora_B.{adapter}.")
    return {n: p for n, p in model.named_parameters() if any(m in n for m in marks)}


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """The layers PEFT wrapped (each holds its adapters' ``lora_A`` / ``lora_B``)."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def train_only(model: nn.Module, adapter: str, train_head: bool) -> None:
    """Freeze every parameter except ``adapter``'s and, when ``train_head``, the head's. The
    Learner rebuilds its optimiser when the trainable set changes."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in lora_parameters(model, adapter).values():
        p.requires_grad_(True)
    head = classification_head(model)
    if train_head and head is not None:
        for p in head.parameters():
            p.requires_grad_(True)


def apply_adapters(model: nn.Module, adapters: list[str]) -> None:
    """Make every LoRA layer apply ``adapters`` (summed), leaving which parameters train as it
    was: PEFT's ``set_adapter`` also switches ``requires_grad``, which is ours to decide."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for layer in lora_layers(model):
        layer.set_adapter(list(adapters))
    for p, flag in flags:
        p.requires_grad_(flag)


def refuse_layer_owners(strategy: Strategy, learner) -> None:
    """A LoRA strategy and another that rebuilds or wraps the layers (PNN, PackNet, HAT, another
    LoRA strategy) cannot both own them; nor can it keep weights that another re-initialises."""
    parts = getattr(learner.strategy, "parts", [learner.strategy])
    fresh = [p.name for p in parts if p.name in REINITIALISES]
    if fresh:
        raise ConfigurationError(
            f"{fresh[0]} re-initialises every weight of the model at each task, which would "
            f"overwrite the pretrained weights that {strategy.name} freezes; they cannot be "
            f"combined. Use {fresh[0]} alone, or {strategy.name} with er or derpp.")
    clash = [p.name for p in parts if p is not strategy and p.family in LAYER_OWNERS]
    if clash:
        raise ConfigurationError(
            f"{strategy.name} wraps the model's layers in LoRA adapters and {clash[0]} rebuilds "
            f"or wraps them too; they cannot be combined. Combine {strategy.name} with a "
            "regulariser (ewc, si, mas, lwf) or a replay strategy (er, derpp, agem).")


def adapters_footprint(model: nn.Module, adapters: list[str], *extra) -> Footprint:
    """The adapters' parameters (added to the model, held in memory) plus ``extra`` tensors."""
    params = [p for a in adapters for p in lora_parameters(model, a).values()]
    return Footprint(tensor_bytes(params, *extra), stores_raw_data=False,
                     parameters_added=sum(p.numel() for p in params))


class LoraStrategy(Strategy):
    """Base of the LoRA strategies: the options every one takes, the targets resolved once in
    ``setup`` (before any adapter renames the layers), and ``grow``, which adds an adapter,
    applies the ones ``applied_in_training`` names and trains only the new one (and the head)."""
    meant_for_pretrained = True


    family = "parameter-efficient"
    objectives = frozenset({"classification", "language_modelling"})
    #: Packages outside the core install (the ``[llm]`` extra); imported only in ``setup``.
    requires_packages = ("peft",)

    def configure(self, r, alpha, dropout, target_modules, train_head) -> None:
        self.r, self.alpha, self.dropout, self.requested_targets = check_lora_options(
            type(self).name or type(self).__name__, r, alpha, dropout, target_modules)
        self.train_head = bool(train_head)
        self.adapters: list[str] = []
        self.targets: tuple[str, ...] = ()

    def setup(self, learner) -> None:
        super().setup(learner)
        refuse_layer_owners(self, learner)
        require_peft(self.name)
        self.targets = self.requested_targets or default_targets(learner.model)
        self.adapters = []

    def applied_in_training(self) -> list[str]:
        """The adapters the model applies while the newest one trains: only the newest."""
        return self.adapters[-1:]

    def grow(self, adapter: str) -> None:
        model = self.learner.model
        add_adapter(model, adapter, self.r, self.alpha, self.dropout, self.targets, self.name)
        self.adapters.append(adapter)
        apply_adapters(model, self.applied_in_training())
        train_only(model, adapter, self.train_head)

    def footprint(self) -> Footprint:
        return adapters_footprint(self.learner.model, self.adapters)


class PerTaskLora(LoraStrategy):
    """An adapter per task (``task0``, ``task1``...), earlier ones frozen. ``task0`` is injected
    in ``setup``, so the model has its LoRA layout (``base_layer`` keys) from the start and a
    checkpoint of a later task holds every tensor a fresh learner has; each later task adds its
    adapter in ``before_task``. The state is the number of tasks started: a fresh learner grows
    the adapters back before the model's weights load into them (``Learner.load_state_dict``
    loads the strategy first)."""

    why_not_task_free = ("it starts a new adapter for each task, and freezes the earlier ones, "
                         "when the task starts, which a task-free stream does not announce; use "
                         "lora, one adapter for the whole stream, composed with si, online-ewc "
                         "or er(fill=stream) to protect it.")

    adds_parameters = True
    tasks_started = 0

    def setup(self, learner) -> None:
        super().setup(learner)
        self.tasks_started = 0
        self.grow("task0")

    def before_task(self, task) -> None:
        expect_next_task(self.name, task, self.tasks_started)
        if task.task_id > 0:
            self.grow(f"task{task.task_id}")
        self.tasks_started += 1

    def state_dict(self) -> dict:
        return {"tasks_started": self.tasks_started}

    def load_state_dict(self, state: dict) -> None:
        wanted = max(1, state["tasks_started"])
        if len(self.adapters) > wanted:
            raise ConfigurationError(
                f"{self.name}: this learner already has {len(self.adapters)} adapters, the "
                f"checkpoint {wanted}; load it into a freshly built learner.")
        while len(self.adapters) < wanted:
            self.grow(f"task{len(self.adapters)}")
        self.tasks_started = state["tasks_started"]
