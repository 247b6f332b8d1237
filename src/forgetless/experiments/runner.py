"""From a RunConfig to a RunResult: build the stream, model, strategy and Learner, train,
measure. The CLI, ``compare`` and sweeps all run experiments through here."""

from __future__ import annotations

import platform
import resource
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from forgetless import distributed
from forgetless.config import RunConfig, run_id
from forgetless.data.benchmarks import build_stream
from forgetless.data.stream import Scenario, Stream
from forgetless.errors import ConfigurationError, ForgetlessWarning
from forgetless.learner import Learner, check_scenario
from forgetless.metrics import forward_transfer_defined, summarize
from forgetless.models import build_model
from forgetless.results import RunResult
from forgetless.strategies import build_strategy

#: ``benchmark_options`` that restrict a stream for tuning (see ``forgetless.experiments.sweep``).
TUNING_OPTIONS = ("first_tasks", "validation_fraction")


@dataclass
class Experiment:
    """A configured, not yet trained run."""

    config: RunConfig
    resolved: dict
    run_id: str
    stream: Stream
    learner: Learner


def resolve(config: RunConfig, strategy) -> dict:
    """The configuration with every strategy hyper-parameter spelled out (``name.param``), and
    the MLP's initialisation unless it is PyTorch's: runs stored before the default changed
    (PyTorch's then, no ``init`` in their config) are never taken for runs of today's default,
    and ``--init pytorch`` finds them again (their records, their checkpoints)."""
    from forgetless.models.networks import DEFAULT_INIT

    resolved = config.to_dict()
    if resolved["model"] == "mlp":
        options = {"init": DEFAULT_INIT, **resolved["model_options"]}
        if options["init"] == "pytorch":
            del options["init"]
        resolved["model_options"] = options
    parts = getattr(strategy, "parts", [strategy])
    resolved["strategy_params"] = {f"{p.name}.{k}": v for p in parts
                                   for k, v in p.hyperparameters().items()}
    return resolved


def config_stream(config: RunConfig):
    """The stream a (canonically named) config trains on; a sweep's tuning run gets the first
    tasks only, or a validation split."""
    source_options = {"data_dir": config.data_dir} if config.data_dir else {}
    options = dict(config.benchmark_options)
    tuning = {k: options.pop(k) for k in TUNING_OPTIONS if k in options}
    stream = build_stream(config.benchmark, config.scenario, config.tasks, seed=config.seed,
                          source=config.source, source_options=source_options,
                          model=config.model, **options)
    if tuning:
        from forgetless.data.transforms import tuning_stream

        stream = tuning_stream(stream, tuning, config.seed)
    return stream


def canonical_names(config: RunConfig) -> RunConfig:
    """The config with every registered name in its registered spelling (``EWC`` -> ``ewc``,
    ``class-il`` -> ``class``), so the run id does not depend on how a name was typed; an
    unknown name fails here, before anything is built, with a suggestion."""
    from forgetless.data.benchmarks import BENCHMARKS
    from forgetless.data.sources import SOURCES
    from forgetless.models import MODELS
    from forgetless.strategies import canonical_spec

    return config.updated(scenario=Scenario.parse(config.scenario).value,
                          strategy=canonical_spec(config.strategy),
                          benchmark=BENCHMARKS.canonical(config.benchmark),
                          source=SOURCES.canonical(config.source),
                          model=config.model if config.model.startswith("hf:")
                          else MODELS.canonical(config.model))


def configured_strategy(config: RunConfig):
    """The strategy a config asks for (tuned defaults < settings), the resolved config and its
    run id. One place, so a planned run id (``compare``) always equals the trained run's."""
    config = canonical_names(config)
    strategy = build_strategy(config.strategy, config.strategy_params,
                              benchmark=config.benchmark, scenario=config.scenario)
    resolved = resolve(config, strategy)
    return strategy, resolved, run_id(resolved)


def prepare(config: RunConfig, progress: bool | None = None) -> Experiment:
    """Build everything and check it fits together, before any training or writing."""
    config = canonical_names(config)
    stream = config_stream(config)
    strategy, resolved, identifier = configured_strategy(config)
    check_scenario(strategy, stream.scenario)
    torch.manual_seed(config.seed)
    model = build_model(config.model, stream.input_shape, stream.num_outputs,
                        **config.model_options)
    check_stream_settings(config)
    eval_every = config.eval_every if config.eval_every is not None else (
        "auto" if config.stream != "tasks" else None)
    learner = Learner(model, strategy, epochs=config.epochs, iterations=config.iterations,
                      batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
                      momentum=config.momentum, reset_optimizer=config.reset_optimizer,
                      seed=config.seed, device=config.device, progress=progress,
                      task_free=config.stream == "task-free", blur=config.blur,
                      eval_every=eval_every, eval_samples=config.eval_samples,
                      compile=config.compile)
    learner.bind(stream)
    return Experiment(config, resolved, identifier, stream, learner)


