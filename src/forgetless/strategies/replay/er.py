"""Experience replay (ER): every step trains on the current batch plus a batch drawn from a
replay buffer of past samples.

Follows the "ER" baseline of Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual
Learning" (and the rehearsal baseline of Hsu et al. 2018): the current batch and a replayed
batch are concatenated and trained on together with one loss; the current batch is then offered
to the buffer (reservoir by default, or class-balanced). Replayed samples keep their own task
ids, so task-incremental masking treats each sample by its own task.
"""

from __future__ import annotations

from forgetless.strategies import register
from forgetless.strategies.base import Batch
from forgetless.strategies.replay.buffer import MemoryStrategy, ReplayBuffer, check_batch_size


@register("er")
class ExperienceReplay(MemoryStrategy):
    """Current batch + replayed batch, one loss (Chaudhry et al. 2019)."""

    def __init__(self, buffer_size: int = 500, policy: str = "reservoir",
                 replay_batch_size: int | None = None):
        """buffer_size: samples held in memory (all tasks together).
        policy: ``reservoir`` or ``class_balanced`` (how the buffer chooses what to keep).
        replay_batch_size: replayed samples per step; None uses the learner's batch size
        (old:new 1:1, as Hsu et al. 2018)."""
        check_batch_size(replay_batch_size, "replay_batch_size")
        self.replay_batch_size = replay_batch_size
        self.buffer = ReplayBuffer(buffer_size, policy)

    def extend_batch(self, batch: Batch) -> Batch:
        generator = self.learner.generator
        replayed = None
        if len(self.buffer):
            replayed = self.buffer.sample(self.replay_batch_size or self.learner.batch_size,
                                          generator)
        self.buffer.add(batch.x, batch.y, batch.task_ids, generator=generator)
        return batch if replayed is None else batch.concat(replayed)
