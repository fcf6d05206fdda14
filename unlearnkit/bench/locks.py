"""Locks between processes on one machine: `flock` on a file, released when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

from unlearnkit.core.errors import UsageError
from unlearnkit.engine.checkpoint import remove_unfinished_writes


@contextlib.contextmanager
def exclusive_lock(path: Path, *, blocking: bool = True, note: str = "") -> Iterator[bool]:
    """Hold an exclusive `fcntl.flock` on the file `path` (created, and removed on release).

    Yields True once held; with `blocking=False` yields False at once when another process
    holds it. `note` (e.g. a pid) is written into the file for whoever finds it held. The lock
    dies with its process, so a crashed holder never leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder we waited for may have removed the file: lock the one now at `path`
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev):
            break
        os.close(fd)
    try:
        if note:
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        yield True
    finally:
        path.unlink(missing_ok=True)  # still held: a waiter that opened this file sees it is gone
        os.close(fd)


@contextlib.contextmanager
def owned_dir(out: Path, *, wait: bool = False, waiting: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Hold the folder `out` for one run: a lock file `out/.lock` naming this process's pid.

    Another run holding it: `UsageError` naming its pid, or with `wait`, wait for it to finish
    (`waiting` is told once why). Once held, the temporary files of a run killed mid-write are
    removed. A folder this creates and leaves empty is removed again.
    """
    created = not out.exists()
    lock = out / ".lock"
    try:
        with exclusive_lock(lock, blocking=False, note=str(os.getpid())) as held:
            if held:
                remove_unfinished_writes(out)
                yield
                return
        holder = _read_holder(lock)
        if not wait:
            raise UsageError(f"{str(out)!r} is in use by another run ({holder}); wait for it, "
                             "run with --wait to start after it, or choose another --out")
        if waiting:
            waiting(f"unlearnkit: waiting for the run using {out} ({holder}) to finish")
        with exclusive_lock(lock, note=str(os.getpid())):
            remove_unfinished_writes(out)
            yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty


def _read_holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"
