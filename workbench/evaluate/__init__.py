"""Evaluation: models scored side by side on held-out references, preference pairs, RAG questions
and human votes, as a job that writes a report; the scoreboard reads every report."""
