"""create_version, lineage, resolve_version, and the manifest TOML writer they rely on."""

from __future__ import annotations

import os
import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness_opt.errors import HarnessError
from harness_opt.harness import toml_writer
from harness_opt.harness.lineage import create_version, lineage, resolve_version
from harness_opt.harness.manifest import HarnessManifest, dumps_manifest
from harness_opt.harness.version import HarnessVersion


@pytest.fixture
def agent_dir(repo_root: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "harnesses" / "banking77"
    shutil.copytree(repo_root / "harnesses" / "banking77" / "v0001", dest / "v0001")
    return dest


def make_child(parent: HarnessVersion, edits: dict[str, str | None], **kw: str) -> HarnessVersion:
    return create_version(
        parent, edits, proposer=kw.get("proposer", "llm"), hypothesis=kw.get("hypothesis", "h"), changes=["c"]
    )


# --- TOML writer ----------------------------------------------------------------------------------


def test_toml_writer_round_trips_tricky_values() -> None:
    data = {
        "harness": {
            "name": "a",
            "hypothesis": 'quotes " and \\ backslash\nnew line\ttab \x01 ctrl, unicode é ✓',
            "changes": ["one", 'two "2"'],
            "created": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            "parent": None,
        },
        "model": {"name": "m", "params": {"temperature": 0.5, "stop": ["\n"], "rf": {"type": "json"}}},
        "runtime": {"entrypoint": "agent.py:run", "limits": {"wall_time_s": 1e-3, "max_steps": 3}},
        "odd key": {"flag": True, "inf": float("inf")},
    }
    text = toml_writer.dumps(data, inline=("model.params",))
    parsed = tomllib.loads(text)
    expected = {k: dict(v) for k, v in data.items()}
    del expected["harness"]["parent"]  # TOML has no null: None drops the key
    assert parsed == expected
    assert "params = {" in text and "[runtime.limits]" in text and '["odd key"]' in text


def test_dumps_manifest_round_trips(repo_root: Path) -> None:
    seed = HarnessVersion.load(repo_root / "harnesses" / "banking77" / "v0001")
    manifest = seed.manifest.model_copy(
        update={"harness": seed.manifest.harness.model_copy(update={"hypothesis": 'say "label"\nonly'})}
    )
    again = HarnessManifest.model_validate(tomllib.loads(dumps_manifest(manifest)))
    assert again == manifest


# --- create_version -------------------------------------------------------------------------------


def test_create_version_copies_edits_and_records_lineage(agent_dir: Path) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    new_system = root.render("system.j2").replace("Labels:", "Possible labels:")
    child = create_version(
        root,
        {"prompts/system.j2": new_system, "prompts/notes.j2": "{{ task.text }}!"},
        proposer="llm",
        hypothesis='clearer "labels" header',
        changes=["rename the label header", "add notes.j2"],
    )
    assert child.path == (agent_dir / "v0002").resolve()
    assert child.label == "banking77@v0002"
    assert child.hash != root.hash
    info = child.manifest.harness
    assert (info.parent, info.parent_dir, info.proposer) == (root.hash, "v0001", "llm")
    assert info.hypothesis == 'clearer "labels" header'
    assert info.changes == ["rename the label header", "add notes.j2"]
    assert info.created is not None
    assert child.manifest.model == root.manifest.model  # behaviour tables carried over
    assert child.manifest.runtime == root.manifest.runtime
    assert "Possible labels:" in child.render("system.j2")
    assert child.render("notes.j2", task={"text": "x"}) == "x!"
    assert child.files()["agent.py"] == root.files()["agent.py"]
    assert HarnessVersion.load(agent_dir / "v0001").hash == root.hash  # parent untouched

    grandchild = make_child(child, {"prompts/notes.j2": None})
    assert grandchild.number == 3 and "prompts/notes.j2" not in grandchild.files()
    assert [v.label for v in lineage(grandchild)] == ["banking77@v0001", "banking77@v0002", "banking77@v0003"]
    assert lineage(root) == [root]


def test_create_version_without_edits_keeps_the_hash(agent_dir: Path) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    child = make_child(root, {}, hypothesis="rerun")
    assert child.hash == root.hash and child.number == 2  # provenance alone is not a new identity


def test_create_version_uses_next_free_number(agent_dir: Path) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    (agent_dir / "v0007").mkdir()
    assert make_child(root, {}).path.name == "v0008"


def test_create_version_may_change_params_via_harness_toml(agent_dir: Path) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    toml = (agent_dir / "v0001" / "harness.toml").read_text().replace("max_tokens = 24", "max_tokens = 32")
    toml = toml.replace('proposer = "seed"', 'proposer = "forged"')
    child = make_child(root, {"harness.toml": toml}, proposer="operators:params")
    assert child.manifest.model.params["max_tokens"] == 32
    assert child.manifest.harness.proposer == "operators:params"  # provenance is always rewritten
    assert child.manifest.harness.version == 2 and child.hash != root.hash


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        ({"agent.py": "def run(task):\n    return 1\n"}, "exactly two parameters"),
        ({"prompts/user.j2": "{{ task.text }} {{ shots }}"}, "undefined template variable 'shots'"),
        ({"tools.json": "{}"}, "must be a JSON list"),
        ({"agent.py": None}, "missing agent.py"),
        ({"harness.toml": "[harness]\nname = 'x'\nversion = 0\n"}, "[harness].version"),
    ],
)
def test_invalid_child_leaves_nothing_behind(
    agent_dir: Path, edits: dict[str, str | None], expected: str
) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    with pytest.raises(HarnessError) as info:
        create_version(root, edits, proposer="llm", hypothesis="h", changes=[])
    assert expected in str(info.value)
    assert sorted(p.name for p in agent_dir.iterdir()) == ["v0001"]


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "prompts/../../x", "__pycache__/a.pyc", ""])
def test_edit_paths_must_stay_inside(agent_dir: Path, path: str) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    with pytest.raises(HarnessError, match="not a plain relative file path"):
        make_child(root, {path: "x"})
    assert sorted(p.name for p in agent_dir.iterdir()) == ["v0001"]


