"""MLflow logger (extra ``forgetless[mlflow]``): one MLflow run per forgetless run, with the
resolved config as parameters, per-task metrics by step, and the accuracy matrix, run record
and HTML report as artifacts.

Without a tracking URI it uses MLflow's local file store ``./mlruns`` (no server, offline). MLflow
3 keeps that store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which this logger
sets for the default store only; give ``sqlite:///mlflow.db`` or a server URI to use those."""

from __future__ import annotations

import os
from pathlib import Path

from forgetless.errors import ConfigurationError
from forgetless.loggers import (
    ExperimentLogger,
    final_metrics,
    flat_config,
    report_html,
    task_metrics,
)

EXPERIMENT = "forgetless"
MAX_PARAM_LENGTH = 500


class MLflowLogger(ExperimentLogger):
    def __init__(self, tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        if tracking_uri is None:
            tracking_uri = Path("mlruns").resolve().as_uri()
        if tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigurationError(
                "the mlflow logger needs MLflow: pip install 'forgetless[mlflow]'.") from None
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.mlflow_run_id: str | None = None
        self._finished = False

    def start(self, experiment) -> None:
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = (found.experiment_id if found is not None
                         else self.client.create_experiment(self.experiment))
        config = experiment.resolved
        name = f"{config['strategy']} {config['scenario']} seed {config['seed']}"
        run = self.client.create_run(experiment_id, run_name=name,
                                     tags={"forgetless.run_id": experiment.run_id})
        self.mlflow_run_id = run.info.run_id
        for key, value in flat_config(config).items():
            self.client.log_param(self.mlflow_run_id, key, value[:MAX_PARAM_LENGTH])

    def log_task(self, learner) -> None:
        step, metrics = task_metrics(learner)
        for name, value in metrics.items():
            self.client.log_metric(self.mlflow_run_id, name, value, step=step)

    def finish(self, result) -> None:
        tasks = len(result.accuracy_matrix)
        for name, value in final_metrics(result).items():
            self.client.log_metric(self.mlflow_run_id, name, value, step=tasks)
        self.client.log_dict(self.mlflow_run_id, {"accuracy_matrix": result.accuracy_matrix},
                             "accuracy_matrix.json")
        self.client.log_dict(self.mlflow_run_id, result.to_dict(), "run.json")
        self.client.log_text(self.mlflow_run_id, report_html(result), "report.html")
        self.client.set_terminated(self.mlflow_run_id, "FINISHED")
        self._finished = True

    def close(self) -> None:
        if self.mlflow_run_id is not None and not self._finished:
            self.client.set_terminated(self.mlflow_run_id, "FAILED")
            self._finished = True
