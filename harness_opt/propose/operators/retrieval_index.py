"""Builds the BM25 index the classifier agent searches, parent side, from train examples only.

The sandboxed agent may import only the standard library, so retrieval there is pure Python; to keep
its import cheap the index is precomputed here: each posting already carries its BM25 term weight
(as an integer, x100), so a query is a few dictionary lookups and additions. Dense embeddings
(all-MiniLM-L6-v2) were considered: documents could be embedded here, but each query would need the
model at run time inside the sandbox (torch, no network), so lexical BM25 is the practical choice.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

from harness_opt.propose.operators.assets.classifier_agent import tokenize

INDEX_FILE = "data/retrieval_index.json"
K1 = 1.2
B = 0.75
SCALE = 100
"""Weights are stored as integers (weight x SCALE): a third of the file size of floats, same ranking."""


def build_index(
    examples: Sequence[tuple[str, str]], *, k1: float = K1, b: float = B, bigrams: bool = False
) -> dict[str, object]:
    """A BM25 index over (text, label) pairs, in the JSON shape both agents' `retrieve` reads.

    Duplicate texts are kept once (the first label wins) so a repeated example cannot crowd out
    the other neighbours. `k1`, `b` and `bigrams` are the retrieval-scoring knobs the night search
    tunes once retrieval has been accepted."""
    seen: set[str] = set()
    texts: list[str] = []
    labels: list[str] = []
    for text, label in examples:
        key = " ".join(text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        texts.append(text)
        labels.append(label)
    names = sorted(set(labels))
    label_index = {name: i for i, name in enumerate(names)}
    docs = [Counter(tokenize(text, bigrams)) for text in texts]
    lengths = [sum(doc.values()) for doc in docs]
    avg = sum(lengths) / max(1, len(lengths))
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(doc.keys())
    n = len(docs)
    postings: dict[str, list[int]] = {}
    for i, doc in enumerate(docs):
        norm = k1 * (1 - b + b * lengths[i] / avg) if avg else k1
        for term, tf in sorted(doc.items()):
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            weight = idf * tf * (k1 + 1) / (tf + norm)
            postings.setdefault(term, []).extend((i, max(1, round(weight * SCALE))))
    return {
        "format": 1,
        "k1": k1,
        "b": b,
        "bigrams": bigrams,
        "texts": texts,
        "labels": names,
        "label_of": [label_index[label] for label in labels],
        "postings": dict(sorted(postings.items())),
    }


def dumps_index(index: dict[str, object]) -> str:
    """Compact JSON (no spaces): the file is read once per evaluation but stored in every version."""
    return json.dumps(index, separators=(",", ":"), ensure_ascii=False) + "\n"
