"""The experiment loggers against the real libraries, offline: what they write is read back with
TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import json

import pytest
import torch

from forgetless.config import RunConfig
from forgetless.errors import ConfigurationError
from forgetless.experiments.runner import run
from forgetless.loggers import build_loggers
from forgetless.loggers.mlflow import MLflowLogger
from forgetless.loggers.tensorboard import TensorBoardLogger

CONFIG = RunConfig(source="digits", strategy="er", iterations=10, batch_size=32, tasks=5,
                   model_options={"hidden": [32]}, seed=1)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One run logged to TensorBoard and MLflow at once (the file store, no server)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("logs")
    loggers = [TensorBoardLogger(root / "tb"), MLflowLogger((root / "mlruns").as_uri())]
    try:
        result = run(CONFIG, progress=False, loggers=loggers)
    finally:
        for logger in loggers:
            logger.close()
    return result, loggers


def test_tensorboard_has_per_task_scalars_config_matrix_and_report(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, (tb, _) = logged
    assert tb.log_dir.name == result.run_id
    events = EventAccumulator(str(tb.log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    matrix = result.accuracy_matrix
    for j in range(5):
        scalars = events.Scalars(f"accuracy/task_{j + 1}")
        assert [s.step for s in scalars] == [1, 2, 3, 4, 5]
        assert [s.value for s in scalars] == pytest.approx([row[j] for row in matrix])
    average = [s.value for s in events.Scalars("accuracy/average_trained")]
    assert average == pytest.approx([sum(r[:i + 1]) / (i + 1) for i, r in enumerate(matrix)])
    assert events.Scalars("final/acc")[0].value == pytest.approx(result.metrics["acc"])
    texts = events.Tags()["tensors"]
    assert "config/text_summary" in texts and "accuracy_matrix/text_summary" in texts
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"strategy": "er"' in config_text and result.run_id not in config_text
    assert json.loads((tb.log_dir / "run.json").read_text())["accuracy_matrix"] == matrix
    assert "<html" in (tb.log_dir / "report.html").read_text()


def test_mlflow_has_params_metrics_by_step_and_artifacts(logged):
    from mlflow.tracking import MlflowClient

    result, (_, ml) = logged
    client = MlflowClient(tracking_uri=ml.tracking_uri)
    found = client.search_runs([client.get_experiment_by_name("forgetless").experiment_id])
    assert len(found) == 1
    mlrun = found[0]
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.tags["forgetless.run_id"] == result.run_id
    params = mlrun.data.params
    assert params["strategy"] == "er" and params["strategy_params.er.buffer_size"] == "500"
    assert params["seed"] == "1" and params["source"] == "digits"
    history = client.get_metric_history(mlrun.info.run_id, "accuracy/task_1")
    logged_steps = sorted((m.step, m.value) for m in history)
    assert [step for step, _ in logged_steps] == list(range(1, len(result.accuracy_matrix) + 1))
    assert [value for _, value in logged_steps] == pytest.approx(
        [row[0] for row in result.accuracy_matrix])
    assert mlrun.data.metrics["final/acc"] == pytest.approx(result.metrics["acc"])
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert artifacts == {"accuracy_matrix.json", "run.json", "report.html"}
    local = client.download_artifacts(mlrun.info.run_id, "accuracy_matrix.json")
    with open(local) as f:
        assert json.load(f)["accuracy_matrix"] == result.accuracy_matrix


class Boom(Exception):
    pass


def test_mlflow_marks_a_failed_run_and_uses_the_local_store_by_default(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    logger = MLflowLogger()  # no URI: ./mlruns
    assert logger.tracking_uri == (tmp_path / "mlruns").as_uri()

    def explode(learner):
        raise Boom()

    logger.log_task = explode
    with pytest.raises(Boom):
        try:
            run(CONFIG.updated(tasks=2), progress=False, loggers=[logger])
        finally:
            logger.close()
    client = MlflowClient(tracking_uri=logger.tracking_uri)
    [mlrun] = client.search_runs([client.get_experiment_by_name("forgetless").experiment_id])
    assert mlrun.info.status == "FAILED"
    assert (tmp_path / "mlruns").is_dir()


def test_logger_specs():
    loggers = build_loggers(["tensorboard:somewhere"])
    assert isinstance(loggers[0], TensorBoardLogger) and str(loggers[0].root) == "somewhere"
    with pytest.raises(ConfigurationError, match="unknown logger 'wandb'"):
        build_loggers(["wandb"])
