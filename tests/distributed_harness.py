"""Runs configs on two CPU ranks (gloo) and in this process, to compare their accuracy
matrices: ``forgetless.distributed`` promises the same result whatever the number of ranks.

``on_ranks(configs)`` starts one process group of ``ranks`` processes (spawned once for all the
configs: starting Python and torch dominates a small run) and returns rank 0's results;
``single(configs)`` runs the same configs here, one process.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from forgetless.config import RunConfig


def _rank_main(rank: int, ranks: int, rendezvous: str, configs: list[RunConfig], out: str,
               job) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=ranks)
    try:
        results = [job(config) for config in configs]
        if rank == 0:
            with open(out, "wb") as f:
                pickle.dump(results, f)
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: in CI, a rank that had finished its jobs and
    # destroyed the group aborted there ("terminate called without an active exception", no
    # Python frame), which failed the whole process group while rank 0 was still finishing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def matrix_of(config: RunConfig) -> list[list[float]]:
    """The default job: the run's accuracy matrix."""
    from forgetless.experiments.runner import run

    return run(config, progress=False).accuracy_matrix


def on_ranks(configs: list[RunConfig], ranks: int = 2, job=matrix_of, attempts: int = 2) -> list:
    """``job(config)`` for each config, run as ``ranks`` processes of one process group;
    rank 0's results (``job`` must be a module-level function: it is pickled).

    A process group whose rank was killed by a signal is run again, once, with a warning: the
    ranks skip the teardown where CI saw them abort (``_rank_main``), and this is the fallback
    should a native crash strike elsewhere. A Python exception in a rank (a failed check, a
    desynchronised collective's error) is never retried, and neither is a second crash, so a
    bug that crashes every time still fails."""
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory() as folder:
            rendezvous, out = os.path.join(folder, "rendezvous"), os.path.join(folder, "out.pkl")
            try:
                mp.spawn(_rank_main, args=(ranks, rendezvous, configs, out, job), nprocs=ranks,
                         join=True)
            except mp.ProcessExitedException as crash:
                if crash.signal_name is None or attempt == attempts:
                    raise
                warnings.warn(f"a rank crashed natively ({crash}); running the process group "
                              f"again (attempt {attempt + 1} of {attempts})", stacklevel=2)
                continue
            with open(out, "rb") as f:
                return pickle.load(f)
    raise AssertionError("unreachable: the last attempt returns or raises")


def single(configs: list[RunConfig], job=matrix_of) -> list:
    """``job(config)`` for each config in this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [job(config) for config in configs]
    finally:
        torch.set_num_threads(threads)


def largest_difference(a: list[list[float]], b: list[list[float]]) -> float:
    """The largest difference between two accuracy matrices, in points."""
    return 100 * max(abs(x - y) for row_a, row_b in zip(a, b, strict=True)
                     for x, y in zip(row_a, row_b, strict=True))
