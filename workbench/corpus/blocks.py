"""What every parser produces: ``Block`` (a run of text with the page or section it came from),
``clean_text`` and ``Sections``, which collects paragraphs under the nearest heading path (the
Markdown, HTML and Word parsers share it)."""
from __future__ import annotations

import re
from dataclasses import dataclass

_NOISE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


@dataclass
class Block:
    """A run of text with where it came from."""

    text: str
    page: int | None = None  # 1-based, pdf only
    section: str | None = None  # nearest heading path, md/html/docx only
    title: str | None = None  # the document's own title (html <h1> or <title>, pdf metadata)


def clean_text(text: str) -> str:
    """Collapse whitespace inside lines, keep single line breaks, one blank line between paragraphs."""
    text = _NOISE.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n\n"))
    paragraphs = []
    for para in re.split(r"\n[^\S\n]*\n", text):
        lines = (" ".join(line.split()) for line in para.split("\n"))
        if joined := "\n".join(line for line in lines if line):
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)


class Sections:
    """The nearest heading path ("Install > Linux") and the paragraphs collected under it.

    In HTML a heading also has a scope: how deep in the page's blocks it stands. A heading
    replaces an earlier one of the same or a higher level only when it is not nested deeper, so
    the "Note" title of a box inside section 5.4.1 reads "5.4.1 > Note", not "Note"."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str, int]] = []  # (level, title, scope)
        self.paragraphs: list[str] = []
        self.blocks: list[Block] = []
        self.since_heading = 0  # paragraphs with text added since the last heading

    def heading(self, level: int, title: str, scope: int = 0) -> None:
        self.flush()
        while self.stack and self.stack[-1][0] >= level and self.stack[-1][2] >= scope:
            self.stack.pop()
        if title := " ".join(title.split()):
            self.stack.append((level, title, scope))
        self.since_heading = 0

    def add(self, paragraph: str) -> None:
        self.paragraphs.append(paragraph)
        self.since_heading += bool(paragraph.strip())

    def close_scope(self, count: int, scope: int) -> None:
        """The block at depth ``scope`` that opened when ``count`` headings were open ends. The
        headings it held go with it once text followed them (a box's title does not label the
        text after the box); a heading alone in its wrapper (``<div class="titlepage"><h2>``)
        belongs to the block around the wrapper."""
        if len(self.stack) <= count:
            return
        if self.since_heading:
            self.flush()
            del self.stack[count:]
        else:
            self.stack[count:] = [(level, title, min(at, scope - 1)) for level, title, at in self.stack[count:]]

    def flush(self) -> list[Block]:
        if text := clean_text("\n\n".join(self.paragraphs)):
            self.blocks.append(Block(text, section=" > ".join(t for _, t, _ in self.stack) or None))
        self.paragraphs = []
        return self.blocks
