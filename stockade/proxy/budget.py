"""One memory budget per worker process, shared by its in-memory caches.

Owns the count of bytes the caches of one serving process hold (metadata
documents, rendered documents, small blobs, the warm memo, parsed documents) and
the choice of which cache gives some back once together they hold more than
``server.memory_budget_bytes``. Each cache keeps its own order (least recently
used first), its own bound (the per-cache keys stay upper bounds) and weighs its
own entries where it already did; it charges and releases them here through its
``Account``.

Past the budget, the cache that holds the most for its size gives back its least
recently used entries: the one whose bytes held are the largest part of its own
bound. A cache that is idle leaves its room to the others, and under a load that
fills them all each keeps a part of the budget in proportion to its bound, so a
churn of many different blobs cannot flush the one page every one of them is
decided on. Nothing is done on a hit: the order within a cache is the cache's, and
only adding an entry may shed.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from typing import TypeVar

from cachetools import LRUCache

K = TypeVar("K")
V = TypeVar("V")


class Account:
    """One cache's share of a ``MemoryBudget``: what it holds, and how it sheds."""

    __slots__ = ("_budget", "bound", "name", "shed", "used")

    def __init__(self, budget: MemoryBudget, name: str, bound: int,
                 shed: Callable[[], bool]) -> None:
        self._budget = budget
        self.name = name
        self.bound = max(1, bound)
        # drops the cache's least recently used entry (releasing it): False when none
        self.shed = shed
        self.used = 0

    def takes(self, size: int) -> bool:
        """True when an entry of ``size`` bytes may be held at all (no larger than the
        budget, nor than the cache's own bound)."""
        return size <= min(self._budget.max_bytes, self.bound)

    def charge(self, size: int) -> None:
        """Count ``size`` bytes just held; past the budget, the caches shed."""
        self.used += size
        budget = self._budget
        budget.used += size
        if budget.used > budget.max_bytes:
            budget.shed()

    def release(self, size: int) -> None:
        """Count ``size`` bytes no longer held."""
        self.used -= size
        budget = self._budget
        budget.used -= size
        if budget.on_release is not None:
            budget.on_release(size)


class MemoryBudget:
    """``max_bytes`` for every cache of one process together (see the module docstring)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._accounts: list[Account] = []
        self._shedding = False
        # told of the bytes each entry dropped gave back (``heaptrim``)
        self.on_release: Callable[[int], None] | None = None

    def account(self, name: str, bound: int, shed: Callable[[], bool]) -> Account:
        """A cache's account: ``bound`` its own limit in bytes, ``shed`` drops its least
        recently used entry (releasing its bytes), False when it holds none."""
        account = Account(self, name, bound, shed)
        self._accounts.append(account)
        return account

    def shed(self) -> None:
        """Drop entries until the caches fit the budget: each time from the cache that
        holds the most for its bound."""
        if self._shedding:  # a cache that releases while shedding: the loop goes on
            return
        self._shedding = True
        try:
            candidates = [a for a in self._accounts if a.used > 0]
            while self.used > self.max_bytes and candidates:
                fullest = max(candidates, key=lambda a: a.used / a.bound)
                if not fullest.shed() or fullest.used <= 0:
                    candidates.remove(fullest)
        finally:
            self._shedding = False

    def usage(self) -> dict[str, int]:
        """Bytes held per cache."""
        usage: dict[str, int] = {}
        for account in self._accounts:
            usage[account.name] = usage.get(account.name, 0) + account.used
        return usage


def unbounded() -> MemoryBudget:
    """A budget of its own for a cache given none: only the cache's bound holds it."""
    return MemoryBudget(sys.maxsize)


class QuickLRU(LRUCache[K, V]):
    """A ``cachetools.LRUCache`` whose ``get`` is one call: cachetools' own makes five
    Python calls a hit (its membership test, ``__getitem__`` twice, the order's move),
    and a warm request makes four of them. It reads the cache's own dict and order,
    where this cachetools version has them; elsewhere it is cachetools' ``get``."""

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        super().__init__(maxsize, getsizeof=getsizeof)
        # (cachetools' private attributes: both there, or the quick way is off)
        own = vars(self)
        data, order = own.get("_Cache__data"), own.get("_LRUCache__order")
        self._quick = ((data, order) if isinstance(data, dict)
                       and isinstance(order, collections.OrderedDict) else None)

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        quick = self._quick
        if quick is None:
            return super().get(key, default)
        try:
            value: V = quick[0][key]
        except KeyError:
            return default
        quick[1].move_to_end(key)
        return value


class BudgetedLRU(QuickLRU[K, V]):
    """A ``cachetools.LRUCache`` weighed by ``getsizeof`` that charges what it holds to
    a budget's account, and sheds its least recently used entry when asked."""

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int], budget: MemoryBudget,
                 name: str) -> None:
        super().__init__(maxsize, getsizeof=getsizeof)
        self.account = budget.account(name, maxsize, self._shed)

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            del self[key]
        size = int(self.getsizeof(value))
        if not self.account.takes(size):
            return  # larger than the budget (or the bound): not held
        super().__setitem__(key, value)  # the cache's own bound evicts through __delitem__
        self.account.charge(size)

    def __delitem__(self, key: K) -> None:
        before = self.currsize
        super().__delitem__(key)
        self.account.release(int(before - self.currsize))

    def clear(self) -> None:
        self.account.release(int(self.currsize))
        super().clear()

    def _shed(self) -> bool:
        if not self:
            return False
        self.popitem()
        return True
