"""The replay buffer shared by every strategy that keeps a memory of real samples.

A fixed capacity in samples (``buffer_size``) and one of two policies:

- ``reservoir`` (Vitter 1985; Chaudhry et al. 2019, "On Tiny Episodic Memories"): after ``n``
  samples were offered, each of them is held with the same probability ``capacity / n``;
- ``class_balanced``: once full, an incoming sample of a class that is not among the largest
  evicts a random sample of a largest class; a sample of a largest class replaces a random
  sample of its own class with probability ``held / seen`` of that class (reservoir within the
  class). Classes stay within one sample of each other once each has been seen often enough.

Adding a batch costs O(batch) whatever the number of tasks or classes seen: reservoir is
vectorised; class-balanced keeps, per class, an indexed set of its slots and, per count, the
classes holding that many, so "a random largest class" and "a random slot of it" are O(1).

``sample(n)`` returns a :class:`~forgetless.strategies.base.Batch`, the interface generators
offer too (``generative_replay.GenerativeMemory``), so replay code does not care where its
samples come from.
"""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies.base import Batch, Footprint, Strategy, tensor_bytes

POLICIES = ("reservoir", "class_balanced")


def check_buffer_size(buffer_size) -> int:
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ConfigurationError(
            f"buffer_size must be a positive whole number of samples, got {buffer_size!r} "
            "(e.g. --set buffer_size=500)."
        )
    return buffer_size


