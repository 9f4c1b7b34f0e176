"""The `agent` proposer: an external coding agent (any CLI) edits a copy of the version in a work dir.

The work dir (`propose/workspace.py`) holds only what a proposer may read: `harness/` (a copy of the
version), `history/` (every earlier candidate: files, outcome, per-task train scores, raw train
traces), `traces/` (this iteration's train traces), `train_tasks.jsonl`, and `INSTRUCTIONS.md`, the
program in the spirit of AutoAgent's `program.md`: where things are, the one rule about editable
files, and `./check`, which validates the candidate as the loop will (`check_server.py`).

The command runs under bubblewrap with the system directories read-only, the work dir read-write and
an empty home, so the project, the suite data and the val/test splits are not even visible to it.
The network stays on, because a coding-agent CLI must reach its model API: the agent could therefore
send what it reads somewhere, but what it can read is train-only. The sandbox is the runtime's own
builder (`runtime.sandbox.bwrap_command`), binding what the agent CLI needs to run: its executable's
install tree and, for a script, its interpreter's, read-only (and this Python's, for `./check`).
Without bubblewrap, `sandbox="auto"` refuses; `sandbox="none"` (named) runs the command unconfined.
Commands for common coding-agent CLIs are in `presets.py` (`--agent-preset`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Literal

from harness_opt.errors import UserError
from harness_opt.propose.base import FailedProposal, MetaSpend, Proposal, ProposalInput
from harness_opt.propose.check_server import SCRIPT_NAME, CheckServer
from harness_opt.propose.presets import PRESETS, PROMPT, expand
from harness_opt.propose.workspace import (
    HARNESS_DIR,
    harness_edits,
    is_editable,
    read_text_nofollow,
    write_workspace,
)
from harness_opt.runtime.sandbox import BwrapSpec, bwrap_command, bwrap_problem, bwrap_works, install_trees

log = logging.getLogger(__name__)

DEFAULT_PASS_ENV: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LC_*",
    "TERM",
    "TZ",
    "ANTHROPIC_*",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_*",
    "CODEX_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "OPENROUTER_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "AZURE_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)
"""Environment names (fnmatch globs) the agent process inherits; nothing else of ours reaches it."""

AGENT_TMP_BYTES = 1024 * 1024 * 1024
AGENT_SHM_BYTES = 64 * 1024 * 1024

HYPOTHESIS_FILE = "HYPOTHESIS.md"
INSTRUCTIONS_FILE = "INSTRUCTIONS.md"
OUTPUT_TAIL_CHARS = 4_000

PROGRAM = """\
# Program: improve the harness of `{agent}` on `{suite}`, one mechanism per candidate

You are the proposer of an overnight search. The agent `{agent}` runs inside a *harness*: prompts
(jinja2 templates), tool schemas (`tools.json`, OpenAI function-calling format) and orchestration code
(`agent.py`, `run(task, ctx)` written against AgentContext: ctx.llm, ctx.call_tool, ctx.render,
ctx.log, ctx.tools). Each candidate you hand back is validated, measured on held-out validation tasks
you never see, and kept only if a paired test says it beats the incumbent {version} (val score
{val_score}). {suite_description}

## Where things are
- `harness/`: the current version. **The one rule: change only files under `harness/` that match
  {editable}.** Everything else is frozen; an edit to it is discarded.
- `history/INDEX.md`: every candidate tried so far, ranked by val score, with outcome, mechanism,
  reason, and the tasks each won and lost against its incumbent. `history/candidates/<vNNNN>/`
  holds each one's `files/`, `diff.patch` (its change), `SUMMARY.md`, `train/scores.tsv` and
  `train/traces/*.md`: raw train traces, whole (every message, tool call, output, scorer feedback).
  Grep them, e.g. `grep -rl "scorer feedback" history/candidates/*/train/traces | head`.
- `traces/failing.md`, `traces/passing.md`: this iteration's train traces of the current version.
- `train_tasks.jsonl`: the train tasks with their expected answers.
{imported}
## How to work
1. Read `history/INDEX.md`. Do not repeat a rejected idea; build on accepted ones; two mechanisms
   that won *different* tasks may combine.
2. Find the most common or most fixable cause of failure in the traces.
3. Change ONE mechanism that addresses it, under `harness/` only.
{check}4. Write `{hypothesis}` here: first line `mechanism: <short name>`, then one or two sentences on why
   the change should raise the score.
