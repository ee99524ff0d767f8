"""Chunking: split parsed blocks into pieces of at most ``size`` tokens of the embedding model's
tokenizer, overlapping by about ``overlap`` tokens, cutting at paragraph and sentence boundaries
where it can and inside a sentence only when one sentence alone is too long.

A block much shorter than a chunk (a one-line section, a "Note" box) is merged into the block
before it on the same page, its heading kept as a line, and a chunk's short tail into the chunk
before it when that stays near the size: no chunk is a stray sentence. A chunk keeps the page
(pdf) and section (md/html/docx) it came from, and the document's title, which
``workbench.index.chunk_text`` puts above its text for the index.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+(?=\S)")
MAX_CHARS_PER_TOKEN = 12  # English runs ~4-5 characters a token; far more means unknown tokens


SMALL_SHARE = 4  # a block or a chunk's tail under size / 4 tokens is merged into its neighbour
TAIL_SLACK = 1.1  # a chunk may grow to 110 % of the size to take in a short tail
HEADING_TOKENS = 48  # room a chunk leaves in the embedding model's input for its heading


@dataclass
class Chunk:
    text: str
    tokens: int
    page: int | None = None
    section: str | None = None
    title: str | None = None


def document_title(name: str) -> str:
    """A title from a file name when the file has none: "install-guide_v2.pdf" -> "install guide v2"."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return " ".join(re.split(r"[-_\s]+", stem)).strip() or name


@dataclass
class _Unit:
    text: str
    tokens: int
    sep: str  # what joins this unit to the one before it


