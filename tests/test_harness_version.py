"""Loading, validating, hashing and rendering harness versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness_opt.errors import HarnessError
from harness_opt.harness.version import HarnessVersion


@pytest.fixture
def seed(repo_root: Path, tmp_path: Path) -> Path:
    """A private copy of the banking77 seed version that a test may break."""
    dest = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(repo_root / "harnesses" / "banking77" / "v0001", dest)
    return dest


def broken(path: Path) -> str:
    with pytest.raises(HarnessError) as info:
        HarnessVersion.load(path)
    return str(info.value)


def edit(path: Path, rel: str, old: str, new: str) -> None:
    target = path / rel
    text = target.read_text()
    assert old in text, f"{old!r} not in {rel}"
    target.write_text(text.replace(old, new, 1))


# --- the seed version -----------------------------------------------------------------------------


def test_seed_loads_and_renders(repo_root: Path) -> None:
    version = HarnessVersion.load(repo_root / "harnesses" / "banking77" / "v0001")
    assert version.label == "banking77@v0001"
    assert (version.name, version.number) == ("banking77", 1)
    assert version.tools == []
    assert (version.entry_file, version.entry_function) == ("agent.py", "run")
    assert len(version.hash) == 64 and version.short_hash == version.hash[:12]
    assert version.manifest.model.params == {"temperature": 0, "max_tokens": 24}
    assert version.manifest.runtime.limits.wall_time_s == 60
    assert version.manifest.runtime.limits.max_steps == 4

    system = version.render("system.j2")
    labels = json.loads((repo_root / "tasks" / "banking77" / "data" / "categories.json").read_text())
    lines = system.splitlines()
    assert len(labels) == 77 and all(label in lines for label in labels)
    assert "Answer with the label only" in system
    assert version.render("user.j2", task={"text": "hi"}) == "hi"
    assert version.render("prompts/user.j2", task={"text": "where is my card"}) == "where is my card"


def test_render_missing_variable_and_template(seed: Path) -> None:
    version = HarnessVersion.load(seed)
    with pytest.raises(HarnessError, match=r"prompts/user\.j2.*'task' is undefined"):
        version.render("user.j2")
    with pytest.raises(HarnessError, match=r"no template 'nope\.j2'"):
        version.render("nope.j2")


def test_files_exclude_caches(seed: Path) -> None:
    (seed / "__pycache__").mkdir()
    (seed / "__pycache__" / "agent.cpython-311.pyc").write_bytes(b"\0")
    (seed / ".DS_Store").write_bytes(b"x")
    files = HarnessVersion.load(seed).files()
    assert sorted(files) == ["agent.py", "harness.toml", "prompts/system.j2", "prompts/user.j2", "tools.json"]


# --- content hash ---------------------------------------------------------------------------------


def test_hash_is_stable_and_ignores_provenance_and_caches(seed: Path, tmp_path: Path) -> None:
    first = HarnessVersion.load(seed).hash
    assert HarnessVersion.load(seed).hash == first
    copy = tmp_path / "elsewhere" / "v0009"
    shutil.copytree(seed, copy)
    assert HarnessVersion.load(copy).hash == first  # location is not identity

    edit(seed, "harness.toml", 'hypothesis = "baseline', 'hypothesis = "a reworded baseline')
    edit(seed, "harness.toml", 'proposer = "seed"', 'proposer = "human"')
    (seed / "__pycache__").mkdir()
    (seed / "__pycache__" / "agent.cpython-311.pyc").write_bytes(b"junk")
    assert HarnessVersion.load(seed).hash == first


@pytest.mark.parametrize(
    ("rel", "old", "new"),
    [
        ("prompts/system.j2", "Answer with the label only", "Reply with the label only"),
        ("agent.py", "reply = ctx.llm(messages)", "reply = ctx.llm(messages, temperature=0)"),
        ("tools.json", "[]", "[ ]"),
        ("harness.toml", "max_tokens = 24", "max_tokens = 25"),
        ("harness.toml", "max_steps = 4", "max_steps = 5"),
        ("harness.toml", 'name = "local/smollm2"', 'name = "openai/gpt-4o-mini"'),
    ],
)
def test_hash_changes_with_behaviour(seed: Path, rel: str, old: str, new: str) -> None:
    before = HarnessVersion.load(seed).hash
    edit(seed, rel, old, new)
    assert HarnessVersion.load(seed).hash != before


def test_hash_changes_when_a_file_is_added_or_renamed(seed: Path) -> None:
    before = HarnessVersion.load(seed).hash
    (seed / "prompts" / "extra.j2").write_text("hello")
    added = HarnessVersion.load(seed).hash
    (seed / "prompts" / "extra.j2").rename(seed / "prompts" / "other.j2")
    renamed = HarnessVersion.load(seed).hash
    assert len({before, added, renamed}) == 3


# --- broken versions: one HarnessError naming file, line/field and fix ----------------------------


def test_missing_directory(tmp_path: Path) -> None:
    message = broken(tmp_path / "nope" / "v0001")
    assert "does not exist" in message and "fix:" in message


@pytest.mark.parametrize("name", ["harness.toml", "agent.py", "tools.json"])
def test_missing_required_file(seed: Path, name: str) -> None:
    (seed / name).unlink()
    message = broken(seed)
    assert f"missing {name}" in message and "fix:" in message


def test_bad_toml_names_line_and_column(seed: Path) -> None:
    edit(seed, "harness.toml", "max_steps = 4", "max_steps = = 4")
    message = broken(seed)
    assert "harness.toml, line 17, column 13" in message and "invalid TOML" in message


def test_manifest_field_error_names_table_field_and_line(seed: Path) -> None:
    edit(seed, "harness.toml", "wall_time_s = 60", "wall_time_s = -1")
    message = broken(seed)
    assert "[runtime.limits].wall_time_s" in message and "greater than 0" in message
    assert "harness.toml, line 16" in message


def test_manifest_unknown_field(seed: Path) -> None:
    edit(seed, "harness.toml", "max_steps = 4", "max_step = 4")
    message = broken(seed)
    assert "[runtime.limits].max_step: unknown field" in message


def test_manifest_missing_table(seed: Path) -> None:
    text = (seed / "harness.toml").read_text()
    (seed / "harness.toml").write_text(text.split("[model]")[1].join(["[model]", ""]))
    assert "[harness]: Field required" in broken(seed)


def test_bad_entrypoint_format(seed: Path) -> None:
    edit(seed, "harness.toml", 'entrypoint = "agent.py:run"', 'entrypoint = "../agent.py:run"')
    assert "[runtime].entrypoint" in broken(seed)


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ({"not": "a list"}, "must be a JSON list"),
        ([{"type": "function", "function": {"name": "bad name!"}}], "tools[0] ('bad name!').function.name"),
        (
            [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "string"}}}],
            'tools[0] (\'lookup\').function.parameters: must be a JSON schema with "type": "object"',
        ),
        (
            [
                {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            ],
            "tools[1] ('a').function.name: duplicate tool name 'a' (also tools[0])",
        ),
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "find",
                        "parameters": {"type": "object", "properties": {"q": {"type": "str"}}},
                    },
                }
            ],
            "tools[0] ('find').function.parameters.properties.q.type: unknown JSON type 'str'",
        ),
        (
            [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "required": ["x"]}},
                }
            ],
            "required: names ['x'] that are not in properties",
        ),
        ([{"type": "tool", "function": {"name": "f"}}], "tools[0] ('f').type"),
    ],
)
def test_invalid_tool_schema(seed: Path, tools: object, expected: str) -> None:
    (seed / "tools.json").write_text(json.dumps(tools))
    message = broken(seed)
    assert "tools.json" in message and expected in message


def test_valid_tools_load(seed: Path) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
    (seed / "tools.json").write_text(json.dumps([tool]))
    version = HarnessVersion.load(seed)
    assert version.tools == [tool]
    (seed / "prompts" / "tools.j2").write_text("{% for t in tools %}{{ t.function.name }}{% endfor %}")
    assert HarnessVersion.load(seed).render("tools.j2") == "get_order"


def test_invalid_tools_json_syntax(seed: Path) -> None:
    (seed / "tools.json").write_text("[\n  {,\n]")
    assert "tools.json, line 2, column 4" in broken(seed)


def test_template_syntax_error(seed: Path) -> None:
    (seed / "prompts" / "user.j2").write_text("line one\n{{ task.text }\n")
    message = broken(seed)
    assert "prompts/user.j2, line 2" in message and "template syntax error" in message


def test_undefined_template_variable_says_how_to_declare(seed: Path) -> None:
    (seed / "prompts" / "user.j2").write_text("{{ task.text }}\n\nExamples:\n{{ examples }}")
    message = broken(seed)
    assert "prompts/user.j2, line 4" in message and "'examples'" in message
    assert '[prompts] variables = ["examples"]' in message

    edit(seed, "harness.toml", "[runtime]", '[prompts]\nvariables = ["examples"]\n\n[runtime]')
    version = HarnessVersion.load(seed)
    assert version.render("user.j2", task={"text": "t"}, examples="e1") == "t\n\nExamples:\ne1"


def test_template_locals_and_globals_are_not_undefined(seed: Path) -> None:
    (seed / "prompts" / "user.j2").write_text(
        "{% set n = 3 %}{% for i in range(n) %}{{ loop.index }}{% endfor %} {{ task.text }}"
    )
    assert HarnessVersion.load(seed).render("user.j2", task={"text": "x"}) == "123 x"


def test_agent_syntax_error(seed: Path) -> None:
    (seed / "agent.py").write_text("def run(task, ctx):\n    return (\n\n")
    message = broken(seed)
    assert "agent.py, line 2" in message and "syntax error" in message


def test_helper_module_syntax_error(seed: Path) -> None:
    (seed / "helpers.py").write_text("x = 1\ndef f(:\n")
    assert "helpers.py, line 2" in broken(seed)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def main(task, ctx):\n    return 1\n", "no top-level function 'run'"),
        ("class A:\n    def run(self, task, ctx):\n        return 1\n", "no top-level function 'run'"),
        ("run = lambda task, ctx: 1\n", "no top-level function 'run'"),
        ("def run(task):\n    return 1\n", "it takes (task)"),
        ("def run(task, ctx, extra):\n    return 1\n", "it takes (task, ctx, extra)"),
        ("def run(task, ctx, *, must):\n    return 1\n", "exactly two parameters"),
        ("async def run(task, ctx):\n    return 1\n", "must not be async"),
    ],
)
def test_entrypoint_shape(seed: Path, source: str, expected: str) -> None:
    (seed / "agent.py").write_text(source)
    message = broken(seed)
    assert "agent.py" in message and expected in message and "def run(task, ctx)" in message


def test_agent_is_never_imported(seed: Path, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    (seed / "agent.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n\ndef run(task, ctx):\n    return 1\n"
    )
    HarnessVersion.load(seed)
    assert not marker.exists()


def test_symlinks_are_refused(seed: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    (seed / "prompts" / "leak.j2").symlink_to(secret)
    assert "symbolic links are not allowed" in broken(seed)


def test_sandboxed_templates_block_unsafe_attributes(seed: Path) -> None:
    (seed / "prompts" / "evil.j2").write_text("{{ task.__class__.__mro__ }}")
    (seed / "prompts" / "evil2.j2").write_text("{{ tools.append(1) }}")
    version = HarnessVersion.load(seed)
    with pytest.raises(HarnessError, match=r"evil\.j2: rendering failed: SecurityError"):
        version.render("evil.j2", task={"text": "x"})
    with pytest.raises(HarnessError, match="SecurityError"):
        version.render("evil2.j2")
    assert version.tools == []
