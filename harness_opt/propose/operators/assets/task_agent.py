"""Configurable task agent: what the `operators` proposer installs for JSON, free-text and tool suites.

It starts as `harness-opt init`'s tool loop (same prompts, same loop) and every operator switches on
one mechanism in `agent_config.json` or a data file beside it, never in this code, so mechanisms
compose: a repeat guard and a round cap on the tool loop, a final answer call without tools,
grammar-constrained JSON answers (`data/answer_schema.json`, read from train answers), retrieved
nearest-train demos (`data/retrieval_index.json`), static demos (`data/demos.json`), fields filled
from the input by learned patterns (`data/field_patterns.json`), enums narrowed to the answers of
the nearest train tasks, and self-consistency voting (per field for JSON).

Copied verbatim into a harness version and run in the sandbox: standard library only. The input text
is each input column's value on its own line, in column order: what init's `prompts/user.j2` renders.
"""

import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

MARKER = "harness-opt task agent v1"
"""Lets the proposer recognise this agent in a version's files (do not edit)."""

HERE = Path(__file__).parent
DEFAULTS = {
    "system_template": "system.j2",
    "user_template": "user.j2",
    "max_rounds": 8,  # model calls in the tool loop (init's guard)
    "repeat_guard": False,  # an identical repeated tool call ends the loop: its result is known
    "final_call": False,  # after a tool loop, one more call without tools writes the answer
    "final_prompt": "Now write the final answer only.",
    "answer_format": "text",  # "text" or "json" (parsed, patterns applied, re-serialised)
    "schema": False,  # constrain the answer to data/answer_schema.json (JSON, grammar-constrained)
    "retrieval_k": 0,  # nearest train examples (input -> answer) shown as demos
    "retrieval_order": "similar_last",  # or "similar_first"
    "fewshot": False,  # static demos from data/demos.json
    "patterns": False,  # fields found in the input by data/field_patterns.json
    "pattern_mode": "fill",  # "fill": only a missing or unlikely value; "override": always
    "candidate_k": 0,  # narrow each enum to the values of the k nearest train answers
    "vote_n": 1,
    "vote_temperature": 0.7,
    "temperature": None,
    "max_tokens": None,
    "stop": None,
}

_STOP_TEXT = (
    "a an the i me my we our you your it its is am are was were be been being do does did to of in on "
    "for at by with from and or but if so as this that these those there here can could would should "
    "will just have has had please"
)
STOPWORDS = frozenset(_STOP_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str, bigrams: bool = False) -> list[str]:
    """Lower-case words minus stopwords, plural 's' stripped, optionally adjacent pairs too: the
    classifier agent's rule, which the retrieval index is built with."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    if bigrams:
        out += [f"{a}_{b}" for a, b in pairwise(out)]
    return out


def input_text(task: dict[str, Any]) -> str:
    """Each input column's value on its own line, in column order (init's user.j2 renders the same)."""
    parts = []
    for value in task.values():
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return "\n".join(parts)


def _read_json(rel: str, default: Any) -> Any:
    path = HERE / rel
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


CONFIG = {**DEFAULTS, **_read_json("agent_config.json", {})}
SCHEMA = _read_json("data/answer_schema.json", None) if CONFIG["schema"] or CONFIG["candidate_k"] else None
DEMOS = _read_json("data/demos.json", []) if CONFIG["fewshot"] else []
PATTERNS = _read_json("data/field_patterns.json", {}) if CONFIG["patterns"] else {}
NEEDS_INDEX = CONFIG["retrieval_k"] or CONFIG["candidate_k"]
INDEX = _read_json("data/retrieval_index.json", None) if NEEDS_INDEX else None


def retrieve(text: str, k: int) -> list[tuple[str, str]]:
    """Top-k train examples by BM25 (weights precomputed per posting): [(input, answer)], best first."""
    if not INDEX or k <= 0:
        return []
    postings = INDEX["postings"]
    scores: dict[int, int] = {}
    for term in set(tokenize(text, bool(INDEX.get("bigrams")))):
        posting = postings.get(term)
        if not posting:
            continue
        for i in range(0, len(posting), 2):
            doc = posting[i]
            scores[doc] = scores.get(doc, 0) + posting[i + 1]
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    names = INDEX["labels"]
    return [(INDEX["texts"][doc], names[INDEX["label_of"][doc]]) for doc, _ in best]


def _demo_turns(demos: list[tuple[str, str]]) -> list[dict[str, str]]:
    turns = []
    for text, answer in demos:
        turns.append({"role": "user", "content": text})
        turns.append({"role": "assistant", "content": answer})
    return turns


def _schema(neighbours: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The answer schema, each enum narrowed to the neighbours' values when candidate_k is on."""
    if not SCHEMA:
        return None
    schema = json.loads(json.dumps(SCHEMA))
    if CONFIG["candidate_k"] and neighbours:
        answers = []
        for _, answer in neighbours[: CONFIG["candidate_k"]]:
            try:
                value = json.loads(answer)
            except ValueError:
                continue
            if isinstance(value, dict):
                answers.append(value)
        for name, prop in schema.get("properties", {}).items():
            seen = [a[name] for a in answers if name in a and a[name] in prop.get("enum", [])]
            if "enum" in prop and seen:
                prop["enum"] = list(dict.fromkeys(seen))
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _params(response_format: Any, temperature: Any, seed: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if response_format is not None:
        params["response_format"] = response_format
    if temperature is not None:
        params["temperature"] = temperature
    if seed is not None:
        params["seed"] = seed
    if CONFIG["max_tokens"]:
        params["max_tokens"] = CONFIG["max_tokens"]
    if CONFIG["stop"] and response_format is None:
        params["stop"] = CONFIG["stop"]
    return params


def _arguments(call: dict[str, Any]) -> tuple[Any, Any]:
    raw = call.get("function", {}).get("arguments") or "{}"
    if isinstance(raw, dict):
        return raw, None
    try:
        args = json.loads(raw)
    except ValueError as exc:
        return None, f"Error: arguments are not valid JSON ({exc})"
    return (args, None) if isinstance(args, dict) else (None, "Error: arguments must be a JSON object")


def tool_loop(messages: list[dict[str, Any]], ctx: Any, tools: list[Any]) -> tuple[str, str | None]:
    """init's loop: call, run the tool calls, repeat. (final text, None), or ("", why it stopped):
    "repeat" (the repeat guard) or "rounds" (init's model-call guard, which answers "" as init does)."""
    seen: set[str] = set()
    for _ in range(max(1, int(CONFIG["max_rounds"]))):
        reply = ctx.llm(messages, tools=tools)
        calls = reply.get("tool_calls") or []
        if not calls:
            return (reply.get("content") or "").strip(), None
        keys = [
            json.dumps([c.get("function", {}).get("name"), _arguments(c)[0]], sort_keys=True) for c in calls
        ]
        if CONFIG["repeat_guard"] and all(key in seen for key in keys):
            ctx.log("repeat guard: the same tool call again; answering from the results so far")
            return "", "repeat"
        seen.update(keys)
        messages.append({"role": "assistant", "content": reply.get("content"), "tool_calls": calls})
        for n, call in enumerate(calls):
            call_id = call.get("id") or f"call_{n}"
            name = call.get("function", {}).get("name", "")
            args, error = _arguments(call)
            result = error if error is not None else ctx.call_tool(name, args)
            content = result if isinstance(result, str) else json.dumps(result)
            messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": content})
    ctx.log("stopped: model call guard reached", max_rounds=CONFIG["max_rounds"])
    return "", "rounds"


def parse_json(text: str) -> Any:
    """A JSON answer from model text: the whole text, a fenced block, or the outermost {...}."""
    text = (text or "").strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1] if "{" in text else ""):
        if candidate:
            try:
                return json.loads(candidate)
            except ValueError:
                continue
    return None


