"""Run results: one run's record (``RunResult``) and, later, the store of many."""

from forgetless.results.run_result import SCHEMA_VERSION, RunResult

__all__ = ["SCHEMA_VERSION", "RunResult"]
