"""HTML reports of a run: one self-contained report.html per run directory."""

from harness.report.render import ReportError, report_command, write_report

__all__ = ["ReportError", "report_command", "write_report"]
