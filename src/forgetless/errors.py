"""Errors a user can act on.

Every error forgetless raises for a bad input is a ``ForgetlessError`` whose message names the
fix; the CLI prints the message alone (no traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ForgetlessError(Exception):
    """Base class: the message is written for the user and says how to fix the problem."""


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


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigurationError:
    """An error for an unknown registered name, suggesting the nearest known one."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigurationError(
        f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(known)}."
    )