def check_batch_size(value, name: str, unset: str = "the learner's batch size") -> None:
    """``value`` is None (``unset``: what None stands for) or a positive whole number."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ConfigurationError(
            f"{name} must be a positive whole number of samples (or unset to use "
            f"{unset}), got {value!r}.")


class _IndexedSet:
    """A set of ints with O(1) add, remove and uniform random choice."""

    def __init__(self, items=()) -> None:
        self.items: list[int] = []
        self.where: dict[int, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: int) -> None:
        self.where[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: int) -> None:
        position = self.where.pop(item)
        last = self.items.pop()
        if last != item:
            self.items[position] = last
            self.where[last] = position

    def choice(self, u: float) -> int:
        return self.items[min(int(u * len(self.items)), len(self.items) - 1)]

    def __len__(self) -> int:
        return len(self.items)


class ReplayBuffer:
    """Inputs, labels, task ids and (optionally, for DER++) logits of at most ``capacity``
    samples. Storage is allocated on the first ``add`` (shapes come from the data)."""

    def __init__(self, capacity: int, policy: str = "reservoir") -> None:
        self.capacity = check_buffer_size(capacity)
        if policy not in POLICIES:
            raise ConfigurationError(
                f"unknown buffer policy '{policy}'; choose one of {', '.join(POLICIES)} "
                "(e.g. --set policy=class_balanced)."
            )
        self.policy = policy
        self.size = 0  # slots filled
        self.seen = 0  # samples offered so far
        self.store: dict[str, torch.Tensor] = {}
        # class_balanced bookkeeping
        self.class_slots: dict[int, _IndexedSet] = {}
        self.class_seen: dict[int, int] = {}
        self.by_count: dict[int, _IndexedSet] = {}
        self.max_count = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.store)

    # ------------------------------------------------------------------ adding
    def add(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor,
            logits: torch.Tensor | None = None, generator: torch.Generator | None = None) -> None:
        """Offer a batch of samples; the policy decides which are kept and where."""
        fields = {"x": x, "y": y, "task_ids": task_ids}
        if logits is not None:
            fields["logits"] = logits
        fields = {k: v.detach() for k, v in fields.items()}
        self._allocate(fields)
        b = x.shape[0]
        if b == 0:
            return
        u = torch.rand(b, 2, generator=generator)
        if self.policy == "reservoir":
            slots = self._reservoir_slots(u[:, 0])
        else:
            slots = self._class_balanced_slots(y.tolist(), u.tolist())
        self.seen += b
        keep = slots >= 0
        if not keep.any():
            return
        slots, index = slots[keep], torch.arange(b)[keep]
        # When two samples of this batch land in one slot, the later one wins (as if added in
        # turn): keep, per slot, the largest batch index.
        unique, inverse = torch.unique(slots, return_inverse=True)
        last = torch.full((unique.numel(),), -1, dtype=torch.long).scatter_reduce(
            0, inverse, index, "amax")
        for name, value in fields.items():
            store = self.store[name]
            store[unique.to(store.device)] = value[last.to(value.device)].to(store.device)

    def _allocate(self, fields: dict[str, torch.Tensor]) -> None:
        if not self.store:
            self.store = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype,
                                         device=v.device) for k, v in fields.items()}
            return
        if set(fields) != set(self.store):
            raise ConfigurationError(
                f"this buffer holds {sorted(self.store)} per sample but was offered "
                f"{sorted(fields)}; offer the same fields every time.")
        for name, value in fields.items():
            if value.shape[1:] != self.store[name].shape[1:]:
                raise ConfigurationError(
                    f"buffer field '{name}' holds per-sample shape "
                    f"{tuple(self.store[name].shape[1:])}, offered {tuple(value.shape[1:])}.")

    def _reservoir_slots(self, u: torch.Tensor) -> torch.Tensor:
        """Sample number p (0-based) fills slot p while there is room, else replaces a uniform
        slot of 0..p, kept only when that slot exists: each of the p+1 samples is then held
        with probability capacity / (p + 1)."""
        position = self.seen + torch.arange(u.shape[0])
        drawn = (u * (position + 1)).long().clamp_max(position)
        slots = torch.where(position < self.capacity, position, drawn)
        self.size = min(self.capacity, self.seen + u.shape[0])
        return torch.where(slots < self.capacity, slots, torch.full_like(slots, -1))

    def _class_balanced_slots(self, labels: list[int], draws: list[list[float]]) -> torch.Tensor:
        slots = []
        for label, (u_class, u_slot) in zip(labels, draws, strict=True):
            self.class_seen[label] = self.class_seen.get(label, 0) + 1
            held = len(self.class_slots.get(label, ()))
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
                self._move(slot, None, label)
            elif held < self.max_count:
                victim = self.by_count[self.max_count].choice(u_class)
                slot = self.class_slots[victim].choice(u_slot)
                self._move(slot, victim, label)
            elif u_class * self.class_seen[label] < held:
                slot = self.class_slots[label].choice(u_slot)  # stays with its class
            else:
                slot = -1
            slots.append(slot)
        return torch.tensor(slots, dtype=torch.long)

    def _move(self, slot: int, old: int | None, new: int) -> None:
        """Give ``slot`` from class ``old`` (None: an empty slot) to class ``new``."""
        if old is not None:
            self._recount(old, -1)
            self.class_slots[old].remove(slot)
        self._recount(new, +1)
        self.class_slots.setdefault(new, _IndexedSet()).add(slot)

    def _recount(self, label: int, change: int) -> None:
        count = len(self.class_slots.get(label, ()))
        if count:
            self.by_count[count].remove(label)
            if not self.by_count[count]:
                del self.by_count[count]
        count += change
        if count:
            self.by_count.setdefault(count, _IndexedSet()).add(label)
        if count > self.max_count:
            self.max_count = count
        elif self.max_count not in self.by_count:
            self.max_count -= 1

    # ------------------------------------------------------------------ reading
    def assign(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor,
               logits: torch.Tensor | None = None) -> None:
        """Replace the contents with exactly these samples (iCaRL's herding chooses them)."""
        if x.shape[0] > self.capacity:
            raise ConfigurationError(f"{x.shape[0]} samples do not fit a buffer of "
                                     f"{self.capacity}.")
        capacity, policy = self.capacity, self.policy
        self.__init__(capacity, policy)
        self.add(x, y, task_ids, logits)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The held samples (views, in slot order)."""
        return {k: v[: self.size] for k, v in self.store.items()}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Batch:
        """``n`` held samples drawn uniformly without replacement (fewer if fewer are held);
        stored logits come back in ``extras["logits"]``."""
        if self.size == 0:
            raise ConfigurationError("the replay buffer is empty; add samples before sampling.")
        index = torch.randperm(self.size, generator=generator)[:n]
        held = {k: v[index.to(v.device)] for k, v in self.store.items()}
        extras = {"logits": held["logits"]} if "logits" in held else {}
        return Batch(held["x"], held["y"], held["task_ids"], extras)

    def class_counts(self) -> dict[int, int]:
        labels, counts = torch.unique(self.store["y"][: self.size], return_counts=True) \
            if self.size else (torch.zeros(0), torch.zeros(0))
        return dict(zip(labels.tolist(), counts.tolist(), strict=True))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "policy": self.policy, "size": self.size,
                "seen": self.seen, "store": {k: v.clone() for k, v in self.store.items()},
                "class_slots": {c: list(s.items) for c, s in self.class_slots.items()},
                "class_seen": dict(self.class_seen),
                "by_count": {n: list(s.items) for n, s in self.by_count.items()},
                "max_count": self.max_count}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or state["policy"] != self.policy:
            raise ConfigurationError(
                f"the saved buffer has capacity {state['capacity']} and policy "
                f"'{state['policy']}' but this one {self.capacity} and '{self.policy}'; "
                "restore with the same buffer_size and policy.")
        self.size, self.seen = int(state["size"]), int(state["seen"])
        self.store = {k: v.clone() for k, v in state["store"].items()}
        self.class_slots = {int(c): _IndexedSet(s) for c, s in state["class_slots"].items()}
        self.class_seen = {int(c): int(n) for c, n in state["class_seen"].items()}
        self.by_count = {int(n): _IndexedSet(s) for n, s in state["by_count"].items()}
        self.max_count = int(state["max_count"])


def offer_first_visits(buffer: ReplayBuffer, learner, batch: Batch,
                       logits: torch.Tensor | None = None) -> None:
    """Offer the stream samples of ``batch`` that this task trains on for the first time
    (``learner.first_visit``), with their ``logits`` if given: over several epochs the buffer
    then sees each training sample once, so its reservoir is over distinct samples, it never
    holds two copies of one, and DER++ keeps the logits of a sample's first visit (Buzzega et
    al. 2020). Samples another strategy appended to the batch (the loop's come first) are not
    offered. Outside the Learner's loop (no ``first_visit``) the whole batch is offered."""
    new = learner.first_visit
    if new is not None:
        new = torch.cat([new[: len(batch)], new.new_zeros(max(0, len(batch) - len(new)))])
        if not bool(new.any()):
            return
        batch = Batch(batch.x[new], batch.y[new], batch.task_ids[new])
        logits = None if logits is None else logits[new]
    buffer.add(batch.x, batch.y, batch.task_ids, logits=logits, generator=learner.generator)


def offer_task(buffer: ReplayBuffer, learner, task) -> None:
    """Offer every training sample of a finished ``task`` once (an episodic memory of
    finished tasks: A-GEM's, and ER's with ``fill="task_end"``)."""
    device = learner.device
    buffer.add(task.train_x.to(device), task.train_y.to(device), task.task_ids.to(device),
               generator=learner.generator)


FILLS = ("task_end", "stream")


def check_fill(fill) -> str:
    if fill not in FILLS:
        raise ConfigurationError(
            f"unknown fill '{fill}'; choose task_end (each task's samples after the task) or "
            "stream (each sample on its first visit), e.g. --set fill=stream.")
    return fill


class MemoryStrategy(Strategy):
    """Base of the strategies that keep a ``ReplayBuffer`` in ``self.buffer``: the buffer is
    their state (saved and restored with it) and their footprint (raw samples)."""

    family = "replay"
    stores_raw_data = True
    buffer: ReplayBuffer

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])

    def footprint(self) -> Footprint:
        return Footprint(self.buffer.nbytes, stores_raw_data=True)
