"""The ledger: migrations and exact schema, round trips, the rollout cache, and read queries."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from harness_opt import home
from harness_opt.errors import LedgerError
from harness_opt.ledger import MIGRATIONS, DecisionRow, ExperimentRow, Ledger, VersionRow, migrate
from harness_opt.records import Rollout, RolloutKey

TSTZ = "TIMESTAMP WITH TIME ZONE"
EXPECTED_SCHEMA = {
    "_migrations": [("name", "VARCHAR"), ("applied", TSTZ)],
    "decisions": [
        ("run_id", "VARCHAR"),
        ("iteration", "INTEGER"),
        ("candidate", "VARCHAR"),
        ("incumbent", "VARCHAR"),
        ("delta", "DOUBLE"),
        ("p_value", "DOUBLE"),
        ("accepted", "BOOLEAN"),
        ("reason", "VARCHAR"),
        ("detail", "JSON"),
        ("created", TSTZ),
        ("meta_model", "VARCHAR"),  # m006_meta_spend
        ("meta_calls", "INTEGER"),
        ("meta_tokens_in", "BIGINT"),
        ("meta_tokens_out", "BIGINT"),
        ("meta_cost_usd", "DOUBLE"),
        ("meta_seconds", "DOUBLE"),
    ],
    "experiments": [
        ("run_id", "VARCHAR"),
        ("version_hash", "VARCHAR"),
        ("metric", "VARCHAR"),
        ("value", "DOUBLE"),
        ("memory_gb", "DOUBLE"),
        ("status", "VARCHAR"),
        ("description", "VARCHAR"),
        ("created", TSTZ),
    ],
    "scans": [
        ("run_id", "VARCHAR"),
        ("version_hash", "VARCHAR"),
        ("findings", "JSON"),
        ("max_severity", "VARCHAR"),
        ("created", TSTZ),
    ],
    "rollouts": [
        ("run_id", "VARCHAR"),
        ("version_hash", "VARCHAR"),
        ("suite", "VARCHAR"),
        ("split", "VARCHAR"),
        ("task_id", "VARCHAR"),
        ("trial", "INTEGER"),
        ("model", "VARCHAR"),
        ("score", "DOUBLE"),
        ("passed", "BOOLEAN"),
        ("cost_usd", "DOUBLE"),
        ("tokens_in", "BIGINT"),
        ("tokens_out", "BIGINT"),
        ("latency_s", "DOUBLE"),
        ("n_llm_calls", "INTEGER"),
        ("n_tool_calls", "INTEGER"),
        ("error", "VARCHAR"),
        ("error_detail", "VARCHAR"),
        ("feedback", "VARCHAR"),
        ("trace_ref", "VARCHAR"),
        ("created", TSTZ),
        ("user_cost_usd", "DOUBLE"),
        ("user_tokens", "BIGINT"),
        ("llm_attempts", "INTEGER"),  # m007_call_accounting
        ("llm_retries", "INTEGER"),
        ("llm_retry_causes", "JSON"),
        ("llm_calls_ok", "INTEGER"),
        ("unofficial", "BOOLEAN"),
    ],
    "runs": [
        ("run_id", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("started", TSTZ),
        ("ended", TSTZ),
        ("status", "VARCHAR"),
        ("config", "JSON"),
        ("summary", "JSON"),
        ("isolation", "VARCHAR"),  # m005_run_isolation
        ("pid", "INTEGER"),  # m007_call_accounting
        ("host", "VARCHAR"),
    ],
    "versions": [
        ("hash", "VARCHAR"),
        ("agent", "VARCHAR"),
        ("version", "INTEGER"),
        ("parent", "VARCHAR"),
        ("parent_dir", "VARCHAR"),
        ("path", "VARCHAR"),
        ("proposer", "VARCHAR"),
        ("hypothesis", "VARCHAR"),
        ("changes", "JSON"),
        ("created", TSTZ),
    ],
}

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def rollout(task_id: str = "t1", trial: int = 0, **overrides: object) -> Rollout:
    fields: dict[str, object] = {
        "run_id": "run-a",
        "version_hash": "v1",
        "suite": "banking77",
        "split": "val",
        "task_id": task_id,
        "trial": trial,
        "model": "local/smollm2",
        "score": 1.0,
        "passed": True,
    }
    fields.update(overrides)
    return Rollout.model_validate(fields)


def test_default_path_is_home_ledger_and_schema_is_exact() -> None:
    ledger = Ledger()
    assert ledger.path == home.ledger_path()
    assert ledger.path.exists()
    assert ledger.schema() == EXPECTED_SCHEMA


def test_rollouts_table_has_every_rollout_field() -> None:
    # A new field on Rollout must come with a migration, or it would silently not be stored.
    columns = [name for name, _ in EXPECTED_SCHEMA["rollouts"]]
    assert columns == list(Rollout.model_fields)


def test_migrations_are_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    assert migrate(path) == [name for name, _ in MIGRATIONS]
    Ledger(path).add_rollouts([rollout()])
    assert migrate(path) == []
    ledger = Ledger(path)
    assert ledger.query("SELECT count(*) AS n FROM _migrations") == [{"n": len(MIGRATIONS)}]
    assert len(ledger.rollouts()) == 1
    assert ledger.schema() == EXPECTED_SCHEMA


def test_an_old_file_gains_later_migrations(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    migrate(path, MIGRATIONS[:1])
    ledger = Ledger(path)
    indexes = {row["index_name"] for row in ledger.query("SELECT index_name FROM duckdb_indexes()")}
    assert {"rollouts_by_version", "rollouts_by_run"} <= indexes


def test_rows_written_before_m003_read_back_with_zero_user_cost(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    migrate(path, MIGRATIONS[:2])
    m001 = EXPECTED_SCHEMA["rollouts"].index(("user_cost_usd", "DOUBLE"))
    old_columns = ", ".join(name for name, _ in EXPECTED_SCHEMA["rollouts"][:m001])
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"INSERT INTO rollouts ({old_columns}) VALUES "
            "('r', 'v1', 's', 'val', 't1', 0, 'm', 1.0, true, 0.5, 1, 2, 0.1, 1, 0, "
            "NULL, NULL, '', NULL, now())"
        )
    ledger = Ledger(path)  # applies m003_user_sim
    (row,) = ledger.rollouts()
    assert (row.cost_usd, row.user_cost_usd, row.user_tokens) == (0.5, 0.0, 0)
    ledger.add_rollouts([rollout("t2", user_cost_usd=0.25, user_tokens=40)])
    assert [(r.user_cost_usd, r.user_tokens) for r in ledger.rollouts()] == [(0.0, 0), (0.25, 40)]


def test_rows_written_before_m007_read_back_with_no_call_accounting(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    names = [name for name, _ in MIGRATIONS]
    migrate(path, MIGRATIONS[: names.index("m007_call_accounting")])
    old = [name for name, _ in EXPECTED_SCHEMA["rollouts"]]
    old = old[: old.index("llm_attempts")]
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"INSERT INTO rollouts ({', '.join(old)}) VALUES ('r', 'v1', 's', 'val', 't1', 0, 'm', 1.0, "
            "true, 0.5, 1, 2, 0.1, 1, 0, NULL, NULL, '', NULL, now(), 0, 0)"
        )
        con.execute("INSERT INTO runs (run_id, kind, started, status) VALUES ('r', 'eval', now(), 'ok')")
    ledger = Ledger(path)  # applies m007
    (row,) = ledger.rollouts()
    assert (row.llm_attempts, row.llm_retries, row.llm_retry_causes, row.unofficial) == (0, 0, {}, False)
    written = rollout(
        "t2",
        llm_attempts=5,
        llm_retries=3,
        llm_retry_causes={"server_error": 2, "connection_refused": 1},
        llm_calls_ok=2,
        unofficial=True,
    )
    ledger.add_rollouts([written])
    assert ledger.rollouts()[-1] == written
    assert ledger.query("SELECT pid, host FROM runs") == [{"pid": None, "host": None}]


def test_function_migration_runs_once(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    calls: list[int] = []

    def add_table(con: duckdb.DuckDBPyConnection) -> None:
        calls.append(1)
        con.execute("CREATE TABLE extra (x INTEGER)")

    steps = [*MIGRATIONS, ("m900_extra", add_table)]
    assert migrate(path, steps)[-1] == "m900_extra"
    assert migrate(path, steps) == []
    assert calls == [1]


def test_failed_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    steps = [*MIGRATIONS, ("m900_broken", "CREATE TABLE half (x INTEGER); SELECT * FROM no_such_table")]
    with pytest.raises(duckdb.Error):
        migrate(path, steps)
    ledger = Ledger(path)
    assert "half" not in ledger.schema()
    names = [r["name"] for r in ledger.query("SELECT name FROM _migrations")]
    assert "m900_broken" not in names


def test_file_from_a_newer_harness_opt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    migrate(path)
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', now())")
    con.close()
    with pytest.raises(LedgerError, match=r"made by a newer harness-opt.*m999_from_the_future"):
        Ledger(path)


def test_rollout_round_trip_keeps_every_field() -> None:
    ledger = Ledger()
    original = rollout(
        score=0.25,
        passed=False,
        cost_usd=0.0123,
        tokens_in=12345678901,
        tokens_out=42,
        latency_s=3.5,
        n_llm_calls=4,
        n_tool_calls=7,
        error="timeout",
        error_detail="wall time 120 s",
        feedback="expected card_arrival, got 'card arrival' — ünïcode ok",
        trace_ref="banking77/v1-val.jsonl#1024",
        created=datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
    )
    ledger.add_rollouts([original])
    assert ledger.rollouts() == [original]


def test_rollouts_filters() -> None:
    ledger = Ledger()
    ledger.add_rollouts(
        [
            rollout("t1"),
            rollout("t2", split="train"),
            rollout("t3", version_hash="v2", run_id="run-b"),
            rollout("t4", model="gpt-4o-mini"),
        ]
    )
    assert [r.task_id for r in ledger.rollouts()] == ["t1", "t2", "t3", "t4"]
    assert [r.task_id for r in ledger.rollouts(split="train")] == ["t2"]
    assert [r.task_id for r in ledger.rollouts(run_id="run-b")] == ["t3"]
    assert [r.task_id for r in ledger.rollouts(version_hash="v1", split="val")] == ["t1", "t4"]
    assert [r.task_id for r in ledger.rollouts(model="gpt-4o-mini", suite="banking77")] == ["t4"]
    assert ledger.rollouts(suite="tau2-retail") == []


def test_cached_rollouts_picks_latest_and_skips_llm_errors() -> None:
    ledger = Ledger()
    ledger.add_rollouts(
        [
            rollout("t1", score=0.0, passed=False, created=T0),
            rollout("t1", score=1.0, passed=True, created=T0 + timedelta(seconds=1), run_id="run-b"),
            rollout("t2", score=1.0, created=T0),
            # a later provider outage must not replace a genuine result
            rollout("t2", score=0.0, passed=False, error="llm_error", created=T0 + timedelta(seconds=5)),
            rollout("t3", score=0.0, passed=False, error="llm_error", created=T0),
            # a genuine failure of the harness is a result, and is cached
            rollout("t4", score=0.0, passed=False, error="timeout", created=T0),
        ]
    )
    keys = [rollout(t).key for t in ("t1", "t2", "t3", "t4", "t5")]
    cached = ledger.cached_rollouts(keys)
    assert set(cached) == {keys[0], keys[1], keys[3]}
    assert cached[keys[0]].run_id == "run-b" and cached[keys[0]].score == 1.0
    assert cached[keys[1]].error is None and cached[keys[1]].score == 1.0
    assert cached[keys[3]].error == "timeout"
    # every part of the key matters
    other = RolloutKey(**{**keys[0].model_dump(), "model": "other"})
    assert ledger.cached_rollouts([other]) == {}
    assert ledger.cached_rollouts([]) == {}


def test_cached_rollouts_thousands_of_keys_in_one_query() -> None:
    ledger = Ledger()
    rows = [rollout(f"t{i}", trial=i % 3) for i in range(3000)]
    ledger.add_rollouts(rows)
    keys = [r.key for r in rows] + [rollout("missing").key]
    started = time.perf_counter()
    cached = ledger.cached_rollouts(keys)
    elapsed = time.perf_counter() - started
    assert len(cached) == 3000
    assert cached[rows[1234].key].task_id == "t1234"
    assert elapsed < 2.0, f"cache lookup of 3000 keys took {elapsed:.2f} s"


def test_versions_are_idempotent_on_hash() -> None:
    ledger = Ledger()
    row = VersionRow(
        hash="abc123",
        agent="banking",
        version=2,
        parent="000aaa",
        parent_dir="v0001",
        path="harnesses/banking/v0002",
        proposer="llm",
        hypothesis="few-shot examples help",
        changes=["add 3 examples", "shorter system prompt"],
        created=T0,
    )
    ledger.add_version(row)
    ledger.add_version(row.model_copy(update={"hypothesis": "changed later"}))
    assert ledger.versions() == [row]


def test_runs_start_end_and_order() -> None:
    ledger = Ledger()
    ledger.start_run("run-1", "eval", {"suite": "banking77", "trials": 3})
    ledger.start_run("run-2", "optimize", {"budget_usd": 1.5})
    ledger.end_run("run-1", "done", {"mean": 0.8})
    runs = ledger.runs()
    assert [r.run_id for r in runs] == ["run-2", "run-1"]
    assert runs[1].status == "done" and runs[1].summary == {"mean": 0.8} and runs[1].ended is not None
    assert runs[1].config == {"suite": "banking77", "trials": 3}
    assert runs[0].status == "running" and runs[0].ended is None and runs[0].summary == {}
    assert [r.run_id for r in ledger.runs(limit=1)] == ["run-2"]
    # a resumed run is running again
    ledger.start_run("run-1", "eval", {"suite": "banking77", "trials": 3})
    resumed = next(r for r in ledger.runs() if r.run_id == "run-1")
    assert resumed.status == "running" and resumed.ended is None
    with pytest.raises(LedgerError, match="no run 'nope'"):
        ledger.end_run("nope", "done", {})


def test_decisions_and_experiments_are_stored() -> None:
    ledger = Ledger()
    ledger.add_decision(
        DecisionRow(
            run_id="opt-1",
            iteration=1,
            candidate="c1",
            incumbent="i0",
            delta=0.05,
            p_value=0.03,
            accepted=True,
            detail={"outcome": "accepted", "scores": [0.5, 1.0]},
        )
    )
    ledger.add_experiment(
        ExperimentRow(
            run_id="opt-1", version_hash="c1", metric="val_bpb", value=0.997, memory_gb=44.0, status="keep"
        )
    )
    ledger.add_experiment(ExperimentRow(run_id="opt-1", version_hash="c2", metric="val_bpb", status="crash"))
    decisions = ledger.query("SELECT candidate, delta, accepted FROM decisions WHERE run_id = ?", ["opt-1"])
    assert decisions == [{"candidate": "c1", "delta": 0.05, "accepted": True}]
    detail = ledger.query("SELECT detail->>'outcome' AS outcome, detail FROM decisions")[0]
    assert detail["outcome"] == "accepted" and json.loads(detail["detail"])["scores"] == [0.5, 1.0]
    experiments = ledger.query("SELECT status, value FROM experiments ORDER BY created")
    assert experiments == [{"status": "keep", "value": 0.997}, {"status": "crash", "value": None}]


def test_every_rollouts_column_is_a_rollout_field_and_round_trips() -> None:
    """The column list the ledger inserts and selects is read from the migrated schema; a migration
    adding a column the `Rollout` record lacks fails here, not in a user's run."""
    from harness_opt.ledger.ledger import rollout_columns
    from harness_opt.records import Rollout

    columns = [name for name, _ in rollout_columns()]
    assert columns == [name for name, _ in Ledger().schema()["rollouts"]]
    assert set(columns) == set(Rollout.model_fields)
    ledger = Ledger()
    written = rollout("t1", score=0.5, passed=False, error="crash", user_tokens=7)
    ledger.add_rollouts([written])
    [read] = ledger.rollouts()
    assert read == written


