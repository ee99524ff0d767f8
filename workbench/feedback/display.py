"""How a pair reads on the annotation screen: the question first, the retrieved context apart
(each chunk with the document it came from), each answer as sanitised Markdown with a mark when
it stopped at its token limit. The Annotate tab only places these strings."""
from __future__ import annotations

from storage import Workspace
from storage.atomic import read_json
from workbench.chat.prompt import split_prompt
from workbench.feedback.pairs import Pair, Side
from workbench.safe_text import safe_markdown

LIMIT_NOTE = "stopped at the {} tokens limit"


def document_names(workspace: Workspace) -> dict[str, str]:
    """doc id -> file name, from the corpus registry (empty when there is none or it is unreadable)."""
    data = read_json(workspace.documents_file, default={})
    documents = data.get("documents", []) if isinstance(data, dict) else []
    return {d["id"]: d.get("name", d["id"]) for d in documents if isinstance(d, dict) and d.get("id")}


def question_markdown(pair: Pair) -> str:
    return safe_markdown(split_prompt(pair.prompt)[0])


def context_parts(pair: Pair, names: dict[str, str]) -> list[tuple[str, str]]:
    """(document, text) of each retrieved chunk; one part without a name when the context cannot
    be cut back into the chunks it was built from."""
    context = split_prompt(pair.prompt)[1].strip()
    if not context:
        return []
    sources = [names.get(chunk_id.rsplit(":", 1)[0], "") for chunk_id in pair.chunk_ids]
    parts = context.split("\n\n")
    if sources and len(parts) == len(sources):
        return list(zip(sources, parts))
    return [(", ".join(dict.fromkeys(s for s in sources if s)), context)]


def context_markdown(pair: Pair, names: dict[str, str]) -> str:
    parts = context_parts(pair, names)
    return "\n\n---\n\n".join(f"**{n} · {source or 'context'}**\n\n{safe_markdown(text)}"
                              for n, (source, text) in enumerate(parts, start=1))


def context_label(pair: Pair, names: dict[str, str]) -> str:
    parts = context_parts(pair, names)
    if not parts:
        return "No retrieved context"
    count = len(parts) if len(parts) == len(pair.chunk_ids) else len(pair.chunk_ids) or 1
    return f"Retrieved context: {count} chunk{'s' * (count != 1)} (open to read)"


def answer_markdown(side: Side) -> str:
    """The answer as sanitised Markdown, with its notes (a prompt cut to fit, the token limit) under it."""
    notes = f"\n\n_({side.note})_" if side.note else ""
    return safe_markdown(side.answer) + notes
