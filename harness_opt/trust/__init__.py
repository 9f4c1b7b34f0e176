"""Trust: catch metric gaming before it is scored, and tell a user whether a set-up can be trusted.

`scan_candidate` reads a candidate's files for leaked val/test data, sandbox escapes and removed
instrumentation; `doctor` checks a suite and harness before an overnight run; `premortem` probes how
the metric could be gamed; `audit` lists what a run's traces are missing before a meta-agent reads them.
"""

from __future__ import annotations

from harness_opt.trust.scan import Finding, ScanReport, scan_and_record, scan_candidate

__all__ = ["Finding", "ScanReport", "scan_and_record", "scan_candidate"]
