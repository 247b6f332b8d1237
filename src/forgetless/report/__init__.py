"""The HTML report of stored runs: tables and inline SVG plots in one self-contained file."""

from forgetless.report.html import render, write_report

DEFAULT_REPORT = "forgetless-report.html"

__all__ = ["DEFAULT_REPORT", "render", "write_report"]
