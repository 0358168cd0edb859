"""Self-contained HTML reports of a selection."""

from tasksift.report.html import write_report

__all__ = ["write_report"]