def check_stream_settings(config: RunConfig) -> None:
    """An online stream passes over each task once: no epochs budget beyond one, no steps
    budget; a blur only makes sense for a task-free stream."""
    if config.stream != "tasks" and (config.epochs != 1 or config.iterations is not None):
        raise ConfigurationError(
            f"a{'n' if config.stream == 'online' else ''} {config.stream} stream passes over "
            f"each task once; drop --epochs/--iterations (or set epochs to 1), or use --stream "
            "tasks for several epochs per task.")
    if config.blur and config.stream != "task-free":
        raise ConfigurationError(
            "--blur blends consecutive tasks of a task-free stream; add --stream task-free or "
            "drop --blur.")


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def environment(device) -> dict:
    import numpy

    from forgetless import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "forgetless": __version__,
            "platform": platform.platform(), "threads": torch.get_num_threads(),
            "device": str(device), "processes": distributed.world().size}


def reset_peak_rss() -> None:
    """Start measuring peak memory afresh (Linux: the kernel's high-water mark is reset by
    writing 5 to /proc/self/clear_refs), so a compare worker that trains many runs records each
    run's own peak, not the largest of the runs before it. Elsewhere a no-op."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """Peak resident memory since ``reset_peak_rss`` (Linux: VmHWM), else of this process so
    far (``ru_maxrss``: Linux reports KiB, macOS bytes)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run(config: RunConfig, progress: bool | None = None, checkpoint_dir=None,
        resume: bool = False, loggers=(), overwrite: bool = False,
        on_ready=None) -> RunResult:
    """Train and measure one configured run.

    ``checkpoint_dir``: checkpoint the learner after every task there; with ``resume``,
    continue from the newest checkpoint of this run (the same config), with a warning when
    there is none. Without ``resume`` a folder holding another run's checkpoints is refused,
    unless ``overwrite`` lets this run delete them.
    ``loggers``: experiment loggers (``forgetless.loggers``) given each task's row and the
    finished run. ``on_ready(experiment)``: called once everything is built and checked, before
    training (the CLI prints its header there, so a bad option fails before any header)."""
    if resume and not checkpoint_dir:
        raise ConfigurationError("--resume needs --checkpoint-dir, the folder of the "
                                 "checkpoints to continue from.")
    reset_peak_rss()
    distributed.init_from_environment(config.device)  # under torchrun: join the run's ranks
    experiment = prepare(config, progress)
    if on_ready is not None:
        on_ready(experiment)
    learner = experiment.learner
    parameters_before = parameter_count(learner.model)
    for logger in loggers:
        logger.start(experiment)
    hooks = [logger.log_task for logger in loggers]
    if checkpoint_dir:
        from forgetless.checkpoint import RunCheckpoints

        checkpoints = RunCheckpoints(checkpoint_dir, experiment.run_id)
        if not resume:
            checkpoints.claim(overwrite)
        elif checkpoints.resume(learner) is None:
            warnings.warn(f"--resume: no checkpoint in '{checkpoint_dir}' (check the folder's "
                          f"name); training run {experiment.run_id} from the start.",
                          ForgetlessWarning, stacklevel=2)
        meta = {"config": experiment.resolved}
        hooks.insert(0, lambda learner: checkpoints.save(learner, meta))
    fit = learner.fit(experiment.stream,
                      after_task=(lambda learner: [hook(learner) for hook in hooks])
                      if hooks else None)
    result = record(experiment, fit, parameters_before)
    for logger in loggers:
        logger.finish(result)
    return result


def continual_record(record: dict) -> dict:
    """The continual-evaluation record with its metrics (min-ACC, WC-ACC, the dips)."""
    if not record:
        return {}
    from forgetless.continual_metrics import summarize_continual

    return {**record, "metrics": summarize_continual(record)}


def record(experiment: Experiment, fit, parameters_before: int) -> RunResult:
    """The RunResult of a finished fit."""
    learner = experiment.learner
    strategy = learner.strategy
    footprint = strategy.footprint()
    parameters = parameter_count(learner.model)
    costs = {
        "train_seconds": fit.train_seconds,
        "train_seconds_total": sum(fit.train_seconds),
        "eval_seconds_total": sum(fit.eval_seconds),
        "steps": fit.steps,
        "peak_rss_bytes": peak_rss_bytes(),
        "parameters": parameters,
        "parameters_added": max(footprint.parameters_added, parameters - parameters_before),
        "strategy_bytes": footprint.bytes_held,
    }
    return RunResult(
        run_id=experiment.run_id,
        config=experiment.resolved,
        accuracy_matrix=fit.accuracy_matrix,
        untrained_accuracy=fit.untrained_accuracy,
        metrics=summarize(fit.accuracy_matrix, fit.untrained_accuracy, forward_transfer_defined(
            experiment.resolved["scenario"], strategy.sees_future)),
        costs=costs,
        strategy_info={"name": strategy.name, "family": strategy.family,
                       "needs_task_id": strategy.needs_task_id,
                       "sees_future": strategy.sees_future,
                       "stores_raw_data": footprint.stores_raw_data or strategy.stores_raw_data},
        task_descriptions=[t.description for t in experiment.stream.tasks],
        objective=learner.objective.name,
        continual=continual_record(fit.continual),
        scores={**fit.scores, "untrained": fit.untrained_scores, "held_out": fit.held_out},
        environment=environment(learner.device),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
