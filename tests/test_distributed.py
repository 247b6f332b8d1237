"""One run on two processes equals one process (issue 16): for every registered strategy that
serves the embedded split MNIST benchmark, the accuracy matrix of a 2-rank run (gloo, CPU) is
within 1 point of the single-process one, and the importances and statistics that strategies
reduce over the ranks (Fisher, MAS, SI's path integral, the frozen learners' class statistics)
equal one process's; plus the collectives of ``forgetless.distributed`` on 2 ranks, and a rank
whose mask or column differs being caught.

Process start dominates a small run, so everything that needs two ranks is one job list run by
one ``on_ranks`` call (the module's ``two_ranks`` fixture).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distributed_harness import largest_difference, on_ranks, single
from forgetless import distributed
from forgetless.config import RunConfig
from forgetless.data.benchmarks import build_stream
from forgetless.experiments.runner import prepare
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import STRATEGIES
from forgetless.strategies.architecture.hat import HardAttentionToTheTask
from forgetless.strategies.architecture.packnet import FREE, PackNet
from forgetless.strategies.architecture.pnn import ProgressiveNeuralNetworks
from strategy_helpers import first_served_scenario, skip_unless_installed

BUDGET = {"iterations": 20, "batch_size": 64, "seed": 0}
#: The replay strategies' budget: one epoch at the default batch (6 steps of 128 per task). Their
#: discrete choices (MIR's most interfered candidates, the buffers' slots) turn float rounding
#: into a different run more easily: on BUDGET the 2-rank matrix differs in one cell by 12
#: points for MIR, 3 for DER++, 2.5 for generative replay (ACC within 0.5), on this one by at
#: most 0.5 at seed 0 and 2 over seeds 0-2 (docs/distributed.md). Their exactness itself (the
#: weights to 1e-4, the buffers) is tested in test_distributed_replay.py.
REPLAY_BUDGET = {"epochs": 1, "seed": 0}

#: One pass over each task (about 12 steps of 64), consolidating every 20 steps.
TASK_FREE = {"stream": "task-free", "epochs": 1, "iterations": None,
             "strategy_params": {"consolidate_every": 20}}

#: Runs whose strategy state (importances, statistics) is compared with one process's, beyond
#: the accuracy matrix: a reduction left out (a Fisher over one rank's share only) keeps the
#: ranks in step and may move the matrix by less than a point, but not the state. On 2 tasks:
#: over 5, EWC's stiff penalty amplifies float rounding (a 1e-6 relative nudge of one
#: process's initial weights moves its final weights by 10% of their scale, as 2 ranks do).
STATE_RUNS = {
    "ewc": {}, "ewc sampled": {"strategy_params": {"fisher_estimator": "sampled"}},
    "ewc batched": {"strategy_params": {"fisher_estimator": "batched"}},
    "online-ewc": {}, "online-ewc task-free": {**TASK_FREE},
    "si": {}, "si task-free": {**TASK_FREE}, "mas": {},
    "ncm": {}, "slda": {}, "ranpac": {},
}


def _tested(name: str) -> bool:
    packages = getattr(STRATEGIES.get(name), "requires_packages", ())
    return all(_installed(package) for package in packages)


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def matrix_config(name: str) -> RunConfig:
    budget = REPLAY_BUDGET if STRATEGIES.get(name).family == "replay" else BUDGET
    return RunConfig(strategy=name, scenario=first_served_scenario(name), **budget)


def state_config(run: str) -> RunConfig:
    name = run.split()[0]
    return RunConfig(strategy=name, scenario=first_served_scenario(name),
                     **{**BUDGET, "tasks": 2, **STATE_RUNS[run]})


# ---------------------------------------------------------------- jobs (run on every rank)
def matrix_and_state(config: RunConfig):
    """The run's accuracy matrix and its strategy's tensors, by name."""
    experiment = prepare(config, progress=False)
    fit = experiment.learner.fit(experiment.stream)
    return fit.accuracy_matrix, flat_tensors(experiment.learner.strategy.state_dict())


def flat_tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return {prefix: state.detach().double()}
    items = (state.items() if isinstance(state, dict)
             else enumerate(state) if isinstance(state, (list, tuple)) else ())
    return {k: v for key, value in items
            for k, v in flat_tensors(value, f"{prefix}/{key}").items()}


def toy_problem():
    """A small network, seven rows and a parameter no rank's loss reaches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    unused = nn.Parameter(torch.zeros(2))
    return model, [*model.parameters(), unused], torch.randn(7, 5), torch.randint(0, 3, (7,))


