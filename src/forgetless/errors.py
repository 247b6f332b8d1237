"""Errors a user can act on.

Every error forgetless raises for a bad input is a ``ForgetlessError`` whose message names the
fix; the CLI prints the message alone (no traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ForgetlessError(Exception):
    """Base class: the message is written for the user and says how to fix the problem.

    ``cli``: the same message in the command line's words (``--data-dir DIR`` rather than
    ``data_dir=...``) where the two differ; the CLI prints ``for_cli()``."""

    def __init__(self, message: str = "", *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli

    def for_cli(self) -> str:
        return self.cli or str(self)


class ConfigurationError(ForgetlessError, ValueError):
    """An unknown name, an impossible option, or options that contradict each other."""


class DataError(ForgetlessError, ValueError):
    """Input data of the wrong shape, with labels out of range, NaN values, or empty."""


class ScenarioError(ForgetlessError, ValueError):
    """A strategy asked to serve a scenario it cannot serve meaningfully."""


class TrainingDivergedError(ForgetlessError, RuntimeError):
    """The loss became NaN or infinite; the message says at which task and step."""


class CheckpointError(ForgetlessError, ValueError):
    """A checkpoint that is corrupt, truncated, or from another architecture or strategy."""


class StorageError(ForgetlessError, OSError):
    """A path that cannot be written: a missing or blocked folder, read-only media, a full
    disk. Still an ``OSError``, so code that handles disk errors keeps working."""


class ForgetlessWarning(UserWarning):
    """Something the user should notice but that does not stop the work (the CLI prints it on
    one line as ``warning: ...``)."""
def plural(kind: str) -> str:
    """``strategy`` -> ``strategies``, ``source`` -> ``sources``."""
    return kind[:-1] + "ies" if kind.endswith("y") and kind[-2:-1] not in "aeiou" else kind + "s"


def closest(name: str, known: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The known name nearest to ``name`` (case ignored), or None. The one place every "unknown
    name" message gets its suggestion from."""
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.5) -> str:
    """`` Did you mean 'ewc'?`` or ``""``."""
    match = closest(name, known, cutoff)
    return f" Did you mean '{match}'?" if match else ""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigurationError:
    """An error for an unknown registered name, suggesting the nearest known one."""
    known = sorted(known)
    return ConfigurationError(
        f"unknown {kind} '{name}'.{did_you_mean(name, known)} Known {plural(kind)}: "
        f"{', '.join(known)}."
    )


def resolve_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``name`` in its known spelling, case ignored (``EWC`` -> ``ewc``); an unknown name
    raises ``unknown_name``'s error with a suggestion."""
    known = list(known)
    if name in known:
        return name
    match = next((k for k in known if k.lower() == str(name).lower()), None)
    if match is None:
        raise unknown_name(kind, str(name), known)
    return match
