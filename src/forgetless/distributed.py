"""One run across processes: data parallelism on ``torch.distributed`` (gloo on CPU, NCCL on
GPU), launched by ``torchrun`` or ``forgetless run --nproc N``.

Each process (a *rank*) holds the same model and the whole stream; every global batch, drawn
from one order that all ranks share, is split between the ranks, each trains on its share, and
their gradients are averaged (weighted by each rank's rows) before every optimiser step, so the
step is the one a single process would take on the whole global batch. Every rank draws from
one generator seeded alike, and every draw is made by every rank with the same arguments, so the
ranks stay in step. What a strategy keeps is either sharded (a replay buffer: its slots are
decided alike on every rank over the whole global batch, and each rank stores the winners from
its own rows) or reduced (Fisher, MAS importances, iCaRL's class means: each rank measures its
share of the data and the sums are all-reduced), so the result is one process's, up to float
rounding, whatever the number of ranks (docs/distributed.md). Outside a process group every
function here is the single-process identity: the code that calls them needs no branch.

Why not the ``DistributedDataParallel`` wrapper: strategies grow the model (PNN's columns),
gate it (HAT, PackNet) and run forward passes of their own (replay, Fisher), which the
wrapper's fixed parameter set and per-forward hooks do not follow. The Learner instead
all-reduces every trainable gradient in one flat buffer after the backward pass, the same
averaging DDP's reducer does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from forgetless.errors import ConfigurationError

#: The variables ``torchrun`` (and ``forgetless run --nproc``) set for every process.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, stores and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, n: int) -> int:
        """This rank's share of ``n`` items split as evenly as possible (the first ranks take
        one more when ``n`` does not divide)."""
        return n // self.size + (self.rank < n % self.size)

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (``share`` of them)."""
        start = self.rank * (n // self.size) + min(self.rank, n % self.size)
        return slice(start, start + self.share(n))


def world() -> World:
    """The current process group's world, or the single process outside one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or ``--nproc``) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and all(
        v in os.environ for v in LAUNCH_VARIABLES)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_environment(device: torch.device | str = "cpu") -> World:
    """Join the process group that ``torchrun`` describes in the environment (once per
    process); a CUDA run puts each rank on its own GPU (``LOCAL_RANK``)."""
    if not launched():
        return World()
    if not dist.is_available():
        raise ConfigurationError("this PyTorch build has no torch.distributed; run with one "
                                 "process (drop --nproc / torchrun).")
    if not dist.is_initialized():
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend_for(device))
    return world()


def rank_device(device: torch.device) -> torch.device:
    """The device this rank computes on: its own GPU under CUDA, else ``device``."""
    if device.type == "cuda" and world().distributed and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


# ---------------------------------------------------------------------- collectives
def all_reduce_sum_(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Sum each tensor over the ranks, in place (one flat all-reduce for all of them)."""
    if not world().distributed or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1).to(torch.float64 if t.dtype == torch.float64
                                       else torch.float32) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return tensors


def all_reduce_mean_(tensors: list[torch.Tensor], weight: float = 1.0) -> list[torch.Tensor]:
    """Each tensor replaced by the weighted mean over the ranks: sum(weight_r * t_r) /
    sum(weight_r), in place. ``weight``: this rank's (its number of samples)."""
    if not world().distributed or not tensors:
        return tensors
    scaled = [t * weight for t in tensors] + [torch.tensor([float(weight)])]
    all_reduce_sum_(scaled)
    total = scaled[-1].item()
    for t, s in zip(tensors, scaled[:-1], strict=True):
        t.copy_(s / total)
    return tensors


def average_gradients(parameters: list[torch.nn.Parameter], rows: int) -> None:
    """Every parameter's gradient replaced by the mean over ranks weighted by their ``rows``
    (the batch's samples on each rank): the gradient of the mean loss over the whole global
    batch, as one process would compute it. One all-reduce carries the gradients, the rows and
    which ranks had a gradient at all: a parameter no rank touched keeps none (so the optimiser
    skips it as it would in one process). The gradients are scaled in place: no copy beyond
    the flat buffer of the all-reduce."""
    if not world().distributed:
        return
    params = [p for p in parameters if p.requires_grad]
    touched = torch.tensor([float(p.grad is not None) for p in params] + [float(rows)])
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    torch._foreach_mul_(grads, float(rows))
    all_reduce_sum_(grads + [touched])
    torch._foreach_div_(grads, touched[-1].item())
    for p, hit in zip(params, touched[:-1].tolist(), strict=True):
        if not hit:
            p.grad = None


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> list[torch.Tensor]:
    """Every rank's tensors set to rank ``src``'s, in place."""
    if not world().distributed:
        return tensors
    for t in tensors:
        dist.broadcast(t.data, src)
    return tensors


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s (picklable) object, on every rank."""
    if not world().distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src)
    return holder[0]


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``tensor`` (any number per rank), concatenated in rank order."""
    if not world().distributed:
        return tensor
    pieces = [None] * world().size
    dist.all_gather_object(pieces, tensor.cpu())
    return torch.cat(pieces).to(tensor.device)


def check_identical(tensors: list[torch.Tensor], what: str) -> None:
    """Refuse to go on when ranks disagree on state that must be the same on all of them
    (the model's weights, PackNet's and HAT's masks, PNN's columns): a bug, not a setting."""
    if not world().distributed or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).double().cpu() for t in tensors])
    # a fingerprint of every value, compared through its max and min over the ranks
    summary = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1,
                                                             dtype=torch.float64)).sum()])
    high, low = summary.clone(), summary.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    if not torch.equal(high, low):
        raise RuntimeError(f"the ranks disagree on {what}; every rank must hold the same. This "
                           "is a bug in forgetless: please report it with the command line.")


def barrier() -> None:
    if world().distributed:
        dist.barrier()
