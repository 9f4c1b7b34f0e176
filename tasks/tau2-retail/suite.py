"""The τ²-bench retail suite: a customer-support agent with 16 tools and a simulated customer, rewarded
as τ² rewards it: the database state it leaves and, for most tasks, an LLM judge's verdict on the
task's natural-language assertions (sierra-research/tau2-bench, MIT; data read from a path).

Task ids are τ²'s own ("0" .. "113"), so results map one to one onto τ²'s results format. The agent is
given only `{"domain": "retail"}`: everything else it must learn from the customer, whose scenario stays
parent-side in the task metadata for the simulator.

The NL-assertion judge is `[options] judge_model`: "agent" (the default) judges with the model under
evaluation, as τ² does with its one configured model; "off" leaves NL assertions unjudged, and every
such score says it is unofficial (not τ²'s reward).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import importlib.util
import json
import os
import random
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

from harness_opt.errors import SuiteError
from harness_opt.llm.cache import current_scope
from harness_opt.records import Score, Task
from harness_opt.suites import tau2_reward
from harness_opt.suites.nl_judge import NLAssertionJudge, NLVerdict, reward_part
from harness_opt.suites.tau2_models import AssistantMessage, EvaluationCriteria, RewardInfo, ToolType

NAME = "tau2-retail"
DATA_ENV = "HARNESS_OPT_TAU2_DATA"
WHERE_TO_GET = (
    f"pass --data DIR or set {DATA_ENV} to τ²'s data folder (holding retail/db.json, tasks.json, "
    "split_tasks.json, policy.md and user_simulator/); get it from https://github.com/sierra-research/"
    "tau2-bench (data/tau2/domains/retail and data/tau2/user_simulator)"
)
RETAIL_FILES = ("db.json", "tasks.json", "split_tasks.json", "policy.md")
JUDGE_AGENT = "agent"
"""`judge_model` value meaning: judge with the rollout's own agent model."""
JUDGE_OFF = "off"


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


TOOL_TYPES: dict[str, ToolType] = {
    **{name: "read" for name in retail_tools.READ_TOOLS},
    **{name: "generic" for name in retail_tools.GENERIC_TOOLS},
    **{name: "write" for name in retail_tools.WRITE_TOOLS},
}
"""τ²'s ToolType of each retail tool (reported on each action check)."""


