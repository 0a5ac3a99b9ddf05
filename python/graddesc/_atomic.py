"""Atomic file writes (a temporary file beside the target, fsynced, then renamed): what
gd.save and graddesc.safetensors write through, so a crash never leaves a half-written file."""

from __future__ import annotations

import os
import secrets
from typing import Any


def write_atomic(f: Any, write: Any) -> None:
    """Calls write(binary file) on a temporary file beside the path `f`, then renames it."""
    path = os.fspath(f)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable (POSIX); a no-op where directories can't be opened."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
