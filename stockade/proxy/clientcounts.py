"""Open connections per client address, counted across worker processes.

Owns a table in anonymous shared memory, made by the supervisor before it forks
the workers, so ``server.max_connections_per_client`` bounds a client's
connections to the whole server, not to each worker (the kernel spreads one
client's connections over all of them). What happens to a refused connection is
``serving``'s business; this module only counts.

The table: slots of (16-byte digest of the address, open connections on each
worker), found by linear probing from the digest and changed under one lock (a
POSIX semaphore shared by the forked workers): a connection's opening and closing
each take it once, a few microseconds. A worker that dies has its column cleared
by the supervisor, so its connections do not count forever. A slot whose counts
fell to zero is reused, so the table only needs room for the clients connected at
once; past that, further clients are admitted uncounted.
"""

from __future__ import annotations

import hashlib
import mmap
import struct

from stockade.proxy.metrics import Metrics
from stockade.proxy.serving import ClientLimits, ConnectionGuard

_EMPTY = bytes(16)


class SharedClientCounts:
    """Connections open per client address and worker, in memory every forked
    worker shares; a worker's column is cleared when it dies."""

    def __init__(self, workers: int, slots: int = 16384) -> None:
        self._row = struct.Struct(f"=16s{workers}H")
        self._slots = slots
        self._table = mmap.mmap(-1, slots * self._row.size)  # MAP_SHARED: seen after fork
        import multiprocessing  # here: a single process (no supervisor) never needs it

        self._lock = multiprocessing.get_context("fork").Lock()

    def _read(self, slot: int) -> tuple[bytes, list[int]]:
        key, *counts = self._row.unpack_from(self._table, slot * self._row.size)
        return key, counts

    def _find(self, key: bytes) -> tuple[int | None, int | None]:
        """The slot holding ``key``, and the first slot a new key may take."""
        start = int.from_bytes(key[:4], "little") % self._slots
        reusable = None
        for step in range(self._slots):
            slot = (start + step) % self._slots
            held, counts = self._read(slot)
            if held == key:
                return slot, reusable
            if held == _EMPTY:
                return None, slot if reusable is None else reusable
            if not any(counts) and reusable is None:
                reusable = slot
        return None, reusable

    def admit(self, client: str, cap: int, worker: int) -> bool:
        """Count one more connection from ``client`` (on ``worker``) unless it has
        ``cap`` open in all workers together."""
        key = _key(client)
        with self._lock:
            slot, free = self._find(key)
            if slot is None:
                if free is None:
                    return True  # the table is full of live clients: not counted
                slot, counts = free, [0] * self._width
            else:
                counts = self._read(slot)[1]
            if sum(counts) >= cap:
                return False
            counts[worker] = min(counts[worker] + 1, 0xFFFF)
            self._row.pack_into(self._table, slot * self._row.size, key, *counts)
            return True

    @property
    def _width(self) -> int:
        return (self._row.size - 16) // 2

    def release(self, client: str, worker: int) -> None:
        """One connection from ``client`` on ``worker`` closed."""
        key = _key(client)
        with self._lock:
            slot, _ = self._find(key)
            if slot is not None:
                counts = self._read(slot)[1]
                counts[worker] = max(0, counts[worker] - 1)
                self._row.pack_into(self._table, slot * self._row.size, key, *counts)

    def forget(self, worker: int) -> None:
        """A worker died: its connections are gone (called by the supervisor)."""
        with self._lock:
            for slot in range(self._slots):
                key, counts = self._read(slot)
                if key != _EMPTY and counts[worker]:
                    counts[worker] = 0
                    self._row.pack_into(self._table, slot * self._row.size, key, *counts)

    def open(self, client: str) -> int:
        """Connections open now from ``client``, in every worker."""
        with self._lock:
            slot, _ = self._find(_key(client))
            return 0 if slot is None else sum(self._read(slot)[1])


def _key(client: str) -> bytes:
    return hashlib.blake2b(client.encode(), digest_size=16).digest()


class SharedConnectionGuard(ConnectionGuard):
    """A ``ConnectionGuard`` whose per-client limit counts every worker's connections."""

    def __init__(self, limits: ClientLimits, metrics: Metrics | None,
                 counts: SharedClientCounts, worker: int) -> None:
        super().__init__(limits, metrics)
        self._counts = counts
        self._worker = worker

    def _admit(self, client: str) -> bool:
        cap = self.limits.max_connections_per_client
        if cap is None:
            return super()._admit(client)
        if not self._counts.admit(client, cap, self._worker):
            self.closed("per_client_limit")
            return False
        self._open[client] = self._open.get(client, 0) + 1  # this worker's, as before
        return True

    def _release(self, client: str) -> None:
        if self.limits.max_connections_per_client is not None:
            self._counts.release(client, self._worker)
        super()._release(client)
