"""Sealed text a candidate ships encoded: base64, hex, compressed, rot13, reversed, squashed or hashed.

`sealed.find_literals` reads words. A candidate that stores the val answers as base64 in a data file
and decodes them in agent.py with the standard library (nothing the code check flags) passed the scan
clean, and so did a table keyed by the sha256 of each val input. This module gives the scan what such
a file says once decoded (`decoded_views`, each view then read by `find_literals`), and matches what
cannot be decoded: sealed inputs with case, spaces and punctuation squeezed out, and their md5, sha1
and sha256 digests (`fingerprint_hits`). Train is public, so a fingerprint train shares is dropped.
It cannot read a cipher the candidate invents: that remains a known limit of a static scan.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import hashlib
import lzma
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from harness_opt.records import Task
from harness_opt.suites.base import Suite
from harness_opt.trust.sealed import SEALED_SPLITS, LiteralHit, SealedIndex, Where, find_literals, strings

MAX_DECODED_BYTES = 2 * 1024 * 1024
"""Most bytes one view may decode to: a decompression bomb must not exhaust the scanner."""
MIN_SQUASHED_CHARS = 24
"""A squashed sealed input shorter than this ('cardnotworking') could occur by chance."""
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{32,}={0,2}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){16,}")
_DIGEST = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})(?![0-9a-fA-F])")
_HASHES = ("md5", "sha1", "sha256")
_ALNUM_RUN = re.compile(f"[^\\W_]{{{MIN_SQUASHED_CHARS},}}")


def squash(text: str) -> str:
    """Lower-case letters and digits only: 'Card_Not working?' -> 'cardnotworking'."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _forms(text: str) -> set[str]:
    stripped = text.strip()
    return {text, stripped, stripped.lower(), " ".join(stripped.lower().split()), squash(text)}


def _digests(text: str) -> Iterator[str]:
    for form in _forms(text):
        data = form.encode()
        for name in _HASHES:
            yield hashlib.new(name, data).hexdigest()


@dataclass
class Fingerprints:
    """Squashed sealed inputs and the digests of each, with the task they come from (train's removed)."""

    squashed: dict[str, Where] = field(default_factory=dict)
    digests: dict[str, Where] = field(default_factory=dict)


def build_fingerprints(suite: Suite) -> Fingerprints:
    train = [s for t in _tasks(suite, "train") for s in strings(t.input)]
    public_squashed = "|".join(squash(s) for s in train)  # a key inside a train text is public too
    public_digests = {d for s in train for d in _digests(s)}
    out = Fingerprints()
    for split in SEALED_SPLITS:
        for task in _tasks(suite, split):
            for text in strings(task.input):
                key = squash(text)
                if len(key) >= MIN_SQUASHED_CHARS and key not in public_squashed:
                    out.squashed.setdefault(key, (task.id, split))
                for digest in set(_digests(text)) - public_digests:
                    out.digests.setdefault(digest, (task.id, split))
    return out


def _tasks(suite: Suite, split: str) -> list[Task]:
    return list(suite.tasks(split)) if split in suite.split_names() else []


_CACHE: dict[tuple[str, str, int], Fingerprints] = {}


def fingerprints(suite: Suite) -> Fingerprints:
    """The suite's fingerprints, built once per process."""
    key = (suite.name, str(suite.path), len(_tasks(suite, "val")))
    if key not in _CACHE:
        _CACHE[key] = build_fingerprints(suite)
    return _CACHE[key]


def fingerprint_hits(text: str, prints: Fingerprints) -> Iterator[tuple[Where, str, str]]:
    """(where, snippet, how) for each sealed input present squashed, or as a digest, in `text`."""
    for match in _DIGEST.finditer(text):
        where = prints.digests.get(match.group().lower())
        if where is not None:
            yield where, match.group()[:16], "digest of the input"
    # Squeezed text is one long run of letters and digits (with spaces or `_` it is words, which
    # find_literals reads): only such runs are compared, never text joined across a boundary.
    runs = "|".join(m.group().lower() for m in _ALNUM_RUN.finditer(text))
    if not runs:
        return
    for key, where in prints.squashed.items():
        if key in runs:
            yield where, key[:40], "input with spaces and punctuation removed"


def _decompress(data: bytes) -> bytes | None:
    """`data` decompressed (zlib, gzip, bz2, xz), at most MAX_DECODED_BYTES, or None."""
    attempts = (
        lambda: zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(data, MAX_DECODED_BYTES),  # zlib, gzip
        lambda: bz2.BZ2Decompressor().decompress(data, MAX_DECODED_BYTES),
        lambda: lzma.LZMADecompressor().decompress(data, MAX_DECODED_BYTES),
    )
    for attempt in attempts:
        try:
            out = attempt()
        except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
            continue
        if out:
            return out
    return None


def _runs(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Base64 and hex runs of `data`, decoded."""
    for match in _HEX_RUN.finditer(data):
        yield "hex", bytes.fromhex(match.group().decode())
    for match in _BASE64_RUN.finditer(data):
        run = match.group()
        try:
            padded = run + b"=" * (-len(run) % 4)
            yield "base64", base64.b64decode(padded, altchars=b"-_" if b"-" in run or b"_" in run else None)
        except (binascii.Error, ValueError):
            continue


def _as_text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decoded_views(data: bytes) -> list[tuple[str, str]]:
    """(how, text) of what `data` says once decoded: decompressed, base64/hex runs (themselves maybe
    compressed), rot13 and reversed. Bounded: MAX_DECODED_BYTES in all."""
    out: list[tuple[str, str]] = []
    budget = MAX_DECODED_BYTES
    pending: list[tuple[str, bytes]] = [("", data)]
    for _depth in range(3):  # base64 of gzip of text: a few layers at most
        layer: list[tuple[str, bytes]] = []
        for how, blob in pending:
            found: Iterable[tuple[str, bytes]] = list(_runs(blob))
            unpacked = _decompress(blob)
            if unpacked is not None:
                found = [*found, ("decompressed", unpacked)]
            for step, decoded in found:
                if budget <= 0:
                    return out
                decoded = decoded[:budget]
                budget -= len(decoded)
                label = f"{how} -> {step}" if how else step
                layer.append((label, decoded))
                text = _as_text(decoded)
                if text is not None:
                    out.append((label, text))
        pending = layer
    text = _as_text(data)
    if text is not None and len(text) <= MAX_DECODED_BYTES:
        out += [("rot13", codecs.encode(text, "rot13")), ("reversed", text[::-1])]
    return out


def encoded_hits(data: bytes, index: SealedIndex, prints: Fingerprints) -> list[LiteralHit]:
    """Sealed inputs, answers and ids that a file holds encoded, squashed or hashed: one per (kind,
    task). What `find_literals` already sees in the plain text is not repeated here."""
    text = _as_text(data)
    plain = (
        {(h.kind, h.task_id) for h in find_literals(text, index, "plain.txt")} if text is not None else set()
    )
    out: dict[tuple[str, str], LiteralHit] = {}

    def add(hit: LiteralHit) -> None:
        if (hit.kind, hit.task_id) not in plain:
            out.setdefault((hit.kind, hit.task_id), hit)

    views = decoded_views(data)
    for how, view in [("", text), *views] if text is not None else views:
        if how:
            for hit in find_literals(view, index, "decoded.json"):
                add(replace(hit, line=0, how=f"{hit.how}, once decoded ({how})"))
        for (task_id, split), snippet, found in fingerprint_hits(view, prints):
            label = f"{found}, once decoded ({how})" if how else found
            add(LiteralHit("sealed-input", split, task_id, 0, snippet, label, (snippet,)))
    return list(out.values())
