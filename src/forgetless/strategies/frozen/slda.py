"""Streaming linear discriminant analysis on frozen features: Deep SLDA (Hayes & Kanan 2020,
"Lifelong machine learning with deep streaming linear discriminant analysis", CVPR-W).

One mean per class and one covariance shared by all classes, updated as data arrives; a sample
goes to the class of the highest linear discriminant ``w_k . z + b_k`` with
``W = M L``, ``b_k = -1/2 mu_k . L mu_k`` and ``L = ((1 - e) S + e I)^-1`` (the paper's
shrinkage ``e`` = 1e-4). The shared covariance ``S`` is the pooled within-class covariance of
every sample seen, ``(sum_i z_i z_i^T - sum_k n_k mu_k mu_k^T) / N``, kept as float64 sums:
exactly the covariance of all the data at once whatever the split into tasks (the paper's
one-sample update approximates it, weighting each sample's deviation by the global count).
"""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.frozen.common import FrozenFeatureStrategy


@register("slda")
class StreamingLDA(FrozenFeatureStrategy):
    """Streaming LDA on frozen features (Hayes & Kanan 2020): class means and one shared
    covariance, no training, no data stored."""

    uses_gram = True

    def __init__(self, shrinkage: float = 1e-4):
        """shrinkage: weight of the identity mixed into the covariance before it is inverted
        (the paper's 1e-4); 1 gives nearest class mean by Euclidean distance."""
        if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) \
                or not 0 < shrinkage <= 1:
            raise ConfigurationError(f"shrinkage must be in (0, 1], got {shrinkage!r}.")
        super().__init__()
        self.shrinkage = float(shrinkage)

    def covariance(self) -> torch.Tensor:
        """The pooled within-class covariance of every sample added so far."""
        stats = self.statistics
        seen = stats.seen()
        sums, counts = stats.sums[seen], stats.counts[seen]
        between = (sums.T / counts) @ sums  # sum_k n_k mu_k mu_k^T
        return (stats.gram - between) / counts.sum()

    def fit_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminants' weights [classes, features] and biases [classes]."""
        means = self.statistics.means()
        covariance = self.covariance()
        identity = torch.eye(covariance.shape[0], dtype=covariance.dtype,
                             device=covariance.device)
        precision_times_means = torch.linalg.solve(
            (1 - self.shrinkage) * covariance + self.shrinkage * identity, means.T)
        weights = precision_times_means.T
        return weights, -0.5 * (weights * means).sum(1)

    def class_scores(self, classifier, features: torch.Tensor) -> torch.Tensor:
        weights, biases = classifier
        return features @ weights.T + biases
