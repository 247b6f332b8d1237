"""Language modelling: next-token cross-entropy on the target tokens of each sequence (the
answer tokens, when a benchmark trains only the answer), scored by exact match of the greedy
answer and by perplexity.

Inputs and targets follow ``forgetless.data.text``: ``x`` (N, L) token ids padded with ``PAD``,
``y`` (N, L) aligned targets, ``IGNORE`` where no loss is taken.

Exact match is computed teacher-forced, in one forward pass: the greedy answer equals the
target exactly when the argmax at every target position is the target token (if greedy decoding
produced the answer, each of its steps saw the right prefix; conversely a step that is wrong
makes decoding leave the answer). So it is the exact match of ``generate(do_sample=False)``
without a decoding loop.

Importances over a 49k-token vocabulary cannot be taken in closed form; per sequence they are:
- Fisher ``exact`` and ``sampled``: tokens drawn from the model's own next-token distribution
  at each target position (one Monte-Carlo draw, the unbiased estimate of the Fisher);
  ``empirical``: the true target tokens; ``batched``: squared gradients of batch mean losses.
- MAS: the sensitivity of the mean squared norm of the logits at the target positions.
Each is a loop over sequences (one backward each), on the trainable parameters only — a frozen
backbone or LoRA keeps this cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from forgetless.data.text import IGNORE, PAD
from forgetless.errors import ConfigurationError, DataError
from forgetless.objectives.base import Objective, per_sample_importance
from forgetless.strategies.base import evaluating

#: Logits DER++ keeps per token: the top-k of a 49k vocabulary (values and indices), not all.
DER_TOP_K = 16


def token_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the target positions (``y != IGNORE``) of (N, L) rows."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                           ignore_index=IGNORE, reduction=reduction)


def greedy_exact_match(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per row: whether greedy decoding gives the target exactly (the argmax is the target at
    every target position; a row without targets is never right)."""
    target = y != IGNORE
    return ((logits.argmax(-1) == y) | ~target).all(1) & target.any(1)


class LanguageModelling(Objective):
    name = "language_modelling"
    scores = ("exact_match", "perplexity")

    def loss(self, learner, logits, y, task_ids):
        return token_cross_entropy(logits, y)

    @torch.no_grad()
    def score(self, learner, task) -> dict[str, float]:
        correct, nll, tokens, n = 0, 0.0, 0, task.test_x.shape[0]
        size = max(1, min(learner.eval_batch_size, 16))  # logits are (batch, length, vocab)
        with evaluating(learner.model):
            for start in range(0, n, size):
                x = task.test_x[start:start + size].to(learner.device)
                y = task.test_y[start:start + size].to(learner.device)
                logits = learner.forward(x, None)
                correct += int(greedy_exact_match(logits, y).sum())
                nll += float(token_cross_entropy(logits, y, "sum"))
                tokens += int((y != IGNORE).sum())
        return {"exact_match": correct / max(1, n),
                "perplexity": math.exp(nll / tokens) if tokens else float("nan")}

    def check_outputs(self, output, num_outputs):
        if output.ndim != 3:
            raise DataError(
                f"a language-modelling stream needs a causal language model giving logits of "
                f"shape (batch, length, vocabulary); this model gives {tuple(output.shape)}. "
                "Use a language model (--model smollm2, or --model hf:PATH to a causal LM).")

    # ---- importances
    def fisher_diagonal(self, learner, task, estimator, num_samples, chunk_size, mask,
                        generator):
        if estimator == "batched":
            return per_sample_importance(learner, task, num_samples, generator, torch.square,
                               _mean_token_nll, per_batch=True)
        if estimator in ("exact", "sampled"):
            return per_sample_importance(learner, task, num_samples, generator, torch.square,
                               _sampled_token_nll)
        if estimator == "empirical":
            return per_sample_importance(learner, task, num_samples, generator, torch.square,
                               _summed_token_nll)
        raise ConfigurationError(f"unknown Fisher estimator {estimator!r}.")

    def output_sensitivity(self, learner, task, num_samples, chunk_size, mask, generator):
        return per_sample_importance(learner, task, num_samples, generator, torch.abs,
                           _mean_squared_logit_norm)

    # ---- distillation (LwF) and stored logits (DER++)
    def distillation(self, student, teacher, x, groups, temperature):
        """Per token, over the whole vocabulary, at every real (non-padding) position."""
        t = temperature
        real = x != PAD
        new_log = F.log_softmax(student[real] / t, dim=-1)
        old_log = F.log_softmax(teacher[real] / t, dim=-1)
        kl = (old_log.exp() * (old_log - new_log)).sum(-1)
        return t * t * kl.mean() if kl.numel() else student.sum() * 0

    def logit_memory(self, logits, x):
        """(N, L, 2k): the top-k logit values and their token ids (ids as floats, exact below
        2^24), ids -1 at padding."""
        values, ids = logits.detach().topk(DER_TOP_K, dim=-1)
        ids = ids.masked_fill((x == PAD)[..., None], -1)
        return torch.cat([values, ids.to(values.dtype)], dim=-1)

    def logit_matching(self, student, stored):
        values, ids = stored.split(DER_TOP_K, dim=-1)
        ids = ids.long()
        real = ids >= 0
        picked = student.gather(-1, ids.clamp_min(0))
        return ((picked - values).square() * real).sum() / real.sum().clamp_min(1)


# ---------------------------------------------------------------- per-sequence objectives
def _summed_token_nll(logits, y, generator):
    if not bool((y != IGNORE).any()):
        return None
    return token_cross_entropy(logits, y, "sum")


def _mean_token_nll(logits, y, generator):
    if not bool((y != IGNORE).any()):
        return None
    return token_cross_entropy(logits, y)


def _sampled_token_nll(logits, y, generator):
    target = y[0] != IGNORE
    if not bool(target.any()):
        return None
    probs = F.softmax(logits[0][target].detach(), dim=-1)
    drawn = torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)[:, 0]
    return F.cross_entropy(logits[0][target], drawn, reduction="sum")


def _mean_squared_logit_norm(logits, y, generator):
    target = y[0] != IGNORE
    if not bool(target.any()):
        return None
    return logits[0][target].square().sum(-1).mean()
