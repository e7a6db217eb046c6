"""One error path: user errors are one line with their exit code; bugs are one line, exit 1, never a usage error;
--debug / EDGECONV_DEBUG=1 show the traceback."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgeconv.cli import main
from edgeconv.errors import EdgeconvError, InternalError, UsageError, first_line


@pytest.mark.parametrize("value,want", [
    (ValueError("first\nsecond"), "first"), (ValueError(""), "ValueError"), (ValueError("\n\n  x  \n"), "x"),
    ("", ""), (RuntimeError("ctx line\nerror: the real one\nmore"), "ctx line"),
])
def test_first_line(value, want):
    assert first_line(value) == want


def test_first_line_prefers_the_error_line():
    assert first_line(RuntimeError("loc(...)\n  error: 'tfl.x' op failed\nnote"), prefer="error") == \
        "error: 'tfl.x' op failed"


def test_internal_error_is_not_a_user_error():
    assert not issubclass(InternalError, EdgeconvError) and UsageError.exit_code == 2


def _failing_export(exc):
    def run(*a, **k):
        raise exc
    return run


def test_a_bug_is_one_line_exit_1_with_a_debug_hint(monkeypatch, tmp_path):
    import edgeconv.pipeline.export as ex

    monkeypatch.setattr(ex, "export", _failing_export(KeyError("boom")))
    res = CliRunner().invoke(main, ["export", "lenet5", "--out", str(tmp_path)])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "internal error: KeyError" in lines[0] and "--debug" in lines[0]
    assert "usage" not in res.output.lower()


def test_a_plain_value_error_from_inside_is_a_bug_not_a_usage_error(monkeypatch, tmp_path):
    import edgeconv.pipeline.export as ex

    monkeypatch.setattr(ex, "export", _failing_export(ValueError("shapes (3,) and (4,) not aligned")))
    res = CliRunner().invoke(main, ["export", "lenet5", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "internal error: ValueError" in res.output


@pytest.mark.parametrize("how", ["root", "command", "env"])
def test_debug_shows_the_traceback(monkeypatch, tmp_path, how):
    import edgeconv.pipeline.export as ex

    monkeypatch.setattr(ex, "export", _failing_export(KeyError("boom")))
    args = ["export", "lenet5", "--out", str(tmp_path)]
    if how == "root":
        args = ["--debug", *args]
    elif how == "command":
        args = [*args, "--debug"]
    else:
        monkeypatch.setenv("EDGECONV_DEBUG", "1")
    res = CliRunner().invoke(main, args)
    assert isinstance(res.exception, KeyError)  # propagated: click's runner keeps it with its traceback


def test_user_error_keeps_its_exit_code(monkeypatch, tmp_path):
    import edgeconv.pipeline.export as ex

    monkeypatch.setattr(ex, "export", _failing_export(UsageError("--foo must be 3")))
    res = CliRunner().invoke(main, ["export", "lenet5", "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.output.strip() == "Error: --foo must be 3"


@pytest.mark.parametrize("argv,needle", [
    (["export"], "Missing argument"), (["export", "x", "--io", "nope"], "--io"),
    (["export", "x", "--mean", "1,2"], "three comma-separated"), (["bench", "x", "--threads", "0"], "--threads"),
])
def test_click_usage_errors_are_one_line_exit_2(argv, needle):
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 2, res.output
    assert needle in res.output and res.output.strip().count("\n") == 0, res.output


@pytest.mark.parametrize("cmd", [[], ["export"], ["validate"], ["bench"], ["inspect"], ["zoo"], ["zoo", "list"],
                                 ["sweep"]])
def test_every_command_has_help(cmd):
    res = CliRunner().invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def test_precision_flags_come_from_the_formats_table():
    from edgeconv.precisions import PRECISIONS

    res = CliRunner().invoke(main, ["export", "--help"], terminal_width=200)
    for p in PRECISIONS.values():
        assert p.flag in res.output
