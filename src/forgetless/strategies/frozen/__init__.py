"""Frozen-feature learners: the backbone is never trained (no backprop into it); classes are
told apart by statistics of its features, accumulated task by task without storing any sample.
They need a good pretrained feature extractor: on a randomly initialised MLP they are weak
(docs/frozen_features.md)."""
