"""Measure the embedded local models on this machine: speed, constrained tool calls, prefix reuse, accuracy.

Run:  python bench/local_model.py [--models smollm2 gemma3-270m] [--queries 20] [--out bench/local_model.json]
Figures go to stdout (markdown) and to --out (JSON); docs/local-model.md records them and the choice.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema

from harness_opt.llm.litellm_setup import import_litellm
from harness_opt.llm.local import LocalEngine
from harness_opt.llm.local_models import resolve_local_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
LONG_TEXT = (
    "The history of banking begins with the first prototype banks, which were the merchants of the world, "
    "who made grain loans to farmers and traders who carried goods between cities. "
) * 12
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in an IANA timezone",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "Send an email",
            "parameters": {
                "type": "object",
                "properties": {
                    "to": {"type": "string"},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                },
                "required": ["to", "subject", "body"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "refund_order",
            "description": "Refund an order by id",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "integer"}, "reason": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
]
TOOL_PROMPTS = [
    ("What's the weather in Paris, in celsius?", "get_weather"),
    ("What time is it in Tokyo right now?", "get_time"),
    ("Email bob@example.com that the meeting moved to 3pm.", "send_email"),
    ("Please refund order 1234, it arrived broken.", "refund_order"),
    ("Is it raining in London? Use fahrenheit.", "get_weather"),
    ("Tell me the current time in America/New_York.", "get_time"),
    ("Send alice@corp.com a note saying thanks for lunch.", "send_email"),
    ("I want my money back for order 98.", "refund_order"),
    ("How hot is it in Cairo today?", "get_weather"),
    ("What's the time in Europe/Berlin?", "get_time"),
]


def engine_for(name: str, threads: int, slots: int = 1) -> LocalEngine:
    resolved = resolve_local_model(name)
    return LocalEngine(
        path=str(resolved.path), fold_system=resolved.fold_system, n_threads=threads, n_slots=slots
    )


def raw_speed(engine: LocalEngine) -> dict[str, float]:
    """Prompt tok/s (a ~500-token prompt from empty KV) and generation tok/s (64 tokens, greedy)."""
    engine.complete([{"role": "user", "content": "hi"}], {"max_tokens": 1, "temperature": 0})  # load
    llm = engine._slots[0].llm
    tokens = llm.tokenize(LONG_TEXT.encode(), add_bos=True, special=True)
    llm.reset()
    start = time.perf_counter()
    llm.create_completion(prompt=tokens, max_tokens=1, temperature=0)
    prompt_s = time.perf_counter() - start
    start = time.perf_counter()  # prompt now cached: this is (almost) pure generation
    out = llm.create_completion(prompt=tokens, max_tokens=64, temperature=0)
    gen_s = time.perf_counter() - start
    return {
        "prompt_tokens": len(tokens),
        "prompt_tok_s": len(tokens) / prompt_s,
        "gen_tokens": out["usage"]["completion_tokens"],
        "gen_tok_s": out["usage"]["completion_tokens"] / gen_s,
    }


def tool_calls(engine: LocalEngine) -> dict[str, Any]:
    """Constrained tool calls: how many parse, validate against their schema, and pick the right tool."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    valid = right = calls = 0
    gen_tokens, gen_s = 0, 0.0
    for choice in ("required", "auto"):
        for prompt, expected in TOOL_PROMPTS:
            start = time.perf_counter()
            out = engine.complete(
                [{"role": "user", "content": prompt}],
                {"tools": TOOLS, "tool_choice": choice, "temperature": 0, "max_tokens": 96},
            )
            gen_s += time.perf_counter() - start
            gen_tokens += out["completion_tokens"]
            for call in out["message"]["tool_calls"] or []:
                calls += 1
                name = call["function"]["name"]
                try:
                    jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[name])
                    valid += 1
                except (jsonschema.ValidationError, KeyError, json.JSONDecodeError):
                    pass
                right += name == expected
    n = 2 * len(TOOL_PROMPTS)
    return {
        "requests": n,
        "tool_calls": calls,
        "valid_calls": valid,
        "right_tool": right,
        "constrained_tok_s": gen_tokens / gen_s,
    }


def banking_messages(labels: list[str], text: str) -> list[dict[str, str]]:
    system = (
        "Classify the customer's banking query into exactly one of these intent labels:\n"
        + "\n".join(labels)
        + "\nAnswer with the label only."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def label_format(labels: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"label": {"enum": labels}}, "required": ["label"]}
    return {"type": "json_schema", "json_schema": {"name": "intent", "schema": schema}}


