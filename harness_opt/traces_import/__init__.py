"""Production traces in: OpenAI chat JSONL, OpenTelemetry GenAI spans and Langfuse exports -> `Trace`.

Imported traces are labelled passed/failed, stored under `traces/imported/<name>.jsonl`, and used as
extra evidence for the `llm` and `agent` proposers, or turned into regression tasks — never as a score.
"""

from harness_opt.traces_import.convert import import_facts
from harness_opt.traces_import.options import ImportOptions
from harness_opt.traces_import.store import (
    READERS,
    failure_rubric,
    import_traces,
    imported_dir,
    read_file,
    read_imported,
    to_task_rows,
)

__all__ = [
    "READERS",
    "ImportOptions",
    "failure_rubric",
    "import_facts",
    "import_traces",
    "imported_dir",
    "read_file",
    "read_imported",
    "to_task_rows",
]
