"""The τ² retail environment: splits, data path, tool behaviour (errors, rounding, quirks), reward parts.

The data (MIT, Sierra Research) is read from HARNESS_OPT_TAU2_DATA or ../shared/data/tau2; it is not in
the repository, and without it these tests fail saying where to put it (they never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from harness_opt.errors import SuiteError
from harness_opt.suites import tau2_reward
from harness_opt.suites.base import ToolError
from harness_opt.suites.loader import load_suite
from harness_opt.suites.tau2_models import AssistantMessage, RewardInfo
from harness_opt.suites.usersim import UserSimulator, UserTurn

SUITE_DIR = Path(__file__).resolve().parents[1] / "tasks" / "tau2-retail"


def _data_dir() -> Path:
    given = os.environ.get("HARNESS_OPT_TAU2_DATA")
    path = Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "data" / "tau2"
    if not (path / "retail" / "db.json").is_file():
        pytest.fail(f"τ² retail data not found at {path} (set HARNESS_OPT_TAU2_DATA)")
    return path


@pytest.fixture(scope="module")
def data() -> Path:
    return _data_dir()


@pytest.fixture(scope="module")
def suite(data: Path) -> Any:
    return load_suite(SUITE_DIR, data=str(data))


@pytest.fixture(scope="module")
def raw_db(data: Path) -> dict[str, Any]:
    return json.loads((data / "retail" / "db.json").read_text())


def call(env: Any, name: str, **args: Any) -> Any:
    return env.call_tool(name, args)


def error_of(env: Any, name: str, **args: Any) -> str:
    with pytest.raises(ToolError) as info:
        env.call_tool(name, args)
    return str(info.value)


def find_order(raw_db: dict[str, Any], status: str, *, min_items: int = 1, source: str | None = None) -> str:
    """First order with this status, enough items of distinct products, and (optionally) paid by `source`."""
    for oid, order in raw_db["orders"].items():
        if order["status"] != status or len({i["product_id"] for i in order["items"]}) < min_items:
            continue
        history = order["payment_history"]
        if len(history) != 1:
            continue
        methods = raw_db["users"][order["user_id"]]["payment_methods"]
        if source is None or methods[history[0]["payment_method_id"]]["source"] == source:
            return oid
    raise AssertionError("no such order in the data")


def other_variant(raw_db: dict[str, Any], product_id: str, not_id: str) -> dict[str, Any]:
    variants = raw_db["products"][product_id]["variants"].values()
    return next(v for v in variants if v["available"] and v["item_id"] != not_id)


# ---- splits, tasks, data path ------------------------------------------------------------------


def test_splits_are_the_official_ones_with_val_carved_from_train(suite: Any, data: Path) -> None:
    official = json.loads((data / "retail" / "split_tasks.json").read_text())
    train, val, test = ({t.id for t in suite.tasks(s)} for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (54, 20, 40)
    assert train | val == set(official["train"]) and not train & val
    assert test == set(official["test"])
    again = load_suite(SUITE_DIR, data=str(data))
    assert [t.id for t in again.tasks("val")] == [t.id for t in suite.tasks("val")]
    with pytest.raises(SuiteError, match="unknown split"):
        suite.tasks("dev")


def test_task_input_reveals_nothing_of_the_user_scenario(suite: Any) -> None:
    task = suite.tasks("train")[0]
    assert task.input == {"domain": "retail"}
    assert task.metadata["user_scenario"]["instructions"]["reason_for_call"]
    assert task.expected["actions"] and task.metadata["reward_basis"]


def test_missing_data_is_one_clear_line_saying_where_to_get_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("HARNESS_OPT_TAU2_DATA", raising=False)
    with pytest.raises(SuiteError) as info:
        load_suite(SUITE_DIR, data=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "\n" not in message and "nowhere" in message
    assert "sierra-research/tau2-bench" in message and "HARNESS_OPT_TAU2_DATA" in message


def test_data_path_from_the_environment_variable(data: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HARNESS_OPT_TAU2_DATA", str(data))
    assert len(load_suite(SUITE_DIR).tasks("test")) == 40
    monkeypatch.setenv("HARNESS_OPT_TAU2_DATA", str(data / "retail"))  # the retail folder itself works too
    assert len(load_suite(SUITE_DIR).tasks("test")) == 40


# ---- tools: results and errors as τ² gives them -------------------------------------------------


def test_errors_come_back_as_tau2_formats_them(suite: Any) -> None:
    env = suite.fresh_environment()
    assert error_of(env, "get_order_details", order_id="W0000000") == "Error: Order not found"
    assert error_of(env, "get_user_details", user_id="nobody_1") == "Error: User not found"
    assert error_of(env, "no_such_tool") == "Error: Tool 'no_such_tool' not found."
    assert error_of(env, "cancel_pending_order", order_id="#W0000000") == (
        "Error: RetailTools.cancel_pending_order() missing 1 required positional argument: 'reason'"
    )
    assert "unexpected keyword argument 'oops'" in error_of(env, "get_user_details", user_id="x", oops=1)
    assert error_of(env, "get_order_details", order_id=["#W1"]) == "Error: unhashable type: 'list'"


def test_calculate_rounds_like_tau2_and_refuses_a_runaway_power(suite: Any) -> None:
    env = suite.fresh_environment()
    assert call(env, "calculate", expression="2 + 2") == "4.0"
    assert call(env, "calculate", expression=" (10 - 1) / 3.5") == "2.57"
    assert call(env, "calculate", expression="2 ** 3 // 3") == "2.0"
    assert error_of(env, "calculate", expression="2 + x") == "Error: Invalid characters in expression"
    assert error_of(env, "calculate", expression="1 / 0") == "Error: division by zero"
    assert error_of(env, "calculate", expression="1 +").startswith("Error: ")
    started = time.perf_counter()
    assert error_of(env, "calculate", expression="9 ** 9 ** 9 ** 9").startswith("Error: ")
    assert time.perf_counter() - started < 1.0


def test_reads_have_tau2s_shape_and_are_detached_from_later_writes(
    suite: Any, raw_db: dict[str, Any]
) -> None:
    env = suite.fresh_environment()
    oid = find_order(raw_db, "pending")
    before = call(env, "get_order_details", order_id=oid)
    assert list(before) == [
        "order_id",
        "user_id",
        "address",
        "items",
        "status",
        "fulfillments",
        "payment_history",
        "cancel_reason",
        "exchange_items",
        "exchange_new_items",
        "exchange_payment_method_id",
        "exchange_price_difference",
        "return_items",
        "return_payment_method_id",
    ]
    call(env, "cancel_pending_order", order_id=oid, reason="no longer needed")
    assert before["status"] == "pending" and before["cancel_reason"] is None
    assert call(env, "get_order_details", order_id=oid)["status"] == "cancelled"
    products = json.loads(call(env, "list_all_product_types"))
    assert len(products) == 50 and list(products) == sorted(products)
    user = raw_db["orders"][oid]["user_id"]
    email = raw_db["users"][user]["email"]
    assert call(env, "find_user_id_by_email", email=f"  {email.upper()} ") == user
    name = raw_db["users"][user]["name"]
    zip_code = raw_db["users"][user]["address"]["zip"]
    found = call(
        env,
        "find_user_id_by_name_zip",
        first_name=name["first_name"].lower(),
        last_name=name["last_name"],
        zip=zip_code,
    )
    assert found == user
    item = raw_db["orders"][oid]["items"][0]
    assert call(env, "get_item_details", item_id=item["item_id"])["item_id"] == item["item_id"]


# ---- writes: state changes, rounding, quirks, failures ------------------------------------------


def test_cancel_refunds_a_gift_card_at_once_and_rounds(suite: Any, raw_db: dict[str, Any]) -> None:
    env = suite.fresh_environment()
    oid = find_order(raw_db, "pending", source="gift_card")
    order = raw_db["orders"][oid]
    payment = order["payment_history"][0]
    card = raw_db["users"][order["user_id"]]["payment_methods"][payment["payment_method_id"]]
    after = call(env, "cancel_pending_order", order_id=oid, reason="ordered by mistake")
    assert after["status"] == "cancelled" and after["cancel_reason"] == "ordered by mistake"
    assert after["payment_history"][-1] == {**payment, "transaction_type": "refund"}
    user = call(env, "get_user_details", user_id=order["user_id"])
    assert user["payment_methods"][card["id"]]["balance"] == round(card["balance"] + payment["amount"], 2)
    state = env.db.state_hash()
    assert error_of(env, "cancel_pending_order", order_id=oid, reason="no longer needed") == (
        "Error: Non-pending order cannot be cancelled"
    )
    assert env.db.state_hash() == state


def test_modify_items_gives_every_item_the_last_variants_price_as_tau2_does(
    suite: Any, raw_db: dict[str, Any]
) -> None:
    """τ²'s quirk (tau2-bench issue #318): the variable of the last loop pass prices every item."""
    env = suite.fresh_environment()
    oid = find_order(raw_db, "pending", min_items=2, source="credit_card")
    order = raw_db["orders"][oid]
    first, second = (
        order["items"][0],
        next(i for i in order["items"] if i["product_id"] != order["items"][0]["product_id"]),
    )
    new1 = other_variant(raw_db, first["product_id"], first["item_id"])
    new2 = other_variant(raw_db, second["product_id"], second["item_id"])
    pm = order["payment_history"][0]["payment_method_id"]
    after = call(
        env,
        "modify_pending_order_items",
        order_id=oid,
        item_ids=[first["item_id"], second["item_id"]],
        new_item_ids=[new1["item_id"], new2["item_id"]],
        payment_method_id=pm,
    )
    by_id = {i["item_id"]: i for i in after["items"]}
    assert by_id[new1["item_id"]]["price"] == new2["price"]  # not new1's own price
    assert by_id[new1["item_id"]]["options"] == new2["options"]
    assert after["status"] == "pending (item modified)"
    diff = (new1["price"] - first["price"]) + (new2["price"] - second["price"])
    assert after["payment_history"][-1]["amount"] == abs(0 + diff)  # unrounded, as τ² stores it
    assert after["payment_history"][-1]["transaction_type"] == ("payment" if diff > 0 else "refund")


