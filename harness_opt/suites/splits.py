"""Deterministic stratified splitting: the same rows land in the same split on every machine, forever.

Seeding `random.Random` with a string is stable across Python runs (it does not use `hash()`), and each
label gets its own generator, so adding rows of one label never reshuffles another label's choice.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence


def stratified_split(
    labels: Sequence[Hashable],
    per_label: Mapping[str, int],
    *,
    seed: int | str,
    eligible: Sequence[bool] | None = None,
) -> dict[str, list[int]]:
    """Pick `per_label[split]` row indices of every label for each split, disjointly.

    Rows are shuffled per label with a seeded generator and dealt to the splits in `per_label` order;
    each split's indices come back sorted (a stable order). `eligible[i] = False` keeps row `i` out of
    every split (e.g. duplicates). Raises ValueError when a label has too few eligible rows.
    """
    by_label: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        if eligible is None or eligible[index]:
            by_label.setdefault(label, []).append(index)
    out: dict[str, list[int]] = {split: [] for split in per_label}
    needed = sum(per_label.values())
    for label in sorted(by_label, key=str):
        rows = by_label[label]
        if len(rows) < needed:
            raise ValueError(f"label {label!r} has {len(rows)} eligible rows, {needed} needed")
        random.Random(f"{seed}/{label}").shuffle(rows)
        start = 0
        for split, count in per_label.items():
            out[split].extend(rows[start : start + count])
            start += count
    return {split: sorted(indices) for split, indices in out.items()}
