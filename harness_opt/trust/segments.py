"""Cut a candidate's files into the runs of words a leaked val/test text could be hidden in.

A leak is rarely one clean line: a val message may be wrapped over two lines of a prompt, split into
a Python string concatenation, or chunked over the items of a JSON list. So words are matched across
line ends inside one *block* (a prompt paragraph, a Python string constant or comment block, a JSON
string or list of strings, a CSV row). What must never happen is a window that spells a sealed text
out of the end of one public text and the start of the next (a data file of 10k train messages does
that by chance): a piece of a block that *is* a public text (a train message or answer, optionally
with a short prefix such as "Message:" or a bullet) is a barrier no window crosses.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
DECORATION_WORDS = 2
"""Words a public piece may carry around it and still count as public ('Message: <train text>')."""
MIN_CORE_WORDS = 3
_QUOTES = re.compile(r"[\"\\]")


def words(text: str) -> list[str]:
    """Lower-case word tokens; `_` and punctuation separate words, so `card_arrival` is two words."""
    return _WORD.findall(text.lower())


@dataclass
class Run:
    """Consecutive words of one block between barriers, each with the line it came from."""

    words: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def line_of(self, start: int) -> int:
        return self.lines[start] if self.lines else 0


Piece = tuple[str, int]
"""A piece of a block: its text and the (1-based) line where it starts."""
IsPublic = Callable[[tuple[str, ...]], bool]


def public_piece(tokens: list[str], exact: set[tuple[str, ...]]) -> bool:
    """Whether the piece is a public text, allowing a few decoration words before or after it.

    Only texts of at least MIN_CORE_WORDS count, and decoration only around a longer core: a chunk
    that is, or merely contains, an order id or a short label is not a public text, so it does not
    cut a leak's run in two."""
    n = len(tokens)
    if tuple(tokens) in exact:
        return n >= MIN_CORE_WORDS  # 'A1009' or 'refund' alone is a value, not a text to fence off
    for head in range(DECORATION_WORDS + 1):
        for tail in range(DECORATION_WORDS + 1):
            core = n - head - tail
            if core >= max(MIN_CORE_WORDS, head + tail + 1) and tuple(tokens[head : n - tail]) in exact:
                return True
    return False


def runs_of(blocks: list[list[Piece]], exact: set[tuple[str, ...]]) -> list[Run]:
    """The runs of every block: pieces joined across line ends, split at public pieces."""
    out: list[Run] = []
    for pieces in blocks:
        current = Run()
        for text, line in pieces:
            offsets = [m.start() for m in _WORD.finditer(text.lower())]
            tokens = words(text)
            if not tokens:
                continue
            if public_piece(tokens, exact):
                if current.words:
                    out.append(current)
                current = Run()
                continue
            current.words.extend(tokens)
            current.lines.extend(line + text.count("\n", 0, offset) for offset in offsets)
        if current.words:
            out.append(current)
    return out


# ----------------------------------------------------------------------------------- by file format


