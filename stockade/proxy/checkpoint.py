"""The decision log's anchor: its head record count and hash, kept beside it.

Owns the checkpoint file (``<log>.checkpoint``): writing it atomically after
each flush of the log, optionally signing it with an HMAC key, and reading it
back. A hash chain alone cannot show that records were cut off its end; the
checkpoint can, as long as it is not rewritten with the log. Sign it (the key
lives only in the server's environment) or watch
``stockade_decision_log_records`` from outside to make that hold against
someone who can write both files.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The log's head as last written: how many records, and the last one's hash."""

    records: int
    hash: str


class CheckpointError(Exception):
    """A checkpoint that cannot be read or whose signature does not match."""


def checkpoint_path(log: Path) -> Path:
    """Where the checkpoint of ``log`` lives."""
    return log.with_name(log.name + ".checkpoint")


def _mac(key: bytes, head: Checkpoint) -> str:
    message = orjson.dumps({"hash": head.hash, "records": head.records},
                           option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def write_checkpoint(log: Path, head: Checkpoint, key: bytes | None = None) -> None:
    """Replace the checkpoint atomically (temporary file, fsync, rename).

    Raises:
        OSError: the checkpoint could not be written; the old one stays.
    """
    body: dict[str, object] = {"records": head.records, "hash": head.hash}
    if key is not None:
        body["hmac"] = _mac(key, head)
    target = checkpoint_path(log)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, orjson.dumps(body) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # not every file system syncs directories
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checkpoint(log: Path, key: bytes | None = None) -> Checkpoint | None:
    """The checkpoint of ``log``, or None when there is none.

    Raises:
        CheckpointError: it is not a checkpoint, or (with ``key``) it is not
            signed with that key.
    """
    try:
        raw = checkpoint_path(log).read_bytes()
    except FileNotFoundError:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"{checkpoint_path(log)} is not JSON") from exc
    if not (isinstance(body, dict) and isinstance(body.get("records"), int)
            and isinstance(body.get("hash"), str) and body["records"] >= 0):
        raise CheckpointError(f"{checkpoint_path(log)} is not a decision log checkpoint")
    head = Checkpoint(body["records"], body["hash"])
    if key is not None:
        mac = body.get("hmac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, head)):
            raise CheckpointError(f"{checkpoint_path(log)}: signature does not match the "
                                  "key: the checkpoint was written without it or edited")
    return head


def key_from_env(name: str | None, environ: Mapping[str, str]) -> bytes | None:
    """The HMAC key held in the environment variable ``name``, if one is named and set."""
    if not name:
        return None
    value = environ.get(name)
    return value.encode() if value else None
