"""Options shared by the commands that configure runs (run, compare, sweep)."""

from __future__ import annotations

import click

from forgetless.config import RunConfig, load_config_file, parse_settings


def experiment_options(function):
    """The options that describe a run. Unset options (None) leave the config file's value or
    the default, so precedence is defaults < --config FILE < command line."""
    options = [
        click.option("--benchmark", help="split, permuted, rotated (default split); knowledge "
                                         "(new facts for a language model) or topics (text "
                                         "classes for an encoder)."),
        click.option("--scenario", help="task, domain or class (default class)."),
        click.option("--tasks", type=int, help="Number of tasks (default 5)."),
        click.option("--benchmark-option", "benchmark_settings", multiple=True,
                     metavar="KEY=VALUE", help="A benchmark's own option, repeatable (e.g. "
                     "--benchmark-option facts_per_task=4; `forgetless list` shows them)."),
        click.option("--source", help="mnist (embedded 5k), digits, idx, fashion-mnist, cifar10, "
                                      "cifar100 (default mnist)."),
        click.option("--data-dir", type=click.Path(), help="Folder of the idx/cifar files "
                     "(fashion-mnist: default where dataset-fashion-mnist installs it)."),
        click.option("--model", help="mlp or convnet (default mlp); smollm2, minilm, hf:PATH "
                                     "(a local Hugging Face folder), tiny-lm, tiny-encoder."),
        click.option("--hidden", help="MLP hidden sizes, e.g. 400,400."),
        click.option("--init", "init", help="MLP initialisation: kaiming-trunk (default), "
                                            "kaiming, xavier or pytorch."),
        click.option("--epochs", type=int, help="Epochs per task (default 5)."),
        click.option("--iterations", type=int, help="Steps per task (instead of epochs)."),
        click.option("--batch-size", type=int, help="Mini-batch size (default 128)."),
        click.option("--lr", type=float, help="Learning rate (default 0.001)."),
        click.option("--optimizer", type=click.Choice(["adam", "adam-fused", "sgd"],
                                                      case_sensitive=False),
                     help="Default adam; adam-fused is PyTorch's fused Adam (faster, rounds "
                          "differently)."),
        click.option("--momentum", type=float, help="SGD momentum (default 0)."),
        click.option("--keep-optimizer", is_flag=True, default=None,
                     help="Keep the optimiser's state across tasks (default: reset)."),
        click.option("--seed", type=int, help="Seed for data order, init and samplers."),
        click.option("--stream", type=click.Choice(["tasks", "online", "task-free"],
                                                   case_sensitive=False),
                     help="How tasks arrive: tasks (epochs each; default), online (one pass, "
                          "batch 10) or task-free (one pass, boundaries hidden)."),
        click.option("--blur", type=float, help="Task-free transition window, as a fraction "
                                                "of a task (default 0: sharp)."),
        click.option("--eval-every", "eval_every", metavar="STEPS|auto|off",
                     help="Continual evaluation every STEPS steps (default auto for online "
                          "streams, off otherwise)."),
        click.option("--eval-samples", type=int, help="Test samples per task that continual "
                                                      "evaluation scores (default 100)."),
        click.option("--device", help="cpu (default) or cuda."),
        click.option("--compile", "compile", is_flag=True, default=None,
                     help="Run the step's forward and loss through torch.compile (off by "
                          "default; pays on few models: benchmarks/loop_speed.md)."),
        click.option("--config", "config_file", type=click.Path(),
                     help="TOML file of run settings (overridden by the command line)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def benchmark_defaults(benchmark: str) -> dict:
    """The run settings a text benchmark brings (``data.text_benchmarks``: its model, scenario,
    batch size, learning rate); none for the image benchmarks."""
    from forgetless.data.benchmarks import BENCHMARKS

    if benchmark not in BENCHMARKS and benchmark.lower() not in BENCHMARKS:
        return {}  # an unknown name is refused, with a suggestion, where the config is used
    fields = RunConfig.__dataclass_fields__
    return {k: v for k, v in getattr(BENCHMARKS.get(benchmark), "defaults", {}).items()
            if k in fields}


def config_from_options(base: RunConfig | None = None, *, strategy=None, settings=(),
                        config_file=None, hidden=None, init=None, keep_optimizer=None,
                        benchmark_settings=(), **values) -> RunConfig:
    """Defaults < a text benchmark's own defaults < an online stream's (one epoch, batch 10)
    < config file < command line."""
    from forgetless.config import STREAMS

    config = base or RunConfig()
    from_file = load_config_file(config_file) if config_file else {}
    config = config.updated(**benchmark_defaults(values.get("benchmark")
                                                 or from_file.get("benchmark")
                                                 or config.benchmark))
    if values.get("stream"):
        values["stream"] = values["stream"].lower()
    stream = values.get("stream") or from_file.get("stream") or config.stream
    config = config.updated(**STREAMS.get(stream, {}))
    if isinstance(values.get("eval_every"), str):
        every = values["eval_every"].strip().lower()
        values["eval_every"] = int(every) if every.lstrip("-").isdigit() else every
    if from_file:
        config = config.updated(**from_file)
    model_options = dict(config.model_options)
    if hidden:
        model_options["hidden"] = [int(h) for h in str(hidden).split(",") if h.strip()]
    if init:  # only when given, so runs without it keep their ids
        model_options["init"] = init
    strategy_params = dict(config.strategy_params)
    strategy_params.update(parse_settings(settings))
    benchmark_options = {**config.benchmark_options,
                         **parse_settings(benchmark_settings, "--benchmark-option")}
    return config.updated(
        strategy=strategy, model_options=model_options, strategy_params=strategy_params,
        benchmark_options=benchmark_options,
        reset_optimizer=None if keep_optimizer is None else not keep_optimizer, **values)
