"""Reports on training runs: ``curves.png`` per run, and one self-contained HTML page comparing runs.

``save_curves(run_dir)`` plots one run's metrics; ``write_report(run_dirs, out)`` writes the HTML page
(inline SVG charts, no network); ``load_run(run_dir)`` reads a run folder for either. Nothing here imports
torch at import time (only the leaderboard's parameter/MAC counts need it, when a page is written).
"""

from litezoo.report.curves import CURVES, save_curves
from litezoo.report.page import ReportResult, write_report
from litezoo.report.runs import RunRecord, load_run, read_metrics

__all__ = ["CURVES", "save_curves", "ReportResult", "write_report", "RunRecord", "load_run", "read_metrics"]
