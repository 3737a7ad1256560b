"""What one artifact request took, noted as it is served, for ``warmmemo``.

Owns the per-request note (a context variable): the decisions the gate made and
the facts they were made on, the metadata documents read and until when each is
fresh, and the stored blob answered with. The gate, the metadata cache and the
pipeline add to it where a note is open; nothing else reads it but ``warmmemo``.
Kept apart so that those modules depend on nothing of the memo's.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from stockade.policy.model import Facts, PackageRef


@dataclass(slots=True)
class Note:
    """The parts of one request a later identical one may repeat without redoing."""

    decisions: list[tuple[PackageRef, Facts]] = field(default_factory=list)
    # (ecosystem, document key, document version, fresh until on the cache's clock)
    documents: list[tuple[str, str, str, float]] = field(default_factory=list)
    # (ArtifactSource, BlobInfo, whether it went to the served-artifacts record)
    served: list[tuple[Any, Any, bool]] = field(default_factory=list)
    spoiled: bool = False  # something happened that cannot be repeated from the note

    def decided(self, ref: PackageRef, facts: Facts) -> None:
        self.decisions.append((ref, facts))

    def read(self, ecosystem: str, key: str, version: str, fresh_until: float) -> None:
        self.documents.append((ecosystem, key, version, fresh_until))

    def answered(self, source: Any, info: Any, recorded: bool) -> None:
        self.served.append((source, info, recorded))

    def spoil(self) -> None:
        self.spoiled = True


_NOTE: ContextVar[Note | None] = ContextVar("stockade_warm_note", default=None)


def note() -> Note | None:
    """The note of the request being served, where one is open."""
    return _NOTE.get()


def open_note() -> tuple[Note, Any]:
    """Open a note for the current request; pass the token to ``close_note``."""
    taken = Note()
    return taken, _NOTE.set(taken)


def close_note(token: Any) -> None:
    _NOTE.reset(token)