def _switchable(raw_db: dict[str, Any], from_source: str, to_source: str) -> tuple[str, dict[str, Any]]:
    """A pending order paid once with `from_source` whose user also has a `to_source` able to pay it."""
    for oid, order in raw_db["orders"].items():
        if order["status"] != "pending" or len(order["payment_history"]) != 1:
            continue
        methods = raw_db["users"][order["user_id"]]["payment_methods"]
        paid = order["payment_history"][0]
        if methods[paid["payment_method_id"]]["source"] != from_source:
            continue
        for m in methods.values():
            if m["source"] == to_source and (to_source != "gift_card" or m["balance"] >= paid["amount"]):
                return oid, m
    raise AssertionError("no such order in the data")


def test_modify_payment_moves_the_amount_to_and_from_gift_cards(suite: Any, raw_db: dict[str, Any]) -> None:
    env = suite.fresh_environment()
    oid, card = _switchable(raw_db, "credit_card", "gift_card")
    amount = raw_db["orders"][oid]["payment_history"][0]["amount"]
    user = raw_db["orders"][oid]["user_id"]
    after = call(env, "modify_pending_order_payment", order_id=oid, payment_method_id=card["id"])
    assert [p["transaction_type"] for p in after["payment_history"]] == ["payment", "payment", "refund"]
    assert after["payment_history"][1] == {
        "transaction_type": "payment",
        "amount": amount,
        "payment_method_id": card["id"],
    }
    methods = call(env, "get_user_details", user_id=user)["payment_methods"]
    assert methods[card["id"]]["balance"] == round(card["balance"] - amount, 2)
    assert error_of(env, "modify_pending_order_payment", order_id=oid, payment_method_id=card["id"]) == (
        "Error: There should be exactly one payment for a pending order"
    )
    oid, other = _switchable(raw_db, "gift_card", "credit_card")
    paid = raw_db["orders"][oid]["payment_history"][0]
    old_card = raw_db["users"][raw_db["orders"][oid]["user_id"]]["payment_methods"][paid["payment_method_id"]]
    call(env, "modify_pending_order_payment", order_id=oid, payment_method_id=other["id"])
    methods = call(env, "get_user_details", user_id=raw_db["orders"][oid]["user_id"])["payment_methods"]
    assert methods[old_card["id"]]["balance"] == round(old_card["balance"] + paid["amount"], 2)


