"""LoRA (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR) as a model
wrapper that every regulariser and replay strategy composes with.

Each target layer keeps its weight ``W`` frozen and learns a low-rank update::

    h = W x + (alpha / r) * B A x,    A: r x in (Kaiming-uniform),  B: out x r (zero)

so training starts from the model's own function. Every base parameter is frozen; only ``A``,
``B`` and, with ``train_head``, the classification head ``model.head`` train (a causal LM has no
``.head``: its LoRA parameters alone train). Default targets (``adapters.default_targets``):
``q_proj``/``v_proj`` in a Llama-style model, ``query``/``value`` in a BERT-style encoder, every
``nn.Linear`` but the head in an MLP.

One adapter serves every task, so on its own LoRA still forgets, only less than full fine-tuning
(Biderman et al. 2024, "LoRA Learns Less and Forgets Less"). Its use here is as the small
trainable set that other strategies protect: ``lora+ewc`` estimates the Fisher and anchors over
the LoRA parameters (and head) only, ``lora+er`` replays into them. Task-agnostic; every scenario.

Ordering: the adapter is injected in ``setup``, which the Learner calls on every part of a
composition (left to right) before any task starts. No part reads parameters there (EWC, MAS, L2
anchor in ``after_task``, SI snapshots in ``before_task``), so ``ewc+lora`` and ``lora+ewc`` both
see the wrapped model; strategies that rebuild layers (PNN, PackNet, HAT) are refused.
"""

from __future__ import annotations

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.peft.adapters import LoraStrategy

ADAPTER = "lora"


@register("lora")
class LoRA(LoraStrategy):
    """LoRA: frozen base weights plus one trainable low-rank adapter shared by every task."""

    def __init__(self, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 target_modules: list[str] | str | None = None, train_head: bool = True) -> None:
        """r: rank of each adapter (Hu et al. use 1-8 on GPT-3; 8 is PEFT's default).
        alpha: scale numerator; the update is multiplied by alpha / r.
        dropout: dropout on the adapter's input (0: none).
        target_modules: names (or name suffixes) of the layers to adapt; None: the default
        rule (q_proj/v_proj, else query/value, else every Linear but the head).
        train_head: also train the classification head ``model.head`` when the model has one."""
        self.configure(r, alpha, dropout, target_modules, train_head)

    def setup(self, learner) -> None:
        super().setup(learner)
        self.grow(ADAPTER)

    def state_dict(self) -> dict:
        return {"targets": list(self.targets)}

    def load_state_dict(self, state: dict) -> None:
        if list(state["targets"]) != list(self.targets):
            raise ConfigurationError(
                f"lora: the checkpoint adapts {state['targets']} but this learner adapts "
                f"{list(self.targets)}; load it with the same target_modules.")
