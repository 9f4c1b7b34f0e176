"""The `agent` proposer: an external coding agent (any CLI) edits a copy of the version in a work dir.

The work dir holds only what a proposer may read: `harness/` (a copy of the version), `traces/` (train
traces as JSONL and as readable markdown), `train_tasks.jsonl`, `history.md` and `INSTRUCTIONS.md`.
The command runs under bubblewrap with the system directories read-only, the work dir read-write and
an empty home, so the project, the suite data and the val/test splits are not even visible to it.
The network stays on, because a coding-agent CLI must reach its model API: the agent could therefore
send what it reads somewhere, but what it can read is train-only. The sandbox is the runtime's own
builder (`runtime.sandbox.bwrap_command`), binding what the agent CLI needs to run: its executable's
install tree and, for a script, its interpreter's, read-only. Without bubblewrap, `sandbox="auto"`
refuses; `sandbox="none"` (named) runs the command as a plain subprocess in the work dir.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Literal

from harness_opt.errors import UserError
from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.propose.evidence import render_files, render_history, render_trace
from harness_opt.propose.llm import clean_path, restrict_edits
from harness_opt.runtime.sandbox import BwrapSpec, bwrap_command, bwrap_problem, bwrap_works, install_trees

log = logging.getLogger(__name__)

DEFAULT_PASS_ENV: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LC_*",
    "TERM",
    "TZ",
    "ANTHROPIC_*",
    "OPENAI_*",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
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
OUTPUT_TAIL_CHARS = 4_000

INSTRUCTIONS = """\
# Improve this AI agent's harness: one mechanism

You are improving the harness of the agent `{agent}` (version {version}) on the suite `{suite}`.
{suite_description}
The harness is in `harness/`: prompts (jinja2 templates), tool schemas (`tools.json`, OpenAI
function-calling format) and orchestration code (`agent.py`, `run(task, ctx)` written against
AgentContext: ctx.llm, ctx.call_tool, ctx.render, ctx.log, ctx.tools).

Incumbent aggregate validation score: {val_score}

## What to read
- `traces/failing.md` — raw failing train traces (every message, tool call, output, scorer feedback);
  `traces/failing.jsonl` has the same records as JSON. `traces/passing.*` has passing ones for contrast.
- `train_tasks.jsonl` — the train tasks with their expected answers.
- `history.md` — what was tried before and whether it was accepted. Do not repeat rejected ideas.
{avoid}
## What to do
1. Find the most common or most fixable cause of failure in the traces.
2. Change ONE mechanism that addresses it, by editing files under `harness/` only. You may change
   only files matching: {editable}. Everything else is frozen and edits to it are discarded.
3. Write `HYPOTHESIS.md` in this directory: first line `mechanism: <short name>`, then one or two
   sentences on why the change should raise the score.
