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

In a process group the buffer is sharded with sampling equivalent to one global buffer: the
decisions are made alike on every rank over the whole offer (the ranks' rows in rank order are
the global batch's rows in order, since shares are contiguous) with one process's draws, each
rank stores the winners that came from its own rows, and ``sample`` returns this rank's part
of the global draw. The Learner weights each rank's gradient by its rows, so a replayed batch
concatenated to the current one trains exactly as one process's would.
"""

from __future__ import annotations

import math

import torch

from forgetless import distributed
from forgetless.distributed import World
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


def padded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` followed by zero rows up to ``rows`` rows."""
    return torch.cat([tensor, tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))])


class ReplayBuffer:
    """Inputs, labels, task ids and (optionally, for DER++) logits of at most ``capacity``
    samples. Storage is allocated on the first ``add`` (shapes come from the data).

    In a process group (``forgetless.distributed``) the buffer is one global buffer whose
    storage is sharded: every rank makes the same decisions (which offered sample takes which
    slot, which slots a ``sample`` draws) over the run's whole offer, with the same draws from
    the shared generator as one process, and keeps only the samples that came from its own rows
    (``owner`` and ``row`` say, for every slot, which rank holds it and where). ``sample``
    returns this rank's part of the global draw, so a replayed batch trained data-parallel is
    the batch one process replays; ``tensors`` and ``state_dict`` gather the whole buffer."""

    def __init__(self, capacity: int, policy: str = "reservoir") -> None:
        self.capacity = check_buffer_size(capacity)
        if policy not in POLICIES:
            raise ConfigurationError(
                f"unknown buffer policy '{policy}'; choose one of {', '.join(POLICIES)} "
                "(e.g. --set policy=class_balanced)."
            )
        self.policy = policy
        self.size = 0  # slots filled (over every rank)
        self.seen = 0  # samples offered so far (over every rank)
        self.store: dict[str, torch.Tensor] = {}  # this rank's samples, one per row
        # per slot: the rank holding its sample, and (on that rank) the row of ``store``
        self.owner = torch.full((self.capacity,), -1, dtype=torch.long)
        self.row = torch.full((self.capacity,), -1, dtype=torch.long)
        self.free_rows: list[int] = []  # rows of ``store`` whose slot moved to another rank
        self.rows_used = 0
        # class_balanced bookkeeping
        self.class_slots: dict[int, _IndexedSet] = {}
        self.class_seen: dict[int, int] = {}
        self.by_count: dict[int, _IndexedSet] = {}
        self.max_count = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes of samples this rank holds (about 1/N of the buffer's on each of N ranks)."""
        return tensor_bytes(self.store)

    @property
    def run_nbytes(self) -> int:
        """Bytes the whole buffer holds: one process's ``nbytes``, whatever the ranks."""
        return sum(v.element_size() * math.prod(v.shape[1:]) for v in self.store.values()) \
            * self.capacity

    # ------------------------------------------------------------------ adding
    def add(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor,
            logits: torch.Tensor | None = None, generator: torch.Generator | None = None) -> None:
        """Offer a batch of samples; the policy decides which are kept and where. In a process
        group each rank offers its rows (any number, possibly none) and every rank calls this:
        the decisions are made over the ranks' rows concatenated in rank order."""
        fields = {"x": x, "y": y, "task_ids": task_ids}
        if logits is not None:
            fields["logits"] = logits
        fields = {k: v.detach() for k, v in fields.items()}
        self._allocate(fields)
        offered = distributed.all_gather_rows(torch.tensor([x.shape[0]]))  # rows per rank
        b = int(offered.sum())
        if b == 0:
            return
        u = torch.rand(b, 2, generator=generator)
        if self.policy == "reservoir":
            slots = self._reservoir_slots(u[:, 0])
        else:
            labels = distributed.all_gather_rows(y.detach().cpu()).tolist()
            slots = self._class_balanced_slots(labels, u.tolist())
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
        self._store_winners(unique, last, offered, fields)

    def _store_winners(self, slots: torch.Tensor, winners: torch.Tensor, offered: torch.Tensor,
                       fields: dict[str, torch.Tensor]) -> None:
        """Slot ``slots[i]`` now holds offered sample ``winners[i]`` (an index into the ranks'
        rows in rank order): its owner is the rank that offered it, which stores it."""
        rank = distributed.world().rank
        ends = offered.cumsum(0)
        owners = torch.searchsorted(ends, winners, right=True)
        here = owners == rank
        leaving = (self.owner[slots] == rank) & ~here
        self.free_rows.extend(self.row[slots[leaving]].tolist())
        self.row[slots[leaving]] = -1
        self.owner[slots] = owners
        arriving = slots[here & (self.row[slots] < 0)]
        self.row[arriving] = self._take_rows(arriving.numel())
        rows, local = self.row[slots[here]], winners[here] - (ends[rank] - offered[rank])
        for name, value in fields.items():
            store = self.store[name]
            store[rows.to(store.device)] = value[local.to(value.device)].to(store.device)

    def _take_rows(self, n: int) -> torch.Tensor:
        """``n`` free rows of this rank's storage, grown (in steps of an eighth of a rank's
        share of the capacity) when it is full."""
        reused, self.free_rows = self.free_rows[:n], self.free_rows[n:]
        fresh = n - len(reused)
        rows = reused + list(range(self.rows_used, self.rows_used + fresh))
        self.rows_used += fresh
        allocated = next(iter(self.store.values())).shape[0]
        if self.rows_used > allocated:
            step = -(-self.capacity // (8 * distributed.world().size))
            self._grow(min(self.capacity, max(self.rows_used, allocated + step)))
        return torch.tensor(rows, dtype=torch.long)

    def _grow(self, rows: int) -> None:
        self.store = {k: padded(v, rows) for k, v in self.store.items()}

    def _allocate(self, fields: dict[str, torch.Tensor]) -> None:
        if not self.store:
            # one process holds the whole capacity; a rank of N starts with its share
            rows = -(-self.capacity // distributed.world().size)
            self.store = {k: torch.zeros((rows, *v.shape[1:]), dtype=v.dtype,
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
        """Replace the contents with exactly these samples (iCaRL's herding, GDumb's sampler
        choose them); in a process group every rank gives the same samples and keeps its
        share."""
        if x.shape[0] > self.capacity:
            raise ConfigurationError(f"{x.shape[0]} samples do not fit a buffer of "
                                     f"{self.capacity}.")
        capacity, policy = self.capacity, self.policy
        self.__init__(capacity, policy)
        rows = distributed.world().shard(x.shape[0])
        self.add(x[rows], y[rows], task_ids[rows], None if logits is None else logits[rows])

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` slots drawn uniformly without replacement (fewer if fewer are held): the same
        on every rank."""
        if self.size == 0:
            raise ConfigurationError("the replay buffer is empty; add samples before sampling.")
        return torch.randperm(self.size, generator=generator)[:n]

    def held(self, slots: torch.Tensor) -> Batch:
        """The samples of ``slots`` that this rank holds (all of them in one process), in the
        order of ``slots``; stored logits come back in ``extras["logits"]``."""
        slots = slots[self.owner[slots] == distributed.world().rank]
        rows = self.row[slots]
        held = {k: v[rows.to(v.device)] for k, v in self.store.items()}
        extras = {"logits": held["logits"]} if "logits" in held else {}
        return Batch(held["x"], held["y"], held["task_ids"], extras)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Batch:
        """``n`` held samples drawn uniformly without replacement (fewer if fewer are held);
        in a process group, this rank's part of that draw (see ``held``)."""
        return self.held(self.draw(n, generator))

    def spread(self, slots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``values`` of this rank's samples of ``slots`` (as ``held`` returns them) placed in
        one vector over every slot of ``slots``, the other ranks' values at theirs: the same
        vector on every rank (MIR ranks its candidates over it)."""
        mine = self.owner[slots] == distributed.world().rank
        spread = values.new_zeros(slots.shape[0])
        spread[mine.to(values.device)] = values
        return distributed.all_reduce_sum_([spread])[0]

    def local_tensors(self) -> dict[str, torch.Tensor]:
        """The samples this rank holds, in slot order (all of them in one process)."""
        slots = (self.owner[: self.size] == distributed.world().rank).nonzero().squeeze(1)
        rows = self.row[slots]
        return {k: v[rows.to(v.device)] for k, v in self.store.items()}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The held samples of every rank, in slot order (gathered: every rank calls it)."""
        if not distributed.world().distributed:
            return self.local_tensors()
        slots = distributed.all_gather_rows(
            (self.owner[: self.size] == distributed.world().rank).nonzero().squeeze(1))
        order = torch.empty_like(slots)
        order[slots] = torch.arange(slots.numel())
        return {k: distributed.all_gather_rows(v)[order.to(v.device)]
                for k, v in self.local_tensors().items()}

    def class_counts(self) -> dict[int, int]:
        """Held samples per class (over every rank)."""
        held = self.tensors()
        labels, counts = torch.unique(held["y"], return_counts=True) \
            if self.size else (torch.zeros(0), torch.zeros(0))
        return dict(zip(labels.tolist(), counts.tolist(), strict=True))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The whole buffer (gathered from every rank: the state of one process's buffer)."""
        store = {k: padded(v, self.capacity) for k, v in self.tensors().items()}
        return {"capacity": self.capacity, "policy": self.policy, "size": self.size,
                "seen": self.seen, "store": store,
                "class_slots": {c: list(s.items) for c, s in self.class_slots.items()},
                "class_seen": dict(self.class_seen),
                "by_count": {n: list(s.items) for n, s in self.by_count.items()},
                "max_count": self.max_count}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved buffer on any number of ranks: each keeps its contiguous share of
        the filled slots."""
        if state["capacity"] != self.capacity or state["policy"] != self.policy:
            raise ConfigurationError(
                f"the saved buffer has capacity {state['capacity']} and policy "
                f"'{state['policy']}' but this one {self.capacity} and '{self.policy}'; "
                "restore with the same buffer_size and policy.")
        self.__init__(self.capacity, self.policy)
        self.size, self.seen = int(state["size"]), int(state["seen"])
        world = distributed.world()
        if state["store"]:
            self._allocate({k: v[:0] for k, v in state["store"].items()})
            for rank in range(world.size):
                self.owner[: self.size][World(rank, world.size).shard(self.size)] = rank
            mine = self.owner[: self.size] == world.rank
            slots = mine.nonzero().squeeze(1)
            self.row[slots] = self._take_rows(slots.numel())
            for k, v in state["store"].items():
                self.store[k][self.row[slots].to(self.store[k].device)] = \
                    v[: self.size][mine.to(v.device)].to(self.store[k].device)
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
    if new is not None:  # every rank offers, possibly nothing: the buffer decides over all
        new = torch.cat([new[: len(batch)], new.new_zeros(max(0, len(batch) - len(new)))])
        batch = Batch(batch.x[new], batch.y[new], batch.task_ids[new])
        logits = None if logits is None else logits[new]
    buffer.add(batch.x, batch.y, batch.task_ids, logits=logits, generator=learner.generator)


def offer_task(buffer: ReplayBuffer, learner, task) -> None:
    """Offer every training sample of a finished ``task`` once (an episodic memory of
    finished tasks: A-GEM's, and ER's with ``fill="task_end"``). Every rank holds the whole
    task and offers its contiguous share, so the ranks' offers in rank order are the task."""
    device, rows = learner.device, distributed.world().shard(task.train_x.shape[0])
    buffer.add(task.train_x[rows].to(device), task.train_y[rows].to(device),
               task.task_ids[rows].to(device), generator=learner.generator)


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
        return Footprint(self.buffer.run_nbytes, stores_raw_data=True)
