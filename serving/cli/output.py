"""What the CLI prints: errors on stderr with their exit code, and plain-text tables."""

from __future__ import annotations

from typing import NoReturn

import typer

EXIT_FAILURE = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> None:
    if not rows:
        typer.echo(f"({empty})")
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())
