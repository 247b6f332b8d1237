"""What every frozen-feature learner shares: the model is never trained; after each task the
task's features (``model.features(x)``, eval mode, no gradients, in chunks) are added to running
per-class statistics, and ``predict`` classifies features with a classifier built from them.

The statistics are sums, so they do not depend on how the data was split into tasks or
batches (up to float64 rounding): per output unit the count and the sum of features, and, for
the learners that need it, the Gram matrix (sum of outer products). Nothing else of the data is
kept: these learners store no raw samples. In a process group each rank computes the features
of its share of a task and the features are gathered (not the sums: RanPAC chooses its ridge
from the task's samples), so the statistics are one process's.
"""

from __future__ import annotations

import torch

from forgetless import distributed
from forgetless.errors import ConfigurationError
from forgetless.strategies.base import Footprint, Strategy, evaluating, tensor_bytes

DTYPE = torch.float64  # the statistics are sums over every sample seen: keep them exact


class FeatureStatistics:
    """Per-class counts and feature sums, and optionally the Gram matrix, of every sample added."""

    def __init__(self, with_gram: bool) -> None:
        self.with_gram = with_gram
        self.counts: torch.Tensor | None = None  # [classes] float64
        self.sums: torch.Tensor | None = None  # [classes, features]
        self.gram: torch.Tensor | None = None  # [features, features], or None without gram

    def add(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        features = features.to(DTYPE)
        if self.counts is None:
            width = features.shape[1]
            self.counts = torch.zeros(num_classes, dtype=DTYPE, device=features.device)
            self.sums = torch.zeros(num_classes, width, dtype=DTYPE, device=features.device)
            if self.with_gram:
                self.gram = torch.zeros(width, width, dtype=DTYPE, device=features.device)
        self.counts.index_add_(0, labels, torch.ones_like(labels, dtype=DTYPE))
        self.sums.index_add_(0, labels, features)
        if self.gram is not None:
            self.gram.addmm_(features.T, features)

    @property
    def empty(self) -> bool:
        return self.counts is None

    def seen(self) -> torch.Tensor:
        """Boolean mask of the classes with at least one sample."""
        return self.counts > 0

    def means(self) -> torch.Tensor:
        """Class means; rows of unseen classes are zero."""
        return self.sums / self.counts.clamp_min(1).unsqueeze(1)

    def state_dict(self) -> dict:
        return {k: None if v is None else v.cpu().clone()
                for k, v in (("counts", self.counts), ("sums", self.sums), ("gram", self.gram))}

    def load_state_dict(self, state: dict, device) -> None:
        self.counts, self.sums, self.gram = (
            None if state[k] is None else state[k].to(device, DTYPE, copy=True)
            for k in ("counts", "sums", "gram"))

    def nbytes(self) -> int:
        return tensor_bytes(self.counts, self.sums, self.gram)


class FrozenFeatureStrategy(Strategy):
    """Base of NCM, SLDA and RanPAC. Subclasses say whether they need the Gram matrix
    (``uses_gram``), may map features first (``transform``: RanPAC's random projection), and
    build a classifier from the statistics (``fit_classifier``) that ``class_scores`` applies.
    The classifier is rebuilt lazily after each task and after a state is loaded."""

    why_not_task_free = ("it adds each task's features to its class statistics when the task "
                         "ends and takes no training step, so a task-free fit would teach it "
                         "nothing; run it task-based instead, since its statistics are sums that "
                         "do not depend on where the tasks end.")

    meant_for_pretrained = True


    family = "frozen-features"
    trains_model = False
    stores_raw_data = False
    uses_gram = False

    def __init__(self) -> None:
        self.statistics = FeatureStatistics(with_gram=self.uses_gram)
        self.classifier: object | None = None

    def setup(self, learner) -> None:
        super().setup(learner)
        if not callable(getattr(learner.model, "features", None)):
            raise ConfigurationError(
                f"strategy '{self.name}' classifies the model's features, but "
                f"{type(learner.model).__name__} has no features(x) method; use a model that "
                "has one (mlp, convnet, the pretrained text encoder) or add it to yours.")

    # ------------------------------------------------------------------ to override
    def transform(self, features: torch.Tensor) -> torch.Tensor:
        """What the statistics are taken of (float64); the features themselves by default."""
        return features.to(DTYPE)

    def learned_task(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """After a task's (transformed) features were added (RanPAC picks its ridge here)."""

    def fit_classifier(self):
        raise NotImplementedError

    def class_scores(self, classifier, features: torch.Tensor) -> torch.Tensor:
        """Scores [samples, classes] of transformed features; the highest wins."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed features of ``x`` (see ``model_features``)."""
        return self.transform(self.model_features(x))

    def model_features(self, x: torch.Tensor) -> torch.Tensor:
        """The model's features of ``x``, in chunks of the learner's evaluation batch, with the
        model in eval mode (its train/eval flags restored after) and no gradients."""
        model, chunk = self.learner.model, self.learner.eval_batch_size
        with torch.no_grad(), evaluating(model):  # no rows (a rank's empty share): one empty chunk
            return torch.cat([model.features(x[start:start + chunk])
                              for start in range(0, max(1, x.shape[0]), chunk)])

    def task_features(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed features of all of a task's ``x``. In a process group each rank
        runs the model (the whole cost) on its share of the samples and the ranks' features
        are gathered in order, so every rank adds the same statistics as one process would."""
        mine = distributed.world().shard(x.shape[0])
        return self.transform(distributed.all_gather_rows(self.model_features(x[mine])))

    def after_task(self, task) -> None:
        if task.train_x.shape[0] == 0:
            return
        device = self.learner.device
        features = self.task_features(task.train_x.to(device))
        labels = task.train_y.to(device)
        self.statistics.add(features, labels, self.learner.output_mask.num_outputs)
        self.learned_task(features, labels)
        self.classifier = None

    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor | None:
        """The best-scoring class among those the scenario allows (``output_mask.for_test``:
        the task's own classes in task-incremental runs); a class without statistics ranks
        below every class with them. Before any task: None (the model's own answer)."""
        if self.statistics.empty:
            return None
        if self.classifier is None:
            self.classifier = self.fit_classifier()
        scores = self.class_scores(self.classifier, self.features(x))
        lowest = torch.finfo(scores.dtype).min
        scores = scores.masked_fill(~self.statistics.seen(), lowest / 4)
        allowed = self.learner.output_mask.for_test(task_id)
        if allowed is not None:
            scores = scores.masked_fill(~allowed.to(scores.device), lowest / 2)
        return scores.argmax(1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"statistics": self.statistics.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.statistics.load_state_dict(state["statistics"], self.learner.device)
        self.classifier = None

    def footprint(self) -> Footprint:
        """Bytes of the statistics and of the classifier built from them (``extra_bytes``
        adds what a subclass holds besides)."""
        return Footprint(self.statistics.nbytes() + tensor_bytes(self.classifier)
                         + self.extra_bytes(), stores_raw_data=False)

    def extra_bytes(self) -> int:
        return 0
