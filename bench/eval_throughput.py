"""Evaluator throughput: harness-opt's rollouts/s against a bare `litellm.acompletion` loop.

Why this bench exists: with real providers an evaluation is latency-bound, so the only thing a
framework adds is its own CPU per rollout (sandbox fork, broker messages, trace and ledger writes,
pydantic). A bare litellm loop against the same server, in the same run, is the ceiling for any
litellm-based tool; the target is >= 90% of it at every concurrency (our CPU < 1 ms per rollout).

The model is a loopback OpenAI-compatible server (bench/fixtures/loopback_server.py) in its own
process with a fixed latency, so the ideal rate is `concurrency / latency`.

    python bench/eval_throughput.py                      # 100 ms, concurrency 1,8,32,64
    python bench/eval_throughput.py --quick              # a 1-minute smoke run
    python bench/eval_throughput.py --profile 32         # + cProfile of harness-opt at concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before any litellm import

BENCH = Path(__file__).resolve().parent
FIXTURES = BENCH / "fixtures"
HARNESS_DIR = FIXTURES / "harness"
SUITE_DIR = FIXTURES / "suite"
MODEL = "openai/bench-model"
API_KEY = "sk-bench"  # a dummy: the loopback server checks nothing
API_KEY_ENV = "BENCH_API_KEY"
TARGET_RATIO = 0.90
# The bare loop sends what the bench harness sends, so both pay litellm for the same request.
MESSAGES = [
    {"role": "system", "content": "You answer every question with one short word."},
    {"role": "user", "content": "Question 0: what is 0 + 1?"},
]
PARAMS: dict[str, Any] = {"temperature": 0.0, "max_tokens": 8}

sys.path.insert(0, str(FIXTURES))  # bench/ is scripts, not a package
from loopback_server import LoopbackServer  # noqa: E402

# --- one measured point -----------------------------------------------------------------------------


@dataclass
class Point:
    """One (system, concurrency) measurement. CPU figures are seconds over the whole point."""

    system: str
    concurrency: int
    rollouts: int
    wall_s: float
    steady_rps: float
    cpu_s: float
    children_cpu_s: float
    server_cpu_s: float
    failures: int = 0
    load1: float = 0.0
    """1-minute load average after the point: other work on the machine skews the figures."""
    notes: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.rollouts / self.wall_s if self.wall_s else 0.0

    def cpu_ms_per_rollout(self) -> float:
        return 1000 * self.cpu_s / self.rollouts if self.rollouts else 0.0

    def children_ms_per_rollout(self) -> float:
        return 1000 * self.children_cpu_s / self.rollouts if self.rollouts else 0.0


class DescendantCPU:
    """CPU of this process's descendants (sandbox: bwrap, fork server, rollout children), from /proc.

    Why not getrusage(RUSAGE_CHILDREN): it only counts children reaped by their parents, and the
    sandbox's bwrap pid-1 does not hand its subtree's times up, so it reads ~0. A thread samples the
    tree every `interval_s`; a process's last reading counts unless its parent was read after it
    vanished (then the parent's cutime/cstime already include it). Rollouts that start and are reaped
    between two samples are still counted through their parent's cutime.
    """

    def __init__(self, exclude: set[int], interval_s: float = 0.1) -> None:
        self.exclude = exclude  # the loopback server: measured on its own
        self.interval_s = interval_s
        self.seen: dict[int, tuple[int, float, float]] = {}  # pid -> (ppid, cpu incl. reaped, when)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(c) for c in f.read().split())
        except OSError:
            pass
        return out

    def sample(self) -> None:
        now = time.monotonic()
        stack = [c for c in self._children(os.getpid()) if c not in self.exclude]
        while stack:
            pid = stack.pop()
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ppid = int(fields[1])
            cpu = sum(int(x) for x in fields[11:15]) / self._tick  # utime stime cutime cstime
            self.seen[pid] = (ppid, cpu, now)
            stack.extend(self._children(pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> DescendantCPU:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def total_s(self) -> float:
        total = 0.0
        for ppid, cpu, when in self.seen.values():
            parent = self.seen.get(ppid)
            if parent is None or parent[2] <= when:
                total += cpu
        return total


def steady_rate(done_at: list[float]) -> float:
    """Rollouts/s from the first finished rollout to the last: excludes start-up (sandbox, ledger)."""
    if len(done_at) < 2 or done_at[-1] <= done_at[0]:
        return 0.0
    return (len(done_at) - 1) / (done_at[-1] - done_at[0])


async def measure(
    system: str,
    concurrency: int,
    server: LoopbackServer,
    body: Callable[[Callable[[], None]], Awaitable[tuple[int, int]]],
) -> Point:
    """Time `body(tick)`, which calls tick() per finished rollout and returns (rollouts, failures)."""
    done_at: list[float] = []

    def tick() -> None:
        done_at.append(time.perf_counter())

    cpu0, srv0 = time.process_time(), server.cpu_s()
    t0 = time.perf_counter()
    with DescendantCPU(exclude={server.pid}) as children:
        rollouts, failures = await body(tick)
    wall = time.perf_counter() - t0
    return Point(
        system=system,
        concurrency=concurrency,
        rollouts=rollouts,
        wall_s=wall,
        steady_rps=steady_rate(sorted(done_at)),
        cpu_s=time.process_time() - cpu0,
        children_cpu_s=children.total_s(),
        server_cpu_s=server.cpu_s() - srv0,
        failures=failures,
        load1=os.getloadavg()[0],
    )


async def bare_litellm(server: LoopbackServer, concurrency: int, n: int) -> Point:
    """The ceiling: `litellm.acompletion` in a semaphore-bounded loop, nothing else."""
    import litellm

    sem = asyncio.Semaphore(concurrency)

    async def body(tick: Callable[[], None]) -> tuple[int, int]:
        failures = 0

        async def one() -> None:
            nonlocal failures
            async with sem:
                try:
                    response = await litellm.acompletion(
                        model=MODEL, messages=MESSAGES, api_base=server.api_base, api_key=API_KEY, **PARAMS
                    )
                    if not response.choices[0].message.content:
                        failures += 1
                except Exception:
                    failures += 1
            tick()

        await asyncio.gather(*(one() for _ in range(n)))
        return n, failures

    return await measure("bare litellm", concurrency, server, body)


async def harness_opt_eval(
    server: LoopbackServer, concurrency: int, n: int, workdir: Path, isolation: str = "auto"
) -> Point:
    """The real evaluator: sandbox, broker, LLMClient, scorer, trace file, ledger, all included."""
    from harness_opt.evaluate.evaluator import EvalConfig, evaluate_async
    from harness_opt.ledger import Ledger
    from harness_opt.llm.client import LLMConfig

    os.environ[API_KEY_ENV] = API_KEY
    config = EvalConfig.model_validate(
        {
            "split": "val",
            "model": MODEL,
            "concurrency": concurrency,
            "limit": n,
            "llm_cache": False,
            "reuse": False,
            "isolation": isolation,
            "llm": LLMConfig.model_validate(
                {"api_base": server.api_base, "api_key_env": API_KEY_ENV, "cache": False}
            ),
        }
    )
    notes: list[str] = []

    async def body(tick: Callable[[], None]) -> tuple[int, int]:
        def progress(done: int, total: int, rollout: Any) -> None:
            if rollout is not None:
                tick()

        ledger = Ledger(workdir / f"ledger-c{concurrency}-{time.monotonic_ns()}.duckdb")
        result = await evaluate_async(HARNESS_DIR, SUITE_DIR, config, ledger=ledger, progress=progress)
        notes.append(f"isolation={result.isolation}")
        notes.extend(result.warnings)
        failed = [r for r in result.rollouts if not r.passed]
        if failed:
            first = failed[0].model_dump()
            notes.append(f"first failure: {first.get('error')}: {first.get('error_detail', '')}")
        return len(result.rollouts), len(failed)

    point = await measure("harness-opt", concurrency, server, body)
    point.notes = notes
    return point


# --- reading the figures ---------------------------------------------------------------------------


def print_table(result: dict[str, Any], target: float) -> None:
    """One row per point; harness-opt rows carry the ratio to the bare row at the same concurrency."""
    from rich.console import Console
    from rich.table import Table

    latency_s = result["latency_ms"] / 1000.0
    bare: dict[int, list[dict[str, Any]]] = {}
    for p in result["points"]:
        if p["system"] == "bare litellm":
            bare.setdefault(p["concurrency"], []).append(p)
    table = Table(
        title=f"Evaluator throughput, {result['latency_ms']:g} ms latency, {result['machine']['cpus']} CPUs"
    )
    for col in (
        "system",
        "conc.",
        "n",
        "rollouts/s",
        "steady/s",
        "% ideal",
        "vs bare",
        "CPU ms/rollout",
        "children ms",
        "overhead ms",
        "server ms",
        "fail",
        "load",
    ):
        table.add_column(col, justify="left" if col == "system" else "right")
    for p in result["points"]:
        c, n = p["concurrency"], p["rollouts"]
        ideal = c / latency_s
        ratio = overhead = ""
        ref = bare.get(c)
        if p["system"] != "bare litellm" and ref:
            bare_rps = sum(b["rps"] for b in ref) / len(ref)
            bare_cpu = sum(b["cpu_s"] / b["rollouts"] for b in ref) / len(ref)
            r = p["rps"] / bare_rps if bare_rps else 0.0
            ratio = f"[{'green' if r >= target else 'red'}]{100 * r:.0f}%[/]"
            overhead = f"{1000 * (p['cpu_s'] / n - bare_cpu):.2f}"
        table.add_row(
            p["system"],
            str(c),
            str(n),
            f"{p['rps']:.1f}",
            f"{p['steady_rps']:.1f}",
            f"{100 * p['rps'] / ideal:.0f}%",
            ratio,
            f"{1000 * p['cpu_s'] / n:.2f}",
            f"{1000 * p['children_cpu_s'] / n:.2f}",
            overhead,
            f"{1000 * p['server_cpu_s'] / n:.2f}",
            str(p["failures"]),
            f"{p['load1']:.1f}",
        )
    console = Console(width=max(150, Console().width))
    console.print(table)
    console.print(
        "CPU ms/rollout: this process (event loop, litellm, broker, ledger, traces); children "
        "ms: sandbox fork server + rollout children; overhead: ours minus bare, per rollout; "
        "server ms: the loopback server's CPU; load: 1-min load average (other work here)."
    )
    for p in result["points"]:
        if p.get("notes"):
            console.print(f"{p['system']} c={p['concurrency']}: {'; '.join(p['notes'])}")


BUCKETS = (
    ("harness_opt/ledger", "ledger (duckdb writes)"),
    ("duckdb", "ledger (duckdb writes)"),
    ("harness_opt/evaluate/tracestore", "trace writes"),
    ("harness_opt/runtime", "sandbox + broker"),
    ("harness_opt/llm", "harness-opt llm client"),
    ("harness_opt/evaluate", "evaluator"),
    ("harness_opt/suites", "suite (scorer, env)"),
    ("harness_opt", "harness-opt other"),
    ("pydantic", "pydantic"),
    ("litellm", "litellm"),
    ("openai", "openai sdk"),
    ("httpx", "http client"),
    ("httpcore", "http client"),
    ("aiohttp", "http client"),
    ("asyncio", "asyncio"),
    ("selectors", "asyncio"),
    ("json", "json"),
)


def bucket_of(filename: str) -> str:
    for needle, name in BUCKETS:
        if f"/{needle}" in filename or filename.startswith(needle):
            return name
    return "builtins" if filename == "~" else "other"


def profile_harness_opt(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """cProfile one harness-opt point and attribute own time (tottime) to the layer it belongs to.

    cProfile slows Python code roughly 2x, so the shares matter, not the absolute seconds."""
    import cProfile
    import pstats

    latency_ms, concurrency = args.latency_ms, args.profile
    rollouts = rollouts_for(concurrency, latency_ms / 1000.0, args.n, args.seconds, args.n_min)
    profiler = cProfile.Profile()

    async def go() -> Point:
        with (
            tempfile.TemporaryDirectory(prefix="harness-opt-prof-") as tmp,
            LoopbackServer(latency_ms) as server,
        ):
            os.environ["HARNESS_OPT_HOME"] = str(Path(tmp) / "home")
            os.environ["HARNESS_OPT_TRACES"] = str(Path(tmp) / "traces")
            await harness_opt_eval(server, concurrency, 2 * concurrency, Path(tmp), args.isolation)
            profiler.enable()
            try:
                return await harness_opt_eval(server, concurrency, rollouts, Path(tmp), args.isolation)
            finally:
                profiler.disable()

    point = asyncio.run(go())
    stats = pstats.Stats(profiler)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(out)  # for `python -m pstats` or snakeviz
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_bucket: dict[str, float] = {}
    ours: list[tuple[float, float, str]] = []
    total = 0.0
    for (filename, line, func), (_cc, _nc, tt, ct, _callers) in raw.items():
        total += tt
        bucket = bucket_of(filename)
        if bucket == "builtins":
            bucket = f"builtin {func}"[:60]
        by_bucket[bucket] = by_bucket.get(bucket, 0.0) + tt
        if "harness_opt" in filename:
            ours.append((ct, tt, f"{filename.split('harness_opt/')[-1]}:{line}({func})"))
    shares = sorted(by_bucket.items(), key=lambda kv: -kv[1])[:20]
    from rich.console import Console

    console = Console(width=max(150, Console().width))
    console.print(
        f"[bold]profile[/] harness-opt c={concurrency} n={rollouts}: {point.rps:.1f}/s under "
        f"cProfile, {total:.2f} s profiled own time, {1000 * total / rollouts:.2f} ms/rollout"
    )
    for name, tt in shares:
        per = 1000 * tt / rollouts
        console.print(f"  {name:42s} {tt:7.2f} s  {100 * tt / total:5.1f}%  {per:6.3f} ms/rollout")
    console.print("  top harness-opt functions by cumulative time:")
    for ct, tt, where in sorted(ours, reverse=True)[:15]:
        cum, own = 1000 * ct / rollouts, 1000 * tt / rollouts
        console.print(f"    {where:70s} cum {cum:6.3f} ms  own {own:6.3f} ms")
    return {
        "concurrency": concurrency,
        "rollouts": rollouts,
        "rps_under_profiler": point.rps,
        "pstats": str(out),
        "own_time_s": total,
        "buckets_ms_per_rollout": {k: 1000 * v / rollouts for k, v in shares},
        "top_harness_opt": [
            {"where": w, "cum_ms": 1000 * c / rollouts, "own_ms": 1000 * t / rollouts}
            for c, t, w in sorted(ours, reverse=True)[:25]
        ],
    }


# --- the run ----------------------------------------------------------------------------------------


def rollouts_for(concurrency: int, latency_s: float, n_max: int, seconds: float, n_min: int) -> int:
    """Enough rollouts for ~`seconds` at the ideal rate, at least n_min, at most n_max."""
    return max(n_min, min(n_max, round(seconds * concurrency / latency_s)))


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    latency_s = args.latency_ms / 1000.0
    systems = {"bare": ["bare litellm"], "ours": ["harness-opt"], "both": ["bare litellm", "harness-opt"]}
    points: list[Point] = []
    with (
        tempfile.TemporaryDirectory(prefix="harness-opt-bench-") as tmp,
        LoopbackServer(args.latency_ms) as server,
    ):
        workdir = Path(tmp)
        # Traces, cache and ledger go to a throwaway home, never into the user's project.
        os.environ["HARNESS_OPT_HOME"] = str(workdir / "home")
        os.environ["HARNESS_OPT_TRACES"] = str(workdir / "traces")
        warm = max(args.concurrency)
        if "bare litellm" in systems[args.only]:
            await bare_litellm(server, warm, 2 * warm)  # imports, connection pool, litellm's caches
        if "harness-opt" in systems[args.only]:
            await harness_opt_eval(server, warm, 2 * warm, workdir, args.isolation)
        for c in args.concurrency:
            n = rollouts_for(c, latency_s, args.n, args.seconds, args.n_min)
            for _ in range(args.repeat):
                # Alternate the systems at each point so drift (thermal, other load) hits both alike.
                for system in systems[args.only]:
                    if system == "bare litellm":
                        point = await bare_litellm(server, c, n)
                    else:
                        point = await harness_opt_eval(server, c, n, workdir, args.isolation)
                    points.append(point)
                    print(
                        f"  {system:13s} c={c:<3d} n={n:<5d} {point.rps:7.1f}/s "
                        f"cpu {point.cpu_ms_per_rollout():.2f} ms/rollout",
                        file=sys.stderr,
                        flush=True,
                    )
    return {
        "bench": "eval_throughput",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "latency_ms": args.latency_ms,
        "points": [{**asdict(p), "rps": p.rps} for p in points],
    }


def machine() -> dict[str, Any]:
    import platform

    import litellm

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "litellm": getattr(litellm, "__version__", None) or _dist_version("litellm"),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0, help="Server delay per completion.")
    parser.add_argument("--n", type=int, default=2000, help="Most rollouts per point (the suite has 2000).")
    parser.add_argument("--n-min", type=int, default=100, help="Fewest rollouts per point.")
    parser.add_argument("--seconds", type=float, help="Aim for this long per point at ideal (default 10).")
    parser.add_argument("--concurrency", help="Comma-separated concurrency levels (default 1,8,32,64).")
    parser.add_argument("--repeat", type=int, default=1, help="Measure each point this many times.")
    parser.add_argument("--only", choices=["both", "bare", "ours"], default="both")
    parser.add_argument(
        "--isolation",
        choices=["auto", "bwrap", "unshare", "none"],
        default="auto",
        help="harness-opt's sandbox (compare bwrap with none to price the sandbox).",
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute: 2 s per point, concurrency 1,8,32.")
    parser.add_argument("--profile", type=int, metavar="C", help="Then cProfile ours at concurrency C.")
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="Where the JSON result goes.")
    args = parser.parse_args(argv)
    # --quick changes the defaults only; an explicit --seconds or --concurrency still wins.
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.concurrency = args.concurrency or ("1,8,32" if args.quick else "1,8,32,64")
    if args.quick:
        args.n_min = min(args.n_min, 20)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if not args.concurrency or min(args.concurrency) < 1 or args.n < 1:
        parser.error("--concurrency needs positive integers and --n must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run_bench(args))
    print_table(result, TARGET_RATIO)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if args.profile:
        result["profile"] = profile_harness_opt(args, args.out / f"profile-c{args.profile}-{stamp}.prof")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"eval_throughput-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
