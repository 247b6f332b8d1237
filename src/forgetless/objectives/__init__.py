"""Objectives: what a batch's loss is and what a task's score is. The one loop (the Learner),
the score matrix R[i][j], the metrics, the store, the report and the advisor are the same for
every objective; only these two questions change between an MLP classifying digits and a
pretrained language model learning new facts.

- ``classification``: cross-entropy over the output units the scenario allows; score = accuracy.
- ``language_modelling``: next-token cross-entropy on the target tokens; score = exact match of
  the greedy answer, with perplexity beside it.

Strategies that depend on what the outputs mean (distillation, stored logits, importances)
ask the objective (``learner.objective``) rather than calling ``cross_entropy`` themselves.
"""

from forgetless.errors import ConfigurationError
from forgetless.objectives.base import OBJECTIVES, Objective
from forgetless.objectives.classification import Classification
from forgetless.objectives.language_modelling import LanguageModelling


def build_objective(name: str) -> Objective:
    """The objective registered as ``name``."""
    known = {"classification": Classification, "language_modelling": LanguageModelling}
    if name not in known:
        raise ConfigurationError(f"unknown objective {name!r}; choose one of "
                                 f"{', '.join(OBJECTIVES)}.")
    return known[name]()


__all__ = ["OBJECTIVES", "Classification", "LanguageModelling", "Objective", "build_objective"]
