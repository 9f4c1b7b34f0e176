"""The τ² retail database for one rollout: a copy-on-write view over the pristine DB read once per suite.

τ² gives each simulation a fresh `RetailDB` (pydantic) and judges it by hashing `db.model_dump()`. Parsing
the 2.8 MB `db.json` per rollout would dominate a cheap evaluation, so the pristine data is parsed once
(and normalised to the exact shape τ²'s models dump) and each rollout writes only into its own overlay of
the records it changes. Two rollouts' states are equal iff every record either of them touched is equal,
which is exactly τ²'s hash equality (the rest is the shared pristine data); `state_hash()` computes the
τ² hash itself when a full fingerprint is wanted.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TABLES = ("products", "users", "orders")

# Optional fields of τ²'s `Order` model, in declaration order: `model_dump()` always emits them (None when
# unset), so the pristine orders gain them here; tool output and hashes then have τ²'s exact shape.
ORDER_OPTIONAL_FIELDS = (
    "cancel_reason",
    "exchange_items",
    "exchange_new_items",
    "exchange_payment_method_id",
    "exchange_price_difference",
    "return_items",
    "return_payment_method_id",
)


def load_pristine(db_file: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Parse `db.json` and give every order the optional fields τ²'s model dump contains."""
    raw = json.loads(db_file.read_text(encoding="utf-8"))
    missing = [t for t in TABLES if not isinstance(raw.get(t), dict)]
    if missing:
        raise ValueError(f"{db_file} has no {', '.join(missing)} table(s)")
    for order in raw["orders"].values():
        for name in ORDER_OPTIONAL_FIELDS:
            order.setdefault(name, None)
    return {t: raw[t] for t in TABLES}


def _canonical(value: Any) -> str:
    """The serialisation τ²'s `get_dict_hash` hashes: sorted keys, `default=str`."""
    return json.dumps(value, sort_keys=True, default=str)


class RetailDB:
    """The retail tables of one rollout. Records from `read` must not be mutated; use `write` for that."""

    def __init__(self, pristine: dict[str, dict[str, dict[str, Any]]]) -> None:
        self._base = pristine
        self._changed: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TABLES}

    def has(self, table: str, key: Any) -> bool:
        # `key in dict` raises TypeError for an unhashable key, as τ²'s `order_id in self.db.orders` does.
        return key in self._base[table]

    def read(self, table: str, key: str) -> dict[str, Any]:
        changed = self._changed[table]
        return changed[key] if key in changed else self._base[table][key]

    def write(self, table: str, key: str) -> dict[str, Any]:
        """The rollout's own, mutable copy of a record (copied from the pristine data on first write)."""
        changed = self._changed[table]
        if key not in changed:
            changed[key] = copy.deepcopy(self._base[table][key])
        return changed[key]

    def keys(self, table: str) -> Iterator[str]:
        """Keys in DB order (no tool adds or removes records, so the pristine order is the order)."""
        return iter(self._base[table])

    def records(self, table: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self._base[table]:
            yield key, self.read(table, key)

    def touched(self) -> dict[str, set[str]]:
        return {t: set(c) for t, c in self._changed.items()}

    def differences(self, other: RetailDB) -> list[tuple[str, str, list[str]]]:
        """Records whose content differs from `other` (same pristine data): (table, key, fields)."""
        if other._base is not self._base:
            raise ValueError("can only compare views over the same pristine database")
        out: list[tuple[str, str, list[str]]] = []
        for table in TABLES:
            for key in sorted(set(self._changed[table]) | set(other._changed[table])):
                mine, theirs = self.read(table, key), other.read(table, key)
                if _canonical(mine) != _canonical(theirs):
                    fields = sorted(
                        f
                        for f in set(mine) | set(theirs)
                        if _canonical(mine.get(f)) != _canonical(theirs.get(f))
                    )
                    out.append((table, key, fields))
        return out

    def same_state(self, other: RetailDB) -> bool:
        """Whether τ²'s DB hash of both states would be equal."""
        return not self.differences(other)

    def dump(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {t: dict(self.records(t)) for t in TABLES}

    def state_hash(self) -> str:
        """τ²'s DB hash: sha256 of the sorted-key JSON of the whole DB dump (about 50 ms)."""
        return hashlib.sha256(_canonical(self.dump()).encode()).hexdigest()
