"""The replay strategies give one process's result on two ranks (issue 16): their buffers are
one global buffer, sharded (each rank stores about half of it), filled by decisions made over
the run's whole offer, sampled by global draws, and checkpointed whole, so a run resumes on
any number of ranks.

Every 2-rank run of this file happens in one process group (``on_ranks``, spawned once: the
start of Python and torch dominates these small runs).
"""

from __future__ import annotations

import pytest
import torch

from distributed_harness import largest_difference, on_ranks, single
from forgetless import distributed
from forgetless.checkpoint import load_checkpoint
from forgetless.config import RunConfig
from forgetless.experiments.runner import prepare, run
from forgetless.strategies.replay.buffer import ReplayBuffer
from forgetless.strategies.replay.common import ReplayShare

#: PyTorch's initialisation of the MLP: from Kaiming's trunk (the default) MIR's 2-rank weights
#: end 0.0096 from one process's while every other strategy's stay within 1e-4 (its matrix
#: still agrees), most likely a top-k choice that rounding flips, which test_distributed.py
#: records for MIR on its own budget. With this initialisation no choice flips, so the weights
#: of every strategy can be compared to 1e-4.
BUDGET = {"iterations": 20, "batch_size": 64, "seed": 0,
          "model_options": {"hidden": [100], "init": "pytorch"}}
SMALL_GENERATOR = {"generator_hidden": [100], "latent": 32, "generator_lr": 3e-3}


def config(strategy: str, scenario: str = "class", tasks: int = 5, budget: dict | None = None,
           **params) -> RunConfig:
    return RunConfig(strategy=strategy, scenario=scenario, tasks=tasks, strategy_params=params,
                     **{**BUDGET, **(budget or {})})


#: Every replay strategy, both buffer policies, both generators.
MATRIX_CONFIGS = {
    "er": config("er", buffer_size=200),
    "er class_balanced stream": config("er", buffer_size=200, policy="class_balanced",
                                       fill="stream"),
    "er-ace": config("er-ace", buffer_size=200),
    # 5 classes a task in batches of 9: a rank's rows often miss a class the other's hold
    "er-ace small batches": config("er-ace", tasks=2, budget={"batch_size": 9}, buffer_size=200),
    "derpp": config("derpp", buffer_size=200),
    "derpp class_balanced": config("derpp", buffer_size=200, policy="class_balanced"),
    "mir": config("mir", buffer_size=200, replay_batch_size=16),
    "agem": config("agem", buffer_size=200, memory_batch_size=64),
    "gem": config("gem", "task", memory_per_task=64),
    "gdumb": config("gdumb", buffer_size=200),
    "icarl": config("icarl", buffer_size=200),
    # 15 replayed rows: 8 on one rank, 7 on the other, so each rank's mean needs its weight
    "generative-replay vae": config("generative-replay", replay_batch_size=15,
                                    **SMALL_GENERATOR),
    # adversarial training amplifies float rounding (at a larger learning rate, to a
    # different generator), so the GAN is compared on two tasks at its own learning rate
    "generative-replay gan": config("generative-replay", "domain", tasks=2, generator="gan",
                                    generator_hidden=[32], latent=8),
}
#: Checkpointed after each of 2 tasks, then resumed after the first on the other number of
#: ranks (a buffer with logits, and the class-balanced bookkeeping).
CHECKPOINT_CONFIGS = {"derpp": config("derpp", tasks=2, buffer_size=150),
                      "er class_balanced": config("er", tasks=2, buffer_size=150,
                                                  policy="class_balanced", fill="stream")}


def buffers(strategy) -> list[ReplayBuffer]:
    part = strategy.parts[0]
    return list(getattr(part, "memories", [])) + (
        [part.buffer] if hasattr(part, "buffer") else [])


def weights(module) -> dict[str, torch.Tensor] | None:
    return None if module is None else {k: v.clone() for k, v in module.state_dict().items()}


def fitted(run_config: RunConfig) -> tuple:
    """The run's accuracy matrix; each rank's (bytes held, the whole buffer's bytes) of every
    buffer of the strategy, gathered from the ranks; the weights of the model and of the
    strategy's generator, if any."""
    experiment = prepare(run_config, progress=False)
    learner = experiment.learner
    matrix = learner.fit(experiment.stream).accuracy_matrix
    held = [(b.nbytes, b.run_nbytes) for b in buffers(learner.strategy)]
    return (matrix, distributed.all_gather_rows(torch.tensor(held).view(1, -1, 2)).tolist(),
            weights(learner.model), weights(getattr(learner.strategy.parts[0], "generator", None)))


