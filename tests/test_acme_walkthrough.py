"""The examples/acme-support README walkthrough, run for real on the embedded model (slow).

The commands are read from the README's bash block, so the README cannot drift from what works:
`harness-opt ...` lines run in-process through the CLI app (with smaller limits so this finishes in a
few minutes on 2 cores), `cp`/`cat` lines through bash; the Acme API is started by the test itself on
a free 127.0.0.1 port, which is what the README's `python server.py &` and `export` lines do.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tests.support.acme import EXAMPLE, acme_server

SMALLER = {
    "eval": ["--limit", "2"],
    "optimize": ["--val-limit", "2", "--train-sample", "2"],
}
CI_LIMITS = {"max_tokens = 256": "max_tokens = 40", "wall_time_s = 120": "wall_time_s = 15"}
"""Applied to the scaffolded harness.toml: the embedded model on 2 cores needs ~0.1 s a token, so
short answers and a 15 s rollout cap keep the whole walkthrough to a few minutes."""
REPLACE = {"--iterations 2": "--iterations 1", "--budget 20m": "--budget 4m"}


def readme_commands() -> list[str]:
    text = (EXAMPLE / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "the README has no bash block"
    joined = block[1].replace("\\\n", " ")
    lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in joined.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _app():
    """The CLI app; registers init and traces import/to-tasks if the lead has not wired them yet."""
    from harness_opt.cli import app as app_module

    app = app_module.app
    names = {c.name for c in app.registered_commands}
    if "init" not in names:
        from harness_opt.cli import init_cmd

        init_cmd.register(app)
    from harness_opt.cli import traces_cmd, traces_import_cmd

    if "import" not in {c.name for c in traces_cmd.app.registered_commands}:
        traces_import_cmd.register(traces_cmd.app)
    return app


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readme_walkthrough_runs_end_to_end(tmp_path, monkeypatch):
    commands = readme_commands()
    assert any(c.startswith("harness-opt init") for c in commands)
    project = tmp_path / "acme-project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("HARNESS_OPT_TRACES", str(project / "traces"))
    monkeypatch.setenv("ACME_API_TOKEN", "Bearer demo-token")
    app = _app()
    runner = CliRunner()
    ran = []
    with acme_server() as base:
        monkeypatch.setenv("ACME_API_BASE", base)
        for line in commands:
            line = line.replace("$EX", str(EXAMPLE))
            if line.startswith(("EX=", "mkdir acme-", "cd acme-", "export ", "python ", "kill ")):
                continue  # done by the test itself (project dir, env vars, the server)
            if not line.startswith("harness-opt "):
                subprocess.run(["bash", "-c", line], check=True, cwd=project)
                continue
            for old, new in REPLACE.items():
                line = line.replace(old, new)
            argv = shlex.split(line)[1:]
            argv += SMALLER.get(argv[0], [])
            t0 = time.perf_counter()
            result = runner.invoke(app, argv, catch_exceptions=False)
            print(f"[walkthrough] {time.perf_counter() - t0:6.1f}s  {line}", file=sys.stderr)
            assert result.exit_code == 0, f"{line}\n{result.output}"
            ran.append((argv[0], result.output))
            if argv[0] == "init":
                manifest = project / "harnesses" / "acme-support" / "v0001" / "harness.toml"
                text = manifest.read_text()
                for old, new in CI_LIMITS.items():
                    assert old in text
                    text = text.replace(old, new)
                manifest.write_text(text)
    done = [name for name, _ in ran]
    assert done[:3] == ["init", "doctor", "eval"] and "optimize" in done and done[-2:] == ["diff", "report"]
    assert (project / "harnesses" / "acme-support" / "v0002").is_dir()
    assert (project / "acme-report.html").stat().st_size > 1000
    assert len(list((project / "traces" / "imported").glob("*.jsonl"))) == 3
    tickets = (project / "tasks" / "acme-support" / "tickets.jsonl").read_text().splitlines()
    assert len(tickets) == 32  # 30 tickets + 2 regression tasks from the labelled failures
