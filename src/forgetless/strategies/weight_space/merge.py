"""Merging of per-task fine-tunes through task vectors.

After task ``t`` the task vector ``tau_t = theta_t - theta_start`` is recorded (``theta_t`` the
weights the task's fine-tuning ended with, ``theta_start`` those of the model when the first task
began: the pretrained model) and the model becomes ``theta_start + scale * combine(tau_1..t)``
over its trainable parameters (Ilharco et al. 2023, "Editing models with task arithmetic",
ICLR). Two combinations:

- ``mode="magmax"`` (Marczak et al. 2024, "MagMax: Leveraging Model Merging for Seamless
  Continual Learning", ECCV): per parameter entry, the task vector entry of largest magnitude,
  sign included; on a tie the later task's entry (the reference code's ``>=``). A running
  maximum is exact, so one vector is held, not one per task.
- ``mode="average"``: the mean of the task vectors, i.e. with ``scale=1`` the average of the
  fine-tuned weights (model soup / weight averaging); a running sum is held.

Starting point of each task's fine-tuning (``fine_tune_from``): MagMax fine-tunes sequentially,
each task from the *previous task's fine-tuned weights*, not from the merged model — the paper's
method, and its finding that sequential fine-tuning also improves the other merging methods
(averaging included) over independent fine-tunes from the start. So ``"previous"`` is the
default of both modes: fine-tuning then runs exactly as naive's does, and the merge only changes
the model that is evaluated and kept. ``"start"`` fine-tunes each task independently from the
starting weights, as task arithmetic builds its task vectors. Task-agnostic: one model, no task
id at test time. Buffers (BatchNorm statistics) stay as the last fine-tuning left them.
"""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.base import ALL_SCENARIOS, Footprint, Strategy, tensor_bytes
from forgetless.strategies.weight_space.task_vectors import (
    Tensors,
    checked_task_vector,
    copied,
    snapshot,
    write_weights,
)

MODES = ("magmax", "average")
STARTS = ("previous", "start")
#: The scale each mode takes unless told: MagMax's reference code merges CIL and DIL streams with
#: lambda = 0.5 (``merge_splitted.py`` in github.com/danielm1405/magmax); averaging with 1 gives
#: the plain mean of the fine-tuned weights (the reference's ``sum`` with ``1 / n_tasks``).
DEFAULT_SCALE = {"magmax": 0.5, "average": 1.0}


def magmax_update(best: Tensors | None, tau: Tensors) -> Tensors:
    """The running max-magnitude vector after one more task vector (ties go to ``tau``)."""
    if best is None:
        return {n: v.clone() for n, v in tau.items()}
    return {n: torch.where(v.abs() >= best[n].abs(), v, best[n]) for n, v in tau.items()}


@register("merge")
class Merge(Strategy):
    """Task-vector merging after every task: MagMax (default) or the average of the task
    vectors (Ilharco et al. 2023; Marczak et al. 2024); task-agnostic."""

    why_not_task_free = ("it records each task's task vector and merges the vectors into the "
                         "model when the task ends, which a task-free stream does not announce; "
                         "use si or online-ewc, which consolidate every consolidate_every steps.")

    meant_for_pretrained = True


    family = "weight-space"
    scenarios = ALL_SCENARIOS
    needs_task_id = False
    stores_raw_data = False
    anchors_parameters = True  # copies of every trainable parameter: refuses PNN / HAT
    objectives = frozenset({"classification", "language_modelling"})
    labelled_hyperparameters = ("mode", "fine_tune_from")

    def __init__(self, mode: str = "magmax", scale: float | None = None,
                 fine_tune_from: str = "previous") -> None:
        """mode: ``magmax`` (per entry, the task vector entry of largest magnitude) or
        ``average`` (the mean of the task vectors).
        scale: the merged vector's coefficient; None takes the mode's default (0.5 for magmax,
        the reference code's; 1.0 for average, the mean of the fine-tuned weights; ``t`` times
        that would be task arithmetic's plain sum of t task vectors).
        fine_tune_from: ``previous`` (each task starts from the last task's fine-tuned weights,
        as MagMax does) or ``start`` (independent fine-tunes from the starting weights)."""
        if mode not in MODES:
            raise ConfigurationError(f"merge mode must be one of {', '.join(MODES)}, got "
                                     f"{mode!r}; e.g. --set mode=average.")
        if fine_tune_from not in STARTS:
            raise ConfigurationError(f"fine_tune_from must be 'previous' or 'start', got "
                                     f"{fine_tune_from!r}.")
        scale = DEFAULT_SCALE[mode] if scale is None else scale
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise ConfigurationError(f"scale must be a number > 0, got {scale!r}.") from None
        if not 0 < scale < float("inf"):
            raise ConfigurationError(f"scale must be a finite number > 0, got {scale!r}.")
        self.mode, self.scale, self.fine_tune_from = mode, scale, fine_tune_from
        # the run's config (and id) names the scale used, not None
        getattr(self, "_hyperparameters", {})["scale"] = scale
        self.start: Tensors | None = None
        self.combined: Tensors | None = None  # the running max-magnitude vector, or sum
        self.fine_tuned: Tensors | None = None  # the last task's own weights ("previous")
        self.tasks_merged = 0

    def before_task(self, task) -> None:
        model = self.learner.model
        if self.start is None:
            self.start = snapshot(model)
        elif self.fine_tune_from == "start":
            write_weights(model, self.start)
        elif self.fine_tuned is not None:
            write_weights(model, self.fine_tuned)

    def after_task(self, task) -> None:
        model = self.learner.model
        tau = checked_task_vector(model, self.start, self.name)
        if self.fine_tune_from == "previous":
            self.fine_tuned = snapshot(model)
        if self.mode == "magmax":
            self.combined = magmax_update(self.combined, tau)
        else:
            self.combined = tau if self.combined is None else {
                n: self.combined[n] + v for n, v in tau.items()}
        self.tasks_merged += 1
        write_weights(model, self.merged())

    def merged(self) -> Tensors:
        """``start + scale * combination`` of the task vectors recorded so far."""
        coefficient = self.scale / (self.tasks_merged if self.mode == "average" else 1)
        return {n: torch.add(s, self.combined[n], alpha=coefficient)
                for n, s in self.start.items()}

    def state_dict(self) -> dict:
        return {"start": copied(self.start), "combined": copied(self.combined),
                "fine_tuned": copied(self.fine_tuned), "tasks_merged": self.tasks_merged}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted({"start", "combined", "fine_tuned", "tasks_merged"} - set(state))
        if missing:
            raise ConfigurationError(f"merge state lacks {missing}; it was saved by a different "
                                     "strategy.")
        model = self.learner.model
        self.start = copied(state["start"], like=model)
        self.combined = copied(state["combined"], like=model)
        self.fine_tuned = copied(state["fine_tuned"], like=model)
        self.tasks_merged = int(state["tasks_merged"])

    def footprint(self) -> Footprint:
        """Holds the start, the running max (magmax) or sum (average), and with
        ``fine_tune_from="previous"`` the last fine-tuned weights: three copies of the trainable
        parameters at most, however many tasks."""
        held = [t for t in (self.start, self.combined, self.fine_tuned) if t is not None]
        return Footprint(tensor_bytes(held), stores_raw_data=False)
