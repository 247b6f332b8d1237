"""One run's record: resolved config, run id, accuracy matrix, metrics, costs, environment.

Saved as JSON with a schema version so that later versions can read (or refuse, clearly) what
earlier ones wrote.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forgetless.errors import ConfigurationError

SCHEMA_VERSION = 1


@dataclass
class RunResult:
    run_id: str
    config: dict
    accuracy_matrix: list[list[float]]
    untrained_accuracy: list[float]
    metrics: dict[str, float]
    costs: dict
    strategy_info: dict = field(default_factory=dict)  # family, needs_task_id, stores_raw_data
    task_descriptions: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    created: str = ""
    #: The objective (``classification`` or ``language_modelling``) and its scores beyond the
    #: one in ``accuracy_matrix``: ``{"perplexity": matrix, "untrained": {"perplexity": row},
    #: "held_out": {"perplexity": [per row]}}`` for a language model.
    objective: str = "classification"
    scores: dict = field(default_factory=dict)
    #: The continual-evaluation record (``forgetless.continual_evaluation``: accuracy of every
    #: seen task every few steps, task starts, the metrics of the stability gap); empty when it
    #: was off.
    continual: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigurationError(
                f"this run record has schema version {version}; this forgetless reads version "
                f"{SCHEMA_VERSION}. Re-run it with this version, or use the matching forgetless."
            )
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Write atomically (``forgetless.storage.write_atomic``: nothing half-written)."""
        from forgetless.storage import write_atomic

        return write_atomic(path, self.to_json(), "the run record")

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigurationError(f"no run record at '{path}'.") from None
        except IsADirectoryError:
            raise ConfigurationError(
                f"'{path}' is a folder; give the JSON file `forgetless run --output` wrote, or a "
                "run id from the store.") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigurationError(
                f"'{path}' is not a forgetless run record (not JSON); give the file that "
                "`forgetless run --output` wrote."
            ) from None
        if not isinstance(data, dict) or "accuracy_matrix" not in data:
            raise ConfigurationError(f"'{path}' is JSON but not a forgetless run record.")
        return cls.from_dict(data)
