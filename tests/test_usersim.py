"""The user simulator: τ²'s prompt and scenario text, flipped roles, stop tokens, turn limit, figures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness_opt.llm.client import LLMClient, LLMConfig
from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.suites.usersim import (
    OUT_OF_SCOPE,
    STOP,
    TRANSFER,
    UserSimulator,
    format_scenario,
    load_guidelines,
    stop_reason_of,
    system_prompt,
)
from harness_opt.testing import scripted_model

TAU2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "tau2"
SCENARIO = {
    "persona": None,
    "instructions": {
        "task_instructions": "You are detail-oriented.",
        "domain": "retail",
        "reason_for_call": "You want to exchange a keyboard.\nAnd a thermostat.",
        "known_info": "You are Yusuf Rossi in zip code 19122.",
        "unknown_info": None,
    },
}


def test_scenario_text_matches_tau2_layout() -> None:
    assert format_scenario(SCENARIO) == (
        "Instructions:\n"
        "\tDomain: retail\n"
        "\tReason for call:\n"
        "\t\tYou want to exchange a keyboard.\n"
        "\t\tAnd a thermostat.\n"
        "\tKnown info:\n"
        "\t\tYou are Yusuf Rossi in zip code 19122.\n"
        "\tTask instructions:\n"
        "\t\tYou are detail-oriented."
    )
    with_persona = format_scenario({"persona": "Grumpy.", "instructions": "Just text."})
    assert with_persona == "Persona:\n\tGrumpy.\nInstructions:\n\tJust text."


def test_system_prompt_is_guidelines_then_scenario() -> None:
    prompt = system_prompt(SCENARIO, "# Guidelines\nBe a customer.\n")
    assert prompt.startswith("# Guidelines\nBe a customer.\n\n\n<scenario>\nInstructions:\n")
    assert prompt.endswith("You are detail-oriented.\n</scenario>")


def test_real_guidelines_name_the_stop_tokens() -> None:
    if not (TAU2 / "user_simulator").is_dir():
        pytest.fail(f"τ² data not found at {TAU2} (../shared/data/tau2): this test never skips")
    text = load_guidelines(TAU2 / "user_simulator")
    assert STOP in text and TRANSFER in text and OUT_OF_SCOPE in text


def test_stop_reason_of_each_token() -> None:
    assert stop_reason_of("Thanks! ###STOP###") == "stop"
    assert stop_reason_of("###TRANSFER###") == "transfer"
    assert stop_reason_of("I don't know. ###OUT-OF-SCOPE###") == "out_of_scope"
    assert stop_reason_of("STOP") is None and stop_reason_of(None) is None


def fake_llm(replies: list[str], seen: list[LLMRequest]):
    async def complete(req: LLMRequest) -> LLMResult:
        seen.append(req)
        return LLMResult(
            message={"role": "assistant", "content": replies[len(seen) - 1]},
            tokens_in=10,
            tokens_out=2,
            cost_usd=0.01,
            latency_s=0.5,
            model="fake/u",
        )

    return complete


def test_roles_are_flipped_and_the_stop_token_ends_the_talk() -> None:
    seen: list[LLMRequest] = []
    sim = UserSimulator(SCENARIO, "G", "fake/u", fake_llm(["I need help.", "Bye ###STOP###"], seen))

    async def talk() -> list[Any]:
        return [
            await sim.reply("Hi! How can I help you today?"),
            await sim.reply("Done, anything else?"),
            await sim.reply("Hello?"),
        ]

    first, second, third = asyncio.run(talk())
    assert (first.content, first.done, first.stop_reason) == ("I need help.", False, None)
    assert (first.tokens_in, first.tokens_out, first.cost_usd, first.latency_s, first.model) == (
        10,
        2,
        0.01,
        0.5,
        "fake/u",
    )
    assert second.done and second.stop_reason == "stop" and second.content == "Bye ###STOP###"
    assert third.done and third.content is None and third.tokens_in == 0  # no model call after the end
    assert len(seen) == 2
    last = seen[1].messages
    assert last[0]["role"] == "system" and "<scenario>" in last[0]["content"]
    assert [(m["role"], m["content"]) for m in last[1:]] == [
        ("user", "Hi! How can I help you today?"),
        ("assistant", "I need help."),
        ("user", "Done, anything else?"),
    ]
    assert seen[0].params == {"temperature": 0}


def test_max_turns_delivers_the_last_reply_then_ends() -> None:
    seen: list[LLMRequest] = []
    sim = UserSimulator(SCENARIO, "G", "fake/u", fake_llm(["a", "b", "c"], seen), max_turns=2)

    async def talk() -> list[Any]:
        return [await sim.reply(str(i)) for i in range(4)]

    turns = asyncio.run(talk())
    assert [(t.content, t.done, t.stop_reason) for t in turns] == [
        ("a", False, None),
        ("b", False, None),
        (None, True, "max_turns"),
        (None, True, "max_turns"),
    ]
    assert len(seen) == 2
    with pytest.raises(ValueError):
        UserSimulator(SCENARIO, "G", "fake/u", fake_llm([], []), max_turns=0)


def test_through_an_llm_client_with_a_scripted_model() -> None:
    with scripted_model("sim-user", ["Where is my order? ###OUT-OF-SCOPE###"], cost_per_token=1e-4) as model:
        sim = UserSimulator(
            SCENARIO, "G", model.model, LLMClient(LLMConfig(cache=False)), params={"max_tokens": 64}
        )
        turn = asyncio.run(sim.reply("Hi!"))
        assert model.calls[0].params.get("max_tokens") == 64
    assert turn.done and turn.stop_reason == "out_of_scope"
    assert turn.tokens_in > 0 and turn.tokens_out > 0 and turn.cost_usd > 0
