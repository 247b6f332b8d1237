"""Strategies by name: the registry, the ``register`` decorator and ``build_strategy``.

Every module under this package is imported on the first lookup, so a new strategy file
registers itself by existing. Tuned hyper-parameters for the embedded benchmarks live in
``tuned/<name>.toml`` as ``[benchmark.scenario]`` tables.
"""

from __future__ import annotations

import inspect
from importlib import resources

from forgetless.errors import ConfigurationError
from forgetless.registry import Registry
from forgetless.strategies.base import Batch, Footprint, Strategy, TrainingData
from forgetless.strategies.composite import Composite

STRATEGIES: Registry = Registry("strategy", discover="forgetless.strategies")

FAMILIES = ("baseline", "regularization", "architecture", "replay", "frozen-features",
            "hybrid")

__all__ = ["STRATEGIES", "Batch", "Composite", "Footprint", "Strategy", "TrainingData",
           "build_strategy", "canonical_spec", "register", "resolve_hyperparameters",
           "tuned_defaults"]


def register(name: str):
    """Class decorator: ``@register("ewc")`` names the strategy and makes it findable."""

    def decorate(cls: type[Strategy]) -> type[Strategy]:
        if cls.family not in FAMILIES:
            raise ValueError(f"{cls.__name__}.family must be one of {FAMILIES}")
        cls.name = name
        return STRATEGIES.register(name)(cls)

    return decorate


def tuned_defaults(name: str, benchmark: str | None, scenario: str | None) -> dict:
    """Hyper-parameters tuned for (benchmark, scenario), or {} when none were recorded."""
    if benchmark is None or scenario is None:
        return {}
    try:
        text = resources.files("forgetless.strategies").joinpath(f"tuned/{name}.toml").read_text()
    except (FileNotFoundError, OSError):
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    table = tomllib.loads(text)
    return dict(table.get(benchmark, {}).get(str(scenario), {}))


def constructor_parameters(cls: type[Strategy]) -> dict[str, inspect.Parameter]:
    init = inspect.unwrap(cls.__init__)
    params = list(inspect.signature(init).parameters.values())[1:]
    return {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def resolve_hyperparameters(names: list[str], settings: dict, benchmark: str | None = None,
                            scenario: str | None = None) -> list[dict]:
    """Per part of ``names``: tuned defaults overridden by ``settings``.

    A setting ``"ewc.lam"`` goes to the part named ``ewc``; a bare ``"lam"`` goes to every part
    whose constructor takes it. A setting no part takes is an error (a typo must not be
    silently ignored)."""
    classes = [STRATEGIES.get(n) for n in names]
    resolved = [tuned_defaults(n, benchmark, scenario) for n in names]
    for key, value in settings.items():
        target, _, param = key.rpartition(".")
        matched = False
        for index, (name, cls) in enumerate(zip(names, classes, strict=True)):
            accepted = constructor_parameters(cls)
            if target and target != name:
                continue
            if param in accepted:
                resolved[index][param] = value
                matched = True
            elif target:
                raise _unknown_parameter(name, param, accepted)
        if not matched:
            if target and target not in names:
                raise ConfigurationError(
                    f"--set {key}: '{target}' is not part of the strategy {'+'.join(names)}."
                )
            everything = {p for cls in classes for p in constructor_parameters(cls)}
            raise _unknown_parameter("+".join(names), param, everything)
    return resolved


def _unknown_parameter(name: str, param: str, accepted) -> ConfigurationError:
    from forgetless.errors import did_you_mean

    hint = did_you_mean(param, accepted, cutoff=0.6)
    listed = ", ".join(sorted(accepted)) or "none"
    return ConfigurationError(
        f"strategy '{name}' has no hyper-parameter '{param}'.{hint} Its hyper-parameters: "
        f"{listed}."
    )


def canonical_spec(spec: str) -> str:
    """``"EWC + er"`` -> ``"ewc+er"``: each part in its registered spelling (unknown names fail
    with a suggestion)."""
    names = [STRATEGIES.canonical(n.strip()) for n in str(spec).split("+") if n.strip()]
    if not names:
        raise ConfigurationError("no strategy named; e.g. --strategy naive or ewc+er.")
    return "+".join(names)


def build_strategy(spec: str | Strategy, settings: dict | None = None,
                   benchmark: str | None = None, scenario: str | None = None) -> Strategy:
    """``build_strategy("ewc+er", {"lam": 100})``: parts by name, with tuned defaults for the
    benchmark and scenario, overridden by ``settings``."""
    if isinstance(spec, Strategy):
        return spec
    names = canonical_spec(spec).split("+")
    parts = []
    for name, params in zip(names, resolve_hyperparameters(names, settings or {}, benchmark,
                                                           scenario), strict=True):
        cls = STRATEGIES.get(name)
        try:
            parts.append(cls(**params))
        except (TypeError, ValueError) as error:
            if isinstance(error, ConfigurationError):
                raise
            raise ConfigurationError(f"strategy '{name}': {error}") from None
    return parts[0] if len(parts) == 1 else Composite(*parts)
