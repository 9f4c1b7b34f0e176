"""Command presets for common coding-agent CLIs run as the `agent` proposer (`--agent-preset`).

Each preset is the CLI's documented non-interactive form: one prompt in, edits made in the current
directory without asking for approval, exit. The prompt only points at `INSTRUCTIONS.md` (the
program, in AutoAgent's `program.md` spirit), which the work dir holds. Approval prompts are turned
off because nobody is there to answer them; what confines the agent is harness-opt's bubblewrap
sandbox (the work dir is the only writable place; the project, the suite data and the val/test
splits are not even visible), not the CLI's own permission system. docs/proposers.md lists each
preset with its flags, the key variables it needs and where the flags are documented.

Placeholders in `argv`: `{prompt}` (the prompt), `{workdir}` (the work dir), and `{files}` (an
argument per editable file of the current version, plus HYPOTHESIS.md: for CLIs that edit only the
files they are given).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PROMPT = (
    "Read INSTRUCTIONS.md in the current directory and follow it exactly. Work only inside the "
    "current directory; when you are done, stop."
)


@dataclass(frozen=True)
class AgentPreset:
    """One coding-agent CLI: how to run it non-interactively and what it needs."""

    name: str
    argv: tuple[str, ...]
    keys: tuple[str, ...]
    """API-key variables; at least one must be set (the sandbox's home is empty: no stored login)."""
    install: str
    docs: str
    runs_check: bool = True
    """Whether the CLI can run `./check` itself (aider edits the files it is given and stops)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables the CLI needs inside the sandbox beside the pass-through list."""


PRESETS: dict[str, AgentPreset] = {
    "claude": AgentPreset(
        name="claude",
        argv=(
            "claude",
            "-p",
            "{prompt}",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Bash(./check:*)",
        ),
        keys=("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        install="npm install -g @anthropic-ai/claude-code",
        docs="https://docs.anthropic.com/en/docs/claude-code/cli-reference",
    ),
    "codex": AgentPreset(
        name="codex",
        argv=("codex", "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access", "{prompt}"),
        keys=("CODEX_API_KEY", "OPENAI_API_KEY"),
        install="npm install -g @openai/codex",
        docs="https://developers.openai.com/codex/noninteractive",
    ),
    "gemini": AgentPreset(
        name="gemini",
        argv=("gemini", "--approval-mode", "yolo", "-p", "{prompt}"),
        keys=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        install="npm install -g @google/gemini-cli",
        docs="https://geminicli.com/docs/cli/headless",
        env={"GEMINI_CLI_TRUST_WORKSPACE": "true"},
    ),
    "aider": AgentPreset(
        name="aider",
        argv=(
            "aider",
            "--message-file",
            "INSTRUCTIONS.md",
            "--yes-always",
            "--no-git",
            "--no-check-update",
            "--read",
            "history/INDEX.md",
            "--read",
            "traces/failing.md",
            "{files}",
        ),
        keys=(
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "DEEPSEEK_API_KEY",
            "OPENROUTER_API_KEY",
        ),
        install="python -m pip install aider-install && aider-install",
        docs="https://aider.chat/docs/scripting.html",
        runs_check=False,
    ),
    "opencode": AgentPreset(
        name="opencode",
        argv=("opencode", "run", "{prompt}"),
        keys=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"),
        install="npm install -g opencode-ai",
        docs="https://opencode.ai/docs/cli/",
        env={"OPENCODE_CONFIG_CONTENT": '{"permission": "allow"}'},
    ),
}
"""The presets by name (`--agent-preset NAME`)."""


def expand(argv: tuple[str, ...] | list[str], *, prompt: str, workdir: str, files: list[str]) -> list[str]:
    """`argv` with its placeholders filled: `{files}` as one argument per file, the others in place."""
    out: list[str] = []
    for arg in argv:
        if arg == "{files}":
            out += files
        else:
            out.append(arg.replace("{workdir}", workdir).replace("{prompt}", prompt))
    return out
