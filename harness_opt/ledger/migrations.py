"""The ledger's schema, as an ordered list of named migrations applied on every open.

A migration is never edited once released: a schema change is a new entry at the end of `MIGRATIONS`.
The `_migrations` table records which names a file has, so an old file gains the new tables on open,
and a file written by a *newer* harness-opt (a name this code does not know) is refused rather than
misread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from harness_opt.errors import LedgerError
from harness_opt.ledger.connection import connect

Migration = tuple[str, str | Callable[[duckdb.DuckDBPyConnection], None]]

_M001_TABLES = """
CREATE TABLE versions (
    hash        VARCHAR PRIMARY KEY,
    agent       VARCHAR NOT NULL,
    version     INTEGER,
    parent      VARCHAR,
    parent_dir  VARCHAR,
    path        VARCHAR,
    proposer    VARCHAR,
    hypothesis  VARCHAR,
    changes     JSON,
    created     TIMESTAMPTZ
);
CREATE TABLE runs (
    run_id   VARCHAR PRIMARY KEY,
    kind     VARCHAR NOT NULL,
    started  TIMESTAMPTZ NOT NULL,
    ended    TIMESTAMPTZ,
    status   VARCHAR NOT NULL,
    config   JSON,
    summary  JSON
);
CREATE TABLE rollouts (
    run_id        VARCHAR NOT NULL,
    version_hash  VARCHAR NOT NULL,
    suite         VARCHAR NOT NULL,
    split         VARCHAR NOT NULL,
    task_id       VARCHAR NOT NULL,
    trial         INTEGER NOT NULL,
    model         VARCHAR NOT NULL,
    score         DOUBLE NOT NULL,
    passed        BOOLEAN NOT NULL,
    cost_usd      DOUBLE,
    tokens_in     BIGINT,
    tokens_out    BIGINT,
    latency_s     DOUBLE,
    n_llm_calls   INTEGER,
    n_tool_calls  INTEGER,
    error         VARCHAR,
    error_detail  VARCHAR,
    feedback      VARCHAR,
    trace_ref     VARCHAR,
    created       TIMESTAMPTZ NOT NULL
);
CREATE TABLE decisions (
    run_id      VARCHAR NOT NULL,
    iteration   INTEGER NOT NULL,
    candidate   VARCHAR NOT NULL,
    incumbent   VARCHAR,
    delta       DOUBLE,
    p_value     DOUBLE,
    accepted    BOOLEAN NOT NULL,
    reason      VARCHAR,
    detail      JSON,
    created     TIMESTAMPTZ NOT NULL
);
CREATE TABLE experiments (
    run_id        VARCHAR NOT NULL,
    version_hash  VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    value         DOUBLE,
    memory_gb     DOUBLE,
    status        VARCHAR NOT NULL,
    description   VARCHAR,
    created       TIMESTAMPTZ NOT NULL
);
"""

# Lookups the tool makes: the cache (version, suite, split, then task/trial/model) and per-run views.
_M002_INDEXES = """
CREATE INDEX rollouts_by_version ON rollouts (version_hash, suite, split);
CREATE INDEX rollouts_by_run ON rollouts (run_id);
CREATE INDEX decisions_by_run ON decisions (run_id);
CREATE INDEX experiments_by_run ON experiments (run_id);
"""

# Suites with a simulated user (tau2-retail): the user's spend is the suite's, kept apart from the
# agent's cost_usd/tokens. DEFAULT 0 so rows written before this migration read back as "no user".
_M003_USER_SIM = """
ALTER TABLE rollouts ADD COLUMN user_cost_usd DOUBLE DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN user_tokens BIGINT DEFAULT 0;
"""

# Candidate scans (harness_opt.trust.scan): what a version's files were found to do before evaluation.
_M004_SCANS = """
CREATE TABLE scans (
    run_id        VARCHAR,
    version_hash  VARCHAR NOT NULL,
    findings      JSON,
    max_severity  VARCHAR,
    created       TIMESTAMPTZ NOT NULL
);
CREATE INDEX scans_by_version ON scans (version_hash);
"""

# The sandbox a run's harness code actually ran in ("bwrap", or a weaker mode the user named), so `runs`,
# `leaderboard`, `report` and `doctor` can say how far a result's containment can be trusted.
_M005_RUN_ISOLATION = """
ALTER TABLE runs ADD COLUMN isolation VARCHAR;
"""

# Meta-model spend per proposal (issue 17): the tokens, cost and wall time the proposer spent on each
# decision's candidate, or on an attempt that produced none (a decision with candidate '-'). DEFAULT 0
# so decisions written before this migration read back as "no meta-model" (operators, old runs).
_M006_META_SPEND = """
ALTER TABLE decisions ADD COLUMN meta_model VARCHAR;
ALTER TABLE decisions ADD COLUMN meta_calls INTEGER DEFAULT 0;
ALTER TABLE decisions ADD COLUMN meta_tokens_in BIGINT DEFAULT 0;
ALTER TABLE decisions ADD COLUMN meta_tokens_out BIGINT DEFAULT 0;
ALTER TABLE decisions ADD COLUMN meta_cost_usd DOUBLE DEFAULT 0;
ALTER TABLE decisions ADD COLUMN meta_seconds DOUBLE DEFAULT 0;
"""

# Exact call accounting (issue 12): per rollout, the model requests sent (retries included), the
# retries by cause (JSON {cause: n}) and the requests answered, so a summary's figures can be checked
# against a server's own request count; `unofficial` marks a score missing part of the official
# reward (τ²'s NL judge). A run row keeps the process that wrote it (pid, host): a `running` row
# whose process is gone is shown as dead. Statuses a run can end in: ok, degraded, interrupted,
# failed, refused (and optimize's finished, stopped).
_M007_CALL_ACCOUNTING = """
ALTER TABLE rollouts ADD COLUMN llm_attempts INTEGER DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN llm_retries INTEGER DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN llm_retry_causes JSON;
ALTER TABLE rollouts ADD COLUMN llm_calls_ok INTEGER DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN unofficial BOOLEAN DEFAULT false;
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN host VARCHAR;
"""

MIGRATIONS: list[Migration] = [
    ("m001_tables", _M001_TABLES),
    ("m002_indexes", _M002_INDEXES),
    ("m003_user_sim", _M003_USER_SIM),
    ("m004_scans", _M004_SCANS),
    ("m005_run_isolation", _M005_RUN_ISOLATION),
    ("m006_meta_spend", _M006_META_SPEND),
    ("m007_call_accounting", _M007_CALL_ACCOUNTING),
]


def _applied(con: duckdb.DuckDBPyConnection) -> list[str]:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = '_migrations'"
    ).fetchone()
    if not exists or not exists[0]:
        return []
    return [row[0] for row in con.execute("SELECT name FROM _migrations ORDER BY applied").fetchall()]


def _check_known(path: Path, applied: list[str], migrations: list[Migration]) -> None:
    known = {name for name, _ in migrations}
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise LedgerError(
            f"made by a newer harness-opt (unknown migrations: {', '.join(unknown)})",
            where=str(path),
            fix="upgrade harness-opt (pip install -U harness-opt), or point HARNESS_OPT_LEDGER at "
            "another file",
        )


def migrate(
    path: Path, migrations: list[Migration] | None = None, *, timeout_s: float | None = None
) -> list[str]:
    """Bring the ledger at `path` up to date; returns the names applied now (empty when current).

    The common case (an up-to-date file, perhaps being written by another process) costs one
    read-only open, so a read command never needs the write lock just to check the schema.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    if path.exists():
        with connect(path, read_only=True, timeout_s=timeout_s) as con:
            applied = _applied(con)
        _check_known(path, applied, migrations)
        if all(name in applied for name, _ in migrations):
            return []
    path.parent.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    with connect(path, read_only=False, timeout_s=timeout_s) as con:
        con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied TIMESTAMPTZ)")
        applied = _applied(con)  # again: another process may have migrated since the check above
        _check_known(path, applied, migrations)
        for name, step in migrations:
            if name in applied:
                continue
            con.execute("BEGIN TRANSACTION")
            try:
                if isinstance(step, str):
                    con.execute(step)
                else:
                    step(con)
                con.execute("INSERT INTO _migrations VALUES (?, ?)", [name, datetime.now(UTC)])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            done.append(name)
    return done


def schema(path: Path, *, timeout_s: float | None = None) -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, type), ...]} in column order, for tests and `harness-opt doctor`."""
    with connect(path, read_only=True, timeout_s=timeout_s) as con:
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        out.setdefault(table, []).append((column, dtype))
    return out
