"""Benchmark builders: cut a Source into a Stream of tasks for one of the three scenarios.

- ``split``: the classes partitioned into T tasks (split MNIST: {0,1}, {2,3}, ...);
- ``permuted``: T fixed pixel permutations of the whole dataset (the first may be the identity);
- ``rotated``: T fixed rotation angles of the whole dataset.

How labels become output units (one rule for all builders, see ``_relabel``):
task- and class-incremental tasks own disjoint units of one head; domain-incremental tasks share
the same units.
"""

from __future__ import annotations

import math
import typing

import torch
import torch.nn.functional as F

from forgetless.data.sources import Source, load_source
from forgetless.data.stream import Scenario, Stream, Task
from forgetless.errors import ConfigurationError
from forgetless.registry import Registry
from forgetless.typecheck import check_values

BENCHMARKS: Registry = Registry("benchmark", discover="forgetless.data")


def build_stream(
    benchmark: str = "split",
    scenario: str | Scenario = "class",
    tasks: int | None = None,
    seed: int = 0,
    source: str | Source = "mnist",
    source_options: dict | None = None,
    model: str | None = None,
    **options,
) -> Stream:
    """Build a registered benchmark by name, e.g. ``build_stream("split", "class", tasks=5)``.
    A text benchmark (``data.text_benchmarks``) is built with ``model``'s tokenizer instead of
    a source."""
    builder = BENCHMARKS.get(benchmark)
    scenario = Scenario.parse(scenario)
    if tasks is not None and (not isinstance(tasks, int) or tasks < 1):
        raise ConfigurationError(f"tasks must be a positive whole number, got {tasks!r}.",
                                 cli=f"--tasks must be a positive whole number, got {tasks!r}.")
    text = getattr(builder, "needs_model", False)
    if text:
        options["model"] = model or builder.defaults["model"]
        source_name = options["model"]
    elif not isinstance(source, Source):
        source = load_source(source, **(source_options or {}))
    if tasks is not None:
        options["tasks"] = tasks
    check_values(options, typing.get_type_hints(builder), f"benchmark '{benchmark}' option")
    try:
        stream = builder(scenario, seed=seed, **options) if text else \
            builder(source, scenario, seed=seed, **options)
    except TypeError as error:
        if "unexpected keyword" in str(error):
            raise ConfigurationError(
                f"benchmark '{benchmark}' does not take that option ({error}); "
                f"see `forgetless list` for its options."
            ) from None
        raise
    stream.options = {"benchmark": benchmark, "source": source_name if text else source.name,
                      "seed": seed,
                      "tasks": len(stream), **{k: v for k, v in options.items() if k != "tasks"}}
    return stream


def _relabel(y: torch.Tensor, scenario: Scenario, task_id: int, first_unit: int,
             units_per_task: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Move task-local labels 0..k-1 into the scenario's output space.

    Returns the new labels and the task's output units."""
    if scenario is Scenario.DOMAIN:
        return y, tuple(range(units_per_task))
    offset = first_unit + task_id * units_per_task
    return y + offset, tuple(range(offset, offset + units_per_task))


def _head_size(scenario: Scenario, tasks: int, units_per_task: int) -> int:
    return units_per_task if scenario is Scenario.DOMAIN else tasks * units_per_task


@BENCHMARKS.register("split")
def split(source: Source, scenario: Scenario, *, tasks: int = 5, seed: int = 0,
          shuffle_classes: bool = False) -> Stream:
    """Classes partitioned into ``tasks`` equal groups, in natural order (0,1 | 2,3 | ...) or,
    with ``shuffle_classes``, in an order drawn from ``seed``."""
    n = source.num_classes
    if tasks > n or n % tasks:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        raise ConfigurationError(
            f"{n} classes do not divide into {tasks} equal tasks; choose --tasks from "
            f"{divisors}."
        )
    per_task = n // tasks
    if shuffle_classes:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    position = torch.empty(n, dtype=torch.long)
    position[order] = torch.arange(n)
    built = []
    for t in range(tasks):
        originals = order[t * per_task:(t + 1) * per_task]
        splits = []
        for x, y in ((source.train_x, source.train_y), (source.test_x, source.test_y)):
            keep = torch.isin(y, originals)
            local = position[y[keep]] - t * per_task
            new_y, classes = _relabel(local, scenario, t, 0, per_task)
            splits += [x[keep], new_y]
        names = ",".join(str(int(c)) for c in originals)
        built.append(Task(t, *splits, classes, description=f"classes {names}"))
    return Stream(built, scenario, _head_size(scenario, tasks, per_task),
                  name=f"split-{source.name}")


def _transformed(source: Source, scenario: Scenario, transforms, label: str, name: str) -> Stream:
    """One task per transform of the whole source (permuted, rotated)."""
    n = source.num_classes
    built = []
    for t, (transform, text) in enumerate(transforms):
        splits = []
        for x, y in ((source.train_x, source.train_y), (source.test_x, source.test_y)):
            new_y, classes = _relabel(y, scenario, t, 0, n)
            splits += [transform(x), new_y]
        built.append(Task(t, *splits, classes, description=f"{label} {text}"))
    return Stream(built, scenario, _head_size(scenario, len(built), n), name=name)


@BENCHMARKS.register("permuted")
def permuted(source: Source, scenario: Scenario, *, tasks: int = 5, seed: int = 0,
             first_identity: bool = True) -> Stream:
    """Each task applies its own fixed pixel permutation (drawn from ``seed``) to every image."""
    shape = source.input_shape
    size = math.prod(shape)
    generator = torch.Generator().manual_seed(seed)
    transforms = []
    for t in range(tasks):
        if t == 0 and first_identity:
            perm = torch.arange(size)
        else:
            perm = torch.randperm(size, generator=generator)
        transforms.append(
            (lambda x, p=perm: x.reshape(x.shape[0], -1)[:, p].reshape(x.shape[0], *shape),
             "identity" if t == 0 and first_identity else str(t)))
    return _transformed(source, scenario, transforms, "permutation", f"permuted-{source.name}")


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (N, C, H, W) images counter-clockwise about their centre (bilinear, zero fill)."""
    if degrees % 360 == 0:
        return x.clone()
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(matrix.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@BENCHMARKS.register("rotated")
def rotated(source: Source, scenario: Scenario, *, tasks: int = 5, seed: int = 0,
            angles: list[float] | None = None) -> Stream:
    """Each task rotates every image by its own fixed angle; by default the angles are evenly
    spaced in [0, 180) degrees (``seed`` is unused: the angles are fixed)."""
    if len(source.input_shape) != 3:
        raise ConfigurationError(
            f"rotated needs images (channels, height, width); source '{source.name}' gives "
            f"shape {source.input_shape}."
        )
    if angles is None:
        angles = [180.0 * t / tasks for t in range(tasks)]
    elif len(angles) != tasks:
        raise ConfigurationError(
            f"{len(angles)} angles given for {tasks} tasks; give one angle per task."
        )
    transforms = [(lambda x, a=float(a): rotate(x, a), f"{float(a):g} degrees") for a in angles]
    return _transformed(source, scenario, transforms, "rotation", f"rotated-{source.name}")
