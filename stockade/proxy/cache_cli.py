"""``stockade cache verify``: re-hash every stored blob and remove those that fail.

Owns the command's answer. Over storage that cannot be written (a read-only
mount) every blob is still re-hashed and each bad one reported, as what would
be removed; nothing is removed, and the exit status says whether any failed.
A storage path that cannot be read is one line naming it, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys

from stockade.config.model import Settings
from stockade.storage.backends import open_store
from stockade.storage.errors import StorageError
from stockade.storage.readonly import read_only_reason
from stockade.storage.verify import verify_all


async def _verify(settings: Settings, read_only: str | None) -> tuple[int, list[str]]:
    store = open_store(settings, read_only=read_only)
    await store.open()
    try:
        return await verify_all(store, remove=read_only is None)
    finally:
        await store.close()


def verify(settings: Settings) -> int:
    """Verify the store of ``settings`` and print the outcome.

    Returns:
        0 when every blob is intact, 1 when any failed (removed, or reported on
        read-only storage), 2 when the storage cannot be read.
    """
    path = settings.storage.path
    try:
        read_only = None
        if settings.storage.backend == "filesystem":
            read_only = read_only_reason(path)
        checked, bad = asyncio.run(_verify(settings, read_only))
    except (OSError, StorageError) as exc:
        why = exc.diagnostics() if isinstance(exc, StorageError) else exc.strerror or str(exc)
        print(f"stockade: cannot verify the storage at {path}: {why}",  # noqa: T201
              file=sys.stderr)
        return 2
    if read_only is None:
        lines = [f"checked {checked} blobs, removed {len(bad)} that failed verification",
                 *(f"removed sha256:{sha256}" for sha256 in bad)]
    else:
        lines = [f"checked {checked} blobs, {len(bad)} failed verification and would be "
                 f"removed, but the storage at {path} is read-only ({read_only}): nothing "
                 "was removed", *(f"would remove sha256:{sha256}" for sha256 in bad)]
    print("\n".join(lines))  # noqa: T201
    return 1 if bad else 0
