"""What the commands print: tables and verdict lines (stdout), warnings (stderr)."""
from __future__ import annotations

import click

__all__ = ["print_warnings", "print_validation"]


def print_warnings(warnings) -> None:
    for w in warnings:
        click.echo(f"warning: {w}", err=True)


def print_validation(report) -> None:
    from edgeconv.console import print_table
    from edgeconv.verify.report import detail_lines, table_columns, table_rows

    print_table("validation against the Keras reference", table_columns(), table_rows(report))
    print_warnings(report.warnings)
    for line in detail_lines(report):
        click.echo(line)
    click.echo(f"{'PASS' if report.passed else 'FAIL'}: {report.summary_line()}")
