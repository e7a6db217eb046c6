"""One exception type for user mistakes. Raised deep in the library, turned into one line + exit code at the CLI."""
from __future__ import annotations


class EdgeconvError(Exception):
    """A user-facing error: the message is one line that says what is wrong and, where possible, what to do.

    ``exit_code`` follows click's convention: 2 for usage errors (unknown names, bad options), 1 otherwise.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(EdgeconvError):
    """Bad option values or unknown names (exit code 2)."""

    exit_code = 2


class ValidationFailed(EdgeconvError):
    """An artifact does not meet its tolerance (exit code 1)."""

    exit_code = 1
