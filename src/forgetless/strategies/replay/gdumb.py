"""GDumb: Greedy sampler and Dumb learner (Prabhu, Torr & Dokania 2020, "GDumb: A Simple
Approach that Questions Our Progress in Continual Learning", ECCV).

The sanity check every replay method must beat. The stream only fills a memory; the model never
trains on the stream itself:

- greedy class-balanced sampler (the paper's Algorithm 1): each incoming sample is stored while
  the memory has room; once full, a sample of a class holding fewer than
  ``buffer_size / classes seen`` samples evicts a random sample of a largest class; otherwise
  it is dropped. Samples are never replaced within their own class.
- dumb learner: whenever a prediction is needed (after each task), a model trained from scratch
  on the memory alone.

How it sits in the Learner's hooks: ``training_data`` offers the task's samples to the sampler
and returns the whole memory as what the task trains on; ``before_task`` re-initialises the
model (``reinitialise``: the model's own ``reset_parameters`` where it has one, as the MLP does
with its ``init``, else every layer's; seeded from the learner's generator so that a resumed
run draws the same weights) and drops the optimiser's state. The task's budget (``epochs``
over the memory, or ``iterations``) then trains the fresh model on the memory with every hook
and mask, before the Learner evaluates it: the same as training from scratch at the task's
end.

In a process group the sampler runs alike on every rank over the gathered memory and the
task, every rank trains on the whole memory (the Learner gives each its share of every batch),
and each keeps only its share of the memory's storage.
"""

from __future__ import annotations

import torch

from forgetless.strategies import TrainingData, register
from forgetless.strategies.replay.buffer import MemoryStrategy, ReplayBuffer


def greedy_class_balanced(labels: list[int], capacity: int,
                          draws: list[list[float]]) -> list[int]:
    """GDumb's sampler over ``labels`` in stream order (the memory's labels first): the
    positions kept, at most ``capacity``. ``draws`` (two uniforms in [0, 1) per label) choose
    the largest class to evict from and its sample."""
    kept: dict[int, list[int]] = {}  # class -> positions held
    size = 0
    for position, (label, (u_class, u_sample)) in enumerate(zip(labels, draws, strict=True)):
        held = kept.setdefault(label, [])
        if size < capacity:
            held.append(position)
            size += 1
        elif len(held) < capacity / len(kept):
            largest = max(len(v) for v in kept.values())
            classes = [c for c, v in kept.items() if len(v) == largest]
            victim = kept[classes[int(u_class * len(classes))]]
            victim.pop(int(u_sample * len(victim)))
            held.append(position)
    return sorted(p for v in kept.values() for p in v)


def reinitialise(model: torch.nn.Module) -> None:
    """``model`` as if newly built: its own ``reset_parameters`` (its initialisation scheme)
    where it defines one, else each layer's."""
    if callable(getattr(model, "reset_parameters", None)):
        model.reset_parameters()
        return
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


@register("gdumb")
class GDumb(MemoryStrategy):
    """Greedy class-balanced memory; a fresh model trained on the memory only (Prabhu et al.
    2020)."""

    why_not_task_free = ("it adds each task's samples to its memory and re-initialises the model "
                         "to retrain it on that memory when the task starts, which a task-free "
                         "stream does not announce; use er(fill=stream), er-ace or derpp, whose "
                         "memories fill from the stream.")

    serves_pretrained = False


    def __init__(self, buffer_size: int = 500):
        """buffer_size: samples held in memory (all classes together; the paper's k)."""
        self.buffer = ReplayBuffer(buffer_size)

    def training_data(self, task) -> TrainingData:
        held = self.buffer.tensors()
        device = self.learner.device
        x, y, ids = (torch.cat([held[k], t.to(device)]) if held else t.to(device)
                     for k, t in (("x", task.train_x), ("y", task.train_y),
                                  ("task_ids", task.task_ids)))
        draws = torch.rand(len(y), 2, generator=self.learner.generator).tolist()
        keep = torch.tensor(greedy_class_balanced(y.tolist(), self.buffer.capacity, draws),
                            dtype=torch.long, device=device)
        self.buffer.assign(x[keep], y[keep], ids[keep])
        return TrainingData(x[keep], y[keep], ids[keep])

    def before_task(self, task) -> None:
        seed = int(torch.randint(2**62, (1,), generator=self.learner.generator))
        device = self.learner.device
        gpus = [] if device.type != "cuda" else [
            torch.cuda.current_device() if device.index is None else device.index]
        with torch.random.fork_rng(devices=gpus):  # the global RNG is left as it was
            torch.manual_seed(seed)
            reinitialise(self.learner.model)
        self.learner.optimizer = None  # a fresh model starts with a fresh optimiser