def test_query_is_read_only_and_errors_are_ledger_errors() -> None:
    ledger = Ledger()
    ledger.add_rollouts([rollout("t1"), rollout("t2", score=0.5, passed=False)])
    rows = ledger.query("SELECT avg(score) AS mean, count(*) AS n FROM rollouts WHERE split = ?", ["val"])
    assert rows == [{"mean": 0.75, "n": 2}]
    with pytest.raises(LedgerError, match="query failed"):
        ledger.query("DELETE FROM rollouts")
    with pytest.raises(LedgerError, match="query failed"):
        ledger.query("SELECT * FROM no_such_table")
    assert len(ledger.rollouts()) == 2


def test_end_run_running_is_a_checkpoint() -> None:
    ledger = Ledger()
    ledger.start_run("opt-1", "optimize", {})
    ledger.end_run("opt-1", "running", {"checkpoint": {"iteration": 3}})
    (run,) = ledger.runs()
    assert run.status == "running" and run.ended is None and run.summary == {"checkpoint": {"iteration": 3}}


def test_version_row_from_a_loaded_harness_version(repo_root: Path) -> None:
    from harness_opt.harness.version import HarnessVersion

    version = HarnessVersion.load(repo_root / "harnesses" / "banking77" / "v0001")
    row = VersionRow.from_version(version)
    assert row.hash == version.hash and row.agent == "banking77" and row.version == 1
    assert row.proposer == version.manifest.harness.proposer and row.created.tzinfo is not None
    ledger = Ledger()
    ledger.add_version(row)
    ledger.add_version(VersionRow.from_version(version))
    assert [v.hash for v in ledger.versions()] == [version.hash]


@pytest.mark.parametrize("kind", ["llm_error", "sandbox", "scorer"])
def test_an_infrastructure_failure_is_never_served_from_the_ledger(kind: str) -> None:
    """A model outage, a sandbox that did not start, a scorer that crashed: none is the version's result,
    so a re-run retries the key; a task failure (a timeout) is the version's and is reused."""
    ledger = Ledger()
    ledger.add_rollouts(
        [
            rollout("t1", score=0.0, passed=False, error=kind),
            rollout("t2", score=0.0, passed=False, error="timeout"),
        ]
    )
    found = ledger.cached_rollouts([rollout("t1").key, rollout("t2").key])
    assert [r.task_id for r in found.values()] == ["t2"]