def test_failing_writes_leave_the_state_untouched(suite: Any, raw_db: dict[str, Any]) -> None:
    env, fresh = suite.fresh_environment(), suite.fresh_environment()
    delivered = find_order(raw_db, "delivered")
    pending = find_order(raw_db, "pending")
    item = raw_db["orders"][delivered]["items"][0]["item_id"]
    user = raw_db["orders"][pending]["user_id"]
    assert (
        error_of(
            env,
            "exchange_delivered_order_items",
            order_id=pending,
            item_ids=[item],
            new_item_ids=[item],
            payment_method_id="x",
        )
        == "Error: Non-delivered order cannot be exchanged"
    )
    assert error_of(
        env,
        "return_delivered_order_items",
        order_id=delivered,
        item_ids=[item, item, item],
        payment_method_id=raw_db["orders"][delivered]["payment_history"][0]["payment_method_id"],
    ) == ("Error: Some item not found")
    assert (
        error_of(
            env,
            "modify_pending_order_address",
            order_id=delivered,
            address1="a",
            address2="",
            city="c",
            state="s",
            country="USA",
            zip="1",
        )
        == "Error: Non-pending order cannot be modified"
    )
    bad_zip = error_of(
        env,
        "modify_user_address",
        user_id=user,
        address1="a",
        address2="",
        city="c",
        state="s",
        country="USA",
        zip=12345,
    )
    assert "validation error for UserAddress" in bad_zip and "zip" in bad_zip
    assert env.db.same_state(fresh.db) and env.db.state_hash() == fresh.db.state_hash()