def test_deleting_a_missing_file_or_the_manifest_fails(agent_dir: Path) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    with pytest.raises(HarnessError, match="no such file"):
        make_child(root, {"nope.txt": None})
    with pytest.raises(HarnessError, match=r"cannot delete harness\.toml"):
        make_child(root, {"harness.toml": None})


def test_lineage_detects_an_edited_parent(agent_dir: Path) -> None:
    root = HarnessVersion.load(agent_dir / "v0001")
    child = make_child(root, {"prompts/user.j2": "Message: {{ task.text }}"})
    (agent_dir / "v0001" / "prompts" / "user.j2").write_text("tampered {{ task.text }}")
    with pytest.raises(HarnessError, match="the parent was edited"):
        lineage(child)


def test_lineage_missing_parent_dir(agent_dir: Path) -> None:
    child = make_child(HarnessVersion.load(agent_dir / "v0001"), {})
    shutil.rmtree(agent_dir / "v0001")
    with pytest.raises(HarnessError, match=r"parent directory .* does not exist"):
        lineage(child)


# --- resolve_version ------------------------------------------------------------------------------


def test_resolve_version_specs(agent_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_child(HarnessVersion.load(agent_dir / "v0001"), {})
    root = agent_dir.parent
    assert resolve_version("banking77@v1", root) == agent_dir / "v0001"
    assert resolve_version("banking77@v0002", root) == agent_dir / "v0002"
    assert resolve_version("banking77@2", root) == agent_dir / "v0002"
    assert resolve_version("banking77@latest", root) == agent_dir / "v0002"
    assert resolve_version(agent_dir / "v0001") == agent_dir / "v0001"
    monkeypatch.chdir(root.parent)  # default root is ./harnesses
    assert resolve_version("banking77@v1") == Path("harnesses/banking77/v0001")
    with pytest.raises(HarnessError, match="available: v1, v2"):
        resolve_version("banking77@v9", root)
    with pytest.raises(HarnessError, match="no versions of agent 'other'"):
        resolve_version("other@v1", root)
    with pytest.raises(HarnessError, match="neither a version directory"):
        resolve_version("banking77-v1", root)
    assert os.path.isdir(resolve_version("banking77@v1"))
