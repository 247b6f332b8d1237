"""``a + b``: several strategies acting as one, each hook called on every part in order."""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies.base import Batch, Footprint, Strategy, overrides


class Composite(Strategy):
    """Calls each hook on every part, left to right.

    ``extend_batch`` chains (each part sees the batch the previous one returned), penalties add
    up, and at most one part may replace ``training_data``, ``forward`` or ``predict`` (two
    answers to "how is the model called" cannot both hold). One exception to left to right:
    ``after_task`` runs the parts that anchor parameters last, so that ``ewc+packnet`` and
    ``packnet+ewc`` both anchor the weights PackNet leaves after pruning and fine-tuning."""

    def __init__(self, *parts: Strategy) -> None:
        flat: list[Strategy] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, Composite) else [part])
        if not flat:
            raise ConfigurationError("a composition needs at least one strategy.")
        names = [p.name or type(p).__name__ for p in flat]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ConfigurationError(
                f"strategy {sorted(duplicates)} appears twice in the composition; use it once."
            )
        for hook in ("training_data", "forward", "predict"):
            owners = [n for p, n in zip(flat, names, strict=True) if overrides(p, hook)]
            if len(owners) > 1:
                raise ConfigurationError(
                    f"{' and '.join(owners)} both replace `{hook}`; they cannot be combined."
                )
        anchored = [n for p, n in zip(flat, names, strict=True) if p.anchors_parameters]
        growing = [n for p, n in zip(flat, names, strict=True) if p.adds_parameters]
        if anchored and growing:
            raise ConfigurationError(
                f"{anchored[0]} anchors every trainable parameter after each task and "
                f"{growing[0]} adds new parameters per task, which such anchors do not cover; "
                f"they cannot be combined. Combine {growing[0]} with lwf or a replay strategy "
                f"({anchored[0]}+packnet runs, but PackNet already freezes every weight an "
                "anchor would hold, so it trains exactly as packnet alone).")
        self.parts = flat
        self._users = {hook: [p for p in flat if overrides(p, hook)] for hook in (
            "training_data", "before_task", "extend_batch", "penalty", "before_step",
            "after_step", "after_task", "forward", "predict")}
        self._users["after_task"].sort(key=lambda p: p.anchors_parameters)  # stable: anchors last

    # Declared constraints of the whole: what every part can serve.
    @property
    def name(self) -> str:  # type: ignore[override]
        return "+".join(p.name for p in self.parts)

    @property
    def scenarios(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset.intersection(*(frozenset(p.scenarios) for p in self.parts))

    @property
    def objectives(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset.intersection(*(frozenset(p.objectives) for p in self.parts))

    @property
    def why_not_objective(self) -> str:  # type: ignore[override]
        return " ".join(p.why_not_objective for p in self.parts if p.why_not_objective)

    @property
    def needs_task_id(self) -> bool:  # type: ignore[override]
        return any(p.needs_task_id for p in self.parts)

    @property
    def stores_raw_data(self) -> bool:  # type: ignore[override]
        return any(p.stores_raw_data for p in self.parts)

    @property
    def sees_future(self) -> bool:  # type: ignore[override]
        return any(p.sees_future for p in self.parts)

    @property
    def trains_whole_head(self) -> bool:  # type: ignore[override]
        return any(p.trains_whole_head for p in self.parts)

    @property
    def trains_model(self) -> bool:  # type: ignore[override]
        """The model trains if any part trains it (``ncm+ewc``: NCM's means of moving
        features)."""
        return any(p.trains_model for p in self.parts)

    @property
    def family(self) -> str:  # type: ignore[override]
        families = {p.family for p in self.parts} - {"baseline"}
        if len(self.parts) == 1:
            return self.parts[0].family
        return "hybrid" if len(families) != 1 else families.pop()

    def boundary_reason(self) -> str | None:
        """The first part's reason for needing task boundaries, named."""
        for part in self.parts:
            reason = part.boundary_reason()
            if reason is not None:
                return reason if len(self.parts) == 1 else f"its part '{part.name}': {reason}"
        return None

    def uses(self, hook: str) -> bool:
        """Whether any part implements ``hook`` (the Learner skips the rest)."""
        return bool(self._users[hook])

    def setup(self, learner) -> None:
        super().setup(learner)
        for part in self.parts:
            part.setup(learner)

    def training_data(self, task):
        for part in self._users["training_data"]:
            return part.training_data(task)
        return None

    def before_task(self, task) -> None:
        for part in self._users["before_task"]:
            part.before_task(task)

    def extend_batch(self, batch: Batch) -> Batch:
        for part in self._users["extend_batch"]:
            batch = part.extend_batch(batch)
        return batch

    def penalty(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor | None:
        total = None
        for part in self._users["penalty"]:
            term = part.penalty(batch, logits)
            if term is not None:
                total = term if total is None else total + term
        return total

    def before_step(self) -> None:
        for part in self._users["before_step"]:
            part.before_step()

    def after_step(self) -> None:
        for part in self._users["after_step"]:
            part.after_step()

    def after_task(self, task) -> None:
        for part in self._users["after_task"]:
            part.after_task(task)

    def forward(self, x, task_ids):
        for part in self._users["forward"]:
            return part.forward(x, task_ids)
        return None

    def predict(self, x, task_id):
        for part in self._users["predict"]:
            return part.predict(x, task_id)
        return None

    def released_weights(self) -> dict[str, torch.Tensor]:
        released: dict[str, torch.Tensor] = {}
        for part in self.parts:
            for name, mask in part.released_weights().items():
                released[name] = mask | released[name] if name in released else mask
        return released

    def state_dict(self) -> dict:
        return {f"{i}:{p.name}": p.state_dict() for i, p in enumerate(self.parts)}

    def load_state_dict(self, state: dict) -> None:
        expected = [f"{i}:{p.name}" for i, p in enumerate(self.parts)]
        if sorted(state) != sorted(expected):
            raise ConfigurationError(
                f"strategy state holds {sorted(state)} but this composition is {expected}; "
                "load it into the same strategies in the same order."
            )
        for key, part in zip(expected, self.parts, strict=True):
            part.load_state_dict(state[key])

    def footprint(self) -> Footprint:
        total = Footprint()
        for part in self.parts:
            total = total + part.footprint()
        return total

    def hyperparameters(self) -> dict:
        return {p.name: p.hyperparameters() for p in self.parts}

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.parts)
