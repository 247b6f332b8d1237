"""RanPAC: random projections and pre-trained models for continual learning (McDonnell, Gong,
Parvaneh, Abbasnejad & van den Hengel 2023, NeurIPS), its phase 2 (the frozen-backbone part; the
optional first-session fine-tuning of phase 1 trains the model and is left out).

Features ``f`` go through a fixed random projection and a ReLU, ``h = relu(f W)`` with
``W ~ N(0, 1)`` of shape (features, M), which makes classes closer to linearly separable. The
classifier is ridge regression of one-hot targets on ``h`` from two running sums, the Gram
matrix ``G = sum h h^T`` and ``C = sum h y^T`` (the per-class sums of ``h``):
``W_out = (G + lambda I)^-1 C``; predict ``argmax h W_out``.

- M: the paper uses 10,000 on ViT-B features (768); here the default is 2,000, about 5x the
  width of the pretrained encoders forgetless serves (MiniLM's 384, the MLP's 400), because G is
  M x M float64 (32 MB at 2,000, 800 MB at 10,000) and is solved on a laptop CPU after each
  task. ``projection_size=0`` turns the projection (and the ReLU) off: plain ridge regression
  on the features, the paper's "no RP" ablation.
- lambda: as the paper's code, chosen after each task from 10^-8 ... 10^13 by the mean squared
  error on a held-out fifth of that task's data (here every fifth sample, so no random draw and
  no class left out when a task's data is sorted by class), fitted on the other four fifths;
  ``ridge=<value>`` fixes it instead.
- The projection is regenerated from ``projection_seed`` (on the CPU, so every device draws the
  same one) and is not part of the saved state; ``footprint`` counts it while it is held.
"""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.base import tensor_bytes
from forgetless.strategies.frozen.common import DTYPE, FrozenFeatureStrategy

RIDGES = tuple(10.0 ** k for k in range(-8, 14))  # the paper's code's grid


@register("ranpac")
class RanPAC(FrozenFeatureStrategy):
    """Random projection + ReLU of frozen features, then ridge regression from accumulated
    statistics (RanPAC, McDonnell et al. 2023): no training, no data stored."""

    uses_gram = True

    def __init__(self, projection_size: int = 2000, ridge: float | None = None,
                 projection_seed: int = 0):
        """projection_size: M, the width of the random projection (0: none, plain ridge).
        ridge: the ridge lambda; None chooses it after each task as the paper does.
        projection_seed: seed of the random projection (regenerated, never stored)."""
        if isinstance(projection_size, bool) or not isinstance(projection_size, int) \
                or projection_size < 0:
            raise ConfigurationError(
                f"projection_size must be a whole number >= 0, got {projection_size!r}.")
        if ridge is not None and (isinstance(ridge, bool) or not isinstance(ridge, (int, float))
                                  or not ridge > 0):
            raise ConfigurationError(f"ridge must be a positive number (leave it unset to "
                                     f"choose it per task), got {ridge!r}.")
        super().__init__()
        self.projection_size = projection_size
        self.fixed_ridge = None if ridge is None else float(ridge)
        self.projection_seed = int(projection_seed)
        self.ridge = self.fixed_ridge
        self.projection: torch.Tensor | None = None

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        features = features.to(DTYPE)
        if self.projection_size == 0:
            return features
        if self.projection is None or self.projection.shape[0] != features.shape[1]:
            generator = torch.Generator().manual_seed(self.projection_seed)
            self.projection = torch.randn(features.shape[1], self.projection_size,
                                          generator=generator, dtype=DTYPE).to(features.device)
        return torch.relu(features @ self.projection)

    def learned_task(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.fixed_ridge is None:
            targets = one_hot(labels, self.learner.output_mask.num_outputs)
            self.ridge = choose_ridge(features, targets)

    def fit_classifier(self) -> torch.Tensor:
        """W_out [M, classes] = (G + lambda I)^-1 C."""
        gram = self.statistics.gram
        identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        return torch.linalg.solve(gram + self.ridge * identity, self.statistics.sums.T)

    def class_scores(self, weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return features @ weights

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ridge": self.ridge}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ridge = state["ridge"]

    def extra_bytes(self) -> int:
        return tensor_bytes(self.projection)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).to(DTYPE)


def choose_ridge(features: torch.Tensor, targets: torch.Tensor) -> float:
    """The ridge of ``RIDGES`` with the lowest mean squared error on every fifth sample when
    fitted on the rest. One eigendecomposition serves every ridge: of the Gram matrix, or of
    the samples' kernel matrix when there are fewer samples than features (the same fit)."""
    held_out = torch.arange(features.shape[0], device=features.device) % 5 == 4
    fit_h, fit_y = features[~held_out], targets[~held_out]
    val_h, val_y = features[held_out], targets[held_out]
    if len(val_h) == 0 or len(fit_h) == 0:
        return 1.0  # too few samples to choose: a neutral value
    if fit_h.shape[0] < fit_h.shape[1]:  # W = H^T (H H^T + l I)^-1 Y
        eigenvalues, vectors = torch.linalg.eigh(fit_h @ fit_h.T)
        left, right = val_h @ fit_h.T @ vectors, vectors.T @ fit_y
    else:  # W = (H^T H + l I)^-1 H^T Y
        eigenvalues, vectors = torch.linalg.eigh(fit_h.T @ fit_h)
        left, right = val_h @ vectors, vectors.T @ (fit_h.T @ fit_y)
    eigenvalues = eigenvalues.clamp_min(0)
    errors = [((left / (eigenvalues + ridge)) @ right - val_y).pow(2).mean()
              for ridge in RIDGES]
    return RIDGES[int(torch.stack(errors).argmin())]
