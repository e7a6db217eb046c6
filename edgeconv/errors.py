"""edgeconv's two kinds of error (Polygraphy's split) and the one helper that turns any exception into one line.

- :class:`EdgeconvError` and its subclasses are *the user's* problem: bad input, a missing file, an artifact that
  fails validation. Raised at the boundaries with a one-line message that says what is wrong and what to do; the CLI
  prints that line and exits with ``exit_code`` (2 for usage errors, 1 otherwise), never with a traceback.
- :class:`InternalError` is *edgeconv's* problem (a broken invariant, a converter that produced something it should
  not). It is deliberately **not** a subclass of :class:`EdgeconvError`, so no ``except EdgeconvError`` can report a
  bug as the user's mistake. The CLI prints it, like any unexpected exception, as one line plus "run with --debug for
  the traceback", exit code 1.
"""
from __future__ import annotations

__all__ = ["EdgeconvError", "UsageError", "ValidationFailed", "InternalError", "first_line"]


def first_line(e: BaseException | str, *, prefer: str | None = None) -> str:
    """The first non-empty line of an exception's message (or of a string); the exception's type name when the
    message is empty. ``prefer``: return the first line containing this text (case-insensitive) when there is one,
    e.g. ``prefer="error"`` for converters that print context lines before the error itself."""
    text = e if isinstance(e, str) else str(e)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if prefer is not None:
        hit = next((ln for ln in lines if prefer.lower() in ln.lower()), None)
        if hit is not None:
            return hit
    if lines:
        return lines[0]
    return "" if isinstance(e, str) else type(e).__name__


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


class InternalError(Exception):
    """A bug in edgeconv (not the user's fault): never caught as an :class:`EdgeconvError`, never exit code 2."""

    exit_code = 1
