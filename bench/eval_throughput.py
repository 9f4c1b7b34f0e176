"""Evaluator throughput: harness-opt's rollouts/s and CPU against bare clients on one loopback server.

Why this bench exists: with a local model server (vLLM, llama.cpp, SGLang) an evaluation is
latency-bound, so all a framework adds is its own CPU per rollout (sandbox fork, broker messages,
model client, trace and ledger writes). In one run, against the same loopback OpenAI-compatible server
answering after a fixed latency L, it measures at each concurrency C:

* bare aiohttp: one pooled `aiohttp.ClientSession`, the floor of any Python client;
* bare openai: `AsyncOpenAI.chat.completions.create`;
* bare litellm: `litellm.acompletion`;
* harness-opt: the real evaluator (`evaluate_async`: sandbox, broker, model client, scorer, trace file,
  ledger), one model call per rollout.

The figure of merit is ratio = rollouts/s / (C / L), the share of the ideal rate, and the CPU per
rollout counting every process of ours (the bench process plus the sandbox's fork server and rollout
children; the loopback server is measured apart). Targets for harness-opt: ratio >= 0.85 at C=32,
>= 0.75 at C=64, <= 2 ms CPU per one-call rollout.

    python bench/eval_throughput.py                      # 100 ms, concurrency 8,32,64, all four
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
SYSTEMS = ("bare aiohttp", "bare openai", "bare litellm", "harness-opt")
SYSTEM_FLAGS = {
    "aiohttp": "bare aiohttp",
    "openai": "bare openai",
    "litellm": "bare litellm",
    "ours": "harness-opt",
}
TARGET_RATIO = {32: 0.85, 64: 0.75}
"""harness-opt's share of the ideal rate C/L, by concurrency (issue 16)."""
TARGET_CPU_MS = 2.0
"""harness-opt's CPU per one-call rollout, every process counted."""
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
    load1_before: float = 0.0
    max_inflight: int = -1
    """Most requests the server held at once during the point (a client short of C shows here)."""
    sampler_cpu_s: float = 0.0
    """CPU of the bench's own /proc sampler thread, already taken out of cpu_s."""
    notes: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.rollouts / self.wall_s if self.wall_s else 0.0

    def cpu_ms_per_rollout(self) -> float:
        return 1000 * self.cpu_s / self.rollouts if self.rollouts else 0.0

    def children_ms_per_rollout(self) -> float:
        return 1000 * self.children_cpu_s / self.rollouts if self.rollouts else 0.0

    def total_ms_per_rollout(self) -> float:
        """Every process of ours: the bench process (sampler excluded) and the sandbox processes."""
        return self.cpu_ms_per_rollout() + self.children_ms_per_rollout()


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
        self.own_cpu_s = 0.0
        """CPU of the sampler thread itself (it runs in the bench process: subtracted from its CPU)."""
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
        started = time.thread_time()
        while not self._stop.wait(self.interval_s):
            self.sample()
        self.sample()  # the last reading: children still alive at the end count in full
        self.own_cpu_s = time.thread_time() - started

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

    load_before = os.getloadavg()[0]
    server.max_inflight()  # resets the server's high-water mark
    cpu0, srv0 = time.process_time(), server.cpu_s()
    t0 = time.perf_counter()
    with DescendantCPU(exclude={server.pid}) as children:
        rollouts, failures = await body(tick)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return Point(
        system=system,
        concurrency=concurrency,
        rollouts=rollouts,
        wall_s=wall,
        steady_rps=steady_rate(sorted(done_at)),
        cpu_s=cpu - children.own_cpu_s,
        children_cpu_s=children.total_s(),
        server_cpu_s=server.cpu_s() - srv0,
        failures=failures,
        load1=os.getloadavg()[0],
        load1_before=load_before,
        max_inflight=server.max_inflight(),
        sampler_cpu_s=children.own_cpu_s,
    )


def _bounded_loop(
    concurrency: int, n: int, call: Callable[[], Awaitable[bool]]
) -> Callable[[Callable[[], None]], Awaitable[tuple[int, int]]]:
    """n calls, at most `concurrency` at once; `call()` says whether the reply was a real answer."""

    async def body(tick: Callable[[], None]) -> tuple[int, int]:
        sem = asyncio.Semaphore(concurrency)
        failures = 0

        async def one() -> None:
            nonlocal failures
            async with sem:
                try:
                    ok = await call()
                except Exception:
                    ok = False
                failures += not ok
            tick()

        await asyncio.gather(*(one() for _ in range(n)))
        return n, failures

    return body


