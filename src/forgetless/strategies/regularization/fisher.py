"""Per-sample importance of every weight: the diagonal Fisher information and MAS's sensitivity.

``fisher_diagonal(model, data, estimator=...)`` offers the published estimators of the diagonal
Fisher ``F_i = E_x E_{c ~ p(.|x)} [(d log p(c|x) / d w_i)^2]``:

- ``exact`` (the default): the expectation over the model's own predicted label distribution,
  computed in closed form over every allowed output unit. It is the Fisher itself, not an
  approximation of it, and it needs no labels; van de Ven (2025, "On the computation of the
  Fisher Information in continual learning") finds it gives EWC its best results, and Kunstner
  et al. (2019) show why the empirical variant can be far from it. Computing it costs one
  backward pass per allowed output unit, but the factored path below makes those passes cheap.
- ``sampled``: one label per sample drawn from ``p(.|x)`` (an unbiased Monte-Carlo estimate);
- ``empirical``: the true label (what Hsu et al. 2018 used for EWC);
- ``batched``: the squared gradient of each mini-batch's mean loss, averaged over batches (what
  some libraries compute; it is not a per-sample quantity and underestimates the Fisher).

``mas_importance(model, data)`` is MAS's importance (Aljundi et al. 2018): the mean over samples
of ``|d ||f(x)||^2 / d w_i|``, the sensitivity of the squared L2 norm of the output; it needs no
labels.

Both use the same per-sample machinery. The general path computes per-sample gradients with
``torch.func`` (``vmap`` over ``jacrev``) in chunks of at most ``chunk_size`` gradient vectors,
so memory stays bounded whatever ``num_samples`` is. When every trainable module is an
``nn.Linear`` applied once to 2-D inputs (the MLPs), a factored path gives the same numbers
without materialising per-sample gradients: a sample's gradient for a linear layer's weight is
the outer product ``delta a^T`` of the gradient at the layer's output and its input, so the
sum over samples of its square (or absolute value) is the matrix product
``(delta^2)^T (a^2)`` (Goodfellow 2015, "Efficient per-example gradient computations").

In a process group (``forgetless.distributed``) each rank takes its contiguous share of the
chosen samples (of the ``batched`` estimator's mini-batches) and the per-rank sums are
all-reduced before the mean: the cost divides by the ranks and the result is one process's up
to float rounding. The subset and the ``sampled`` labels are drawn for every sample on every
rank (same generator, same sizes), so the ranks' generators stay in step.

Everything runs in eval mode (dropout off, BatchNorm on its running statistics, samples
independent) under the output mask that training uses (``output_mask``: None, one row of allowed
units, or one row per sample for task-incremental heads). The model is left exactly as it was:
parameters, buffers, ``.grad`` and train/eval modes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from forgetless import distributed
from forgetless.errors import ConfigurationError, DataError
from forgetless.models.heads import apply_mask
from forgetless.strategies.base import evaluating
from forgetless.strategies.regularization.quadratic import trainable

ESTIMATORS = ("exact", "sampled", "empirical", "batched")
METHODS = ("auto", "vmap", "factored")


class _Unfactorable(Exception):
    """A linear layer is used in a way the factored path does not cover."""


def fisher_diagonal(model: nn.Module, data, estimator: str = "exact",
                    num_samples: int | None = None, chunk_size: int = 256, *,
                    output_mask: torch.Tensor | None = None, batch_size: int = 128,
                    method: str = "auto",
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of ``model`` on ``data``, one tensor per trainable parameter.

    data: inputs ``x``, a pair ``(x, y)``, or a Task (its training split). ``y`` is needed by
        ``empirical`` and ``batched`` only.
    estimator: ``exact`` | ``sampled`` | ``empirical`` | ``batched`` (see the module docstring).
    num_samples: use a random subset of this many samples (drawn from ``generator``); None: all.
    chunk_size: at most this many (sample, output) rows exist at once (memory bound): per-sample
        gradient vectors in the vmap path, per-sample gradients at every layer's output in the
        factored path.
    output_mask: allowed output units, as in training: None, shape (outputs,) or (N, outputs).
    batch_size: mini-batch size of the ``batched`` estimator.
    method: ``auto`` (factored when the model allows it, else vmap), ``vmap`` or ``factored``.
    generator: the RNG for the subset and for ``sampled`` labels (default: torch's global one).
    """
    if estimator not in ESTIMATORS:
        raise ConfigurationError(
            f"unknown Fisher estimator '{estimator}'; choose one of {', '.join(ESTIMATORS)}.")
    x, y, mask = _select(model, data, num_samples, output_mask, generator,
                         needs_labels=estimator in ("empirical", "batched"))
    params = trainable(model)
    with evaluating(model):
        if estimator == "batched":
            return _batched_fisher(model, params, x, y, mask, batch_size)
        mine = distributed.world().shard(x.shape[0])  # this rank's share of the samples
        if estimator == "exact":
            probs = _probabilities(model, x[mine], mask[mine])
            # every unit any sample allows (the same on every rank); masked ones weigh 0
            targets = mask.any(0).nonzero().flatten().expand(probs.shape[0], -1)
            weights = probs.gather(1, targets)
        else:
            # sampled: every rank draws every sample's label, so the generator moves alike
            targets = (sample_labels(_probabilities(model, x, mask), generator)[mine]
                       if estimator == "sampled" else y[mine, None])
            weights = torch.ones_like(targets, dtype=x.dtype)
        total = _per_sample_sum(model, params, x[mine], _log_likelihood,
                                {"mask": mask[mine], "targets": targets}, weights, torch.square,
                                method, chunk_size)
        return _mean_over_ranks(total, x.shape[0])