def largest_gap(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor]) -> float:
    return max((one[k] - two[k]).abs().max().item() for k in one)


def checkpointed(run_config: RunConfig, folder: str) -> list[list[float]]:
    return run(run_config, progress=False, checkpoint_dir=folder).accuracy_matrix


def resumed(run_config: RunConfig, folder: str) -> list[list[float]]:
    return run(run_config, progress=False, checkpoint_dir=folder, resume=True).accuracy_matrix


def offered_buffer(policy: str) -> dict:
    """One buffer offered the same 12 batches of 37 samples: each rank offers its contiguous
    share of each batch; the gathered contents and each rank's stored rows."""
    generator, data = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    buffer = ReplayBuffer(60, policy)
    for step in range(12):
        x = torch.arange(step * 37, (step + 1) * 37).float().unsqueeze(1)
        y = torch.randint(6, (37,), generator=data)
        rows = distributed.world().shard(37)
        buffer.add(x[rows], y[rows], y[rows], generator=generator)
    drawn = buffer.sample(25, torch.Generator().manual_seed(2)).x.squeeze(1)
    return {"held": {k: v.clone() for k, v in buffer.tensors().items()}, "seen": buffer.seen,
            "drawn": distributed.all_gather_rows(drawn), "rows": buffer.nbytes,
            "whole": buffer.run_nbytes}


def replay_share_gradient() -> torch.Tensor:
    """The gradient of a batch's mean loss plus a replayed sample's mean loss, each rank
    holding its share of the 9 batch rows (5 and 4) and of the 7 replayed rows (4 and 3),
    averaged as the Learner averages: one process's gradient when ``ReplayShare`` is right."""
    data = torch.Generator().manual_seed(3)
    batch, replayed = torch.randn(9, 3, generator=data), torch.randn(7, 3, generator=data) + 1
    world, weight = distributed.world(), torch.ones(3, requires_grad=True)
    batch, replayed = batch[world.shard(9)], replayed[world.shard(7)]
    share = ReplayShare(batch)
    loss = (batch @ weight).square().mean() + share.of(
        (replayed @ weight).square().mean(), len(replayed), 7)
    loss.backward()
    distributed.average_gradients([weight], len(batch))
    return weight.grad


JOBS = {"fitted": fitted, "checkpointed": checkpointed, "resumed": resumed,
        "buffer": offered_buffer, "share": replay_share_gradient}


def job(spec: tuple):
    """One entry of the runs below: ``(job name, *arguments)``."""
    return JOBS[spec[0]](*spec[1:])


def keep_only_the_first_task(folder) -> None:
    """Leave the checkpoint after task 1 alone, so a resume trains task 2."""
    for path in folder.iterdir():
        if path.name.startswith("task-002"):
            path.unlink()


