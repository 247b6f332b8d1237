"""Speed of the importance estimates: vectorised vs a per-sample Python loop, same values.

1,000 embedded-MNIST training images, the default MLP 784-400-400 (10 outputs, untrained weights
from seed 0), one thread. For each estimator: the per-sample loop (one autograd call per sample
and per label, the definition), the vectorised ``fisher_diagonal`` / ``mas_importance`` through
its factored path (the default for MLPs) and through ``torch.func`` vmap; wall time of each
(best of ``--repeats``) and the largest absolute difference from the loop.

    PYTHONPATH=src python benchmarks/regularization_fisher_speed.py
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from forgetless.data.sources import load_source
from forgetless.models import build_model
from forgetless.strategies.regularization.fisher import fisher_diagonal, mas_importance


def loop(model, x, y, estimator):
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(x.shape[0]):
        logits = model(x[i:i + 1])
        if estimator == "mas":
            grads = torch.autograd.grad(logits.square().sum(), params)
            for t, g in zip(total, grads, strict=True):
                t += g.abs()
            continue
        log_p = F.log_softmax(logits, 1)[0]
        pairs = ([(c, float(log_p[c].exp())) for c in range(log_p.shape[0])]
                 if estimator == "exact" else [(int(y[i]), 1.0)])
        for c, weight in pairs:
            grads = torch.autograd.grad(log_p[c], params, retain_graph=True)
            for t, g in zip(total, grads, strict=True):
                t += weight * g.square()
    return [t / x.shape[0] for t in total]


def timed(fn, repeats):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mnist = load_source("mnist")
    x, y = mnist.train_x[:args.samples], mnist.train_y[:args.samples]
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10).eval()
    fisher_diagonal(model, (x[:8], y[:8]))  # one-off torch.func warm-up, not timed
    lines = ["| estimator | per-sample loop (s) | vectorised, factored (s) | speed-up | "
             "vectorised, vmap (s) | speed-up | max abs difference |",
             "|---|---|---|---|---|---|---|"]
    for estimator in ("exact", "empirical", "mas"):
        def run(method, estimator=estimator):
            # factored: the default chunk_size, as EWC and MAS run it; vmap: 64 gradient vectors
            chunk = {"chunk_size": 64} if method == "vmap" else {}
            if estimator == "mas":
                return list(mas_importance(model, x, method=method, **chunk).values())
            return list(fisher_diagonal(model, (x, y), estimator, method=method,
                                        **chunk).values())

        slow, reference = timed(lambda estimator=estimator: loop(model, x, y, estimator), 1)
        fast, factored = timed(lambda: run("factored"), args.repeats)
        mapped, vmapped = timed(lambda: run("vmap"), 1)
        diff = max(float((a - b).abs().max()) for values in (factored, vmapped)
                   for a, b in zip(values, reference, strict=True))
        lines.append(f"| {estimator} | {slow:.3f} | {fast:.3f} | {slow / fast:.1f}x | "
                     f"{mapped:.3f} | {slow / mapped:.2f}x | {diff:.1e} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