class Tau2RetailSuite:
    """Splits of τ² retail tasks, a fresh environment per rollout, and τ²'s reward."""

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
        judge_model: str = JUDGE_AGENT,
        max_errors: int = retail_env.DEFAULT_MAX_ERRORS,
        description: str = "",
    ) -> None:
        self.name = NAME
        self.path = Path(path)
        self.description = description
        self.data_dir = retail_dir
        self.user_model = user_model
        self.max_turns = max_turns
        self.judge_model = judge_model
        self.max_errors = max_errors
        self.policy = (retail_dir / "policy.md").read_text(encoding="utf-8")
        self.guidelines = (user_dir / "simulation_guidelines.md").read_text(encoding="utf-8")
        self._pristine = retail_db.load_pristine(retail_dir / "db.json")
        raw_tasks = json.loads((retail_dir / "tasks.json").read_text(encoding="utf-8"))
        self._raw_tasks: list[dict[str, Any]] = raw_tasks
        official = json.loads((retail_dir / "split_tasks.json").read_text(encoding="utf-8"))
        self.base_ids = [str(i) for i in official.get("base") or [t["id"] for t in raw_tasks]]
        """τ²'s `base` split: every task a leaderboard submission must run."""
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

    @property
    def deterministic_scorer(self) -> bool:
        """DB hash and substring checks are; an LLM judge is not."""
        return self.judge_model == JUDGE_OFF

    def with_judge(self, judge_model: str) -> Tau2RetailSuite:
        """This suite judging NL assertions with `judge_model` ("agent", "off" or a model)."""
        other = copy.copy(self)
        other.judge_model = judge_model
        return other

    def tau2_tasks(self) -> list[dict[str, Any]]:
        """τ²'s task records of the `base` split exactly as in tasks.json (a bundle copies them)."""
        wanted = set(self.base_ids)
        return [copy.deepcopy(t) for t in self._raw_tasks if str(t["id"]) in wanted]

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
        tools = retail_tools.RetailTools(retail_db.RetailDB(self._pristine))
        return retail_env.RetailEnvironment(tools, max_errors=self.max_errors)

    def environment(self, task: Task) -> Any:
        env = self.fresh_environment()
        scenario = task.metadata.get("user_scenario") or {}
        env._user_factory = lambda: self._user_simulator(scenario)
        return env

    def score(self, task: Task, output: Any, env: Any) -> Score:
        """τ²'s reward of the rollout (`env.reward_info` gets the record). A judge call, if any, runs
        on a helper thread; the evaluator uses `score_async` instead."""
        verdict = None
        judge = self._judge_for(task)
        if judge is not None:
            verdict = _run_in_thread(judge.judge(self._conversation(env, output), _assertions(task)))
        return self._finish(task, output, env, verdict)

    async def score_async(self, task: Task, output: Any, env: Any) -> Score:
        """`score`, awaiting the judge's call instead of blocking the event loop on it."""
        verdict = None
        judge = self._judge_for(task)
        if judge is not None:
            verdict = await judge.judge(self._conversation(env, output), _assertions(task))
        return self._finish(task, output, env, verdict)

    # ---- helpers --------------------------------------------------------------------------------

    def judge_model_for(self, agent_model: str | None) -> str | None:
        """The judge's model for a rollout of `agent_model`, or None when NL assertions go unjudged."""
        if self.judge_model == JUDGE_OFF:
            return None
        return agent_model if self.judge_model == JUDGE_AGENT else self.judge_model

    def _judge_for(self, task: Task) -> NLAssertionJudge | None:
        """The judge to call for this task, or None (no assertions in the basis, or no judge)."""
        if "NL_ASSERTION" not in (task.metadata.get("reward_basis") or []) or not _assertions(task):
            return None
        scope = current_scope()
        model = self.judge_model_for(getattr(scope.rollout, "model", None) if scope else None)
        return None if model is None else NLAssertionJudge(model, self.llm_client().complete)

    @staticmethod
    def _conversation(env: Any, output: Any) -> list[Any]:
        """τ²'s trajectory: the recorded messages, plus a final answer returned by run()."""
        messages = list(env.messages)
        if isinstance(output, str) and output.strip():
            messages.append(AssistantMessage(role="assistant", content=output))
        return messages

    def _finish(self, task: Task, output: Any, env: Any, verdict: NLVerdict | None) -> Score:
        gold_db, failed = self.gold_state(task)
        termination = retail_env.termination_reason(env.stop_reason)
        differences = env.db.differences(gold_db)
        extra: dict[str, Any] = {"gold_failed_writes": failed} if failed else {}
        info = tau2_reward.reward_info(
            EvaluationCriteria.model_validate(task.expected or {}),
            termination=termination,  # type: ignore[arg-type]
            db_match=env.db.same_state(gold_db),
            messages=self._conversation(env, output),
            tool_types=TOOL_TYPES,
            nl=reward_part(verdict) if verdict is not None else None,
            extra=extra,
        )
        env.reward_info = info
        return Score(
            score=info.reward,
            passed=tau2_reward.is_successful(info.reward),
            feedback=feedback_text(info, differences),
        )

    def llm_client(self) -> Any:
        """The client of the simulated users and the judge (the suite's calls, not the agent's)."""
        from harness_opt.llm.client import LLMClient

        if self._client is None:
            self._client = LLMClient()
        return self._client

    def gold_state(self, task: Task) -> tuple[Any, list[dict[str, Any]]]:
        """The DB after replaying the task's gold actions on a fresh DB (cached per task)."""
        if task.id not in self._gold:
            env = self.fresh_environment()
            actions = (task.expected or {}).get("actions") or []
            failed = retail_env.replay_gold(env, actions, retail_tools.WRITE_TOOLS)
            self._gold[task.id] = (env.db, failed)
        return self._gold[task.id]

    def _user_simulator(self, scenario: dict[str, Any]) -> Any:
        from harness_opt.suites.usersim import UserSimulator

        return UserSimulator(
            scenario=scenario,
            guidelines=self.guidelines,
            model=self.user_model,
            llm=self.llm_client(),
            max_turns=self.max_turns,
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(t)}" for s, t in self._splits.items())
        return f"Tau2RetailSuite({sizes}, judge={self.judge_model}, data={self.data_dir})"


