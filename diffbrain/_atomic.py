"""Atomic, durable file writes: a reader sees the old file or the complete new one, never a partial one.

Every result diffbrain writes (fits, recordings, checkpoints, benchmark records, plots, reports) goes
through `write_atomically`, so a crash, a full disk or Ctrl-C while writing never costs the previous file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

PERMISSIONS = 0o644
"""The mode of a new file: `tempfile.mkstemp` makes it 0600, which would hide results from the group. A file
that is replaced keeps its own permission bits."""


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], mode: str = "w", newline: str | None = None
) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it onto ``path``.

    The temporary file is flushed and synced to disk before `os.replace` renames it, so even a power loss
    leaves either the old file or the new one. If ``write`` raises, the temporary file is removed, ``path``
    is left as it was, and the exception propagates. A symbolic link is followed: the file it points to is
    replaced (the link stays), and an existing file keeps its permission bits (new files get
    `PERMISSIONS`).

    Args:
        path: the file to write (or a link to it); its folder must exist.
        write: writes the whole content to the open file it is given.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        newline: passed to `open` in text mode (``""`` for the `csv` module).

    Returns:
        ``path`` as a `Path`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    target = path.resolve()  # the rename happens next to the file itself, so a link to it stays a link
    try:
        permissions = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        permissions = PERMISSIONS
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, newline=newline) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, permissions)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
