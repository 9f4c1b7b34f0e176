"""The τ²-bench retail suite: a customer-support agent with 16 tools and a simulated customer, judged by
the database state it leaves (sierra-research/tau2-bench, MIT; data read from a path, never copied).

Task ids are τ²'s own ("0" .. "113"), so results map one to one onto τ²'s results format. The agent is
given only `{"domain": "retail"}`: everything else it must learn from the customer, whose scenario stays
parent-side in the task metadata for the simulator.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from harness_opt.errors import SuiteError
from harness_opt.records import Score, Task

NAME = "tau2-retail"
DATA_ENV = "HARNESS_OPT_TAU2_DATA"
WHERE_TO_GET = (
    f"pass --data DIR or set {DATA_ENV} to τ²'s data folder (holding retail/db.json, tasks.json, "
    "split_tasks.json, policy.md and user_simulator/); get it from https://github.com/sierra-research/"
    "tau2-bench (data/tau2/domains/retail and data/tau2/user_simulator)"
)
RETAIL_FILES = ("db.json", "tasks.json", "split_tasks.json", "policy.md")


def _sibling(stem: str) -> ModuleType:
    """Import `<stem>.py` from this folder. The loader imports suite.py by path under a private name
    (the folder name is no package name), so siblings are imported the same way, under ours."""
    name = f"{__name__}__{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{stem}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


retail_db = _sibling("retail_db")
retail_tools = _sibling("retail_tools")
retail_env = _sibling("retail_env")


def resolve_data_dir(given: str | Path | None, suite_path: Path) -> tuple[Path, Path]:
    """(retail folder, user-simulator folder) from `--data`, `HARNESS_OPT_TAU2_DATA`, or the default
    `../shared/data/tau2` beside the repository. Accepts τ²'s data root, its `domains/` layout, or the
    retail folder itself."""
    source = given or os.environ.get(DATA_ENV)
    root = Path(source).expanduser() if source else suite_path.parents[1].parent / "shared" / "data" / "tau2"
    for retail in (root / "retail", root / "domains" / "retail", root):
        if all((retail / f).is_file() for f in RETAIL_FILES):
            for base in (retail.parent, retail.parent.parent, root):
                if (base / "user_simulator" / "simulation_guidelines.md").is_file():
                    return retail, base / "user_simulator"
            raise SuiteError("τ² user-simulator guidelines not found", where=str(root), fix=WHERE_TO_GET)
    raise SuiteError("τ² retail data not found", where=str(root), fix=WHERE_TO_GET)


def _task(raw: dict[str, Any]) -> Task:
    criteria = raw.get("evaluation_criteria") or {}
    return Task(
        id=str(raw["id"]),
        input={"domain": "retail"},
        expected=criteria,
        metadata={
            "tau2_id": str(raw["id"]),
            "user_scenario": raw.get("user_scenario") or {},
            "description": raw.get("description"),
            "reward_basis": list(criteria.get("reward_basis") or ["DB"]),
        },
    )


def carve_val(train_ids: list[str], size: int, seed: int | str) -> set[str]:
    """The val ids: `size` of the official train ids drawn by `random.Random(seed)` from their sorted
    list, so the draw depends only on the ids, the size and the seed."""
    if not 0 <= size < len(train_ids):
        raise ValueError(f"val_size must be between 0 and {len(train_ids) - 1}, got {size}")
    return set(random.Random(seed).sample(sorted(train_ids, key=lambda i: (len(i), i)), size))


class Tau2RetailSuite:
    """Splits of τ² retail tasks, a fresh environment per rollout, and τ²'s DB/COMMUNICATE reward."""

    deterministic_scorer = True  # DB hash + substring checks; the NL judge is never run

    def __init__(
        self,
        path: Path,
        *,
        retail_dir: Path,
        user_dir: Path,
        val_size: int,
        seed: int | str,
        user_model: str,
        max_turns: int,
        description: str = "",
    ) -> None:
        self.name = NAME
        self.path = Path(path)
        self.description = description
        self.data_dir = retail_dir
        self.user_model = user_model
        self.max_turns = max_turns
        self.policy = (retail_dir / "policy.md").read_text(encoding="utf-8")
        self.guidelines = (user_dir / "simulation_guidelines.md").read_text(encoding="utf-8")
        self._pristine = retail_db.load_pristine(retail_dir / "db.json")
        raw_tasks = json.loads((retail_dir / "tasks.json").read_text(encoding="utf-8"))
        official = json.loads((retail_dir / "split_tasks.json").read_text(encoding="utf-8"))
        by_id = {str(t["id"]): _task(t) for t in raw_tasks}
        train_ids = [str(i) for i in official["train"]]
        test_ids = [str(i) for i in official["test"]]
        unknown = sorted(set(train_ids + test_ids) - set(by_id))
        if unknown:
            raise SuiteError(
                f"split_tasks.json names tasks not in tasks.json: {unknown[:5]}",
                where=str(retail_dir),
                fix="use tasks.json and split_tasks.json from the same τ² release",
            )
        try:
            val = carve_val(train_ids, val_size, seed)
        except ValueError as exc:
            raise SuiteError(
                str(exc), where=str(self.path / "suite.toml"), fix="fix [splits].val_size"
            ) from None
        self._splits = {
            "train": [by_id[i] for i in train_ids if i not in val],
            "val": [by_id[i] for i in train_ids if i in val],
            "test": [by_id[i] for i in test_ids],
        }
        self._gold: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        self._client: Any = None

    # ---- Suite protocol -------------------------------------------------------------------------

    def split_names(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def tasks(self, split: str) -> list[Task]:
        if split not in self._splits:
            raise SuiteError(
                f"unknown split {split!r}",
                where=f"suite {self.name}",
                fix=f"use one of: {', '.join(self._splits)}",
            )
        return list(self._splits[split])

    def fresh_environment(self) -> Any:
        """An environment over a fresh DB, without a customer (gold replay, tests)."""
        return retail_env.RetailEnvironment(retail_tools.RetailTools(retail_db.RetailDB(self._pristine)))

    def environment(self, task: Task) -> Any:
        env = self.fresh_environment()
        scenario = task.metadata.get("user_scenario") or {}
        env._user_factory = lambda: self._user_simulator(scenario)
        return env

    def score(self, task: Task, output: Any, env: Any) -> Score:
        """τ²'s reward of the rollout's final state; the breakdown is also left on `env.reward_info`."""
        gold_db, failed = self.gold_state(task)
        criteria = task.expected or {}
        said = list(env.agent_messages)
        if isinstance(output, str) and output.strip():
            said.append(output)  # a final answer returned by run() is the agent's last message
        info = retail_env.reward_info(
            basis=task.metadata.get("reward_basis") or ["DB"],
            db_match=env.db.same_state(gold_db),
            differences=env.db.differences(gold_db),
            checks=retail_env.communicate_checks(criteria.get("communicate_info") or [], said),
            stop_reason=env.stop_reason,
            failed_gold=failed,
        )
        env.reward_info = info
        return Score(
            score=info["reward"], passed=info["reward"] == 1.0, feedback=retail_env.feedback_text(info)
        )

    # ---- helpers --------------------------------------------------------------------------------

    def gold_state(self, task: Task) -> tuple[Any, list[dict[str, Any]]]:
        """The DB after replaying the task's gold actions on a fresh DB (cached per task)."""
        if task.id not in self._gold:
            env = self.fresh_environment()
            actions = (task.expected or {}).get("actions") or []
            failed = retail_env.replay_gold(env, actions, retail_tools.WRITE_TOOLS)
            self._gold[task.id] = (env.db, failed)
        return self._gold[task.id]

    def _user_simulator(self, scenario: dict[str, Any]) -> Any:
        from harness_opt.llm.client import LLMClient
        from harness_opt.suites.usersim import UserSimulator

        if self._client is None:
            self._client = LLMClient()
        return UserSimulator(
            scenario=scenario,
            guidelines=self.guidelines,
            model=self.user_model,
            llm=self._client,
            max_turns=self.max_turns,
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(t)}" for s, t in self._splits.items())
        return f"Tau2RetailSuite({sizes}, data={self.data_dir})"


def load(path: Path, config: dict[str, Any]) -> Tau2RetailSuite:
    options = config.get("options") or {}
    splits = config.get("splits") or {}
    retail_dir, user_dir = resolve_data_dir(options.get("data"), Path(path))
    max_turns = int(options.get("max_turns", 30))
    if max_turns < 1:
        raise SuiteError(
            "max_turns must be >= 1", where=str(Path(path) / "suite.toml"), fix="set [options].max_turns"
        )
    return Tau2RetailSuite(
        Path(path),
        retail_dir=retail_dir,
        user_dir=user_dir,
        val_size=int(splits.get("val_size", 20)),
        seed=splits.get("seed", 2025),
        user_model=str(options.get("user_model") or "local/smollm2"),
        max_turns=max_turns,
        description=(config.get("suite") or {}).get("description", ""),
    )
