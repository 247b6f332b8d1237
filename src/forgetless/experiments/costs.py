"""What a planned run will cost, before it is trained: the ETA of a comparison and the time
estimate of ``compare --dry-run`` and ``advise``.

A run's cost is its strategy's train time as a multiple of naive's on the same protocol. The
ratio comes from the results store when it holds runs of that strategy and of naive on one
protocol (measured beats assumed); otherwise from ``COST_PRIOR``, the ratios that
benchmarks/compare.md measured for the default comparison. The seconds of one naive run come
from the store's naive runs of the same protocol, else from ``NAIVE_SECONDS_PRIOR`` scaled by
the epochs. During a comparison the ETA is calibrated on the runs already finished: elapsed
seconds per unit of cost, times the cost still to come, so one slow generative-replay run no
longer makes the estimate jump.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from forgetless.config import RunConfig
from forgetless.results.store import RunStore, protocol_key

#: Train time over naive's on the embedded split MNIST, `--quick` (the "time x naive" column of
#: benchmarks/compare.md, `forgetless compare --csv compare.csv`, mean over scenarios, rounded).
COST_PRIOR = {
    "naive": 1.0, "joint": 0.9, "cumulative": 2.3,
    "ewc": 1.6, "online-ewc": 1.4, "si": 1.2, "mas": 1.1, "lwf": 1.1, "l2": 1.0,
    "er": 1.3, "er-ace": 1.5, "agem": 1.8, "gem": 3.3, "derpp": 2.2, "icarl": 2.0,
    "gdumb": 0.6, "pnn": 3.5, "packnet": 1.6, "hat": 1.3, "mir": 3.9,
    # the small VAE with its floor of 100 generator steps per task (issue 16; the 400-400 VAE,
    # the default before, cost 22-27x)
    "generative-replay": 5.9,
}
#: A strategy neither the store nor the prior knows.
UNKNOWN_COST = 2.0
#: Train seconds of one naive run of the default protocol (3 epochs per task over the embedded
#: split MNIST's PRIOR_TRAIN_SAMPLES), and the seconds each run spends outside training (data,
#: evaluation, set-up): in benchmarks/compare.md's table naive trains in 0.72 s, and the 165
#: runs took 145 s on 2 workers (290 worker-seconds) of which 225 s were train time: 65 s /
#: 165 runs = 0.39 s.
NAIVE_TRAIN_SECONDS_PRIOR = 0.72
PRIOR_EPOCHS = 3
PRIOR_TRAIN_SAMPLES = 4000
RUN_OVERHEAD_S = 0.39


def _parts(spec: str) -> list[str]:
    return [p.strip() for p in spec.split("+") if p.strip()]


@dataclass
class CostModel:
    """Cost ratios per strategy and naive seconds per protocol, measured where possible."""

    ratios: dict[str, float]  # strategy -> train time / naive's (measured ones)
    naive_seconds: dict[str, float]  # protocol -> seconds of one naive run (measured ones)

    @classmethod
    def from_store(cls, store: RunStore | None) -> CostModel:
        """Ratios from the store's runs: each strategy's mean train time over naive's mean on
        the same protocol, averaged over protocols."""
        if store is None:
            return cls({}, {})
        seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
        for row in store.summaries():
            if row["train_seconds"] is not None:
                seconds[(row["protocol"], row["strategy"])].append(row["train_seconds"])
        naive = {p: sum(v) / len(v) for (p, s), v in seconds.items() if s == "naive"}
        ratios: dict[str, list[float]] = defaultdict(list)
        for (protocol, strategy), values in seconds.items():
            if protocol in naive and naive[protocol] > 0:
                ratios[strategy].append(sum(values) / len(values) / naive[protocol])
        return cls({s: sum(v) / len(v) for s, v in ratios.items()}, naive)

    def ratio(self, strategy: str) -> float:
        """A strategy's cost in naive runs; a composition pays naive once plus each part's
        extra."""
        if strategy in self.ratios:
            return self.ratios[strategy]
        parts = _parts(strategy)
        if len(parts) > 1:
            return 1.0 + sum(self.ratio(p) - 1.0 for p in parts)
        return COST_PRIOR.get(strategy, UNKNOWN_COST)

    def measured(self, strategy: str) -> bool:
        return strategy in self.ratios

    def naive_train_seconds(self, config: RunConfig) -> float:
        """A naive run's train seconds: measured on this protocol, else a text benchmark's own
        prior scaled by the epochs, else the default comparison's scaled by the samples the
        run trains on (its stream's size, epochs or iterations): full Fashion-MNIST is 15
        times the embedded split's 4,000."""
        protocol = protocol_key(config.to_dict())
        if protocol in self.naive_seconds:
            return self.naive_seconds[protocol]
        own = _own_prior(config.benchmark)
        if own is not None:
            seconds, epochs_measured, _ = own
            epochs = config.epochs if not config.iterations else epochs_measured
            return seconds * epochs / epochs_measured
        return (NAIVE_TRAIN_SECONDS_PRIOR * _samples_trained(config)
                / (PRIOR_EPOCHS * PRIOR_TRAIN_SAMPLES))

    def seconds(self, config: RunConfig) -> float:
        """The expected wall seconds of one run on one worker."""
        return self.ratio(config.strategy) * self.naive_train_seconds(config) + \
            _benchmark_prior(config.benchmark)[2]


def _samples_trained(config: RunConfig) -> int:
    """Training samples one run of ``config`` goes through: its tasks' iterations times the
    batch, else its stream's training samples times the epochs (one pass on a stream)."""
    if config.iterations:
        return config.iterations * config.batch_size * config.tasks
    passes = 1 if config.stream != "tasks" else config.epochs
    return passes * _stream_train_samples(config)


_STREAM_SIZES: dict[str, int] = {}


def _stream_train_samples(config: RunConfig) -> int:
    """The training samples of ``config``'s stream, built once per data protocol (loading its
    source; nothing is written)."""
    from forgetless.experiments.runner import canonical_names, config_stream

    key = protocol_key({k: v for k, v in config.to_dict().items()
                        if k in ("benchmark", "source", "tasks", "data_dir", "benchmark_options",
                                 "scenario")})
    if key not in _STREAM_SIZES:
        stream = config_stream(canonical_names(config))
        _STREAM_SIZES[key] = sum(len(task.train_x) for task in stream)
    return _STREAM_SIZES[key]


def _own_prior(benchmark: str) -> tuple[float, int, float] | None:
    """A text benchmark's own measured ``cost_prior`` (its model's loading and evaluation
    dominate); None for the others."""
    from forgetless.data.benchmarks import BENCHMARKS

    if benchmark not in BENCHMARKS:
        return None
    return getattr(BENCHMARKS.get(benchmark), "cost_prior", None)


def _benchmark_prior(benchmark: str) -> tuple[float, int, float]:
    """(naive train seconds, at how many epochs, overhead seconds per run) before any run is
    stored: the benchmark's own prior, else the default comparison's."""
    own = _own_prior(benchmark)
    if own is not None:
        return own
    return NAIVE_TRAIN_SECONDS_PRIOR, PRIOR_EPOCHS, RUN_OVERHEAD_S


@dataclass
class Estimate:
    """What a plan will take."""

    runs: int  # planned
    todo: int  # not in the store yet
    seconds: float  # wall time on ``jobs`` workers
    assumed: list[str]  # strategies whose cost ratio is the prior, not measured

    strategies: int = 0  # distinct strategies planned

    def describe(self) -> str:
        """``about 2:10 on an idle machine (cost ratios: ...)``."""
        if not self.assumed:
            basis = "cost ratios measured in the store"
        elif len(self.assumed) == self.strategies:
            basis = "no runs in the store to time from: cost ratios of benchmarks/compare.md"
        else:
            basis = (f"cost ratios from the store, benchmarks/compare.md's for "
                     f"{', '.join(self.assumed)}")
        return f"about {format_duration(self.seconds)} on an idle machine ({basis})"


def estimate(configs: Iterable[RunConfig], model: CostModel, jobs: int) -> Estimate:
    """The wall time of training ``configs`` on ``jobs`` workers: the busiest worker when the
    runs, longest first, go to whichever worker is free first."""
    configs = list(configs)
    costs = sorted((model.seconds(c) for c in configs), reverse=True)
    workers = [0.0] * max(1, jobs)
    for cost in costs:
        workers[workers.index(min(workers))] += cost
    assumed = sorted({c.strategy for c in configs if not model.measured(c.strategy)})
    return Estimate(len(configs), len(configs), max(workers), assumed,
                    len({c.strategy for c in configs}))


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Eta:
    """Time left in a comparison: each finished run counts by its expected cost, and the
    elapsed time per unit of cost so far prices what is left."""

    def __init__(self, costs: dict[str, float]) -> None:
        self.costs = dict(costs)  # run id -> expected cost (any unit)
        self.done = 0.0
        self.start = time.perf_counter()

    def finished(self, run_id: str) -> None:
        self.done += self.costs.get(run_id, 0.0)

    def remaining_seconds(self) -> float | None:
        if self.done <= 0:
            return None
        left = sum(self.costs.values()) - self.done
        return (time.perf_counter() - self.start) / self.done * max(0.0, left)

    def text(self) -> str:
        left = self.remaining_seconds()
        return "ETA ?" if left is None else f"ETA {format_duration(left)}"
