"""Trace files: one JSONL file per (version, suite, split), one line per rollout.

The ledger stores `trace_ref = "<file relative to the traces dir>#<byte offset>"`, so showing one
trace is a seek, not a scan, and moving the project folder keeps every reference valid.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from harness_opt.errors import UserError
from harness_opt.home import traces_dir
from harness_opt.records import ErrorEvent, LogEvent, Trace
from harness_opt.runtime.payload import bounded, cut_text, marker

TRACE_LINE_BYTES = 8 * 1024 * 1024
"""Largest trace line written; a bigger trace has its long texts cut (marked) until it fits."""
_KEEP_EVENTS = 200


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def trace_path(agent: str, version_hash: str, suite: str, split: str) -> Path:
    """The one trace file of (version, suite, split)."""
    return traces_dir() / _slug(agent) / f"{version_hash[:12]}__{_slug(suite)}__{_slug(split)}.jsonl"


class TraceWriter:
    """Appends traces to one file. Single writer per file (the evaluator's event loop)."""

    def __init__(self, agent: str, version_hash: str, suite: str, split: str) -> None:
        self.root = traces_dir()
        self.path = trace_path(agent, version_hash, suite, split)
        self.relpath = self.path.relative_to(self.root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the whole evaluation

    def append(self, trace: Trace) -> str:
        """Write one trace line, flushed to the OS, and return its reference for the ledger."""
        line = trace_line(trace)
        offset = self._fh.tell()
        self._fh.write(line)
        self._fh.flush()
        return f"{self.relpath.as_posix()}#{offset}"

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def _serialised(trace: Trace) -> bytes | None:
    try:
        line = trace.model_dump_json().encode() + b"\n"
    except (ValueError, TypeError, RecursionError):  # pydantic's serializer refuses very deep values
        return None
    return line if len(line) <= TRACE_LINE_BYTES else None


def _cut(trace: Trace, max_str: int, keep: int | None) -> Trace:
    """The trace with every value bounded (depth, strings of `max_str`), and only the first and last
    `keep` events when `keep` is set; markers say what went."""
    events = trace.events
    if keep is not None and len(events) > 2 * keep:
        gap = LogEvent(message=marker(f"{len(events) - 2 * keep} events dropped to fit the trace line"))
        events = [*events[:keep], gap, *events[-keep:]]
    kept = []
    for event in events:
        fields = bounded(dict(event.__dict__), max_str=max_str, max_items=1000)
        kept.append(type(event).model_validate(fields))
    return trace.model_copy(
        update={
            "events": kept,
            "task_input": bounded(trace.task_input, max_str=max_str, max_items=1000),
            "output": bounded(trace.output, max_str=max_str, max_items=1000),
            "feedback": cut_text(trace.feedback, max_str),
            "error_detail": cut_text(trace.error_detail, max_str)
            if trace.error_detail
            else trace.error_detail,
        }
    )


def trace_line(trace: Trace) -> bytes:
    """One JSONL line for `trace`, at most TRACE_LINE_BYTES: as is when it fits; else with its long
    texts cut, then its middle events dropped, then only an error event, each step marked."""
    line = _serialised(trace)
    if line is not None:
        return line
    for max_str, keep in ((65_536, None), (4096, None), (512, _KEEP_EVENTS), (128, 20)):
        line = _serialised(_cut(trace, max_str, keep))
        if line is not None:
            return line
    bare = trace.model_copy(
        update={
            "events": [ErrorEvent(kind="trace", reason=marker("the trace did not fit in a trace line"))],
            "task_input": bounded(trace.task_input, max_str=1000, max_items=100),
            "output": None,
            "feedback": cut_text(trace.feedback, 1000),
            "error_detail": cut_text(trace.error_detail or "", 1000) or None,
        }
    )
    return bare.model_dump_json().encode() + b"\n"


def read_trace(trace_ref: str, root: Path | None = None) -> Trace:
    """Load the trace a ledger row points at."""
    rel, _, offset = trace_ref.partition("#")
    path = (root or traces_dir()) / rel
    if not path.exists():
        raise UserError(
            f"trace file {path} is missing",
            fix="traces live under HARNESS_OPT_TRACES (default <HARNESS_OPT_HOME>/traces); use the "
            "home (and traces folder) the run used, or re-run the evaluation",
        )
    with open(path, "rb") as fh:
        fh.seek(int(offset or 0))
        return Trace.model_validate_json(fh.readline())


def iter_traces(path: Path) -> list[tuple[int, Trace]]:
    """Every complete trace line of a file with its byte offset; a torn last line (kill -9) is skipped."""
    out: list[tuple[int, Trace]] = []
    if not path.exists():
        return out
    with open(path, "rb") as fh:
        offset = 0
        for line in fh:
            if line.endswith(b"\n"):
                with contextlib.suppress(ValueError):  # a corrupt line is not a finished rollout
                    out.append((offset, Trace.model_validate_json(line)))
            offset += len(line)
    return out
