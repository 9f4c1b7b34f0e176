"""Measure the ledger's costs: open+append+close per batch size, reads, the cache join, file growth.

Run: `python bench/ledger_queries.py [--batches 400]`. Prints `key: value` lines (greppable) so the
evaluator's batching policy can be checked against the figures of the machine it runs on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness_opt.ledger import Ledger
from harness_opt.records import Rollout


def _rollouts(n: int, start: int, version: str = "v1") -> list[Rollout]:
    return [
        Rollout(
            run_id="bench",
            version_hash=version,
            suite="banking77",
            split="val",
            task_id=f"t{start + i}",
            trial=0,
            model="local/smollm2",
            score=1.0,
            passed=True,
            feedback="ok " * 20,
            trace_ref=f"bench.jsonl#{(start + i) * 1000}",
        )
        for i in range(n)
    ]


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=400, help="small batches for the growth test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "ledger.duckdb")
        written = 0
        print("---")
        for size in (1, 10, 50, 200, 1000):
            samples = []
            for _ in range(10):
                batch = _rollouts(size, written)
                started = time.perf_counter()
                ledger.add_rollouts(batch)
                samples.append(time.perf_counter() - started)
                written += size
            print(f"add_rollouts_{size}: {_ms(samples)} ({size / statistics.median(samples):.0f} rows/s)")
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            ledger.query("SELECT count(*) FROM rollouts")
            samples.append(time.perf_counter() - started)
        print(f"read_open_count_close: {_ms(samples)}")
        keys = [r.key for r in _rollouts(5000, 0)]
        started = time.perf_counter()
        found = ledger.cached_rollouts(keys)
        print(
            f"cached_rollouts_5000_keys: {(time.perf_counter() - started) * 1000:.1f} ms, {len(found)} hits"
        )
        size_before = ledger.path.stat().st_size
        started = time.perf_counter()
        for i in range(args.batches):
            ledger.add_rollouts(_rollouts(25, 100_000 + i * 25, version="v2"))
        elapsed = time.perf_counter() - started
        rows = args.batches * 25
        print(f"small_batches_25: {args.batches} batches in {elapsed:.1f} s ({rows / elapsed:.0f} rows/s)")
        print(
            f"file_growth: {size_before / 1e6:.2f} MB -> {ledger.path.stat().st_size / 1e6:.2f} MB "
            f"for {rows} rows in {args.batches} batches"
        )
        started = time.perf_counter()
        n = len(ledger.rollouts(version_hash="v2", suite="banking77", split="val"))
        print(f"rollouts_filter: {n} rows in {(time.perf_counter() - started) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