def _fill_patterns(value: Any, text: str) -> Any:
    """Fields the input states verbatim, found by the learned patterns (only where exactly one match)."""
    if not PATTERNS:
        return value
    value = dict(value) if isinstance(value, dict) else {}
    for name, pattern in PATTERNS.items():
        found = list(dict.fromkeys(re.findall(pattern, text)))
        if len(found) != 1:
            continue
        current = value.get(name)
        if CONFIG["pattern_mode"] == "override" or not (isinstance(current, str) and current in text):
            value[name] = found[0]
    return value


def _finish(content: str | None, text: str) -> Any:
    if CONFIG["answer_format"] != "json":
        return (content or "").strip()
    value = parse_json(content or "")
    value = _fill_patterns(value, text)
    return json.dumps(value, ensure_ascii=False) if value is not None else (content or "").strip()


def vote(answers: list[Any]) -> Any:
    """Majority answer (per field for JSON objects); ties go to the first, greedy, answer."""
    objects = [parse_json(a) if isinstance(a, str) else a for a in answers]
    if CONFIG["answer_format"] == "json" and all(isinstance(o, dict) for o in objects):
        merged: dict[str, Any] = {}
        for name in objects[0]:
            values = [json.dumps(o.get(name), sort_keys=True) for o in objects]
            top = max(values.count(v) for v in values)
            merged[name] = json.loads(next(v for v in values if values.count(v) == top))
        return json.dumps(merged, ensure_ascii=False)
    top = max(answers.count(a) for a in answers)
    return next(a for a in answers if answers.count(a) == top)


def run(task: dict[str, Any], ctx: Any) -> Any:
    text = input_text(task)
    messages = [{"role": "system", "content": ctx.render(CONFIG["system_template"], task=task)}]
    messages += _demo_turns([(d["input"], d["answer"]) for d in DEMOS])
    neighbours = retrieve(text, max(CONFIG["retrieval_k"], CONFIG["candidate_k"]))
    if CONFIG["retrieval_k"]:
        shown = neighbours[: CONFIG["retrieval_k"]]
        messages += _demo_turns(shown[::-1] if CONFIG["retrieval_order"] == "similar_last" else shown)
    messages.append({"role": "user", "content": ctx.render(CONFIG["user_template"], task=task)})
    response_format = _schema(neighbours) if CONFIG["schema"] else None

    tools = ctx.tools or None
    if tools:
        content, stopped = tool_loop(messages, ctx, tools)
        if not CONFIG["final_call"] and stopped != "repeat":
            return _finish(content, text)
        messages.append({"role": "user", "content": CONFIG["final_prompt"]})
    answers = []
    for i in range(max(1, int(CONFIG["vote_n"]))):
        temperature = CONFIG["temperature"] if i == 0 else CONFIG["vote_temperature"]
        reply = ctx.llm(messages, **_params(response_format, temperature, i if i else None))
        answers.append(_finish(reply.get("content"), text))
    if len(answers) > 1:
        ctx.log("votes", answers=answers)
    return vote(answers)
