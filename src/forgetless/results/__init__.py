"""Run results: one run's record (``RunResult``), the store of many (``RunStore``), and the
stored runs as a pandas DataFrame (``to_frame``)."""

from forgetless.results.run_result import SCHEMA_VERSION, RunResult
from forgetless.results.store import RunStore, to_frame

__all__ = ["SCHEMA_VERSION", "RunResult", "RunStore", "to_frame"]
