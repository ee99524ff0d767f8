"""How much one request may carry: the caps on typed and imported text, each refused with a
message that names the field, its size and the limit, before anything is written.

The caps sit far above real use (a French RAG prompt with five chunks of context is about
6,000 characters; a long annotator comment a few hundred) and far below what slows a page or
bloats a JSONL file that every merge and evaluation reads whole.
"""
from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError

COMMENT_CHARS = 2_000  # an annotator's comment on a vote
ANSWER_CHARS = 20_000  # an answer an annotator writes or edits
PROMPT_CHARS = 16_000  # a typed prompt, a chat question, an imported prompt (context included)
PROMPTS_PER_REQUEST = 1_000  # prompts typed or uploaded in one "create pairs"
QUESTION_CHARS = 2_000  # a question of a RAG evaluation set
REFERENCE_CHARS = 16_000  # a reference answer of an evaluation set
QUESTION_SET_ROWS = 20_000  # rows of one evaluation question set
REQUEST_BODY_BYTES = 4 * 2**20  # a JSON call to a handler (uploads have their own limit)
SIGN_IN_BODY_BYTES = 16 * 2**10  # a sign-in form: a name and a password


class TooLong(WorkbenchError):
    pass


def check_text(what: str, value: str | None, limit: int) -> str:
    """``value`` unchanged when it fits in ``limit`` characters; ``TooLong`` naming ``what`` otherwise."""
    text = value or ""
    if len(text) > limit:
        raise TooLong(f"{what} is {len(text):,} characters long; the limit is {limit:,}")
    return text


def check_count(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise TooLong(f"{count:,} {what}; the limit is {limit:,}")


def text_from_file(path: Path, what: str, limit: int) -> str:
    """The text of a file a person wrote (``what``: "the guidelines", "the system prompt"), refused
    with what to fix when it is missing, too long, binary or not UTF-8."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise WorkbenchError(f"{path}: no such file") from None
    if size > 4 * limit:  # UTF-8 takes at most four bytes a character
        raise WorkbenchError(f"{path.name} is {size:,} bytes; the limit for {what} is {limit:,} characters")
    data = path.read_bytes()
    if b"\x00" in data:
        raise WorkbenchError(f"{path.name} is not a text file (it holds binary data): save {what} as "
                             "Markdown or plain text in UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkbenchError(f"{path.name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 "
                             "Markdown or plain text") from None
    return check_text(what, text, limit)