def _probabilities(model, x, mask):
    with torch.no_grad():
        return F.softmax(apply_mask(model(x), mask), dim=1)


def _mean_over_ranks(total: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """Per-rank sums over shares of ``count`` samples (or batches) to their mean over all of
    them: one all-reduce in a process group, a division alone in one process."""
    distributed.all_reduce_sum_(list(total.values()))
    return {name: value / count for name, value in total.items()}


def sample_labels(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One label per row drawn from ``probs``, shape (N, 1), on the probabilities' device.

    A generator draws only on its own device, and the learner's is a CPU one: probabilities on
    another device are drawn from on the CPU and the labels moved back, so that one seed gives
    the same labels on every device."""
    if generator is None or generator.device == probs.device:
        return torch.multinomial(probs, 1, generator=generator)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)


def mas_importance(model: nn.Module, data, num_samples: int | None = None,
                   chunk_size: int = 256, *, output_mask: torch.Tensor | None = None,
                   method: str = "auto",
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """MAS importance: mean over samples of ``|d ||f(x)||^2 / d w|`` per trainable parameter,
    with ``f(x)`` the allowed output units (masked ones count as zero). Needs no labels."""
    x, _, mask = _select(model, data, num_samples, output_mask, generator, needs_labels=False)
    params = trainable(model)
    mine = distributed.world().shard(x.shape[0])
    with evaluating(model):
        weights = torch.ones(x[mine].shape[0], 1, dtype=x.dtype, device=x.device)
        total = _per_sample_sum(model, params, x[mine], _squared_norm, {"mask": mask[mine]},
                                weights, torch.abs, method, chunk_size)
        return _mean_over_ranks(total, x.shape[0])


# ---------------------------------------------------------------- per-sample objectives
def _log_likelihood(logits: torch.Tensor, rows: dict) -> torch.Tensor:
    """log p(target | x) under the masked softmax, shape (n, targets per sample)."""
    return F.log_softmax(apply_mask(logits, rows["mask"]), dim=1).gather(1, rows["targets"])


def _squared_norm(logits: torch.Tensor, rows: dict) -> torch.Tensor:
    """||f(x)||^2 over the allowed units, shape (n, 1)."""
    return (logits * rows["mask"]).square().sum(1, keepdim=True)


# ---------------------------------------------------------------- the machinery
def _per_sample_sum(model, params, x, objective, rows, weights, reduce, method, chunk_size):
    """``sum_i sum_k weights[i, k] * reduce(d objective(x_i)[k] / d w)`` per parameter, for
    ``reduce`` in {square, abs} (both multiplicative, which the factored path relies on).
    ``objective(logits, rows)`` maps (n, outputs) logits to (n, K) scalars per sample."""
    if method not in METHODS:
        raise ConfigurationError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}.")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be a positive whole number, got {chunk_size!r}.")
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    layers = None if method == "vmap" else _linear_layers(model, params, method)
    # Both paths hold at most ``chunk_size`` (sample, k) rows at once: here each sample's K
    # backward directions through every layer (K = 10 for ``exact`` on 10 classes).
    step = max(1, chunk_size // weights.shape[1])
    try:
        for s in range(0, x.shape[0], step) if layers is not None else ():
            _add(total, _factored_sum(model, params, layers, x[s:s + step], objective,
                                      {k: v[s:s + step] for k, v in rows.items()},
                                      weights[s:s + step], reduce))
        if layers is not None:
            return total
    except _Unfactorable as why:  # found on the first chunk, before anything was added
        if method == "factored":
            raise ConfigurationError(f"the factored path cannot take this model ({why}); use "
                                     "method='vmap'.") from None
    # One (sample, k) pair per row, so at most ``chunk_size`` gradient vectors exist at once.
    n, k = weights.shape
    pick = torch.eye(k, dtype=weights.dtype, device=x.device).repeat(n, 1)
    flat_rows = {key: v.repeat_interleave(k, 0) for key, v in rows.items()}
    for s in range(0, n * k, chunk_size):
        index = torch.arange(s, min(s + chunk_size, n * k), device=x.device) // k
        _add(total, _vmap_sum(model, params, x[index], objective,
                              {key: v[s:s + chunk_size] for key, v in flat_rows.items()},
                              pick[s:s + chunk_size], weights.flatten()[s:s + chunk_size], reduce))
    return total


def _vmap_sum(model, params, x, objective, rows, pick, weights, reduce):
    constants = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    constants.update(dict(model.named_buffers()))
    detached = {n: p.detach() for n, p in params.items()}

    def one(p, xi, rows_i, ki, wi):
        def scalar(p_):
            logits = functional_call(model, {**p_, **constants}, (xi[None],))
            out = objective(logits, {key: v[None] for key, v in rows_i.items()})[0]
            return torch.dot(out, ki)  # ki: one-hot choice of the row's output

        return {n: wi * reduce(g) for n, g in grad(scalar)(p).items()}

    per_row = vmap(one, in_dims=(None, 0, 0, 0, 0))(detached, x, rows, pick, weights)
    return {n: g.sum(0) for n, g in per_row.items()}


def _linear_layers(model, params, method):
    """The nn.Linear modules owning ``params``, or None when some other module owns one."""
    owner = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
    layers = []
    for p in params.values():
        module = owner[id(p)]
        if not isinstance(module, nn.Linear):
            if method == "factored":
                raise ConfigurationError(
                    f"the factored path needs every trainable module to be nn.Linear, but "
                    f"{type(module).__name__} has trainable parameters; use method='vmap'.")
            return None
        if module not in layers:
            layers.append(module)
    return layers


def _factored_sum(model, params, layers, x, objective, rows, weights, reduce):
    seen: dict[nn.Module, list] = {m: [] for m in layers}

    def capture(module, inputs, output):
        seen[module].append((inputs[0], output))

    hooks = [m.register_forward_hook(capture) for m in layers]
    try:
        with torch.enable_grad():
            out = objective(model(x), rows)  # (n, K)
    finally:
        for hook in hooks:
            hook.remove()
    for calls in seen.values():
        if len(calls) != 1 or calls[0][0].ndim != 2:
            raise _Unfactorable("a linear layer is applied more than once or to N-D inputs")
    k = out.shape[1]
    directions = torch.eye(k, dtype=out.dtype, device=out.device)[:, None, :].expand(
        k, out.shape[0], k)
    deltas = torch.autograd.grad(out, [seen[m][0][1] for m in layers], directions,
                                 is_grads_batched=True)  # each (K, n, out)
    by_module = {}
    for module, delta in zip(layers, deltas, strict=True):
        d = torch.einsum("nk,kno->no", weights, reduce(delta))
        a = reduce(seen[module][0][0].detach())
        by_module[module] = {"weight": d.T @ a, "bias": d.sum(0)}
    owner = {id(p): m for m in layers for p in m.parameters(recurse=False)}
    return {name: by_module[owner[id(p)]]["weight" if p is owner[id(p)].weight else "bias"]
            for name, p in params.items()}


def _batched_fisher(model, params, x, y, mask, batch_size):
    names, tensors = list(params), list(params.values())
    total = [torch.zeros_like(p) for p in tensors]
    starts = range(0, x.shape[0], batch_size)
    for start in starts[distributed.world().shard(len(starts))]:  # this rank's batches
        with torch.enable_grad():
            logits = apply_mask(model(x[start:start + batch_size]),
                                mask[start:start + batch_size])
            loss = F.cross_entropy(logits, y[start:start + batch_size])
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for acc, g in zip(total, grads, strict=True):
            if g is not None:
                acc += g.square()
    return _mean_over_ranks(dict(zip(names, total, strict=True)), len(starts))


# ---------------------------------------------------------------- inputs and model state
def _select(model, data, num_samples, output_mask, generator, needs_labels):
    if isinstance(data, torch.Tensor):
        x, y = data, None
    elif hasattr(data, "train_x"):
        x, y = data.train_x, data.train_y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise DataError("data must be inputs x, a pair (x, y), or a Task.")
    device = next(model.parameters()).device
    x = x.to(device)
    y = None if y is None else y.to(device)
    if x.shape[0] == 0:
        raise DataError("cannot estimate importances from an empty set of samples.")
    if needs_labels and y is None:
        raise DataError("this estimator needs the true labels: pass data as (x, y), or use "
                        "estimator='exact' or 'sampled', which need none.")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise ConfigurationError(
            f"num_samples must be a positive whole number or None, got {num_samples!r}.")
    n = x.shape[0]
    if output_mask is None:
        with torch.no_grad(), evaluating(model):
            outputs = model(x[:1]).shape[1]
        mask = torch.ones(n, outputs, dtype=torch.bool, device=x.device)
    else:
        mask = output_mask.to(device)
        if mask.ndim == 1:
            mask = mask.expand(n, -1)
        elif mask.shape[0] != n:
            raise DataError(f"output_mask has {mask.shape[0]} rows for {n} samples; give one "
                            "row of allowed units, or one per sample.")
    if num_samples is not None and num_samples < n:
        index = torch.randperm(n, generator=generator)[:num_samples].to(x.device)
        x, mask = x[index], mask[index]
        y = None if y is None else y[index]
    return x, y, mask




def _add(total: dict, part: dict) -> None:
    for name, value in part.items():
        total[name] += value
