"""Start-up as a person sees it: how long `harness-opt` takes to answer, and to start evaluating.

For `--help`, `runs`, `leaderboard` and `traces show` (each in a fresh interpreter, as typed): the
median wall and CPU time (user + sys) over N runs, and the heavy libraries each one imported. For
`eval`: the time from launching the process to the first rollout's first model request reaching a
loopback OpenAI-compatible server (the harness code is running in its sandbox by then), with the
pre-flight request's arrival as a milestone. CPU time is the figure to compare across machines: on a
shared, loaded box wall time mostly measures the queue for a core.

    python bench/startup.py [--runs 5] [--repo PATH]    (PATH: a checkout to measure, default this one)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.loopback_llm import loopback_llm  # noqa: E402

HEAVY = ["litellm", "dspy", "scipy", "numpy", "matplotlib", "datasets", "ray", "duckdb", "openai"]
LISTING = [["--help"], ["runs"], ["leaderboard"], ["traces", "show", "no-such-run", "t1"]]
PROBE = (
    "import contextlib, io, json, sys\n"
    "from harness_opt.cli.app import run_command\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
    "    run_command({argv!r})\n"
    "print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))"
)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def listing(repo: Path, env: dict[str, str], runs: int) -> list[dict[str, Any]]:
    rows = []
    for argv in [["-c", "pass"]] + [["-m", "harness_opt", *a] for a in LISTING]:
        samples = [timed([sys.executable, *argv], env, repo) for _ in range(runs)]
        heavy: list[str] = []
        if argv[0] == "-m":
            probe = PROBE.format(argv=argv[2:], heavy=HEAVY)
            out = subprocess.run(
                [sys.executable, "-c", probe], cwd=repo, env=env, capture_output=True, text=True, check=False
            )
            heavy = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else ["?"]
        rows.append(
            {
                "command": " ".join(argv[2:] if argv[0] == "-m" else ["python -c pass"]),
                "wall_s": round(statistics.median(s[0] for s in samples), 3),
                "cpu_s": round(statistics.median(s[1] for s in samples), 3),
                "heavy_imported": heavy,
            }
        )
    return rows


def cpu_of(pid: int) -> float:
    """CPU seconds (user + sys) a live process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_rollout(repo: Path, env: dict[str, str]) -> dict[str, float]:
    """Seconds from launching `eval` to its first rollout's first model request (wall, and the CPU
    the eval process had used by then; the sandbox's own processes are not counted)."""
    arrivals: list[float] = []
    cpu: list[float] = []
    proc: subprocess.Popen[str] | None = None

    def respond(request: dict[str, Any], n: int) -> str:
        if not arrivals and proc is not None:
            cpu.append(cpu_of(proc.pid))
        arrivals.append(time.time())
        return "card_arrival"

    with loopback_llm(respond) as server:
        argv = [
            sys.executable, "-m", "harness_opt", "eval", "harnesses/banking77/v0001",
            "--suite", "tasks/banking77", "--limit", "4", "--model", "openai/startup-bench",
            "--api-base", server.url, "--api-key-env", "STARTUP_BENCH_KEY", "--no-llm-cache", "--no-reuse",
        ]  # fmt: skip
        start = time.time()
        proc = subprocess.Popen(
            argv,
            cwd=repo,
            env={**env, "STARTUP_BENCH_KEY": "sk-loopback"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = proc.communicate()
        end = time.time()
        if proc.returncode != 0 or not arrivals:
            raise SystemExit(f"eval failed ({proc.returncode}): {stderr[-2000:]}")
    return {
        "first_rollout_request_s": round(arrivals[0] - start, 3),
        "eval_process_cpu_by_then_s": round(cpu[0], 3) if cpu else -1.0,
        "whole_eval_s": round(end - start, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HARNESS_OPT_HOME": f"{home}/home",
            "HARNESS_OPT_TRACES": f"{home}/traces",
            "PYTHONPATH": str(repo),
        }
        load = os.getloadavg()
        report = {
            "repo": str(repo),
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load],
            "listing": listing(repo, env, args.runs),
            "eval": [first_rollout(repo, env) for _ in range(3)],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