def _assertions(task: Task) -> list[str]:
    return list((task.expected or {}).get("nl_assertions") or [])


def _run_in_thread(coro: Coroutine[Any, Any, NLVerdict]) -> NLVerdict:
    """Run the judge's coroutine to completion from synchronous code that may itself be inside an
    event loop: on a helper thread, with this context (the rollout's cache scope) carried over."""
    context = contextvars.copy_context()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = context.run(asyncio.run, coro)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="harness-opt-nl-judge")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def feedback_text(info: RewardInfo, differences: list[tuple[str, str, list[str]]]) -> str:
    """First line: τ²'s reward record as JSON (what traces and exports carry); then what it means."""
    lines = [info.model_dump_json()]
    ours = (info.info or {}).get("harness_opt") or {}
    if info.reward_basis is None:
        lines.append(
            f"Ended by {ours.get('termination_reason')}: τ² scores any end other than an agent or "
            "user stop as 0."
        )
    if not differences:
        lines.append("DB: the final database equals the one the gold actions produce.")
    else:
        lines.append("DB: the final database differs from the one the gold actions produce:")
        for table, key, fields in differences[:10]:
            lines.append(f"  {table} {key}: {', '.join(fields)} differ")
        if len(differences) > 10:
            lines.append(f"  ... and {len(differences) - 10} more records")
    for check in info.communicate_checks or []:
        lines.append(f"COMMUNICATE: the agent {'said' if check.met else 'never said'} {check.info!r}.")
    if info.communicate_checks and "COMMUNICATE" not in (info.reward_basis or []):
        lines.append("(COMMUNICATE is not in this task's reward basis: reported, not counted.)")
    for nl in info.nl_assertions or []:
        lines.append(f"NL_ASSERTION {'met' if nl.met else 'NOT met'}: {nl.nl_assertion} ({nl.justification})")
    error = ((info.info or {}).get("nl") or {}).get("error")
    if error:
        lines.append(f"NL_ASSERTION: {error}; scored 0. UNOFFICIAL: not τ²'s reward.")
    if "nl_note" in ours:
        lines.append(f"UNOFFICIAL: {ours['nl_note']}.")
    return "\n".join(lines)


def load(path: Path, config: dict[str, Any]) -> Tau2RetailSuite:
    options = config.get("options") or {}
    splits = config.get("splits") or {}
    retail_dir, user_dir = resolve_data_dir(options.get("data"), Path(path))
    max_turns = int(options.get("max_turns", 30))
    max_errors = int(options.get("max_errors", retail_env.DEFAULT_MAX_ERRORS))
    for name, value in (("max_turns", max_turns), ("max_errors", max_errors)):
        if value < 1:
            raise SuiteError(
                f"{name} must be >= 1", where=str(Path(path) / "suite.toml"), fix=f"set [options].{name}"
            )
    return Tau2RetailSuite(
        Path(path),
        retail_dir=retail_dir,
        user_dir=user_dir,
        val_size=int(splits.get("val_size", 20)),
        seed=splits.get("seed", 2025),
        user_model=str(options.get("user_model") or "local/smollm2"),
        max_turns=max_turns,
        judge_model=str(options.get("judge_model") or JUDGE_AGENT),
        max_errors=max_errors,
        description=(config.get("suite") or {}).get("description", ""),
    )
