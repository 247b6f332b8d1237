"""Generators for generative replay: a conditional VAE (the default) and a conditional GAN.

Both imitate the inputs of the tasks seen so far and are conditioned on a one-hot of the
sample's output unit concatenated with a one-hot of its task (units alone do not name the task
in domain-incremental streams). Each trains with its own optimiser through ``train_step`` and
draws samples with ``generate``; every random draw comes from the ``generator`` (RNG) passed in,
so a seeded run is repeatable. ``grow_condition`` makes room for tasks that arrive after the
generator was built (a model continued later) without changing what it generates.

In a process group the generator trains data-parallel like the classifier: every rank makes
the random draws of the whole global batch (``noise``) and keeps the rows of its share
(``rows`` of ``total``), and each step's gradients are the ranks' mean weighted by their rows
(``distributed.average_gradients``), so the generator is one process's on every rank.

- ``ConditionalVAE`` (Kingma & Welling 2014; Sohn et al. 2015): MLP encoder and decoder with
  one hidden layer of 100 and a 32-dimensional latent code, Adam 3e-3, 2 steps per classifier
  step and at least 100 per task; Bernoulli (binary cross-entropy) reconstruction of inputs in
  [0, 1]. Van de Ven & Tolias 2019 give the VAE the classifier's layer sizes (400-400) and a
  100-dimensional code; that VAE (``generator_hidden=[400,400], latent=100,
  generator_lr=0.001, generator_budget=5``, the default before issue 16) replays no better on
  MNIST and costs about six times as much per step. The floor of 100 steps is for short
  budgets: a VAE needs about that many steps to imitate a task's digits, however few the
  classifier takes (benchmarks/replay.md, "Generative replay at the cost of replay").
- ``ConditionalGAN`` (Goodfellow et al. 2014; Mirza & Osindero 2014): MLP generator and
  discriminator with the condition concatenated to their inputs, trained with the
  non-saturating loss; by default with a gradient penalty on real samples (Mescheder, Geiger &
  Nowozin 2018, "R1"), which keeps the small discriminator from overpowering the generator.
  Adam with beta1 = 0.5 (Radford et al. 2016).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forgetless import distributed
from forgetless.errors import ConfigurationError


def noise(rng, n: int, width: int, device, rows: slice | None = None,
          total: int | None = None) -> torch.Tensor:
    """Standard normal draws, ``(n, width)``; with ``rows``: those rows of the draws for a
    global batch of ``total`` samples (each rank draws them all, so the ranks stay in step)."""
    if rows is None:
        return torch.randn(n, width, generator=rng).to(device)
    return torch.randn(total, width, generator=rng)[rows].to(device)


def _mlp(widths: list[int], activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def widen_input(layer: nn.Linear, extra: int) -> None:
    """Give ``layer`` ``extra`` more inputs, appended last, with zero weights: until they are
    trained, the new inputs change nothing."""
    zeros = layer.weight.new_zeros(layer.out_features, extra)
    layer.weight = nn.Parameter(torch.cat([layer.weight.detach(), zeros], 1))
    layer.in_features += extra


class Conditioned(nn.Module):
    """A network whose first layers read ``[input, condition]``, the condition last."""

    def conditioned_layers(self) -> list[nn.Linear]:
        raise NotImplementedError

    def grow_condition(self, extra: int) -> None:
        """Append ``extra`` condition entries (one-hot slots of new tasks); the optimiser state
        no longer fits the parameters, so it is rebuilt."""
        for layer in self.conditioned_layers():
            widen_input(layer, extra)
        self.reset_optimizer()

    def reset_optimizer(self) -> None:
        raise NotImplementedError


class ConditionalVAE(Conditioned):
    """x | condition -> (mu, log variance) of z; z, condition -> Bernoulli means of x."""

    default_budget = 2.0  # generator steps per classifier step, unless told otherwise
    default_min_steps = 100  # and at least this many per task

    def __init__(self, input_shape, condition_size: int, hidden=(100,), latent: int = 32,
                 lr: float = 3e-3) -> None:
        super().__init__()
        self.input_shape, self.latent, self.lr = tuple(input_shape), latent, lr
        size, hidden = math.prod(input_shape), list(hidden)
        self.encoder = _mlp([size + condition_size, *hidden, 2 * latent], nn.ReLU)
        self.decoder = _mlp([latent + condition_size, *hidden[::-1], size], nn.ReLU)
        self.optimizer: torch.optim.Optimizer | None = None

    def conditioned_layers(self) -> list[nn.Linear]:
        return [self.encoder[0], self.decoder[0]]

    def reset_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)

    def decode(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(torch.cat([z, condition], 1))
        return logits.view(-1, *self.input_shape)

    def loss(self, x: torch.Tensor, condition: torch.Tensor, rng, rows: slice | None = None,
             total: int | None = None) -> torch.Tensor:
        """Negative ELBO per sample, averaged over the batch (``rows`` of a global batch of
        ``total``: see the module docstring)."""
        flat = x.reshape(x.shape[0], -1)
        mu, log_var = self.encoder(torch.cat([flat, condition], 1)).chunk(2, dim=1)
        z = mu + (0.5 * log_var).exp() * noise(rng, *mu.shape, mu.device, rows, total)
        reconstruction = F.binary_cross_entropy_with_logits(
            self.decode(z, condition).reshape_as(flat), flat, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return (reconstruction + kl).mean()

    def train_step(self, x: torch.Tensor, condition: torch.Tensor, rng,
                   rows: slice | None = None, total: int | None = None) -> float:
        loss = self.loss(x, condition, rng, rows, total)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(list(self.parameters()), x.shape[0])
        self.optimizer.step()
        return loss.item()

    @torch.no_grad()
    def generate(self, condition: torch.Tensor, rng, rows: slice | None = None) -> torch.Tensor:
        """Samples for every row of ``condition`` (latents drawn for all of them), decoded for
        ``rows`` only (all when None)."""
        z = noise(rng, condition.shape[0], self.latent, condition.device)
        rows = slice(None) if rows is None else rows
        return torch.sigmoid(self.decode(z[rows], condition[rows]))


class ConditionalGAN(Conditioned):
    """z, condition -> x (generator); x, condition -> real/fake logit (discriminator)."""

    default_budget = 5.0
    default_min_steps = 0

    def __init__(self, input_shape, condition_size: int, hidden=(400, 400), latent: int = 100,
                 lr: float = 2e-4, gradient_penalty: float = 10.0) -> None:
        super().__init__()
        self.input_shape, self.latent, self.lr = tuple(input_shape), latent, lr
        self.gradient_penalty = gradient_penalty
        size, hidden = math.prod(input_shape), list(hidden)
        self.generator = _mlp([latent + condition_size, *hidden[::-1], size],
                              lambda: nn.LeakyReLU(0.2))
        self.discriminator = _mlp([size + condition_size, *hidden, 1],
                                  lambda: nn.LeakyReLU(0.2))
        self.optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None

    def conditioned_layers(self) -> list[nn.Linear]:
        return [self.generator[0], self.discriminator[0]]

    def reset_optimizer(self) -> None:
        self.optimizers = (
            torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=(0.5, 0.999)),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.999)))

    def _fake(self, condition: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(torch.cat([z, condition], 1)))

    def _judge(self, flat: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([flat, condition], 1)).squeeze(1)

    def train_step(self, x: torch.Tensor, condition: torch.Tensor, rng,
                   rows: slice | None = None, total: int | None = None) -> float:
        g_opt, d_opt = self.optimizers
        real = x.reshape(x.shape[0], -1).requires_grad_(self.gradient_penalty > 0)
        fake = self._fake(condition, noise(rng, condition.shape[0], self.latent,
                                           condition.device, rows, total))
        real_score = self._judge(real, condition)
        d_loss = F.softplus(-real_score).mean() + F.softplus(self._judge(fake.detach(),
                                                                         condition)).mean()
        if self.gradient_penalty > 0:
            (grad,) = torch.autograd.grad(real_score.sum(), real, create_graph=True)
            d_loss = d_loss + 0.5 * self.gradient_penalty * grad.pow(2).sum(1).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        distributed.average_gradients(list(self.discriminator.parameters()), x.shape[0])
        d_opt.step()
        g_loss = F.softplus(-self._judge(fake, condition)).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        distributed.average_gradients(list(self.generator.parameters()), x.shape[0])
        g_opt.step()
        return g_loss.item()

    @torch.no_grad()
    def generate(self, condition: torch.Tensor, rng, rows: slice | None = None) -> torch.Tensor:
        """As ``ConditionalVAE.generate``."""
        z = noise(rng, condition.shape[0], self.latent, condition.device)
        rows = slice(None) if rows is None else rows
        return self._fake(condition[rows], z[rows]).view(-1, *self.input_shape)


GENERATORS = {"vae": ConditionalVAE, "gan": ConditionalGAN}


def build_generator(kind: str, input_shape, condition_size: int, **options) -> nn.Module:
    """``vae`` or ``gan``, e.g. ``build_generator("vae", (1, 28, 28), 15)``."""
    if kind not in GENERATORS:
        raise ConfigurationError(
            f"unknown generator '{kind}'; choose one of {', '.join(GENERATORS)} "
            "(e.g. --set generator=gan).")
    return GENERATORS[kind](input_shape, condition_size, **options)
