"""A run's configuration, how it is resolved (defaults < config file < CLI), and its run id.

The run id is a hash of the *resolved* configuration: every hyper-parameter the strategy will
actually use (its constructor defaults and tuned values filled in), so two runs with the same id
are the same experiment and the results store can skip one.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from forgetless.errors import ConfigurationError
from forgetless.typecheck import check_values

#: How a run's tasks arrive (``RunConfig.stream``), with what each sets by default.
STREAMS = {"tasks": {}, "online": {"epochs": 1, "batch_size": 10},
           "task-free": {"epochs": 1, "batch_size": 10}}
#: Fields a run id leaves out while they hold their defaults, so that adding them did not
#: change the id of any run recorded before them.
LATER_FIELDS = {"stream": "tasks", "blur": 0.0, "eval_every": None, "eval_samples": 100,
                "compile": False}


@dataclass
class RunConfig:
    """Everything that determines a run. Defaults: naive on the embedded split MNIST,
    class-incremental, 5 tasks, MLP 784-400-400, Adam lr 1e-3, batch 128, 5 epochs per task."""

    benchmark: str = "split"
    scenario: str = "class"
    tasks: int = 5
    source: str = "mnist"
    data_dir: str | None = None
    benchmark_options: dict = field(default_factory=dict)
    strategy: str = "naive"
    strategy_params: dict = field(default_factory=dict)
    model: str = "mlp"
    model_options: dict = field(default_factory=dict)
    epochs: int = 5
    iterations: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    reset_optimizer: bool = True
    seed: int = 0
    device: str = "cpu"
    #: How the tasks arrive (``STREAMS``): ``tasks`` (several epochs each, boundaries
    #: announced), ``online`` (one pass, small batches, boundaries announced) or ``task-free``
    #: (one pass, boundaries hidden, transitions blurred over ``blur`` of a task).
    stream: str = "tasks"
    blur: float = 0.0
    #: Continual evaluation every that many steps, "auto" or "off"; None: "auto" for the online
    #: streams, off for ``tasks``. ``eval_samples``: test samples per task it scores.
    eval_every: int | str | None = None
    eval_samples: int = 100
    #: The step through ``torch.compile`` (``forgetless.compiled_step``); off by default.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            from forgetless.errors import unknown_name

            raise unknown_name("stream", self.stream, list(STREAMS))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            from forgetless.errors import closest

            hints = []
            for key in unknown:
                close = closest(key, known, cutoff=0.6)
                hints.append(f"'{key}'" + (f" (did you mean '{close}'?)" if close else ""))
            raise ConfigurationError(
                f"unknown configuration key(s) {', '.join(hints)}; known keys: "
                f"{', '.join(sorted(known))}."
            )
        return cls(**values)

    def updated(self, **changes) -> RunConfig:
        """A copy with ``changes`` applied; ``None`` values leave a field as it was."""
        values = self.to_dict()
        values.update({k: v for k, v in changes.items() if v is not None})
        return RunConfig.from_dict(values)


def load_config_file(path: str | Path) -> dict:
    """Read a TOML config: top-level keys are RunConfig fields; a ``[strategy_params]`` table
    holds hyper-parameters (``lam = 100`` or ``"ewc.lam" = 100``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigurationError(f"config file '{path}' does not exist.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"config file '{path}' is not valid TOML: {error}.") from None
    RunConfig.from_dict(values)  # reject unknown keys early, with suggestions
    check_values(values, typing.get_type_hints(RunConfig), f"config file '{path}'")
    return values


def parse_value(text: str):
    """A ``--set`` value: a TOML literal (number, bool, list, quoted string) or a bare string."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_settings(items: list[str] | tuple[str, ...], option: str = "--set") -> dict:
    """``["lam=100", "ewc.gamma=0.9"]`` -> ``{"lam": 100, "ewc.gamma": 0.9}``."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{option} takes KEY=VALUE, got '{item}' (e.g. {option} "
                                     f"{'lam=100' if option == '--set' else 'tasks=2'}).")
        settings[key.strip()] = parse_value(value.strip())
    return settings


def run_id(resolved: dict) -> str:
    """A short stable hash of a resolved configuration (``LATER_FIELDS`` at their defaults
    left out)."""
    resolved = {k: v for k, v in resolved.items()
                if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