Keep templates valid jinja2 and agent.py valid Python with the same entrypoint. The agent is scored on
held-out tasks like these: fix the general cause, do not hard-code answers. Then stop.
"""


@cache
def bwrap_path() -> str | None:
    """The bubblewrap binary if it can actually create a sandbox here (user namespaces may be off)."""
    return shutil.which("bwrap") if bwrap_works() else None


def _clean_env(pass_env: Sequence[str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if any(fnmatch(k, pat) for pat in pass_env)}
    env["HOME"] = str(home)  # an empty home in the work dir: the user's own home may hold the project
    env["TMPDIR"] = "/tmp"
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


def read_harness(root: Path) -> tuple[dict[str, str], list[str]]:
    """The text files under `root` by relative path, and a note for each one that is not text."""
    files: dict[str, str] = {}
    notes: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel.split("/") or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_symlink():
            notes.append(f"ignored {rel}: symbolic link")
        elif path.is_file():
            try:
                files[rel] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                notes.append(f"ignored {rel}: not UTF-8 text")
    return files, notes


class AgentCLIProposer:
    """Runs a coding-agent command once per candidate in a fresh, sandboxed work dir."""

    name = "agent"

    def __init__(
        self,
        command: str,
        *,
        timeout_s: float = 900,
        pass_env: Sequence[str] = DEFAULT_PASS_ENV,
        sandbox: Literal["auto", "bwrap", "none"] = "auto",
        ro_binds: Sequence[str | Path] = (),
        rw_binds: Sequence[str | Path] = (),
        keep_workdir: bool = False,
        project_dir: str | Path | None = None,
    ) -> None:
        """`command` is shlex-split; `{workdir}` in it becomes the work dir (also its cwd).

        `ro_binds` / `rw_binds` expose extra paths inside the sandbox, e.g. the agent CLI's config
        directory (`~/.claude`): the home the agent sees is otherwise empty.
        """
        self.argv = shlex.split(command)
        if not self.argv:
            raise UserError(
                "the agent command is empty",
                where="--agent-command",
                fix="give the coding-agent command, e.g. 'claude -p \"$(cat INSTRUCTIONS.md)\"'",
            )
        exe = shutil.which(self.argv[0])
        if exe is None:
            raise UserError(
                f"the agent command {self.argv[0]!r} is not found or not executable",
                where="--agent-command",
                fix="install it or give its full path",
            )
        self.executable = Path(exe)
        self.timeout_s = timeout_s
        self.pass_env = tuple(pass_env)
        self.project_dir = Path(project_dir or Path.cwd()).resolve()
        self.ro_binds = [Path(p).expanduser().resolve() for p in ro_binds]
        self.rw_binds = [Path(p).expanduser().resolve() for p in rw_binds]
        self.keep_workdir = keep_workdir
        if sandbox == "none":
            self.bwrap: str | None = None
            log.warning("agent proposer: sandbox='none': the agent command runs WITHOUT filesystem "
                        "isolation and could read val/test data")
        else:
            self.bwrap = bwrap_path()
            if self.bwrap is None:
                cause, fix = bwrap_problem() or ("bubblewrap is not usable here", "install bubblewrap")
                raise UserError(
                    f"the agent proposer runs its command in a bubblewrap sandbox, and {cause}",
                    where=f"sandbox={sandbox!r}",
                    fix=f"{fix}; or pass sandbox='none' to run it unconfined (it could read val/test data)",
                )
        self.notes: list[str] = []
        """Why the last `propose` returned fewer than `n` proposals."""

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.notes = []
        proposals: list[Proposal] = []
        for i in range(n):
            workdir = Path(tempfile.mkdtemp(prefix="harness-opt-agent-"))
            try:
                proposal = self._one(inp, workdir, [p.mechanism for p in proposals], i)
            finally:
                if not self.keep_workdir:
                    shutil.rmtree(workdir, ignore_errors=True)
            if proposal is not None:
                proposals.append(proposal)
        return proposals

    def prepare(self, inp: ProposalInput, workdir: Path, avoid: Sequence[str] = ()) -> None:
        """Write everything the agent may read into `workdir` (train-only: ProposalInput has no more)."""
        harness = workdir / "harness"
        for rel, content in inp.files.items():
            path = clean_path(rel)
            if path is None:
                continue
            target = harness / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        harness.mkdir(exist_ok=True)
        traces = workdir / "traces"
        traces.mkdir()
        tasks = {t.id: t for t in inp.train_tasks}
        for kind, items in (("failing", inp.failing_traces), ("passing", inp.passing_traces)):
            (traces / f"{kind}.jsonl").write_text(
                "".join(t.model_dump_json() + "\n" for t in items), encoding="utf-8"
            )
            body = "\n\n".join(render_trace(t, tasks.get(t.key.task_id)) for t in items)
            (traces / f"{kind}.md").write_text(
                f"# {len(items)} {kind} train traces\n\n{body}\n", encoding="utf-8"
            )
        imported = [t for t in inp.imported_traces if not t.passed]
        if imported:  # production failures from `traces import`: extra evidence, beside the suite's
            (traces / "imported.jsonl").write_text(
                "".join(t.model_dump_json() + "\n" for t in imported), encoding="utf-8"
            )
            body = "\n\n".join(render_trace(t) for t in imported)
            (traces / "imported.md").write_text(
                f"# {len(imported)} production traces (imported, labelled failed)\n\n{body}\n",
                encoding="utf-8",
            )
        (workdir / "train_tasks.jsonl").write_text(
            "".join(t.model_dump_json() + "\n" for t in inp.train_tasks), encoding="utf-8"
        )
        (workdir / "history.md").write_text(
            f"# History of candidates\n\n{render_history(inp.history)}\n", encoding="utf-8"
        )
        (workdir / "current_files.md").write_text(render_files(inp.files, inp.editable), encoding="utf-8")
        avoid_text = ""
        if avoid:
            avoid_text = (
                "- Already proposed this round (pick a different mechanism): " + "; ".join(avoid) + "\n"
            )
        (workdir / "INSTRUCTIONS.md").write_text(
            INSTRUCTIONS.format(
                agent=inp.agent,
                version=inp.version_label,
                suite=inp.suite,
                suite_description=inp.suite_description,
                val_score=f"{inp.val_score:.4f}" if inp.val_score is not None else "not yet measured",
                avoid=avoid_text,
                editable=", ".join(inp.editable),
            ),
            encoding="utf-8",
        )
        if imported:
            with (workdir / "INSTRUCTIONS.md").open("a", encoding="utf-8") as handle:
                handle.write(
                    f"\nAlso read traces/imported.md: {len(imported)} failed production traces imported "
                    "from real logs. Fix their general cause too; the suite still decides acceptance.\n"
                )
        (workdir / "home").mkdir()

    def command_for(self, workdir: Path) -> list[str]:
        argv = [a.replace("{workdir}", str(workdir)) for a in self.argv]
        argv[0] = str(self.executable)
        if self.bwrap is None:
            return argv
        ro = [*install_trees(self.executable, never=[self.project_dir, Path.home()]), *self.ro_binds]
        return agent_sandbox(argv, workdir, ro, self.rw_binds)

    def _run(self, argv: list[str], workdir: Path) -> tuple[int | None, str, float]:
        """Run to completion or timeout (the whole process group is killed); (rc or None, output, s)."""
        start = time.monotonic()
        with subprocess.Popen(
            argv,
            cwd=workdir,
            env=_clean_env(self.pass_env, workdir / "home"),
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

    def _one(self, inp: ProposalInput, workdir: Path, avoid: list[str], index: int) -> Proposal | None:
        self.prepare(inp, workdir, avoid)
        try:
            rc, output, seconds = self._run(self.command_for(workdir), workdir)
        except OSError as exc:
            raise UserError(
                f"the agent command could not start: {exc}",
                where="--agent-command",
                fix="check the command and that it is executable",
            ) from exc
        if rc is None:
            self._drop(index, f"timed out after {self.timeout_s:g}s", output)
            return None
        if rc != 0:
            self._drop(index, f"exited with status {rc}", output)
            return None
        after, unreadable = read_harness(workdir / "harness")
        raw: dict[str, str | None] = {p: c for p, c in after.items() if inp.files.get(p) != c}
        raw.update({p: None for p in inp.files if p not in after and clean_path(p) is not None})
        edits, dropped = restrict_edits(raw, inp.files, inp.editable)
        dropped = unreadable + dropped
        if not edits:
            self._drop(index, "the agent changed no editable file", output)
            return None
        hyp_path = workdir / HYPOTHESIS_FILE
        mechanism, hypothesis = parse_hypothesis(
            hyp_path.read_text(encoding="utf-8", errors="replace") if hyp_path.is_file() else ""
        )
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
                "output_tail": output,
                "workdir": str(workdir) if self.keep_workdir else None,
            },
        )

    def _drop(self, index: int, why: str, output: str) -> None:
        line = f"candidate {index + 1}: {why}; output tail: {output[-500:]!r}"
        log.warning("agent proposer: %s", line)
        self.notes.append(line)