def _count(tokenizer: Any, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _windows(tokenizer: Any, text: str, size: int, overlap: int) -> list[_Unit]:
    """A single over-long sentence cut into token windows, at the tokens' character offsets."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    units, start, step = [], 0, max(1, size - overlap)
    while start < len(offsets):
        end = min(start + size, len(offsets))
        piece = text[offsets[start][0]:offsets[end - 1][1]].strip()
        if piece:
            units.append(_Unit(piece, end - start, " "))
        if end == len(offsets):
            break
        start += step
    return units


def _units(tokenizer: Any, text: str, size: int, overlap: int) -> list[_Unit]:
    paragraphs = [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]
    units: list[_Unit] = []
    for paragraph, count in zip(paragraphs, _count(tokenizer, paragraphs)):
        if count <= size:
            units.append(_Unit(paragraph, count, "\n\n"))
            continue
        sentences = [s.strip() for s in _SENTENCE.split(paragraph) if s.strip()]
        for i, (sentence, n) in enumerate(zip(sentences, _count(tokenizer, sentences))):
            sep = "\n\n" if i == 0 else " "
            if n <= size:
                units.append(_Unit(sentence, n, sep))
            else:
                pieces = _windows(tokenizer, sentence, size, overlap)
                if pieces:
                    pieces[0].sep = sep
                units.extend(pieces)
    return _cap_characters(tokenizer, units, size * MAX_CHARS_PER_TOKEN)


def _cap_characters(tokenizer: Any, units: list[_Unit], max_chars: int) -> list[_Unit]:
    """Very long "words" (base64, minified code) are one unknown token each: a chunk of 200
    tokens could hold megabytes. Cut such units by characters too."""
    out: list[_Unit] = []
    for unit in units:
        if len(unit.text) <= max_chars:
            out.append(unit)
            continue
        pieces = [unit.text[i:i + max_chars] for i in range(0, len(unit.text), max_chars)]
        for i, (piece, count) in enumerate(zip(pieces, _count(tokenizer, pieces))):
            out.append(_Unit(piece, count, unit.sep if i == 0 else " "))
    return out


def _pack(units: list[_Unit], size: int, overlap: int, max_chars: int) -> list[tuple[str, int]]:
    """Greedy packing; each new chunk starts with the previous chunk's last units that fit in
    ``overlap`` tokens, so a fact cut at a boundary is whole in at least one chunk."""
    chunks: list[tuple[str, int]] = []
    current: list[_Unit] = []
    fresh = 0  # units in ``current`` not already emitted in an earlier chunk

    def emit():
        text = current[0].text + "".join(u.sep + u.text for u in current[1:])
        chunks.append((text, sum(u.tokens for u in current)))

    for unit in units:
        full = sum(u.tokens for u in current) + unit.tokens > size
        if current and (full or sum(len(u.text) for u in current) + len(unit.text) > max_chars):
            if fresh:
                emit()
            carried: list[_Unit] = []
            for prev in reversed(current):
                if (sum(u.tokens for u in carried) + prev.tokens > overlap
                        or sum(len(u.text) for u in carried) + len(prev.text) > max_chars // 4):
                    break
                carried.insert(0, prev)
            while carried and sum(u.tokens for u in carried) + unit.tokens > size:
                carried.pop(0)
            current, fresh = carried, 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        fresh_units = current[len(current) - fresh:]
        tail = sum(u.tokens for u in fresh_units)
        if chunks and tail < size // SMALL_SHARE and chunks[-1][1] + tail <= size * TAIL_SLACK:
            text, tokens = chunks.pop()
            chunks.append((text + "".join(u.sep + u.text for u in fresh_units), tokens + tail))
        else:
            emit()
    return chunks


def chunk_blocks(blocks: list[Any], tokenizer: Any, size: int = 200, overlap: int = 40) -> list[Chunk]:
    """Chunks of every block, in order. ``blocks`` need ``text``, ``page`` and ``section``
    (``title`` if they have one)."""
    if size < 8:
        raise ValueError(f"chunk size must be at least 8 tokens, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be between 0 and size-1, got {overlap}")
    out: list[Chunk] = []
    for block in _merge_small_blocks(blocks, tokenizer, size // SMALL_SHARE):
        units = _units(tokenizer, block.text, size, overlap)
        for text, tokens in _pack(units, size, overlap, size * MAX_CHARS_PER_TOKEN):
            out.append(Chunk(text, tokens, block.page, block.section, block.title))
    return out


@dataclass
class _Group:
    text: str
    tokens: int
    page: int | None
    section: str | None
    title: str | None


def _merge_small_blocks(blocks: list[Any], tokenizer: Any, small: int) -> list[_Group]:
    """Consecutive blocks of one page and document, with each block under ``small`` tokens joined
    to the one before it (or the one after it, at the start). The joined block keeps the larger
    part's section when that part is not small, else the sections' common path; a small block's
    own heading stays in the text as a line."""
    groups: list[_Group] = []
    texts = [b.text for b in blocks]
    for block, tokens in zip(blocks, _count(tokenizer, texts)):
        page, section, title = getattr(block, "page", None), getattr(block, "section", None), getattr(block, "title", None)
        last = groups[-1] if groups else None
        if last is None or (last.page, last.title) != (page, title) or (tokens >= small and last.tokens >= small):
            groups.append(_Group(block.text, tokens, page, section, title))
            continue
        leaf = _leaf(section, last.section)
        last.text += "\n\n" + (f"{leaf}\n\n" if leaf else "") + block.text
        if last.tokens < small:
            last.section = _common_path(last.section, section)
        last.tokens += tokens
    return groups


def _leaf(section: str | None, under: str | None) -> str:
    """The part of ``section``'s path below ``under`` ("Note" of "A > B > Note" under "A > B")."""
    parts, base = (section or "").split(" > "), (under or "").split(" > ")
    i = 0
    while i < min(len(parts), len(base)) and parts[i] == base[i]:
        i += 1
    return " > ".join(p for p in parts[i:] if p)


def _common_path(a: str | None, b: str | None) -> str | None:
    parts_a, parts_b, common = (a or "").split(" > "), (b or "").split(" > "), []
    for x, y in zip(parts_a, parts_b):
        if x != y or not x:
            break
        common.append(x)
    return " > ".join(common) or None
