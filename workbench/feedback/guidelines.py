"""Annotation guidelines: Markdown a trainer writes, shown to annotators above every pair.

Each save is a new version, appended to ``data/guidelines.jsonl`` (the last line is the current
one; the history stays for whoever asks which rules an old vote followed). Every vote records
the version it was cast under, and the merge can keep only votes of the current version.
"""
from __future__ import annotations

from workbench.versioned_text import Version, VersionedText

GUIDELINE_CHARS = 50_000
Guidelines = Version  # version 0: none written yet
GUIDELINES = VersionedText("guidelines.jsonl", "the guidelines", GUIDELINE_CHARS)

guidelines_file = GUIDELINES.path
current_guidelines = GUIDELINES.current
save_guidelines = GUIDELINES.save
guidelines_from_file = GUIDELINES.from_file
