"""Models: an MLP and a small ConvNet, built for a stream's input shape and head size."""

from forgetless.models.networks import MODELS, build_model

__all__ = ["MODELS", "build_model"]
