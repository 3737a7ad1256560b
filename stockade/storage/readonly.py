"""Telling storage that is there but cannot be written from storage that works.

Owns the probe made once at start: a storage path that exists but refuses a
new file (a read-only mount, a folder the server's user may not write) is
served read-only; one that does not exist is created by the stores as ever,
and fails start-up with a one-line error if it cannot be.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

# What a file system says when it may be read but not written.
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def read_only_reason(root: Path) -> str | None:
    """Why the existing folder ``root`` cannot be written (e.g. "Read-only file
    system"), or None when it can, or does not exist (blocking: run in a thread).

    Raises:
        OSError: ``root`` cannot even be looked at, or writing failed for
            another reason (a full disk is not read-only).
    """
    if not root.is_dir():
        return None
    probe = root / f".probe-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno in _READ_ONLY_ERRNOS:
            return exc.strerror or os.strerror(exc.errno or 0)
        raise
    os.close(fd)
    probe.unlink()
    return None
