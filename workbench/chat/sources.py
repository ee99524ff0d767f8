"""Citations under an answer: each retrieved chunk's document, page or section, and a snippet."""
from __future__ import annotations


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
        where = f"p. {s['page']}" if s.get("page") else (f"§ {s['section']}" if s.get("section") else "")
        lines.append(f"{i}. **{s['source']}** {where} — score {s['score']:.3f}  \n   > {snippet(s['text'])}")
    return "\n".join(lines)