async def bare_aiohttp(server: LoopbackServer, concurrency: int, n: int) -> Point:
    """The floor of any Python client: one pooled aiohttp session, JSON in and out, nothing else."""
    import aiohttp

    url = f"{server.api_base}/chat/completions"
    body = {"model": MODEL.removeprefix("openai/"), "messages": MESSAGES, **PARAMS}
    headers = {"authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> bool:
            async with session.post(url, json=body, headers=headers) as response:
                data = await response.json()
            return bool(data["choices"][0]["message"]["content"])

        return await measure("bare aiohttp", concurrency, server, _bounded_loop(concurrency, n, call))


async def bare_openai(server: LoopbackServer, concurrency: int, n: int) -> Point:
    """The official SDK (httpx underneath), its own retries off like ours."""
    import httpx
    import openai

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = openai.AsyncOpenAI(
        base_url=server.api_base,
        api_key=API_KEY,
        max_retries=0,
        http_client=httpx.AsyncClient(limits=limits),
    )
    model = MODEL.removeprefix("openai/")

    async def call() -> bool:
        response = await client.chat.completions.create(model=model, messages=MESSAGES, **PARAMS)  # type: ignore[arg-type]
        return bool(response.choices[0].message.content)

    try:
        return await measure("bare openai", concurrency, server, _bounded_loop(concurrency, n, call))
    finally:
        await client.close()


async def bare_litellm(server: LoopbackServer, concurrency: int, n: int) -> Point:
    """`litellm.acompletion` in a semaphore-bounded loop, nothing else."""
    import litellm

    async def call() -> bool:
        response = await litellm.acompletion(
            model=MODEL, messages=MESSAGES, api_base=server.api_base, api_key=API_KEY, **PARAMS
        )
        return bool(response.choices[0].message.content)

    return await measure("bare litellm", concurrency, server, _bounded_loop(concurrency, n, call))


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


def ratio(point: dict[str, Any], latency_ms: float, *, steady: bool = True) -> float:
    """Rollouts/s as a share of the ideal C / L: from the first to the last finished rollout (steady,
    the target's figure) or over the whole point (start-up included)."""
    ideal = point["concurrency"] / (latency_ms / 1000.0)
    rate = point["steady_rps"] if steady else point["rps"]
    return rate / ideal if ideal else 0.0


def print_table(result: dict[str, Any]) -> None:
    """One row per point; harness-opt's ratio and CPU are coloured against the targets."""
    from rich.console import Console
    from rich.table import Table

    latency_ms = result["latency_ms"]
    table = Table(
        title=f"Throughput, {latency_ms:g} ms latency, one model call per rollout, "
        f"{result['machine']['cpus']} CPUs; ratio = rollouts/s / (C/L)"
    )
    cols = (
        "system",
        "C",
        "n",
        "rollouts/s",
        "steady/s",
        "ratio",
        "ratio (wall)",
        "max in flight",
        "CPU ms/rollout",
        "bench proc ms",
        "sandbox ms",
        "server ms",
        "fail",
        "load before/after",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "system" else "right")
    for p in result["points"]:
        c, n = p["concurrency"], p["rollouts"]
        r = ratio(p, latency_ms)
        total = 1000 * (p["cpu_s"] + p["children_cpu_s"]) / n
        r_text, cpu_text = f"{r:.2f}", f"{total:.2f}"
        if p["system"] == "harness-opt":
            if c in TARGET_RATIO:
                r_text = f"[{'green' if r >= TARGET_RATIO[c] else 'red'}]{r_text}[/]"
            cpu_text = f"[{'green' if total <= TARGET_CPU_MS else 'red'}]{cpu_text}[/]"
        table.add_row(
            p["system"],
            str(c),
            str(n),
            f"{p['rps']:.1f}",
            f"{p['steady_rps']:.1f}",
            r_text,
            f"{ratio(p, latency_ms, steady=False):.2f}",
            str(p.get("max_inflight", "")),
            cpu_text,
            f"{1000 * p['cpu_s'] / n:.2f}",
            f"{1000 * p['children_cpu_s'] / n:.2f}",
            f"{1000 * p['server_cpu_s'] / n:.2f}",
            str(p["failures"]),
            f"{p.get('load1_before', 0.0):.1f}/{p['load1']:.1f}",
        )
    console = Console(width=max(200, Console().width))
    console.print(table)
    console.print(
        "ratio: steady rollouts/s (first to last finished) / (C/L); ratio (wall): the whole point, "
        "harness-opt's start-up included. CPU ms/rollout = bench proc (this process, all threads, "
        "sampler excluded) + sandbox (fork server and rollout children, from /proc). server: the "
        "loopback server's own CPU, not counted. load: 1-min load average (other work here). "
        f"Targets (harness-opt): ratio >= {TARGET_RATIO[32]} at C=32, >= {TARGET_RATIO[64]} at C=64, "
        f"<= {TARGET_CPU_MS:g} ms CPU per rollout."
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


class GCTimer:
    """CPU the garbage collector spends, by generation (cProfile does not see it: a collection is
    charged to whichever call happened to allocate)."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.cpu_s = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.process_time()
        else:
            gen = int(info["generation"])
            self.runs[gen] += 1
            self.cpu_s[gen] += time.process_time() - self._t0

    def __enter__(self) -> GCTimer:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._callback)

    def summary(self, rollouts: int) -> dict[str, Any]:
        return {
            "collections_by_generation": list(self.runs),
            "cpu_ms_by_generation": [round(1000 * c, 1) for c in self.cpu_s],
            "ms_per_rollout": round(1000 * sum(self.cpu_s) / max(rollouts, 1), 3),
        }


PARTS = (
    # (part, file suffix, function): cumulative CPU of these entry points, per rollout
    ("model client", "harness_opt/llm/client.py", "complete"),
    ("rollout in the broker (runner + session)", "harness_opt/runtime/broker.py", "run"),
    ("channel frames in", "harness_opt/runtime/channel.py", "data_received"),
    ("fork-server control", "harness_opt/runtime/forkserver.py", "_on_control"),
    ("trace events (build + write)", "harness_opt/evaluate/evaluator.py", "_record"),
    ("scoring", "harness_opt/evaluate/evaluator.py", "_score"),
)


def parts_of(raw: dict[Any, Any], total_s: float, rollouts: int, extra: dict[str, float]) -> dict[str, float]:
    """The issue's budget, ms per rollout under the profiler: each part's cumulative time, the model
    client taken out of the broker's rollout (the call is made inside it), and what is left (event
    loop, evaluator, pydantic outside these calls). `extra`: parts measured apart (ledger thread, GC)."""
    cum: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in raw.items():
        for part, suffix, name in PARTS:
            if func == name and filename.endswith(suffix):
                cum[part] = cum.get(part, 0.0) + ct
    broker = "rollout in the broker (runner + session)"
    if broker in cum:
        cum[broker] -= cum.get("model client", 0.0)
    rest = total_s - sum(cum.values())
    out = {k: 1000 * v / rollouts for k, v in cum.items()}
    out["event loop, evaluator and the rest"] = 1000 * rest / rollouts
    out.update({k: 1000 * v / rollouts for k, v in extra.items()})
    return {k: round(v, 3) for k, v in out.items()}


class LedgerTimer:
    """CPU of the ledger writes, which run in a worker thread cProfile does not follow."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self._real: Any = None

    def __enter__(self) -> LedgerTimer:
        from harness_opt.ledger import Ledger

        real = self._real = Ledger.add_rollouts
        timer = self

        def timed(ledger: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return real(ledger, *args, **kwargs)
            finally:
                timer.cpu_s += time.thread_time() - t0

        Ledger.add_rollouts = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from harness_opt.ledger import Ledger

        Ledger.add_rollouts = self._real  # type: ignore[method-assign]


def profile_harness_opt(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """cProfile one harness-opt point and attribute own time (tottime) to the layer it belongs to.

    The profiler's clock is this process's CPU time, not the wall clock: on a shared machine a wall
    clock charges whatever call was running when the process was descheduled (epoll, a socket close)
    with other processes' time. cProfile slows Python code roughly 2x: read the shares, not the
    absolute seconds. The sandbox processes are not in it (their CPU is the table's sandbox column)."""
    import cProfile
    import pstats

    latency_ms, concurrency = args.latency_ms, args.profile
    rollouts = rollouts_for(concurrency, latency_ms / 1000.0, args.n, args.seconds, args.n_min)
    profiler = cProfile.Profile(time.process_time)
    gc_timer = GCTimer()
    ledger_timer = LedgerTimer()

    async def go() -> Point:
        with (
            tempfile.TemporaryDirectory(prefix="harness-opt-prof-") as tmp,
            LoopbackServer(latency_ms) as server,
        ):
            os.environ["HARNESS_OPT_HOME"] = str(Path(tmp) / "home")
            os.environ["HARNESS_OPT_TRACES"] = str(Path(tmp) / "traces")
            await harness_opt_eval(server, concurrency, 2 * concurrency, Path(tmp), args.isolation)
            gc_timer.__enter__()
            ledger_timer.__enter__()
            profiler.enable()
            try:
                return await harness_opt_eval(server, concurrency, rollouts, Path(tmp), args.isolation)
            finally:
                profiler.disable()
                ledger_timer.__exit__()
                gc_timer.__exit__()

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
    console.print(f"  garbage collector (not in cProfile): {gc_timer.summary(rollouts)}")
    extra = {"ledger writes (worker thread)": ledger_timer.cpu_s, "garbage collector": sum(gc_timer.cpu_s)}
    parts = parts_of(raw, total, rollouts, extra)
    scale = point.cpu_s / (total + sum(extra.values())) if total else 0.0
    console.print(
        f"  [bold]budget[/] of the bench process, ms per rollout (profiled; x{scale:.2f} = unprofiled "
        f"CPU of this point, {1000 * point.cpu_s / rollouts:.2f} ms incl. profiler overhead; sandbox "
        f"processes {point.children_ms_per_rollout():.2f} ms on top):"
    )
    for name, ms in parts.items():
        console.print(f"    {name:44s} {ms:7.3f} ms")
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
        "gc": gc_timer.summary(rollouts),
        "parts_ms_per_rollout": parts,
        "sandbox_ms_per_rollout": point.children_ms_per_rollout(),
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


RUNNERS: dict[str, Callable[..., Awaitable[Point]]] = {
    "bare aiohttp": bare_aiohttp,
    "bare openai": bare_openai,
    "bare litellm": bare_litellm,
}


async def run_point(system: str, server: LoopbackServer, c: int, n: int, args: argparse.Namespace) -> Point:
    if system == "harness-opt":
        return await harness_opt_eval(server, c, n, args.workdir, args.isolation)
    return await RUNNERS[system](server, c, n)


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    latency_s = args.latency_ms / 1000.0
    points: list[Point] = []
    with (
        tempfile.TemporaryDirectory(prefix="harness-opt-bench-") as tmp,
        LoopbackServer(args.latency_ms) as server,
    ):
        args.workdir = Path(tmp)
        # Traces, cache and ledger go to a throwaway home, never into the user's project.
        os.environ["HARNESS_OPT_HOME"] = str(args.workdir / "home")
        os.environ["HARNESS_OPT_TRACES"] = str(args.workdir / "traces")
        warm = max(args.concurrency)
        for system in args.systems:  # imports, connection pools, litellm's caches, the sandbox
            await run_point(system, server, warm, 2 * warm, args)
        for c in args.concurrency:
            n = rollouts_for(c, latency_s, args.n, args.seconds, args.n_min)
            for _ in range(args.repeat):
                # Alternate the systems at each point so drift (thermal, other load) hits all alike.
                for system in args.systems:
                    point = await run_point(system, server, c, n, args)
                    points.append(point)
                    print(
                        f"  {system:13s} c={c:<3d} n={n:<5d} {point.rps:7.1f}/s ratio "
                        f"{point.steady_rps / (c / latency_s):.2f} cpu {point.total_ms_per_rollout():.2f} "
                        f"ms/rollout load {point.load1:.1f}",
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
    parser.add_argument("--concurrency", help="Comma-separated concurrency levels (default 8,32,64).")
    parser.add_argument("--repeat", type=int, default=1, help="Measure each point this many times.")
    parser.add_argument(
        "--systems",
        default="aiohttp,openai,litellm,ours",
        help="Comma-separated, in run order: aiohttp, openai, litellm, ours (harness-opt).",
    )
    parser.add_argument(
        "--isolation",
        choices=["auto", "bwrap", "unshare", "none"],
        default="auto",
        help="harness-opt's sandbox (compare bwrap with none to price the sandbox).",
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute: 2 s per point, concurrency 8,32.")
    parser.add_argument("--profile", type=int, metavar="C", help="Then cProfile ours at concurrency C.")
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="Where the JSON result goes.")
    args = parser.parse_args(argv)
    # --quick changes the defaults only; an explicit --seconds or --concurrency still wins.
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.concurrency = args.concurrency or ("8,32" if args.quick else "8,32,64")
    if args.quick:
        args.n_min = min(args.n_min, 20)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if not args.concurrency or min(args.concurrency) < 1 or args.n < 1:
        parser.error("--concurrency needs positive integers and --n must be >= 1")
    names = [x.strip() for x in str(args.systems).split(",") if x.strip()]
    unknown = [x for x in names if x not in SYSTEM_FLAGS]
    if not names or unknown:
        parser.error(f"--systems takes {', '.join(SYSTEM_FLAGS)}; got {', '.join(unknown) or 'nothing'}")
    args.systems = [SYSTEM_FLAGS[x] for x in names]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run_bench(args))
    print_table(result)
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
