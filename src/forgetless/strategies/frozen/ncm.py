"""Nearest class mean on frozen features: SimpleCIL (Zhou, Cai, Ye & Zhan 2023, "Revisiting
class-incremental learning with pre-trained models: generalizability and adaptivity are all you
need").

Each class's prototype is the mean of its training samples' features; a sample is given the
class of the most similar prototype: cosine similarity by default (SimpleCIL's cosine
classifier whose weights are the prototypes), or Euclidean distance with ``cosine=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.frozen.common import FrozenFeatureStrategy


@register("ncm")
class NearestClassMean(FrozenFeatureStrategy):
    """Nearest class mean of frozen features (SimpleCIL, Zhou et al. 2023): no training, no data
    stored."""

    def __init__(self, cosine: bool = True):
        """cosine: compare by cosine similarity (SimpleCIL) rather than Euclidean distance."""
        if not isinstance(cosine, bool):
            raise ConfigurationError(f"cosine must be true or false, got {cosine!r}.")
        super().__init__()
        self.cosine = cosine

    def fit_classifier(self) -> torch.Tensor:
        """The prototypes [classes, features]."""
        return self.statistics.means()

    def class_scores(self, prototypes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.cosine:
            return F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T
        return -torch.cdist(features, prototypes)
