"""Classification: cross-entropy over the output units the scenario allows; score = accuracy of
the predicted labels (the strategy's own ``predict`` when it has one, e.g. iCaRL's nearest
mean of exemplars)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetless import distributed
from forgetless.errors import DataError
from forgetless.models.heads import apply_mask
from forgetless.objectives.base import Objective, per_sample_importance


class Classification(Objective):
    name = "classification"
    scores = ("accuracy",)

    def loss(self, learner, logits, y, task_ids):
        return F.cross_entropy(apply_mask(logits, learner.output_mask.for_training(task_ids)), y)

    def score(self, learner, task) -> dict[str, float]:
        """Accuracy; in a process group each rank predicts its share of the test set and the
        correct counts are summed (the same figure as one process's, in 1/N of the time)."""
        n = task.test_x.shape[0]
        rows = distributed.world().shard(n)
        correct = torch.zeros(1, dtype=torch.float64)
        for start in range(rows.start, rows.stop, learner.eval_batch_size):
            stop = min(start + learner.eval_batch_size, rows.stop)
            y = task.test_y[start:stop].to(learner.device)
            correct += int((learner.predict(task.test_x[start:stop], task.task_id) == y).sum())
        distributed.all_reduce_sum_([correct])
        return {"accuracy": int(correct.item()) / max(1, n)}

    def check_outputs(self, output, num_outputs):
        if output.ndim != 2 or output.shape[1] != num_outputs:
            raise DataError(
                f"the model gives outputs of shape {tuple(output.shape[1:])} per sample but the "
                f"stream's labels need {num_outputs} output units; build the model with "
                f"num_outputs={num_outputs}.")

    def fisher_diagonal(self, learner, task, estimator, num_samples, chunk_size, mask,
                        generator):
        from forgetless.strategies.regularization.fisher import fisher_diagonal

        if _token_inputs(task):  # a transformer: one backward per sample (no vmap)
            row = _one_row(mask)
            if estimator == "batched":
                return per_sample_importance(learner, task, num_samples, generator,
                                             torch.square, _nll(row, False), per_batch=True)
            return per_sample_importance(learner, task, num_samples, generator, torch.square,
                                         _nll(row, estimator in ("exact", "sampled")))
        return fisher_diagonal(learner.model, task, estimator, num_samples, chunk_size,
                               output_mask=mask, batch_size=learner.batch_size,
                               generator=generator)

    def output_sensitivity(self, learner, task, num_samples, chunk_size, mask, generator):
        from forgetless.strategies.regularization.fisher import mas_importance

        if _token_inputs(task):
            row = _one_row(mask)
            return per_sample_importance(
                learner, task, num_samples, generator, torch.abs,
                lambda logits, y, g: (logits if row is None else logits * row).square().sum())
        return mas_importance(learner.model, task, num_samples, chunk_size, output_mask=mask,
                              generator=generator)

    def distillation(self, student, teacher, x, groups, temperature):
        """One softmax per row of ``groups`` (a task-incremental run's old heads; one row
        otherwise), summed over groups, averaged over samples."""
        t = temperature
        new_log = F.log_softmax(apply_mask(student[:, None] / t, groups), dim=-1)
        old_log = F.log_softmax(apply_mask(teacher[:, None] / t, groups), dim=-1)
        kl = torch.where(groups, old_log.exp() * (old_log - new_log), 0.0)
        return t * t * kl.sum((1, 2)).mean()


def _token_inputs(task) -> bool:
    """Text inputs (token ids): the model is a transformer, which ``torch.func`` cannot
    vectorise over samples, so importances are taken one sample at a time. For those, the
    ``exact`` Fisher (one backward per class per sample) is estimated by one label sampled from
    the model's prediction (the ``sampled`` estimator)."""
    return not torch.is_floating_point(task.train_x)


def _one_row(mask):
    """A task's samples share one training mask row (task-incremental rows are per task)."""
    return mask if mask is None or mask.ndim == 1 else mask[0]


def _nll(mask, sampled: bool):
    def objective(logits, y, generator):
        log_p = F.log_softmax(apply_mask(logits, mask), dim=-1)
        if sampled:
            from forgetless.strategies.regularization.fisher import sample_labels

            y = sample_labels(log_p.detach().exp(), generator)[:, 0]
        return F.nll_loss(log_p, y, reduction="sum")
    return objective