def prefix_reuse(engine: LocalEngine, labels: list[str], queries: list[dict[str, str]]) -> dict[str, float]:
    """Calls/s on the banking77 shape with the shared-prefix KV reused vs re-evaluated every call."""
    params = {"temperature": 0, "max_tokens": 10}
    engine.complete(banking_messages(labels, queries[0]["text"]), params)  # warm: prefix in KV
    figures: dict[str, float] = {}
    for mode in ("reuse", "no_reuse"):
        start = time.perf_counter()
        prompt_tokens = cached = 0
        batch = queries[1:11]
        for q in batch:
            if mode == "no_reuse":
                for slot in engine._slots:
                    slot.llm.reset()
            out = engine.complete(banking_messages(labels, q["text"]), params)
            prompt_tokens, cached = prompt_tokens + out["prompt_tokens"], cached + out["cached_tokens"]
        elapsed = time.perf_counter() - start
        figures[f"{mode}_calls_s"] = len(batch) / elapsed
        figures[f"{mode}_mean_prompt_tokens"] = prompt_tokens / len(batch)
        figures[f"{mode}_mean_cached_tokens"] = cached / len(batch)
    figures["speedup"] = figures["reuse_calls_s"] / figures["no_reuse_calls_s"]
    return figures


def accuracy(engine: LocalEngine, labels: list[str], queries: list[dict[str, str]]) -> dict[str, float]:
    """Zero-shot banking77: free text (exact label match) and label-enum constrained (json_schema)."""
    free = constrained = 0
    start = time.perf_counter()
    for q in queries:
        out = engine.complete(banking_messages(labels, q["text"]), {"temperature": 0, "max_tokens": 16})
        free += out["message"]["content"].strip().strip(".").lower() == q["category"]
        out = engine.complete(
            banking_messages(labels, q["text"]),
            {"temperature": 0, "max_tokens": 24, "response_format": label_format(labels)},
        )
        constrained += json.loads(out["message"]["content"])["label"] == q["category"]
    return {
        "n": len(queries),
        "free_text_acc": free / len(queries),
        "constrained_acc": constrained / len(queries),
        "seconds_per_query_pair": (time.perf_counter() - start) / len(queries),
    }


async def concurrent_calls_s(
    model: str, labels: list[str], queries: list[dict[str, str]], threads: int, slots: int
) -> float:
    """Through litellm, 2 concurrent streams of banking calls, with `threads` per slot and `slots` slots."""
    import os

    from harness_opt.llm import local

    os.environ["HARNESS_OPT_LOCAL_THREADS"], os.environ["HARNESS_OPT_LOCAL_SLOTS"] = str(threads), str(slots)
    local._ENGINES.clear()
    litellm = import_litellm()

    async def one(q: dict[str, str]) -> None:
        await litellm.acompletion(
            model=f"local/{model}", messages=banking_messages(labels, q["text"]), temperature=0, max_tokens=10
        )

    await asyncio.gather(*(one(q) for q in queries[:2]))  # warm both slots
    start = time.perf_counter()
    await asyncio.gather(*(one(q) for q in queries[2:12]))
    return 10 / (time.perf_counter() - start)


def head_to_head(models: list[str], labels: list[str], queries: list[dict[str, str]], rounds: int) -> dict:
    """Speed figures of the models measured alternately, round by round, so that a busy shared
    machine slows them alike; medians over rounds."""
    engines = {m: engine_for(m, 1) for m in models}
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    for _ in range(rounds):
        for model, engine in engines.items():
            figures = raw_speed(engine)
            figures.update(prefix_reuse(engine, labels, queries[:6]))
            runs[model].append(figures)
            print(model, figures, flush=True)
    return {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3-270m"])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/local_model.json"))
    parser.add_argument(
        "--head-to-head",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only compare speeds, models alternating, ROUNDS times (1 thread)",
    )
    args = parser.parse_args()
    labels = json.loads((DATA / "categories.json").read_text())
    with (DATA / "test.csv").open() as f:
        rows = list(csv.DictReader(f))
    queries = random.Random(0).sample(rows, args.queries)
    results: dict[str, Any] = {}
    if args.head_to_head:
        results = head_to_head(args.models, labels, queries, args.head_to_head)
        args.out.write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        return
    for model in args.models:
        r: dict[str, Any] = {"speed": {}}
        for threads in args.threads:
            r["speed"][threads] = raw_speed(engine_for(model, threads))
            print(model, threads, "threads", r["speed"][threads], flush=True)
        best = max(args.threads, key=lambda t: r["speed"][t]["prompt_tok_s"])
        engine = engine_for(model, best)
        r["threads_used"] = best
        r["tools"] = tool_calls(engine)
        print(model, "tools", r["tools"], flush=True)
        r["prefix"] = prefix_reuse(engine, labels, queries)
        print(model, "prefix", r["prefix"], flush=True)
        r["accuracy"] = accuracy(engine, labels, queries)
        print(model, "accuracy", r["accuracy"], flush=True)
        r["concurrent_calls_s"] = {
            f"{t}t_x_{s}slots": asyncio.run(concurrent_calls_s(model, labels, queries, t, s))
            for t, s in ((1, 2), (2, 1), (1, 1))
        }
        print(model, "concurrent", r["concurrent_calls_s"], flush=True)
        results[model] = r
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