def test_return_and_exchange_record_sorted_item_ids(suite: Any, raw_db: dict[str, Any]) -> None:
    env = suite.fresh_environment()
    oid = find_order(raw_db, "delivered", min_items=2)
    order = raw_db["orders"][oid]
    ids = [i["item_id"] for i in order["items"]][:2][::-1]
    pm = order["payment_history"][0]["payment_method_id"]
    after = call(env, "return_delivered_order_items", order_id=oid, item_ids=ids, payment_method_id=pm)
    assert after["status"] == "return requested" and after["return_items"] == sorted(ids)
    assert after["return_payment_method_id"] == pm and after["payment_history"] == order["payment_history"]


def test_the_state_comparison_agrees_with_tau2s_db_hash(suite: Any, raw_db: dict[str, Any]) -> None:
    """τ² hashes sha256(json.dumps(db.model_dump(), sort_keys=True)); equal hashes iff same_state."""
    fresh = suite.fresh_environment()
    for order in raw_db["orders"].values():
        for name in (
            "cancel_reason",
            "exchange_items",
            "exchange_new_items",
            "exchange_payment_method_id",
            "exchange_price_difference",
            "return_items",
            "return_payment_method_id",
        ):
            order.setdefault(name, None)
    expected = hashlib.sha256(json.dumps(raw_db, sort_keys=True, default=str).encode()).hexdigest()
    assert fresh.db.state_hash() == expected
    a, b = suite.fresh_environment(), suite.fresh_environment()
    oid = find_order(raw_db, "pending")
    call(a, "cancel_pending_order", order_id=oid, reason="no longer needed")
    assert not a.db.same_state(b.db) and a.db.state_hash() != b.db.state_hash()
    call(b, "get_order_details", order_id=oid)
    call(b, "cancel_pending_order", order_id=oid, reason="no longer needed")
    assert a.db.same_state(b.db) and a.db.state_hash() == b.db.state_hash()


# ---- conversation and reward --------------------------------------------------------------------


class FakeUser:
    def __init__(self, replies: list[UserTurn]) -> None:
        self.replies = replies
        self.heard: list[str] = []

    async def reply(self, message: str) -> UserTurn:
        self.heard.append(message)
        return self.replies.pop(0)


def gold_run(suite: Any, task: Any, env: Any) -> None:
    for action in task.expected["actions"]:
        with contextlib.suppress(ToolError):
            env.call_tool(action["name"], dict(action["arguments"]))


def test_user_turns_are_recorded_for_the_communicate_check(suite: Any) -> None:
    task = next(t for s in ("train", "val", "test") for t in suite.tasks(s) if t.expected["communicate_info"])
    info = task.expected["communicate_info"][0]
    env = suite.environment(task)
    user = FakeUser(
        [UserTurn(content="hello"), UserTurn(content="thanks ###STOP###", done=True, stop_reason="stop")]
    )
    env._user_factory = lambda: user
    gold_run(suite, task, env)
    assert asyncio.run(env.user_turn("Hi! How can I help?")).content == "hello"
    said = f"Sure: {info.upper()}, as you asked."
    asyncio.run(env.user_turn(said))
    assert user.heard == ["Hi! How can I help?", said] and env.stop_reason == "stop"
    score = suite.score(task, None, env)
    check = env.reward_info.communicate_checks[0]
    assert (check.info, check.met) == (info, True) and said in check.justification
    assert score.score == 1.0 and score.passed
    assert RewardInfo.model_validate_json(score.feedback.splitlines()[0]) == env.reward_info
    assert env.reward_info.info["harness_opt"]["termination_reason"] == "user_stop"
    silent = suite.environment(task)
    gold_run(suite, task, silent)
    silent_score = suite.score(task, None, silent)
    assert silent_score.score == 1.0  # COMMUNICATE is in no retail task's reward basis: reported only
    assert not silent.reward_info.communicate_checks[0].met and "never said" in silent_score.feedback
    assert "COMMUNICATE" not in silent.reward_info.reward_breakdown


