"""Citations under an answer: each retrieved chunk's document, page or section, and a snippet,
shown as written (a document's Markdown or HTML is not rendered)."""
from __future__ import annotations

from workbench.safe_text import plain_markdown


def snippet(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


def sources_markdown(sources: list[dict], note: str | None = None) -> str:
    """``sources`` are hit dicts (``Hit.to_dict()``)."""
    lines = []
    if note:
        lines.append(f"_{note}_")
    if sources:
        lines.append("**Sources**")
    for i, s in enumerate(sources, start=1):
        where = f"p. {s['page']}" if s.get("page") else (f"§ {plain_markdown(s['section'])}" if s.get("section") else "")
        lines.append(f"{i}. **{plain_markdown(s['source'])}** {where} — score {s['score']:.3f}  \n"
                     f"   > {plain_markdown(snippet(s['text']))}")
    return "\n".join(lines)
