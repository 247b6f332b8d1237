"""TensorBoard logger (extra ``forgetless[tensorboard]``): scalars per task, the config and the
accuracy matrix as text, and the run record and HTML report written beside the event files."""

from __future__ import annotations

import json
from pathlib import Path

from forgetless.errors import ConfigurationError
from forgetless.loggers import (
    ExperimentLogger,
    final_metrics,
    matrix_markdown,
    task_metrics,
)
from forgetless.report.html import write_report


class TensorBoardLogger(ExperimentLogger):
    """Writes to ``root/<run id>`` (``root`` defaults to ``runs``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigurationError(
                "the tensorboard logger needs the tensorboard package: "
                "pip install 'forgetless[tensorboard]'.") from None
        self._writer_class = SummaryWriter
        self.root = Path(root or "runs")
        self.writer = None
        self.log_dir: Path | None = None

    def start(self, experiment) -> None:
        self.log_dir = self.root / experiment.run_id
        self.writer = self._writer_class(log_dir=str(self.log_dir))
        config = json.dumps(experiment.resolved, indent=2, sort_keys=True)
        self.writer.add_text("config", "```\n" + config + "\n```", 0)

    def log_task(self, learner) -> None:
        step, metrics = task_metrics(learner)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish(self, result) -> None:
        tasks = len(result.accuracy_matrix)
        for name, value in final_metrics(result).items():
            self.writer.add_scalar(name, value, tasks)
        self.writer.add_text("accuracy_matrix", matrix_markdown(result.accuracy_matrix), tasks)
        result.save(self.log_dir / "run.json")
        write_report([result], self.log_dir / "report.html",
                     title=f"forgetless run {result.run_id}")  # atomically
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
