"""What the index embeds and searches for a stored chunk: the document's title and the section
path above the chunk's text, so a chunk deep in a page still says what it is about (the user is
shown the text without them)."""
from __future__ import annotations

from typing import Any

HEADING_MAX_CHARS = 160


def heading(title: str | None, section: str | None) -> str:
    """"Title > Section > Subsection", without repeating a title the section path starts with."""
    title, section = (title or "").strip(), (section or "").strip()
    if title and section and (section == title or section.startswith(title + " > ")):
        title = ""
    text = " > ".join(part for part in (title, section) if part)
    return text if len(text) <= HEADING_MAX_CHARS else "…" + text[-HEADING_MAX_CHARS:]


def indexed_text(chunk: dict[str, Any]) -> str:
    """What is embedded and searched for a stored chunk: its heading above its text."""
    head = heading(chunk.get("title"), chunk.get("section"))
    return f"{head}\n\n{chunk['text']}" if head else chunk["text"]
