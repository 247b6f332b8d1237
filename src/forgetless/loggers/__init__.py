"""Experiment loggers: a run's config, per-task metrics, accuracy matrix and report sent to an
experiment tracker while it trains.

- ``tensorboard[:DIR]`` (extra ``forgetless[tensorboard]``): event files under ``DIR/<run id>``
  (default ``runs/``), read by ``tensorboard --logdir DIR``;
- ``mlflow[:TRACKING_URI]`` (extra ``forgetless[mlflow]``): one MLflow run per forgetless run,
  in the local file store ``./mlruns`` unless a tracking URI (``http://…``, ``sqlite:///…``,
  ``file:///…``) is given.

A logger is called by ``forgetless.experiments.runner.run``: ``start(experiment)`` before training,
``log_task(learner)`` after each task's evaluation, ``finish(result)`` with the finished
``RunResult``, and ``close()`` always (a run that failed is marked so).
"""

from __future__ import annotations

from forgetless.errors import ConfigurationError


class ExperimentLogger:
    """The interface; each method's default does nothing."""

    def start(self, experiment) -> None:
        """Before training: ``experiment.resolved`` is the full config, ``.run_id`` its id."""

    def log_task(self, learner) -> None:
        """After a task's evaluation: ``learner.fit_history`` holds the rows so far."""

    def finish(self, result) -> None:
        """The finished run (a ``RunResult``)."""

    def close(self) -> None:
        """Release files and connections; mark the run failed if ``finish`` never came."""


def task_metrics(learner) -> tuple[int, dict[str, float]]:
    """``(tasks trained, metrics)`` after the latest task: accuracy on each task, the average
    over the tasks trained so far, and the task's training time."""
    history = learner.fit_history
    row = history.accuracy_matrix[-1]
    trained = len(history.accuracy_matrix)
    metrics = {f"accuracy/task_{j + 1}": value for j, value in enumerate(row)}
    metrics["accuracy/average_trained"] = sum(row[:trained]) / trained
    metrics["cost/train_seconds"] = history.train_seconds[-1]
    return trained, metrics


def final_metrics(result) -> dict[str, float]:
    values = {f"final/{k}": float(v) for k, v in result.metrics.items()
              if isinstance(v, (int, float)) and v == v}
    values["final/train_seconds_total"] = float(result.costs["train_seconds_total"])
    return values


def flat_config(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"strategy_params": {"ewc.lam": 100}}`` -> ``{"strategy_params.ewc.lam": "100"}``."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


def report_html(result) -> str:
    """The HTML report of one run (the comparison report's page, for one run)."""
    from forgetless.report.html import render

    return render([result], title=f"forgetless run {result.run_id}")


def matrix_markdown(matrix: list[list[float]]) -> str:
    head = "| after task | " + " | ".join(f"task {j + 1}" for j in range(len(matrix[0]))) + " |"
    rule = "|---" * (len(matrix[0]) + 1) + "|"
    rows = [f"| {i + 1} | " + " | ".join(f"{100 * a:.1f}" for a in row) + " |"
            for i, row in enumerate(matrix)]
    return "\n".join([head, rule, *rows])


KINDS = {
    "tensorboard": ("forgetless.loggers.tensorboard", "TensorBoardLogger"),
    "mlflow": ("forgetless.loggers.mlflow", "MLflowLogger"),
}


def build_loggers(specs) -> list[ExperimentLogger]:
    """Loggers from ``KIND[:WHERE]`` specs, e.g. ``["tensorboard:runs", "mlflow"]``."""
    import importlib

    loggers = []
    for spec in specs or ():
        kind, _, where = str(spec).partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise ConfigurationError(
                f"unknown logger '{kind}'; choose {' or '.join(KINDS)} (e.g. --logger "
                "tensorboard:runs or --logger mlflow).")
        module, name = KINDS[kind]
        cls = getattr(importlib.import_module(module), name)
        loggers.append(cls(where.strip() or None))
    return loggers
