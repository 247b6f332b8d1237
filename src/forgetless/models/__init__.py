"""Models: an MLP and a small ConvNet, built for a stream's input shape and head size, and
pretrained Hugging Face models (``models.pretrained``)."""

from forgetless.models import pretrained  # noqa: F401  (registers the pretrained models)
from forgetless.models.networks import MODELS, build_model

__all__ = ["MODELS", "build_model"]
