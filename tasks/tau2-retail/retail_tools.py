"""The τ² retail tools, written to change the database exactly as τ²'s `RetailTools` does.

A leaderboard submission is only honest if any sequence of tool calls leaves the same state τ²'s own
implementation would: the same checks in the same order (so a call that fails half-way leaves the same
partial change), the same rounding, the same error texts, the same quirks. Behaviour follows τ²'s
`src/tau2/domains/retail/tools.py` on its main branch (read, not copied). Quirks kept on purpose:

- `modify_pending_order_items` gives every modified item the price and options of the *last* new item
  (sierra-research/tau2-bench issue #318; the fix, PR #322, is not merged), and leaves its price
  difference unrounded in the payment record.
- `cancel_pending_order` refunds every entry of the payment history, refunds included.
- `exchange_delivered_order_items` records the price difference but moves no money.
- Arguments are not validated against the schema: a wrong type fails (or not) wherever Python fails.

Every failure is returned to the agent as τ² formats it, `"Error: <exception text>"`, via `ToolError`;
results are plain JSON values (τ²'s tool message is the value itself for a string, else its JSON).
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import unicodedata
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from harness_opt.suites.base import ToolError

READ_TOOLS = (
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_order_details",
    "get_product_details",
    "get_item_details",
    "get_user_details",
    "list_all_product_types",
)
GENERIC_TOOLS = ("calculate", "transfer_to_human_agents")
WRITE_TOOLS = (
    "cancel_pending_order",
    "exchange_delivered_order_items",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "return_delivered_order_items",
)
TOOL_NAMES = READ_TOOLS + GENERIC_TOOLS + WRITE_TOOLS
"""Every tool the agent may call; only WRITE_TOOLS change the database (τ²'s `mutates_state`)."""


class UserAddress(BaseModel):
    """Validates and orders an address as τ²'s model does (a non-string field fails the same way)."""

    address1: str
    address2: str
    city: str
    country: str
    state: str
    zip: str


class OrderPayment(BaseModel):
    transaction_type: Literal["payment", "refund"]
    amount: float
    payment_method_id: str


def fold_for_match(text: str) -> str:
    """τ²'s tolerant name/email match: stripped, accents dropped (NFD), then case-folded."""
    decomposed = unicodedata.normalize("NFD", text.strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_INT_EXPONENT = 10_000


def _arith(node: ast.AST) -> Any:
    """Evaluate the tree of an expression made of numbers, + - * / ** // and parentheses.

    τ² calls `eval` on it; the character filter already rules out names, so evaluating the tree gives
    the same value and exceptions, except that an integer power with a huge exponent is refused instead
    of stalling the process that serves every rollout."""
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_arith(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_arith(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _arith(node.left), _arith(node.right)
        huge = isinstance(right, int) and abs(right) > _MAX_INT_EXPONENT
        if isinstance(node.op, ast.Pow) and huge and isinstance(left, int) and abs(left) > 1:
            raise OverflowError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    raise SyntaxError("invalid syntax")


class RetailTools:
    """The agent's tools over one rollout's `RetailDB` (see retail_db.py).

    Method and parameter names are τ²'s, so a call with missing or unknown arguments fails with the
    same `TypeError` text ("RetailTools.cancel_pending_order() missing 1 required positional argument:
    'reason'")."""

    def __init__(self, db: Any) -> None:
        self.db = db

    # ---- dispatch -------------------------------------------------------------------------------

    def call(self, name: str, args: dict[str, Any]) -> Any:
        """Run one tool; any failure becomes `ToolError("Error: ...")` and a result is a detached copy."""
        try:
            if name not in TOOL_NAMES:
                raise ValueError(f"Tool '{name}' not found.")
            result = getattr(self, name)(**args)
        except Exception as exc:
            raise ToolError(f"Error: {exc}") from exc
        # The broker keeps results in the trace until the rollout ends; later writes must not alter them.
        return copy.deepcopy(result)

    # ---- lookups (τ²'s private helpers, same errors) --------------------------------------------

    def _order(self, order_id: Any, *, write: bool = False) -> dict[str, Any]:
        if not self.db.has("orders", order_id):
            raise ValueError("Order not found")
        return self.db.write("orders", order_id) if write else self.db.read("orders", order_id)

    def _user(self, user_id: Any, *, write: bool = False) -> dict[str, Any]:
        if not self.db.has("users", user_id):
            raise ValueError("User not found")
        return self.db.write("users", user_id) if write else self.db.read("users", user_id)

    def _product(self, product_id: Any) -> dict[str, Any]:
        if not self.db.has("products", product_id):
            raise ValueError("Product not found")
        return self.db.read("products", product_id)

    def _variant(self, product_id: Any, variant_id: Any) -> dict[str, Any]:
        product = self._product(product_id)
        if variant_id not in product["variants"]:
            raise ValueError("Variant not found")
        variant: dict[str, Any] = product["variants"][variant_id]
        return variant

    def _payment_method(self, user_id: Any, payment_method_id: Any, *, write: bool = False) -> dict[str, Any]:
        user = self._user(user_id, write=write)
        if payment_method_id not in user["payment_methods"]:
            raise ValueError("Payment method not found")
        method: dict[str, Any] = user["payment_methods"][payment_method_id]
        return method

    @staticmethod
    def _is_gift_card(method: dict[str, Any]) -> bool:
        return method.get("source") == "gift_card"

    @staticmethod
    def _first_item(order: dict[str, Any], item_id: Any) -> dict[str, Any] | None:
        return next((item for item in order["items"] if item["item_id"] == item_id), None)

    @staticmethod
    def _check_item_counts(order: dict[str, Any], item_ids: Any, message: Callable[[Any], str]) -> None:
        """Each id may appear at most as often as the order holds it (duplicates are allowed)."""
        all_item_ids = [item["item_id"] for item in order["items"]]
        for item_id in item_ids:
            if item_ids.count(item_id) > all_item_ids.count(item_id):
                raise ValueError(message(item_id))

    # ---- generic --------------------------------------------------------------------------------

    def calculate(self, expression: str) -> str:
        if not all(char in "0123456789+-*/(). " for char in expression):
            raise ValueError("Invalid characters in expression")
        tree = ast.parse(expression.strip(" \t"), filename="<string>", mode="eval")
        return str(round(float(_arith(tree)), 2))

    def transfer_to_human_agents(self, summary: str) -> str:
        return "Transfer successful"

    # ---- reads ----------------------------------------------------------------------------------

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        wanted_first, wanted_last = fold_for_match(first_name), fold_for_match(last_name)
        for user_id, user in self.db.records("users"):
            if (
                fold_for_match(user["name"]["first_name"]) == wanted_first
                and fold_for_match(user["name"]["last_name"]) == wanted_last
                and user["address"]["zip"] == zip
            ):
                return str(user_id)
        raise ValueError("User not found")

    def find_user_id_by_email(self, email: str) -> str:
        wanted = fold_for_match(email)
        for user_id, user in self.db.records("users"):
            if fold_for_match(user["email"]) == wanted:
                return str(user_id)
        raise ValueError("User not found")

    def get_order_details(self, order_id: str) -> dict[str, Any]:
        return self._order(order_id)

    def get_product_details(self, product_id: str) -> dict[str, Any]:
        return self._product(product_id)

    def get_item_details(self, item_id: str) -> dict[str, Any]:
        for _, product in self.db.records("products"):
            if item_id in product["variants"]:
                variant: dict[str, Any] = product["variants"][item_id]
                return variant
        raise ValueError("Item not found")

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        return self._user(user_id)

    def list_all_product_types(self) -> str:
        names = {p["name"]: p["product_id"] for _, p in self.db.records("products")}
        return json.dumps(names, sort_keys=True)

    # ---- writes ---------------------------------------------------------------------------------

    def cancel_pending_order(self, order_id: str, reason: str) -> dict[str, Any]:
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ValueError("Non-pending order cannot be cancelled")
        if reason not in {"no longer needed", "ordered by mistake"}:
            raise ValueError("Invalid reason")
        order = self._order(order_id, write=True)
        refunds = []
        for payment in order["payment_history"]:
            payment_id = payment["payment_method_id"]
            refunds.append(
                OrderPayment(
                    transaction_type="refund", amount=payment["amount"], payment_method_id=payment_id
                )
            )
            # As in τ², a gift card refunded before a later lookup fails keeps its refund.
            method = self._payment_method(order["user_id"], payment_id, write=True)
            if self._is_gift_card(method):
                method["balance"] = round(method["balance"] + payment["amount"], 2)
        order["status"] = "cancelled"
        order["cancel_reason"] = reason
        order["payment_history"].extend(r.model_dump() for r in refunds)
        return order

    def exchange_delivered_order_items(
        self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
    ) -> dict[str, Any]:
        order = self._order(order_id)
        if order["status"] != "delivered":
            raise ValueError("Non-delivered order cannot be exchanged")
        self._check_item_counts(order, item_ids, lambda i: f"Number of {i} not found.")
        if len(item_ids) != len(new_item_ids):
            raise ValueError("The number of items to be exchanged should match.")
        diff_price: Any = 0
        for item_id, new_item_id in zip(item_ids, new_item_ids, strict=False):
            item = self._first_item(order, item_id)
            if item is None:
                raise ValueError(f"Item {item_id} not found")
            variant = self._variant(item["product_id"], new_item_id)
            if not variant["available"]:
                raise ValueError(f"New item {new_item_id} not found or available")
            diff_price += variant["price"] - item["price"]
        diff_price = round(diff_price, 2)
        method = self._payment_method(order["user_id"], payment_method_id)
        if self._is_gift_card(method) and method["balance"] < diff_price:
            raise ValueError("Insufficient gift card balance to pay for the price difference")
        order = self._order(order_id, write=True)
        order["status"] = "exchange requested"
        order["exchange_items"] = sorted(item_ids)
        order["exchange_new_items"] = sorted(new_item_ids)
        order["exchange_payment_method_id"] = payment_method_id
        order["exchange_price_difference"] = diff_price
        return order

    def modify_pending_order_address(
        self, order_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
    ) -> dict[str, Any]:
        order = self._order(order_id)
        if "pending" not in order["status"]:
            raise ValueError("Non-pending order cannot be modified")
        address = UserAddress(
            address1=address1, address2=address2, city=city, state=state, country=country, zip=zip
        )
        order = self._order(order_id, write=True)
        order["address"] = address.model_dump()
        return order

    def modify_pending_order_items(
        self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
    ) -> dict[str, Any]:
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ValueError("Non-pending order cannot be modified")
        self._check_item_counts(order, item_ids, lambda i: f"{i} not found")
        if len(item_ids) != len(new_item_ids):
            raise ValueError("The number of items to be exchanged should match")
        diff_price: Any = 0
        variant: dict[str, Any] | None = None
        for item_id, new_item_id in zip(item_ids, new_item_ids, strict=False):
            if item_id == new_item_id:
                raise ValueError("The new item id should be different from the old item id")
            item = self._first_item(order, item_id)
            if item is None:
                raise ValueError(f"Item {item_id} not found")
            variant = self._variant(item["product_id"], new_item_id)
            if not variant["available"]:
                raise ValueError(f"New item {new_item_id} not found or available")
            diff_price += variant["price"] - item["price"]
        method = self._payment_method(order["user_id"], payment_method_id)
        if self._is_gift_card(method) and method["balance"] < diff_price:
            raise ValueError("Insufficient gift card balance to pay for the new item")
        order = self._order(order_id, write=True)
        payment = OrderPayment(
            transaction_type="payment" if diff_price > 0 else "refund",
            amount=abs(diff_price),
            payment_method_id=payment_method_id,
        )
        order["payment_history"].append(payment.model_dump())
        if self._is_gift_card(method):
            method = self._payment_method(order["user_id"], payment_method_id, write=True)
            method["balance"] = round(method["balance"] - diff_price, 2)
        for item_id, new_item_id in zip(item_ids, new_item_ids, strict=False):
            item = self._first_item(order, item_id)
            if item is None:
                raise ValueError(f"Item {item_id} not found")
            assert variant is not None  # the loop above ran for these same pairs
            # τ²'s quirk (issue #318): the last variant's price and options, for every modified item.
            item["item_id"] = new_item_id
            item["price"] = variant["price"]
            item["options"] = copy.deepcopy(variant["options"])
        order["status"] = "pending (item modified)"
        return order

    def modify_pending_order_payment(self, order_id: str, payment_method_id: str) -> dict[str, Any]:
        order = self._order(order_id)
        if "pending" not in order["status"]:
            raise ValueError("Non-pending order cannot be modified")
        method = self._payment_method(order["user_id"], payment_method_id)
        history = order["payment_history"]
        if len(history) != 1 or history[0]["transaction_type"] != "payment":
            raise ValueError("There should be exactly one payment for a pending order")
        if history[0]["payment_method_id"] == payment_method_id:
            raise ValueError("The new payment method should be different from the current one")
        amount = history[0]["amount"]
        if self._is_gift_card(method) and method["balance"] < amount:
            raise ValueError("Insufficient gift card balance to pay for the order")
        order = self._order(order_id, write=True)
        old_id = order["payment_history"][0]["payment_method_id"]
        order["payment_history"].extend(
            [
                OrderPayment(
                    transaction_type="payment", amount=amount, payment_method_id=payment_method_id
                ).model_dump(),
                OrderPayment(transaction_type="refund", amount=amount, payment_method_id=old_id).model_dump(),
            ]
        )
        if self._is_gift_card(method):
            method = self._payment_method(order["user_id"], payment_method_id, write=True)
            method["balance"] = round(method["balance"] - amount, 2)
        old_method = self._payment_method(order["user_id"], old_id)
        if self._is_gift_card(old_method):
            old_method = self._payment_method(order["user_id"], old_id, write=True)
            old_method["balance"] = round(old_method["balance"] + amount, 2)
        return order

    def modify_user_address(
        self, user_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
    ) -> dict[str, Any]:
        self._user(user_id)
        address = UserAddress(
            address1=address1, address2=address2, city=city, state=state, country=country, zip=zip
        )
        user = self._user(user_id, write=True)
        user["address"] = address.model_dump()
        return user

    def return_delivered_order_items(
        self, order_id: str, item_ids: list[str], payment_method_id: str
    ) -> dict[str, Any]:
        order = self._order(order_id)
        if order["status"] != "delivered":
            raise ValueError("Non-delivered order cannot be returned")
        user = self._user(order["user_id"])
        method = self._payment_method(user["user_id"], payment_method_id)
        if (
            not self._is_gift_card(method)
            and payment_method_id != order["payment_history"][0]["payment_method_id"]
        ):
            raise ValueError("Payment method should be the original payment method")
        self._check_item_counts(order, item_ids, lambda i: "Some item not found")
        order = self._order(order_id, write=True)
        order["status"] = "return requested"
        order["return_items"] = sorted(item_ids)
        order["return_payment_method_id"] = payment_method_id
        return order