class _JsonLines:
    """Line numbers of JSON leaves. Leaves come in document order, so each search starts where the
    last one matched and lines are counted incrementally: linear in the file, not leaves x file."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.single_line = raw.count("\n") <= 1
        self.offset, self.line = 0, 1

    def __call__(self, leaf: str) -> int:
        needle = json.dumps(leaf, ensure_ascii=False)[1:-1][:40]
        if self.single_line or not needle:
            return 1
        at = self.raw.find(needle, self.offset)
        if at >= 0:
            self.line += self.raw.count("\n", self.offset, at)
            self.offset = at
        return self.line


def _json_blocks(value: Any, raw: str) -> list[list[Piece]]:
    """Every string leaf on its own, and every list of strings as one block of its items."""
    blocks: list[list[Piece]] = []
    locate = _JsonLines(raw)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            blocks.append([(node, locate(node))])
        elif isinstance(node, dict):
            for key, item in reversed(node.items()):
                stack.append(item)
                stack.append(str(key))
        elif isinstance(node, list):
            items = [item for item in node if isinstance(item, str)]
            if len(items) > 1:
                blocks.append([(item, locate(item)) for item in items])
            stack.extend(reversed([item for item in node if not isinstance(item, str) or len(items) <= 1]))
    return blocks


class _Constants:
    """String constants of a module, with `+` of constants folded into one string."""

    def __init__(self) -> None:
        self.folded: set[int] = set()

    def text(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.text(node.left), self.text(node.right)
            if left is not None and right is not None:
                self.folded.update((id(node.left), id(node.right)))
                return left + right
        return None


def _python_blocks(source: str) -> list[list[Piece]] | None:
    """String constants (the parser already joins implicit concatenation; `+` of constants is folded),
    lists of string constants as one block each, and comment blocks."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    blocks: list[list[Piece]] = []
    constants = _Constants()
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = [(e.value, e.lineno) for e in node.elts if isinstance(e, ast.Constant)]
            strs = [(text, line) for text, line in items if isinstance(text, str)]
            if len(strs) > 1:
                blocks.append(strs)
        elif isinstance(node, ast.BinOp | ast.Constant) and id(node) not in constants.folded:
            text = constants.text(node)
            if text is not None:
                blocks.append(_split_lines(text, node.lineno))
    blocks.extend(_comment_blocks(source))
    return blocks


def _comment_blocks(source: str) -> Iterator[list[Piece]]:
    """Comments on consecutive lines form one block (a wrapped note reads as one text)."""
    block: list[Piece] = []
    last = -2
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.COMMENT:
                continue
            line = tok.start[0]
            if block and line != last + 1:
                yield block
                block = []
            block.append((tok.string.lstrip("#"), line))
            last = line
    except (tokenize.TokenError, SyntaxError):
        pass
    if block:
        yield block


def _split_lines(text: str, first_line: int) -> list[Piece]:
    """A text's lines as pieces, each also cut at quote characters (a quoted public text stays whole)."""
    pieces: list[Piece] = []
    for offset, line in enumerate(text.split("\n")):
        pieces.extend((part, first_line + offset) for part in _QUOTES.split(line))
    return pieces


def _text_blocks(text: str) -> list[list[Piece]]:
    """Paragraphs (blank-line separated); a line is cut at quote characters."""
    blocks: list[list[Piece]] = []
    current: list[Piece] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if current:
                blocks.append(current)
            current = []
            continue
        current.extend((part, number) for part in _QUOTES.split(line))
    if current:
        blocks.append(current)
    return blocks


def _csv_blocks(text: str) -> list[list[Piece]]:
    """One block per row, each cell a piece."""
    blocks: list[list[Piece]] = []
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            blocks.append([(cell, number) for cell in row])
    except csv.Error:
        return _text_blocks(text)
    return blocks


def _jsonl_blocks(text: str) -> list[list[Piece]]:
    blocks: list[list[Piece]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            value = json.loads(line)
        except ValueError:
            blocks.extend([[(part, number) for part in _QUOTES.split(line)]])
            continue
        blocks.extend([[(piece, number) for piece, _ in block] for block in _json_blocks(value, line)])
    return blocks


def file_blocks(path: str, text: str) -> list[list[Piece]]:
    """The blocks of one file, by its format; text that does not parse as its format is read as text."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix == "json":
        try:
            return _json_blocks(json.loads(text), text)
        except (ValueError, RecursionError):
            return _text_blocks(text)
    if suffix in ("jsonl", "ndjson"):
        return _jsonl_blocks(text)
    if suffix == "py":
        try:
            blocks = _python_blocks(text)
        except RecursionError:
            blocks = None
        return blocks if blocks is not None else _text_blocks(text)
    if suffix in ("csv", "tsv"):
        return _csv_blocks(text)
    return _text_blocks(text)
