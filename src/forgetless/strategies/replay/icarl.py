"""iCaRL: incremental Classifier and Representation Learning (Rebuffi, Kolesnikov, Sperl &
Lampert 2017, CVPR). Class-incremental only.

- Exemplars: a memory of ``buffer_size`` samples in all, ``buffer_size // classes seen`` per
  class, chosen by herding (Algorithm 4): greedily, the sample whose addition brings the mean
  of the chosen samples' normalised features closest to the class mean. When new classes
  arrive, every old class keeps the first exemplars of its herding order (Algorithm 5).
- Representation learning: the new task's data plus replayed exemplars, with the Learner's
  cross-entropy, and distillation (Algorithm 3): binary cross-entropy between the sigmoid
  outputs of the previous model and of the current one on the old classes' units, on every
  sample of the batch. (The paper uses sigmoid binary cross-entropy for the new classes too;
  here they keep the Learner's softmax cross-entropy, so iCaRL composes with other
  strategies.)
- Classification: nearest mean of exemplars (Algorithm 1), on L2-normalised features.

In a process group every rank holds the whole task, so herding runs alike on every rank over
the gathered exemplars; each rank keeps its share of them, and the class means are the sums of
the ranks' features, all-reduced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetless import distributed
from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.base import Footprint, evaluating, frozen_copy, tensor_bytes
from forgetless.strategies.replay.buffer import MemoryStrategy, ReplayBuffer, check_batch_size


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of ``m`` rows of ``features`` (normalised) in herding order: row k minimises the
    distance between the class mean and the mean of rows 0..k."""
    mean = features.mean(0)
    chosen = torch.empty(0, dtype=torch.long, device=features.device)
    running = torch.zeros_like(mean)
    available = torch.ones(features.shape[0], dtype=torch.bool, device=features.device)
    for k in range(min(m, features.shape[0])):
        distance = (mean - (running + features) / (k + 1)).norm(dim=1)
        index = distance.masked_fill(~available, float("inf")).argmin()
        chosen = torch.cat([chosen, index.view(1)])
        running = running + features[index]
        available[index] = False
    return chosen


@register("icarl")
class ICaRL(MemoryStrategy):
    """Herding exemplars, distillation, nearest-mean-of-exemplars (Rebuffi et al. 2017)."""

    why_not_task_free = ("it takes its distillation teacher when a task starts and herds the new "
                         "classes' exemplars when the task ends, which a task-free stream does "
                         "not announce; use er(fill=stream), er-ace or derpp, whose memories "
                         "fill from the stream.")

    scenarios = frozenset({"class"})

    def __init__(self, buffer_size: int = 500, distillation: float = 1.0,
                 replay_batch_size: int | None = None):
        """buffer_size: exemplars held, over all classes (the paper's K).
        distillation: weight of the distillation term (summed over old units, mean over samples).
        replay_batch_size: exemplars replayed per step; None uses the learner's batch size."""
        if not distillation >= 0:
            raise ConfigurationError(f"distillation must be >= 0, got {distillation!r}.")
        check_batch_size(replay_batch_size, "replay_batch_size")
        self.distillation = float(distillation)
        self.replay_batch_size = replay_batch_size
        self.buffer = ReplayBuffer(buffer_size)
        self.old_model = None
        self.old_units: torch.Tensor | None = None
        self.class_means: torch.Tensor | None = None  # [outputs, features]; NaN row: no class

    def features(self, model, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(model, "features"):
            raise ConfigurationError("icarl needs a model with a features(x) method (the "
                                     "built-in mlp and convnet have one).")
        return F.normalize(model.features(x), dim=1)

    def before_task(self, task) -> None:
        if self.learner.tasks_learned:
            self.old_model = frozen_copy(self.learner.model)
            self.old_units = self.learner.output_mask.seen_units.clone()

    def extend_batch(self, batch):
        if not len(self.buffer):
            return batch
        n = self.replay_batch_size or self.learner.batch_size
        return batch.concat(self.buffer.sample(n, self.learner.generator))

    def penalty(self, batch, logits):
        if self.old_model is None or self.distillation == 0:
            return None
        with torch.no_grad():
            target = torch.sigmoid(self.old_model(batch.x)[:, self.old_units])
        bce = F.binary_cross_entropy_with_logits(logits[:, self.old_units], target,
                                                 reduction="none")
        return self.distillation * bce.sum(1).mean()

    @torch.no_grad()
    def after_task(self, task) -> None:
        model, device = self.learner.model, self.learner.device
        with evaluating(model):
            self._update_exemplars(task, model, device)

    def _update_exemplars(self, task, model, device) -> None:
        """Algorithms 4 and 5: herding exemplars of the new classes, the first m of the old;
        then the class means the nearest-mean classifier uses."""
        classes = sorted(set(int(c) for c in torch.unique(task.train_y)))
        held = self.buffer.tensors()
        old_classes = sorted(set(held["y"].tolist())) if len(self.buffer) else []
        known = sorted(set(old_classes) | set(classes))
        m = self.buffer.capacity // len(known)
        if m < 1:
            raise ConfigurationError(
                f"buffer_size {self.buffer.capacity} leaves no exemplar for each of "
                f"{len(known)} classes; raise buffer_size to at least {len(known)}.")
        keep_x, keep_y, keep_t = [], [], []
        for c in old_classes:  # Algorithm 5: the first m of each herding order
            index = (held["y"] == c).nonzero().squeeze(1)[:m]
            keep_x.append(held["x"][index])
            keep_y.append(held["y"][index])
            keep_t.append(held["task_ids"][index])
        x, y = task.train_x.to(device), task.train_y.to(device)
        for c in classes:  # Algorithm 4
            x_c = x[y == c]
            index = herding(self.features(model, x_c), m)
            keep_x.append(x_c[index])
            keep_y.append(torch.full((len(index),), c, dtype=torch.long, device=device))
            keep_t.append(torch.full((len(index),), task.task_id, dtype=torch.long,
                                     device=device))
        self.buffer.assign(torch.cat(keep_x), torch.cat(keep_y), torch.cat(keep_t))
        held = self.buffer.local_tensors()  # each rank measures its exemplars; sums reduced
        features = self.features(model, held["x"])
        units = self.learner.output_mask.num_outputs
        sums = torch.zeros(units, features.shape[1], device=device).index_add_(
            0, held["y"], features)
        counts = torch.bincount(held["y"], minlength=units).unsqueeze(1)
        distributed.all_reduce_sum_([sums, counts])
        means = F.normalize(sums / counts.clamp_min(1), dim=1)
        self.class_means = means.masked_fill(counts == 0, float("nan"))

    def predict(self, x, task_id):
        if self.class_means is None:
            return None
        distance = torch.cdist(self.features(self.learner.model, x), self.class_means)
        return distance.nan_to_num(float("inf")).argmin(1)

    def state_dict(self) -> dict:
        return {**super().state_dict(),
                "old_model": None if self.old_model is None else self.old_model.state_dict(),
                "old_units": self.old_units, "class_means": self.class_means}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.old_model = None
        if state["old_model"] is not None:
            self.old_model = frozen_copy(self.learner.model)
            self.old_model.load_state_dict(state["old_model"])
        self.old_units, self.class_means = state["old_units"], state["class_means"]

    def footprint(self) -> Footprint:
        held = super().footprint()
        return Footprint(held.bytes_held + tensor_bytes(self.old_model, self.class_means),
                         stores_raw_data=held.stores_raw_data)