Keep templates valid jinja2 and agent.py valid Python with the same entrypoint. The agent is scored on
held-out tasks like these: fix the general cause, never hard-code answers. Then stop.
{avoid}"""

CHECK_STEP = """\
   Check it before you hand it back: `./check` loads it (templates parse, agent.py compiles,
   tools.json is valid) and runs one train task through the real evaluator, printing the score and
   the raw trace; `./check TASK_ID` runs another train task. At most {limit} checks. Fix what fails.
"""


@cache
def bwrap_path() -> str | None:
    """The bubblewrap binary if it can actually create a sandbox here (user namespaces may be off)."""
    return shutil.which("bwrap") if bwrap_works() else None


def _clean_env(pass_env: Sequence[str], home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if any(fnmatch(k, pat) for pat in pass_env)}
    env["HOME"] = str(home)  # an empty home in the work dir: the user's own home may hold the project
    env["TMPDIR"] = "/tmp"
    env.update(extra)
    return env


def agent_sandbox(
    argv: list[str], workdir: Path, ro_binds: Sequence[Path], rw_binds: Sequence[Path]
) -> list[str]:
    """The agent's bubblewrap command: system dirs and /etc read-only (DNS, CA certificates), empty
    /tmp and home, `ro_binds` (the CLI's install trees, extra config), the work dir read-write, network
    on. The caller's environment (already reduced to the pass-through list) reaches the agent as is."""
    spec = BwrapSpec(
        ro_binds=[(str(p), str(p)) for p in ro_binds],
        rw_binds=[*((str(p), str(p)) for p in rw_binds), (str(workdir), str(workdir))],
        chdir=str(workdir),
        tmp_bytes=AGENT_TMP_BYTES,
        shm_bytes=AGENT_SHM_BYTES,
        share_net=True,
        uid=None,
        etc="all",
        python=False,
        clear_env=False,
    )
    return bwrap_command(spec, argv)


def parse_hypothesis(text: str) -> tuple[str, str]:
    """HYPOTHESIS.md -> (mechanism, hypothesis); a first line `mechanism: x` names the mechanism."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    lines = [ln.lstrip("#").strip() for ln in lines]
    mechanism = ""
    if lines and lines[0].lower().startswith("mechanism:"):
        mechanism = lines.pop(0).split(":", 1)[1].strip()
    hypothesis = " ".join(ln for ln in lines if ln).strip()
    return mechanism, hypothesis


def _hypothesis(workdir: Path) -> tuple[str, str]:
    """HYPOTHESIS.md as the agent left it, read without following a link (it could point anywhere)."""
    return parse_hypothesis(read_text_nofollow(workdir / HYPOTHESIS_FILE)[:4000])


class AgentCLIProposer:
    """Runs a coding-agent command once per candidate in a fresh, sandboxed work dir."""

    name = "agent"
    reads_history = True
    exhaustible = False

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        timeout_s: float = 900,
        pass_env: Sequence[str] = DEFAULT_PASS_ENV,
        sandbox: Literal["auto", "bwrap", "none"] = "auto",
        ro_binds: Sequence[str | Path] = (),
        rw_binds: Sequence[str | Path] = (),
        keep_workdir: bool = False,
        project_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        max_checks: int = 5,
        runs_check: bool = True,
    ) -> None:
        """`command` (a string is shlex-split) runs with the work dir as its cwd; `{workdir}`,
        `{prompt}` and `{files}` in it are filled in (`presets.expand`).

        `ro_binds` / `rw_binds` expose extra paths inside the sandbox, e.g. the agent CLI's config
        directory (`~/.claude`): the home the agent sees is otherwise empty. `env` adds variables.
        """
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise UserError(
                "the agent command is empty",
                where="--agent-cmd",
                fix="give the coding-agent command, e.g. --agent-preset claude, or --agent-cmd '...'",
            )
        exe = shutil.which(self.argv[0])
        if exe is None:
            raise UserError(
                f"the agent command {self.argv[0]!r} is not found or not executable",
                where="--agent-cmd",
                fix="install it or give its full path",
            )
        self.executable = Path(exe)
        self.timeout_s = timeout_s
        self.pass_env = tuple(pass_env)
        self.env = dict(env or {})
        self.max_checks = max_checks
        self.runs_check = runs_check
        self.project_dir = Path(project_dir or Path.cwd()).resolve()
        self.ro_binds = [Path(p).expanduser().resolve() for p in ro_binds]
        self.rw_binds = [Path(p).expanduser().resolve() for p in rw_binds]
        self.keep_workdir = keep_workdir
        if sandbox == "none":
            self.bwrap: str | None = None
            log.warning(
                "agent proposer: sandbox='none': the agent command runs WITHOUT filesystem "
                "isolation and could read val/test data"
            )
        else:
            self.bwrap = bwrap_path()
            if self.bwrap is None:
                cause, fix = bwrap_problem() or ("bubblewrap is not usable here", "install bubblewrap")
                raise UserError(
                    f"the agent proposer runs its command in a bubblewrap sandbox, and {cause}",
                    where=f"sandbox={sandbox!r}",
                    fix=f"{fix}; or pass sandbox='none' to run it unconfined (it could read val/test data)",
                )
        self.failures: list[FailedProposal] = []
        """Why the last `propose` returned fewer than `n` proposals, with what each attempt cost."""

    @classmethod
    def from_preset(cls, preset: str, **options: object) -> AgentCLIProposer:
        """The proposer for a known coding-agent CLI (`presets.PRESETS`), checked before the run."""
        spec = PRESETS.get(preset)
        if spec is None:
            raise UserError(
                f"unknown agent preset {preset!r}",
                where="--agent-preset",
                fix=f"use one of {', '.join(PRESETS)}",
            )
        if shutil.which(spec.argv[0]) is None:
            raise UserError(
                f"the {preset} CLI ({spec.argv[0]}) is not installed or not on PATH",
                where="--agent-preset",
                fix=f"install it: {spec.install}",
            )
        if not any(os.environ.get(k) for k in spec.keys):
            raise UserError(
                f"the {preset} preset needs one of {', '.join(spec.keys)} in the environment",
                where="--agent-preset",
                fix="export it; the sandbox's home is empty, so a login the CLI stored in your home "
                "is not visible (or run it your own way with --agent-cmd and ro_binds)",
            )
        return cls(spec.argv, env=spec.env, runs_check=spec.runs_check, **options)  # type: ignore[arg-type]

    @property
    def notes(self) -> list[str]:
        """Why the last `propose` returned fewer than `n` proposals."""
        return [f.reason for f in self.failures]

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.failures = []
        proposals: list[Proposal] = []
        for i in range(n):
            workdir = Path(tempfile.mkdtemp(prefix="harness-opt-agent-"))
            started = time.monotonic()
            try:
                proposal = self._one(inp, workdir, [p.mechanism for p in proposals], i)
            finally:
                if not self.keep_workdir:
                    shutil.rmtree(workdir, ignore_errors=True)
            spend = MetaSpend(model=shlex.join(self.argv[:1]), seconds=round(time.monotonic() - started, 3))
            if isinstance(proposal, Proposal):
                proposal.spend = spend
                proposals.append(proposal)
            else:
                self.failures.append(FailedProposal(reason=proposal, spend=spend))
        return proposals

    def _checks(self, inp: ProposalInput) -> bool:
        return inp.checker is not None and self.max_checks > 0 and self.runs_check

    def prepare(self, inp: ProposalInput, workdir: Path, avoid: Sequence[str] = ()) -> None:
        """Write everything the agent may read into `workdir` (train-only: ProposalInput has no more)."""
        write_workspace(inp, workdir)
        (workdir / HYPOTHESIS_FILE).touch()
        avoid_text = ""
        if avoid:
            avoid_text = f"\nAlready proposed this round (pick a different mechanism): {'; '.join(avoid)}\n"
        imported = [t for t in inp.imported_traces if not t.passed]
        imported_text = ""
        if imported:
            imported_text = (
                f"- `traces/imported.md`: {len(imported)} failed production traces imported from real "
                "logs. Fix their general cause too; the suite still decides acceptance.\n"
            )
        (workdir / INSTRUCTIONS_FILE).write_text(
            PROGRAM.format(
                agent=inp.agent,
                version=inp.version_label,
                suite=inp.suite,
                suite_description=inp.suite_description.strip(),
                val_score=f"{inp.val_score:.4f}" if inp.val_score is not None else "not yet measured",
                editable=", ".join(f"`{g}`" for g in inp.editable),
                imported=imported_text,
                check=CHECK_STEP.format(limit=self.max_checks) if self._checks(inp) else "",
                hypothesis=HYPOTHESIS_FILE,
                avoid=avoid_text,
            ),
            encoding="utf-8",
        )
        (workdir / "home").mkdir(exist_ok=True)

    def command_for(self, workdir: Path, files: Sequence[str] = ()) -> list[str]:
        argv = expand(self.argv, prompt=PROMPT, workdir=str(workdir), files=list(files))
        argv[0] = str(self.executable)
        if self.bwrap is None:
            return argv
        never = [self.project_dir, Path.home()]
        ro = [*install_trees(self.executable, never=never), *self.ro_binds]
        if (workdir / SCRIPT_NAME).exists():  # ./check runs on this Python
            ro += install_trees(Path(sys.executable), never=never)
        return agent_sandbox(argv, workdir, ro, self.rw_binds)

    def _run(self, argv: list[str], workdir: Path) -> tuple[int | None, str, float]:
        """Run to completion or timeout (the whole process group is killed); (rc or None, output, s)."""
        start = time.monotonic()
        with subprocess.Popen(
            argv,
            cwd=workdir,
            env=_clean_env(self.pass_env, workdir / "home", self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as proc:
            try:
                out, _ = proc.communicate(timeout=self.timeout_s)
                rc: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
                rc = None
        text = out.decode("utf-8", errors="replace")[-OUTPUT_TAIL_CHARS:]
        return rc, text, time.monotonic() - start

    def _execute(self, inp: ProposalInput, workdir: Path) -> tuple[int | None, str, float, list[str]]:
        """Run the agent once in `workdir`, with a check server while it runs when one is available."""
        files = [f"{HARNESS_DIR}/{p}" for p in sorted(inp.files) if is_editable(p, inp.editable)]
        server = None
        if self._checks(inp):
            assert inp.checker is not None
            server = CheckServer(workdir, inp.checker, self.max_checks)
            if server.available():
                server.write_client()
            else:
                server = None
        try:
            argv = self.command_for(workdir, [*files, HYPOTHESIS_FILE])
            if server is None:
                rc, output, seconds = self._run(argv, workdir)
            else:
                with server:
                    rc, output, seconds = self._run(argv, workdir)
        except OSError as exc:
            raise UserError(
                f"the agent command could not start: {exc}",
                where="--agent-cmd",
                fix="check the command and that it is executable",
            ) from exc
        results = server.results if server else []
        checks = [f"check {i}: {'ok' if r.ok else 'failed'}" for i, r in enumerate(results, 1)]
        return rc, output, seconds, checks

    def _one(self, inp: ProposalInput, workdir: Path, avoid: list[str], index: int) -> Proposal | str:
        """A proposal, or why there is none."""
        self.prepare(inp, workdir, avoid)
        rc, output, seconds, checks = self._execute(inp, workdir)
        if rc is None:
            return self._drop(index, f"timed out after {self.timeout_s:g}s", output)
        if rc != 0:
            return self._drop(index, f"exited with status {rc}", output)
        edits, dropped = harness_edits(inp, workdir)
        if not edits:
            return self._drop(index, "the agent changed no editable file", output)
        mechanism, hypothesis = _hypothesis(workdir)
        return Proposal(
            proposer=self.name,
            mechanism=mechanism or "unstated",
            hypothesis=hypothesis or f"(the agent wrote no {HYPOTHESIS_FILE})",
            changes=[f"{'delete' if c is None else 'edit'} {p}" for p, c in sorted(edits.items())],
            edits=edits,
            meta={
                "command": shlex.join(self.argv),
                "sandbox": "bwrap" if self.bwrap else "none",
                "seconds": round(seconds, 3),
                "dropped_edits": dropped,
                "checks": checks,
                "output_tail": output,
                "workdir": str(workdir) if self.keep_workdir else None,
            },
        )

    def _drop(self, index: int, why: str, output: str) -> str:
        line = f"candidate {index + 1}: {why}; output tail: {output[-500:]!r}"
        log.warning("agent proposer: %s", line)
        return line