def buffer_state(folder, name: str) -> dict:
    """The saved buffer of the checkpoint after task 1."""
    _, state = load_checkpoint(next(p for p in folder.iterdir()
                                    if p.name.startswith("task-001")))
    return state["strategy"][f"0:{name}"]["buffer"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed-replay")
    here, there = {}, {}
    for name in CHECKPOINT_CONFIGS:
        here[name], there[name] = folder / f"{name} single", folder / f"{name} ranks"
    matrix_jobs = [("fitted", c) for c in MATRIX_CONFIGS.values()]
    buffer_jobs = [("buffer", "reservoir"), ("buffer", "class_balanced"), ("share",)]
    saved_here = single([("checkpointed", c, str(here[n]))
                         for n, c in CHECKPOINT_CONFIGS.items()], job)
    for name in CHECKPOINT_CONFIGS:
        keep_only_the_first_task(here[name])
    ones = single(matrix_jobs + buffer_jobs, job)
    twos = on_ranks(matrix_jobs + buffer_jobs
                    + [("resumed", c, str(here[n])) for n, c in CHECKPOINT_CONFIGS.items()]
                    + [("checkpointed", c, str(there[n]))
                       for n, c in CHECKPOINT_CONFIGS.items()], job=job)
    k, c = len(matrix_jobs), len(CHECKPOINT_CONFIGS)
    states = {n: (buffer_state(here[n], CHECKPOINT_CONFIGS[n].strategy),
                  buffer_state(there[n], CHECKPOINT_CONFIGS[n].strategy))
              for n in CHECKPOINT_CONFIGS}
    for name in CHECKPOINT_CONFIGS:
        keep_only_the_first_task(there[name])
    resumed_here = single([("resumed", cfg, str(there[n]))
                           for n, cfg in CHECKPOINT_CONFIGS.items()], job)
    b = len(buffer_jobs)
    return {"ones": ones[:k], "twos": twos[:k], "buffers": (ones[k:k + 2], twos[k:k + 2]),
            "share": (ones[k + 2], twos[k + 2]), "saved_here": saved_here,
            "resumed_there": twos[k + b:k + b + c], "saved_there": twos[k + b + c:],
            "resumed_here": resumed_here, "states": states}


def test_two_ranks_give_the_single_process_matrix_for_every_replay_strategy(runs):
    differences = {name: largest_difference(one[0], two[0]) for name, one, two in zip(
        MATRIX_CONFIGS, runs["ones"], runs["twos"], strict=True)}
    assert max(differences.values()) <= 1.0, differences
    # the replayed runs learned (old tasks kept above chance): the equality is not vacuous
    for name, (matrix, *_) in zip(MATRIX_CONFIGS, runs["ones"], strict=True):
        assert sum(matrix[-1]) / len(matrix[-1]) > 0.3, (name, matrix[-1])


def test_two_ranks_train_the_single_process_model_and_generator_to_float_rounding(runs):
    """Closer than the matrix shows: the weights themselves (measured within 6e-6)."""
    generators = 0
    for name, one, two in zip(MATRIX_CONFIGS, runs["ones"], runs["twos"], strict=True):
        if name != "generative-replay gan":  # its adversarial game amplifies the rounding
            assert largest_gap(one[2], two[2]) < 1e-4, name
        if one[3] is not None:
            generators += 1
            assert largest_gap(one[3], two[3]) < 1e-4, name
    assert generators == 2


def test_each_rank_stores_about_half_of_every_buffer(runs):
    """A rank allocates half the capacity, grown (in sixteenths) to the most slots it held at
    once: half, plus the excursion of a random walk (measured: 50-63% of the buffer)."""
    for name, (_, held, *_) in zip(MATRIX_CONFIGS, runs["twos"], strict=True):
        for rank_0, rank_1 in zip(*held, strict=True):
            whole = rank_0[1]
            assert whole == rank_1[1] > 0, name
            assert 0.5 * whole <= rank_0[0] <= 0.7 * whole, (name, held)
            assert 0.5 * whole <= rank_1[0] <= 0.7 * whole, (name, held)
    for _, held, *_ in runs["ones"]:  # one process holds the whole buffer
        assert all(rows == whole for rows, whole in held[0])


def test_a_sharded_buffer_holds_and_draws_what_one_buffer_holds_and_draws(runs):
    ones, twos = runs["buffers"]
    for one, two in zip(ones, twos, strict=True):
        assert one["seen"] == two["seen"] == 12 * 37
        for key in ("x", "y", "task_ids"):
            assert torch.equal(one["held"][key], two["held"][key]), key
        assert sorted(one["drawn"].tolist()) == sorted(two["drawn"].tolist())
        assert len(one["drawn"]) == 25
        assert one["rows"] == one["whole"] and 0.5 * two["whole"] <= two["rows"] <= \
            0.7 * two["whole"]


def test_a_replayed_mean_shared_by_two_ranks_trains_as_one_process_mean(runs):
    one, two = runs["share"]
    assert torch.allclose(one, two, rtol=1e-5), (one, two)


def test_a_checkpoint_from_two_ranks_is_the_single_process_one(runs):
    for name, (one, two) in runs["states"].items():
        assert (one["size"], one["seen"]) == (two["size"], two["seen"]), name
        for key in ("x", "y", "task_ids"):
            assert torch.equal(one["store"][key], two["store"][key]), (name, key)
        if "logits" in one["store"]:
            assert torch.allclose(one["store"]["logits"], two["store"]["logits"], atol=1e-4)


def test_a_run_resumes_on_another_number_of_ranks_with_the_uninterrupted_result(runs):
    for i, name in enumerate(CHECKPOINT_CONFIGS):
        uninterrupted = runs["saved_here"][i]
        assert largest_difference(runs["resumed_there"][i], uninterrupted) <= 1.0, name
        assert largest_difference(runs["saved_there"][i], uninterrupted) <= 1.0, name
        assert largest_difference(runs["resumed_here"][i], uninterrupted) <= 1.0, name
