"""The Learner as one rank of a process group: shares of a batch that do not divide, a rank
with nothing to train on, a batch too small to share."""

from distributed_harness import largest_difference, on_ranks, single
from forgetless.config import RunConfig
from forgetless.errors import ConfigurationError

# 800 samples per task in batches of 14: 57 batches of 14 (shares 5, 5, 4 on three ranks) and a
# last batch of 2 (shares 1, 1 and none).
UNEVEN = [RunConfig(strategy=name, batch_size=14, epochs=1, seed=0) for name in ("naive", "ewc")]


def test_three_ranks_with_uneven_and_empty_shares_give_the_single_process_run():
    alone, together = single(UNEVEN), on_ranks(UNEVEN, ranks=3)
    for config, one, three in zip(UNEVEN, alone, together, strict=True):
        assert largest_difference(one, three) <= 1.0, config.strategy
        assert sum(one[-1]) / len(one[-1]) > 0.15  # it trained (naive's 1 task of 5 is 0.19)


def refusal(config: RunConfig) -> str:
    from forgetless.experiments.runner import prepare

    try:
        prepare(config, progress=False)
    except ConfigurationError as error:
        return str(error)
    return ""


def test_a_batch_smaller_than_the_ranks_is_refused_with_the_fix():
    message, = on_ranks([RunConfig(batch_size=1)], job=refusal)
    assert "split over 2 processes" in message and "--batch-size 2 or more" in message