def averaged_gradients(_=None):
    """Each rank's gradient of its rows' mean loss (rank 0: 2 rows, rank 1: 5), averaged."""
    model, params, x, y = toy_problem()
    rows = slice(0, 2) if distributed.world().rank == 0 else slice(2, 7)
    F.cross_entropy(model(x[rows]), y[rows]).backward()
    distributed.average_gradients(params, rows.stop - rows.start)
    return [None if p.grad is None else p.grad.clone() for p in params]


def disagreements_caught(_=None) -> dict[str, bool]:
    rank = distributed.world().rank
    cases = {"same": [torch.tensor([1.0, 2.0, 3.0]), torch.ones(2, 2)],
             "one value": [torch.tensor([1.0, 2.0, 3.0 + rank]), torch.ones(2, 2)],
             "two values swapped": [torch.tensor([1.0, 2.0, 3.0]) if rank == 0
                                    else torch.tensor([1.0, 3.0, 2.0]), torch.ones(2, 2)]}
    caught = {}
    for case, tensors in cases.items():
        try:
            distributed.check_identical(tensors, case)
            caught[case] = False
        except RuntimeError:
            caught[case] = True
    return caught


def reduced_means(_=None) -> list[torch.Tensor]:
    """Rank 0 holds [1, 10] with weight 1, rank 1 [5, 6] with weight 3."""
    rank = distributed.world().rank
    values = torch.tensor([1.0, 10.0]) if rank == 0 else torch.tensor([5.0, 6.0])
    summed = distributed.all_reduce_sum_([values.clone()])[0]
    return [distributed.all_reduce_mean_([values], weight=1.0 if rank == 0 else 3.0)[0], summed]


class _MaskDiffersOnRankOne(PackNet):
    def _prune(self, t):
        freed = super()._prune(t)
        if t == 0 and distributed.world().rank == 1:  # one weight freed on rank 0 kept here
            owner = next(iter(self.owners.values())).view(-1)
            owner[int((owner == FREE).nonzero()[0])] = t
        return freed


class _UsedUnitsDifferOnRankOne(HardAttentionToTheTask):
    def after_task(self, task):
        if distributed.world().rank == 1:  # units no task used count as half-used here
            self.used = self.used + 0.5
        super().after_task(task)


class _ColumnDiffersOnRankOne(ProgressiveNeuralNetworks):
    def after_task(self, task):
        if distributed.world().rank == 1:
            with torch.no_grad():
                next(self.network.columns[-1].parameters()).view(-1)[0] += 1.0
        super().after_task(task)


TAMPERED = {"packnet": _MaskDiffersOnRankOne, "hat": _UsedUnitsDifferOnRankOne,
            "pnn": _ColumnDiffersOnRankOne}


def tampered_run(name: str) -> str | None:
    """The error a 2-task run raises when rank 1's ``name`` state differs (None: none)."""
    stream = build_stream("split", "task", tasks=2, source="digits", seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, TAMPERED[name](), iterations=5, batch_size=16, seed=0)
    try:
        learner.fit(stream)
    except RuntimeError as error:
        return str(error)
    return None


UNIT_JOBS = {"gradients": averaged_gradients, "disagreements": disagreements_caught,
             "means": reduced_means, **{f"tampered {name}": tampered_run for name in TAMPERED}}


class JobFailed(str):
    """What a job raised, returned in its place so that it fails its own test only."""


def rank_job(item):
    """One job of the list: ``(kind, argument)``."""
    kind, argument = item
    try:
        if kind in ("matrix", "state"):
            return matrix_and_state(argument)
        return UNIT_JOBS[kind](argument)
    except Exception as error:  # both ranks raise alike: a broken run stops only its own test
        return JobFailed(f"{type(error).__name__}: {error}")


