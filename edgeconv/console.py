"""Terminal output through rich: tables and a progress display that degrades to plain lines when not a TTY.

rich is used because it already does both well (column sizing, TTY detection, live progress); writing that by hand
would be more code with worse behaviour in pipes and CI logs.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

_stdout = Console(highlight=False, soft_wrap=False)


_saved_err = None  # the real stderr while quiet_native() has fd 2 pointed elsewhere


def _err():
    return _saved_err or sys.stderr


def _err_console() -> Console:
    return Console(file=_err(), highlight=False)


class _Captured:
    text = ""


@contextlib.contextmanager
def quiet_native():
    """Capture what TensorFlow / the TFLite converter / LiteRT print from C++ (absl logs, "fully_quantize: ..."),
    which Python's redirect_stdout cannot catch. fd 1 and 2 go to a temp file while the block runs; the text is
    kept on the yielded object so callers can surface what matters. edgeconv's own messages use a saved handle.

    Only two kinds of caller: the CLI, around a whole command (silencing; ``--debug`` turns it off), and the two
    library functions that must *read* native output because it is the only place it exists (TF's GPU analyzer
    report in :func:`edgeconv.inspect.gpu_compatibility`, XNNPACK's "created delegate" line), each around one call.
    """
    cap = _Captured()
    try:
        fds = [sys.stdout.fileno(), sys.stderr.fileno()]
    except (AttributeError, OSError, ValueError):
        yield cap
        return
    global _saved_err
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    outer = _saved_err
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            if outer is None:
                _saved_err = os.fdopen(os.dup(saved[1]), "w", buffering=1)
            for fd in fds:
                os.dup2(tmp.fileno(), fd)
            yield cap
        finally:
            if outer is None and _saved_err is not None:
                _saved_err.close()
                _saved_err = None
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, s in zip(fds, saved):
                os.dup2(s, fd)
                os.close(s)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", "replace")


def print_table(title: str, columns: list[str], rows: list[list], right_align: set[str] = frozenset(),
                console: Console | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for i, c in enumerate(columns):  # the first column (a file or model name) is never folded
        table.add_column(c, justify="right" if c in right_align else "left", overflow="fold", no_wrap=i == 0)
    for r in rows:
        table.add_row(*[str(v) for v in r])
    con = console or _stdout
    if not con.is_terminal:  # wide plain output for pipes and CI logs instead of an 80-column fold
        con = Console(highlight=False, width=max(220, con.width), file=con.file)
    con.print(table)


def markdown_table(columns: list[str], rows: list[list], cell=str) -> str:
    """A GitHub-flavoured markdown table; ``cell`` formats each value, ``|`` inside a value is escaped."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in r) + " |" for r in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def step(description: str, quiet: bool = False):
    """Show a long step: a spinner on a TTY; otherwise (pipes, CI logs) one plain line with the time when the step
    is done. A step that fails prints nothing itself, so bad input ends in exactly one line: the error."""
    t0 = time.perf_counter()
    if quiet:
        yield
        return
    con = _err_console()
    if con.is_terminal:
        with con.status(description):
            yield
        _err_console().print(f"[green]✓[/] {description} ({time.perf_counter() - t0:.1f} s)")
    else:
        yield
        print(f"done {description} ({time.perf_counter() - t0:.1f} s)", file=_err(), flush=True)


def info(message: str) -> None:
    _err_console().print(message, markup=False, highlight=False)
