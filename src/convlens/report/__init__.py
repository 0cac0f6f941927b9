"""The self-contained HTML report (jinja2, autoescape on; figures as data URIs; no external assets)."""

from convlens.report.build import build_report

__all__ = ["build_report"]
