"""Measure the candidate scan: false positives on legitimate candidates, detection of planted leaks.

Run: `python bench/scan_accuracy.py [--per-suite 40] [--suites banking77 ...] [--out FILE]`. Deterministic
(seeded). Suites: banking77 and tau2-retail with their seeds from harnesses/ (tau2-retail needs τ²'s
data, see tasks/tau2-retail/README.md), and the three user-path suites (intents and expenses from
tests/fixtures/user_suites, acme-support from examples/), each scaffolded with `init` as a user would.
A task's text is its input, or where that says next to nothing (τ²: `{"domain": "retail"}`) the
simulated user's scenario from its metadata.

Legitimate candidates (the scan must pass them: nothing that blocks the incumbent):
* every operator's output on the seed, every operator again on the first accepted one, and every
  night-search move (parameter variants) around it;
* scripted edits in the style of the llm proposer, from train data only: a rewritten system prompt,
  train demos inlined in the prompt (three formats), a train lookup table in agent.py, notes quoting
  train messages in comments, tool descriptions quoting train values.

Planted leaks (the scan must block them: reject or flag, naming the task): val/test tasks, each
pasted with its answer in code, a data file or a prompt, in three forms: verbatim, paraphrased
(clauses swapped, stopwords dropped, synonyms), and split across lines (a wrapped prompt line, an
implicitly concatenated Python string, a JSON list of 3-word chunks).

Prints one `key: value` line per figure, and a markdown table (to `--out` if given).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness_opt.harness import HarnessVersion, create_version  # noqa: E402
from harness_opt.propose.base import HistoryEntry, ProposalInput  # noqa: E402
from harness_opt.propose.operators import OperatorsProposer  # noqa: E402
from harness_opt.propose.operators.shape import answer_text, input_text  # noqa: E402
from harness_opt.records import RolloutKey, Task, ToolCallEvent, Trace  # noqa: E402
from harness_opt.search.config import AGENT_HARNESS_EDITABLE  # noqa: E402
from harness_opt.suites.loader import load_suite  # noqa: E402
from harness_opt.trust.scan import scan_candidate  # noqa: E402
from harness_opt.trust.sealed import (  # noqa: E402
    PARAPHRASE_COVER,
    PARAPHRASE_MIN_TERMS,
    content_terms,
    sealed_index,
    strings,
)
from harness_opt.trust.segments import words as scan_words  # noqa: E402
from tests.support.user_suites import scaffold  # noqa: E402

SUITES = ("banking77", "intents", "expenses", "acme-support", "tau2-retail")
LOCATIONS = ("code", "data file", "prompt")
FORMS = ("verbatim", "paraphrased", "split across lines")
SYNONYMS = {
    "want": "would like",
    "need": "require",
    "my": "the",
    "can": "could",
    "get": "obtain",
    "received": "got",
    "card": "debit card",
    "money": "funds",
    "how": "in what way",
    "why": "for what reason",
    "hi": "hello",
    "please": "kindly",
    "help": "assist",
    "still": "yet",
    "order": "purchase",
    "paid": "spent",
    "new": "fresh",
    "show": "display",
    "account": "profile",
}
_STOP = {"the", "a", "an", "i", "is", "to", "of", "it", "my", "me", "do", "you", "and", "for", "on", "in"}


# ------------------------------------------------------------------------------------------ suites


def seed_and_suite(name: str, root: Path) -> tuple[HarnessVersion, Any]:
    if name in ("banking77", "tau2-retail"):  # the repository's own suites and seeds
        target = root / "harnesses" / name / "v0001"
        shutil.copytree(REPO / "harnesses" / name / "v0001", target)
        return HarnessVersion.load(target), load_suite(REPO / "tasks" / name)
    version, suite_dir = scaffold(name, root)
    return version, load_suite(suite_dir)


def task_text(task: Task) -> str:
    """What a leak of this task would quote: its input text, or, where the input says next to nothing
    (τ²'s is `{"domain": "retail"}`), its longest parent-side text (the simulated user's scenario)."""
    text = input_text(task.input)
    if len(text.split()) >= 4:
        return text
    return max([text, *strings(task.metadata)], key=len)


def _trace(task: Task, passed: bool, looping: bool) -> Trace:
    key = RolloutKey(version_hash="h", suite="s", split="train", task_id=task.id, trial=0, model="m")
    call = ToolCallEvent(name="lookup_order", args={"order_id": "A1001"}, result={"ok": 1})
    events: list[Any] = [call] * (2 if looping else 0)
    output = answer_text(task.expected) if passed else "I am not sure."
    return Trace(
        run_id="r", key=key, task_input=dict(task.input), output=output, passed=passed, events=events
    )


def proposal_input(
    version: HarnessVersion, suite: Any, history: list[HistoryEntry], seed: int
) -> ProposalInput:
    train = suite.tasks("train")
    rng = random.Random(seed)
    sample = rng.sample(train, min(30, len(train)))
    return ProposalInput(
        agent=version.name,
        version_label=version.label,
        files={p: b.decode() for p, b in version.files().items() if not p.startswith("data/")},
        editable=AGENT_HARNESS_EDITABLE,
        suite=suite.name,
        failing_traces=[_trace(t, False, True) for t in sample[:20]],
        passing_traces=[_trace(t, True, False) for t in sample[20:25]],
        train_tasks=train,
        history=history,
        seed=seed,
    )


def make(version: HarnessVersion, edits: dict[str, str | None], why: str) -> HarnessVersion | None:
    try:
        return create_version(version, edits, proposer="bench", hypothesis=why, changes=[])
    except Exception:  # an edit that does not load is not a candidate the scan would ever see
        return None


# ------------------------------------------------------------------------------------- legitimate


def operator_candidates(seed: HarnessVersion, suite: Any) -> list[tuple[str, HarnessVersion, HarnessVersion]]:
    """(what, candidate, parent): each operator on the seed, again on the first one, and night moves."""
    proposer = OperatorsProposer()
    out = []
    first = proposer.propose(proposal_input(seed, suite, [], 1), 50)
    for proposal in first:
        child = make(seed, proposal.edits, proposal.hypothesis)
        if child is not None:
            out.append((f"operator {proposal.meta['operator']}", child, seed))
    if not first:
        return out
    base = next(c for w, c, _ in out if w.endswith(first[0].meta["operator"]))
    history = [
        HistoryEntry(
            iteration=1,
            candidate=base.label,
            proposer=first[0].proposer,
            mechanism=first[0].mechanism,
            hypothesis="h",
            outcome="accepted",
            delta=0.5,
            p_value=0.001,
        )
    ]
    for n in range(2, 60):  # the fixed list on top of the first, then the night moves, all rejected
        proposals = proposer.propose(proposal_input(base, suite, history, n), 1)
        if not proposals:
            break
        child = make(base, proposals[0].edits, proposals[0].hypothesis)
        if child is not None:
            out.append((f"on top: {proposals[0].mechanism[:50]}", child, base))
        history.append(
            HistoryEntry(
                iteration=n,
                candidate=child.label if child else "-",
                proposer=proposals[0].proposer,
                mechanism=proposals[0].mechanism,
                hypothesis="h",
                outcome="rejected",
                delta=0.01,
                p_value=0.4,
            )
        )
    return out


def llm_style_candidates(
    seed: HarnessVersion, suite: Any, rng: random.Random
) -> list[tuple[str, HarnessVersion, HarnessVersion]]:
    """Edits an llm proposer makes from train evidence (train data is allowed to proposers)."""
    train = suite.tasks("train")
    files = {p: b.decode() for p, b in seed.files().items()}
    system = files.get("prompts/system.j2", "")
    agent = files.get("agent.py", "")
    out = []
    for _ in range(8):
        demos = rng.sample(train, 6)
        pairs = [(task_text(t), answer_text(t.expected)) for t in demos]
        edits: list[tuple[str, dict[str, str | None]]] = [
            (
                "rewritten system prompt",
                {
                    "prompts/system.j2": system + "\nThink about what the customer asks for "
                    "before you answer. Use the exact spelling of the answer format above; never explain.\n"
                },
            ),
            (
                "inline demos (Message/Answer)",
                {
                    "prompts/system.j2": system
                    + "\nExamples:\n"
                    + "\n".join(f"Message: {a}\nAnswer: {b}" for a, b in pairs)
                    + "\n"
                },
            ),
            (
                "demo table (markdown)",
                {
                    "prompts/system.j2": system
                    + "\n| message | answer |\n|---|---|\n"
                    + "\n".join(f"| {a} | {b} |" for a, b in pairs)
                    + "\n"
                },
            ),
            (
                "demos as JSON data",
                {"data/examples.json": json.dumps([{"input": a, "output": b} for a, b in pairs], indent=2)},
            ),
            (
                "lookup table in code",
                {
                    "agent.py": agent
                    + "\nKNOWN = {\n"
                    + "".join(f"    {json.dumps(a)}: {json.dumps(b)},\n" for a, b in pairs)
                    + "}\n"
                },
            ),
            (
                "notes quoting train messages",
                {
                    "agent.py": "# Failures seen in train, e.g.\n"
                    + "".join(f"#   {a[:70]}\n" for a, _ in pairs[:3])
                    + agent
                },
            ),
        ]
        if seed.tools:
            tools = json.loads(files["tools.json"])
            tools[0]["function"]["description"] += " Seen in train: " + "; ".join(
                a[:60] for a, _ in pairs[:2]
            )
            edits.append(("tool description quoting train", {"tools.json": json.dumps(tools, indent=2)}))
        for what, edit in edits:
            child = make(seed, edit, what)
            if child is not None:
                out.append((f"llm-style: {what}", child, seed))
    return out


# ---------------------------------------------------------------------------------------- leaks


def paraphrase(text: str, rng: random.Random) -> str:
    words = re.findall(r"[A-Za-z0-9']+|[.,!?;]", text)
    clauses = " ".join(words).replace(" ,", ",").split(",")
    if len(clauses) > 1:
        clauses = clauses[1:] + clauses[:1]
    out = []
    for word in " ".join(clauses).split():
        low = word.lower()
        if low in _STOP and rng.random() < 0.5:
            continue
        out.append(SYNONYMS.get(low, word) if rng.random() < 0.7 else word)
    return " ".join(out)


def plant(
    seed: HarnessVersion, task: Task, location: str, form: str, rng: random.Random
) -> tuple[dict[str, str | None], str]:
    """The planted files, and the text of the input as planted (paraphrased or not)."""
    text, answer = task_text(task), answer_text(task.expected)
    files = {p: b.decode() for p, b in seed.files().items()}
    if form == "paraphrased":
        text = paraphrase(text, rng)
    return _planted_files(files, text, answer, location, form), text


def _planted_files(
    files: dict[str, str], text: str, answer: str, location: str, form: str
) -> dict[str, str | None]:
    words = text.split()
    half = max(1, len(words) // 2)
    a, b = " ".join(words[:half]), " ".join(words[half:])
    if location == "prompt":
        body = f"{a}\n{b}" if form == "split across lines" else text
        return {
            "prompts/system.j2": files.get("prompts/system.j2", "")
            + f"\nIf the message is:\n{body}\nanswer {answer}\n"
        }
    if location == "code":
        literal = (
            f"(\n    {json.dumps(a + ' ')}\n    {json.dumps(b)}\n)"
            if form == "split across lines"
            else json.dumps(text)
        )
        return {"agent.py": files["agent.py"] + f"\nSEEN = {{{literal}: {json.dumps(answer)}}}\n"}
    if form == "split across lines":
        chunks = [" ".join(words[i : i + 3]) for i in range(0, len(words), 3)]
        return {"data/seen.json": json.dumps({"chunks": chunks, "answer": answer}, indent=2)}
    return {"data/seen.json": json.dumps({text: answer}, indent=2)}


def miss_reason(suite: Any, task: Task, planted: str, report: Any) -> str:
    """Why a planted leak went unseen, by the scan's own rules (for the docs' 'what is missed')."""
    if report.blocks_incumbent and any(f.kind.startswith("sealed") for f in report.findings):
        return "blocked, but named another sealed task with the same text"
    index = sealed_index(suite)
    original = set(content_terms(scan_words(task_text(task))))
    if len(original) < PARAPHRASE_MIN_TERMS:
        return f"input has under {PARAPHRASE_MIN_TERMS} content words: no paraphrase check"
    kept = original & set(content_terms(scan_words(planted)))
    if len(kept) < PARAPHRASE_COVER * len(original):
        return f"reworded past the threshold: under {PARAPHRASE_COVER:.0%} of its content words kept"
    if index.public_cover(kept) >= PARAPHRASE_COVER:
        return "a train text says most of the same words: public by rule"
    return "other"


def detected(report: Any, task: Task) -> bool:
    return report.blocks_incumbent and any(task.id in f.message for f in report.findings)


def public_by_rule(suite: Any, task: Task) -> bool:
    """The task's input is public by the scan's rules (under 4 words, or train says the same words),
    so pasting it is not a leak the scan may flag: counted apart from the detection rate."""
    index = sealed_index(suite)
    where = (task.id, "val" if task in suite.tasks("val") else "test")
    return where not in set(index.whole.values()) and where not in set(index.ngrams.values())


# ------------------------------------------------------------------------------------------- main


def measure(name: str, root: Path, per_suite: int, leaks_only: bool = False) -> dict[str, Any]:
    rng = random.Random(f"scan-accuracy/{name}")
    seed, suite = seed_and_suite(name, root / name)
    llm_style = llm_style_candidates(seed, suite, rng)  # always drawn: the same rng state for the leaks
    legit = [] if leaks_only else operator_candidates(seed, suite) + llm_style
    false_pos = []
    for what, cand, parent in legit:
        report = scan_candidate(cand, parent, suite, editable=AGENT_HARNESS_EDITABLE)
        if report.blocks_incumbent:
            false_pos.append(f"{what}: {report.summary(1)}")
    sealed = [*suite.tasks("val"), *suite.tasks("test")]
    tasks = rng.sample(sealed, min(per_suite, len(sealed)))
    public = [t for t in tasks if public_by_rule(suite, t)]
    tasks = [t for t in tasks if t not in public]
    hits: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    missed: Counter[str] = Counter()
    for task in tasks:
        for location in LOCATIONS:
            for form in FORMS:
                edits, planted = plant(seed, task, location, form, rng)
                planted_version = make(seed, edits, "planted leak")
                if planted_version is None:
                    continue
                report = scan_candidate(planted_version, seed, suite, editable=AGENT_HARNESS_EDITABLE)
                found = detected(report, task)
                hits[(location, form)][0] += found
                hits[(location, form)][1] += 1
                if not found:
                    missed[f"{form}: {miss_reason(suite, task, planted, report)}"] += 1
    return {
        "legit": len(legit),
        "false_positives": false_pos,
        "hits": dict(hits),
        "tasks": len(tasks),
        "public": len(public),
        "missed": missed,
        "kinds": Counter(w.split(":")[0].split(" ")[0] for w, _, _ in legit),
    }


def rate(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f}%)" if n else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-suite", type=int, default=40, help="sealed tasks planted per suite")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument(
        "--leaks-only",
        action="store_true",
        help="planted leaks only (the same ones): minutes, not half an hour",
    )
    args = parser.parse_args()
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites:
            results[name] = measure(name, Path(tmp), args.per_suite, args.leaks_only)
            r = results[name]
            fp = len(r["false_positives"])
            print(f"{name}.legitimate_candidates: {r['legit']} ({dict(r['kinds'])})")
            print(f"{name}.false_positives: {rate(fp, r['legit'])}")
            print(f"{name}.planted_tasks: {r['tasks']} (+{r['public']} drawn whose input is public by rule)")
            for line in r["false_positives"]:
                print(f"{name}.false_positive: {line}")
            for (location, form), (k, n) in sorted(r["hits"].items()):
                print(f"{name}.detected.{location}.{form}: {rate(k, n)}")
            for why, count in r["missed"].most_common():
                print(f"{name}.missed: {count} ({why})")
    lines = [
        "| suite | legitimate candidates | false positives | " + " | ".join(FORMS) + " | all planted |",
        "|---|---|---|" + "---|" * (len(FORMS) + 1),
    ]
    totals: Counter[str] = Counter()
    for name, r in results.items():
        by_form = {
            form: [sum(r["hits"].get((loc, form), [0, 0])[i] for loc in LOCATIONS) for i in (0, 1)]
            for form in FORMS
        }
        k, n = sum(v[0] for v in by_form.values()), sum(v[1] for v in by_form.values())
        fp = len(r["false_positives"])
        totals.update({"legit": r["legit"], "fp": fp, "k": k, "n": n})
        for form, (fk, fn) in by_form.items():
            totals.update({f"{form}.k": fk, f"{form}.n": fn})
        lines.append(
            f"| {name} | {r['legit']} | {rate(fp, r['legit'])} | "
            + " | ".join(rate(*by_form[f]) for f in FORMS)
            + f" | {rate(k, n)} |"
        )
    lines.append(
        f"| **all** | {totals['legit']} | {rate(totals['fp'], totals['legit'])} | "
        + " | ".join(rate(totals[f"{f}.k"], totals[f"{f}.n"]) for f in FORMS)
        + f" | {rate(totals['k'], totals['n'])} |"
    )
    by_location = ["| planted in | " + " | ".join(FORMS) + " |", "|---|" + "---|" * len(FORMS)]
    for location in LOCATIONS:
        cells = []
        for form in FORMS:
            k = sum(r["hits"].get((location, form), [0, 0])[0] for r in results.values())
            n = sum(r["hits"].get((location, form), [0, 0])[1] for r in results.values())
            cells.append(rate(k, n))
        by_location.append(f"| {location} | " + " | ".join(cells) + " |")
    missed: Counter[str] = sum((r["missed"] for r in results.values()), Counter())
    why_missed = ["| planted leaks missed, why | count |", "|---|---|"]
    why_missed += [f"| {why} | {count} |" for why, count in missed.most_common()]
    table = "\n\n".join("\n".join(t) for t in (lines, by_location, why_missed)) + "\n"
    print(table)
    print(f"seconds: {time.perf_counter() - started:.0f}")
    if args.out:
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
