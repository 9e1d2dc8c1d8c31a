"""The command line's parsers of output paths: an empty name is refused, not read as the current folder."""

from __future__ import annotations

from pathlib import Path

import typer


def output_folder(value: str) -> Path:
    """An output folder's name (``--out`` of bench, leaderboard, reproduce, train), never empty: typer would
    read ``''`` as the current folder."""
    return _named_path(value, "a folder")


def output_file(value: str) -> Path:
    """An output file's name (``--out``, ``--plot``, ``--raster``), never empty: typer would read ``''`` as
    the current folder."""
    return _named_path(value, "a file")


def _named_path(value: str, kind: str) -> Path:
    if not value:
        raise typer.BadParameter(f"empty, which would mean the current folder; name {kind}.")
    return Path(value)