def test_the_environment_records_the_conversation_as_tau2_messages(suite: Any) -> None:
    env = suite.environment(suite.tasks("val")[0])
    env._user_factory = lambda: FakeUser([UserTurn(content="I want a refund", tokens_in=3, tokens_out=4)])
    asyncio.run(env.user_turn("Hi! How can I help you today?"))
    products = call(env, "list_all_product_types")
    error_of(env, "get_order_details", order_id="#nope")
    roles = [(m.role, m.content is None) for m in env.messages]
    assert roles == [
        ("assistant", False),
        ("user", False),
        ("assistant", True),
        ("tool", False),
        ("assistant", True),
        ("tool", False),
    ]
    call_message, result = env.messages[4], env.messages[5]
    assert call_message.tool_calls[0].name == "get_order_details"
    assert result.id == call_message.tool_calls[0].id
    assert result.error and result.content == "Error: Order not found"
    shown = products if isinstance(products, str) else json.dumps(products)
    assert env.messages[3].content == shown and not env.messages[3].error
    assert env.messages[1].usage == {"prompt_tokens": 3, "completion_tokens": 4}


def test_communicate_matches_lower_cased_with_the_messages_commas_removed() -> None:
    said = [
        AssistantMessage(role="assistant", content=t)
        for t in ("Your refund is $1,234.50 in total.", "Order #W123 is DELIVERED")
    ]
    checks = tau2_reward.communicate_checks(["1234.50", "delivered", "#w123", "1,234.50"], said)
    assert [(c.info, c.met) for c in checks] == [
        ("1234.50", True),
        ("delivered", True),
        ("#w123", True),
        ("1,234.50", False),  # τ² strips commas from the message only
    ]
    assert checks[3].justification == "Information '1,234.50' not communicated."


def test_a_conversation_cut_off_by_the_turn_limit_scores_zero(suite: Any) -> None:
    task = suite.tasks("val")[0]
    env = suite.environment(task)
    env._user_factory = lambda: FakeUser([UserTurn(done=True, stop_reason="max_turns")])
    gold_run(suite, task, env)
    asyncio.run(env.user_turn("anything else?"))
    score = suite.score(task, None, env)
    assert score.score == 0.0 and env.reward_info.reward_basis is None
    assert env.reward_info.info["note"] == "Simulation terminated prematurely. Termination reason: max_steps"
    assert "DB: the final database equals" in score.feedback  # proposers still learn the state was right


def test_too_many_tool_errors_end_the_conversation_as_tau2_does(data: Path) -> None:
    strict = load_suite(SUITE_DIR, data=str(data), max_errors=3)
    task = strict.tasks("val")[0]
    env = strict.environment(task)
    for _ in range(3):
        error_of(env, "get_order_details", order_id="#nope")
    assert env.stop_reason == "too_many_errors"
    ended = "Error: the conversation has ended (too many tool errors)"
    assert error_of(env, "get_user_details", user_id="x") == ended
    turn = asyncio.run(env.user_turn("still there?"))
    assert turn.done and turn.stop_reason == "too_many_errors" and len(env.messages) == 6
    score = strict.score(task, None, env)
    assert score.score == 0.0 and "too_many_errors" in env.reward_info.info["note"]


def test_nl_assertions_without_a_judge_are_left_out_and_marked_unofficial(suite: Any) -> None:
    task = next(t for t in suite.tasks("train") if t.expected.get("nl_assertions"))
    env = suite.fresh_environment()  # scored outside any rollout: there is no agent model to judge with
    score = suite.score(task, None, env)
    info = env.reward_info
    assert info.nl_assertions is None and set(info.reward_breakdown) == {"DB"}
    assert info.info["harness_opt"]["official"] is False and "UNOFFICIAL" in score.feedback
    no_assertions = next(
        t
        for t in suite.tasks("train")
        if "NL_ASSERTION" in t.metadata["reward_basis"] and not t.expected.get("nl_assertions")
    )
    plain = suite.fresh_environment()
    suite.score(no_assertions, None, plain)
    assert plain.reward_info.nl_assertions == [] and plain.reward_info.reward_breakdown["NL_ASSERTION"] == 1.0
    assert plain.reward_info.info["harness_opt"]["official"] is True


def test_the_environment_builds_the_user_simulator_from_the_suite_options(data: Path) -> None:
    suite = load_suite(SUITE_DIR, data=str(data), user_model="openai/gpt-4o-mini", max_turns=7)
    task = suite.tasks("val")[0]
    env = suite.environment(task)
    user = env._user_factory()
    assert isinstance(user, UserSimulator) and user.model == "openai/gpt-4o-mini" and user.max_turns == 7
    reason = task.metadata["user_scenario"]["instructions"]["reason_for_call"]
    assert reason in user.system and "###STOP###" in user.system
