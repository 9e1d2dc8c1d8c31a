"""Atomic, durable file writes: a reader sees the old file or the complete new one, never a partial one.

Every result diffbrain writes (fits, recordings, checkpoints, benchmark records, plots, reports) goes
through `write_atomically`, so a crash, a full disk or Ctrl-C while writing never costs the previous file.
A character device or FIFO (``/dev/null``, ``/dev/stdout`` into a pipe) has no file to replace: it is
written into, and stays what it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no flock; `exclusive_lock` then locks nothing
    fcntl = None

NEW_FILE_MODE = 0o666
"""The mode a new file is created with before the process's umask applies, as `open` does (0644 under the
usual umask 022, 0600 under 077). `tempfile.mkstemp` would make it 0600 whatever the umask, hiding results
from the group. A file that is replaced keeps its own permission bits."""

_TEMPORARY_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _temporary_file(target: Path) -> tuple[int, Path]:
    """A new, empty hidden file next to ``target`` (``.<name>.<random>.tmp``), created with `NEW_FILE_MODE`
    under the umask (the kernel applies it, so no other thread's umask can interfere); its descriptor and
    path."""
    while True:
        temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temporary, _TEMPORARY_FLAGS, NEW_FILE_MODE), temporary
        except FileExistsError:  # another writer's temporary file: draw another name
            continue


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, a scheduler's time limit) raises `SystemExit` with status
    143 (128 + 15), as Ctrl-C raises `KeyboardInterrupt`, so `write_atomically` removes its temporary file;
    Python's default would end the process on the spot and leave it behind. Only around a write: outside
    one, the default stays (a handler would wait for a running compiled JAX call to return before the
    process ends). Only in the main thread, and only where SIGTERM has the default handling."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
"""`flock` errors of a filesystem that has no locks (Lustre without ``-o flock``, some network mounts)."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive `fcntl.flock` on the file ``path`` (created if absent, mode 0666 less the umask, and
    left in place) for the block. ``wait=False``: raise `BlockingIOError` at once when another process holds
    it. The file is opened for writing (NFS locks need that), or read-only where this user may not write it
    (a lock file another user left). A filesystem without locks gets a `RuntimeWarning` and no lock;
    Windows (no `fcntl`) gets no lock.

    Raises:
        PermissionError: this user can neither write nor read the lock file (another user's, made under a
            umask of 077).
    """
    read_only = False
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), NEW_FILE_MODE)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not os.path.isfile(path):
            raise
        handle, read_only = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), True
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as error:  # BlockingIOError (held, wait=False) too
                # NFS locks a read-only descriptor with EBADF
                if error.errno not in _NO_LOCKS and not (read_only and error.errno == errno.EBADF):
                    raise
                warnings.warn(
                    f"{os.fspath(path)}: no file lock here ({error.strerror}); going on without one, so two "
                    "processes writing here at once may overwrite each other's work.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        yield
    finally:
        os.close(handle)  # releases the lock


def is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` (links followed) is a character device or a FIFO, which `write_atomically` writes
    into instead of replacing: ``/dev/null``, a named pipe, ``/dev/stdout`` when it is a terminal or pipe."""
    try:
        mode = os.stat(path).st_mode  # follows /proc's links too (/dev/stdout → a pipe with no path)
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], mode: str = "w", newline: str | None = None
) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it onto ``path``.

    The temporary file is flushed and synced to disk before `os.replace` renames it, so even a power loss
    leaves either the old file or the new one. If ``write`` raises, the temporary file is removed, ``path``
    is left as it was, and the exception propagates; a SIGTERM meanwhile raises `SystemExit` (status 143)
    and is handled the same way (`_sigterm_as_exit`). A symbolic link is followed: the file it points to is
    replaced (the link stays), and an existing file keeps its permission bits; a new file gets
    `NEW_FILE_MODE` less the umask, as `open` would give it. A character device or FIFO (`is_stream`) is
    opened and written into, never replaced (as root, replacing ``/dev/null`` would break the system).

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
    if is_stream(path):
        with open(path, mode, newline=newline) as file:
            write(file)
        return path
    target = path.resolve()  # the rename happens next to the file itself, so a link to it stays a link
    try:
        permissions = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        permissions = None  # a new file: the mode it was created with (umask applied) stands
    with _sigterm_as_exit():
        handle, temporary = _temporary_file(target)
        try:
            with os.fdopen(handle, mode, newline=newline) as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            if permissions is not None:
                os.chmod(temporary, permissions)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return path
