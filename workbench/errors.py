"""User-facing errors: the CLI prints their message and exits 2, the UI shows it as is."""


class WorkbenchError(Exception):
    """Something the user can fix; the message says what and how."""