def succeeded(results: dict, key: str):
    result = results[key]
    assert not isinstance(result, JobFailed), f"{key}: {result}"
    return result


def _jobs() -> dict[str, tuple]:
    jobs = {f"matrix {n}": ("matrix", matrix_config(n)) for n in STRATEGIES.names() if _tested(n)}
    jobs.update({f"state {run}": ("state", state_config(run)) for run in STATE_RUNS})
    jobs.update({kind: (kind, kind.split()[-1]) for kind in UNIT_JOBS})
    return jobs


@pytest.fixture(scope="module")
def two_ranks() -> dict:
    """Every job's rank-0 result, from one 2-rank process group."""
    jobs = _jobs()
    return dict(zip(jobs, on_ranks(list(jobs.values()), job=rank_job), strict=True))


@pytest.fixture(scope="module")
def one_process() -> dict:
    """The runs' results in this process."""
    jobs = {k: v for k, v in _jobs().items() if v[0] in ("matrix", "state")}
    return dict(zip(jobs, single(list(jobs.values()), job=rank_job), strict=True))


# ---------------------------------------------------------------- every strategy
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_two_ranks_give_one_process_accuracy_matrix(name, two_ranks, one_process):
    skip_unless_installed(name)
    key = f"matrix {name}"
    gap = largest_difference(succeeded(one_process, key)[0], succeeded(two_ranks, key)[0])
    assert gap <= 1.0, f"{name}: 2 ranks differ from 1 process by {gap:.2f} points"


@pytest.mark.parametrize("run", STATE_RUNS)
def test_two_ranks_reduce_to_one_process_state(run, two_ranks, one_process):
    key = f"state {run}"
    expected, actual = succeeded(one_process, key)[1], succeeded(two_ranks, key)[1]
    assert expected, f"{run}: the strategy kept no tensor to compare"
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        scale = value.abs().max().clamp_min(1e-12)
        gap = float((actual[key] - value).abs().max() / scale)
        # rounding reaches 1.5e-3 of the scale (EWC's second Fisher, at weights one task of
        # training apart); a reduction left out is 0.18-0.5 of it
        assert gap < 1e-2, f"{run}: {key} differs from one process's by {gap:.2e} of its scale"


# ---------------------------------------------------------------- the collectives
def test_average_gradients_is_the_full_batch_gradient_with_unequal_shares(two_ranks):
    model, params, x, y = toy_problem()
    F.cross_entropy(model(x), y).backward()
    averaged = succeeded(two_ranks, "gradients")
    assert averaged[-1] is None  # no rank touched it: the optimiser skips it, as in one process
    for p, g in zip(params[:-1], averaged[:-1], strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)


def test_check_identical_raises_when_ranks_disagree(two_ranks):
    assert succeeded(two_ranks, "disagreements") == {"same": False, "one value": True,
                                          "two values swapped": True}


def test_all_reduce_mean_weights_each_rank(two_ranks):
    mean, summed = succeeded(two_ranks, "means")
    torch.testing.assert_close(mean, torch.tensor([(1 + 3 * 5) / 4, (10 + 3 * 6) / 4]))
    torch.testing.assert_close(summed, torch.tensor([6.0, 16.0]))


@pytest.mark.parametrize(("name", "what"), [("packnet", "packnet's masks after task 0"),
                                             ("hat", "hat's used units after task 0"),
                                             ("pnn", "pnn's column for task 0")])
def test_a_rank_whose_masks_or_columns_differ_is_caught(name, what, two_ranks):
    error = succeeded(two_ranks, f"tampered {name}")
    assert error is not None and what in error, error


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_cover_every_item_once_and_evenly(size):
    for n in range(0, 20):
        worlds = [distributed.World(rank, size) for rank in range(size)]
        covered = [i for w in worlds for i in range(n)[w.shard(n)]]
        assert covered == list(range(n))
        shares = [w.share(n) for w in worlds]
        assert [len(range(n)[w.shard(n)]) for w in worlds] == shares
        assert max(shares) - min(shares) <= 1
