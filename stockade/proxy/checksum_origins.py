"""Which checksum files each Maven upstream publishes, learned from its answers.

Maven verifies an artifact with the strongest checksum its upstream publishes
beside it (sha512, sha256, then sha1). Many repositories (Central for most of its
history) publish only ``.md5`` and ``.sha1``, so asking for ``.sha512`` and
``.sha256`` first costs two 404s for every cold artifact. This module owns the
origin-wide memory that spares them: once an upstream has answered 404 for an
algorithm while publishing a weaker one beside the same file, and has never been
seen publishing that algorithm, the algorithm is not asked of it again for a while
(``ABSENT_TTL_S``). An algorithm the upstream was ever seen publishing is always
asked for, so no artifact is verified with a weaker checksum than its origin is
known to offer (an artifact whose response carries a digest in a header is verified
with that digest unless the origin is known to publish a stronger one: ``published``).

The memory is a record per upstream in the storage folder's refs, so every worker
process (and replica sharing the folder) learns from one probe. Losing a write to a
concurrent one costs one more probe, never a weaker check. It owns nothing of how a
checksum is fetched or compared (``maven.py`` does that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from stockade.proxy.upstream import Upstream
from stockade.storage.errors import StorageError
from stockade.storage.records import RecordStore

logger = logging.getLogger(__name__)

ABSENT_TTL_S = 3600.0  # how long an upstream's 404 for an algorithm stands for all files
NAMESPACE = "maven-checksums"
_SEEN = "seen"


class ChecksumOrigins:
    """Per upstream: the checksum algorithms it publishes, and those it does not."""

    def __init__(self, refs: RecordStore, *, absent_ttl_s: float = ABSENT_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._refs = refs
        self._absent_ttl_s = absent_ttl_s
        self._clock = clock

    @staticmethod
    def _key(upstream: Upstream) -> str:
        return f"{upstream.name}|{upstream.url}"

    async def _algorithms(self, upstream: Upstream) -> dict[str, object]:
        record = await self._refs.get(self._key(upstream))
        algorithms = record.get("algorithms") if record else None
        return dict(algorithms) if isinstance(algorithms, dict) else {}

    async def worth_asking(self, upstream: Upstream, algorithms: Iterable[str]
                           ) -> list[str]:
        """``algorithms`` (in order) less those ``upstream`` is known not to publish."""
        known = await self._algorithms(upstream)
        now = self._clock()
        return [alg for alg in algorithms
                if not (isinstance(absent := known.get(alg), float | int)
                        and now - absent < self._absent_ttl_s)]

    async def published(self, upstream: Upstream) -> set[str]:
        """The algorithms ``upstream`` was seen publishing checksum files of."""
        return {alg for alg, state in (await self._algorithms(upstream)).items()
                if state == _SEEN}

    async def learn(self, upstream: Upstream, found: str, missing: Iterable[str]) -> None:
        """``upstream`` published ``found`` beside a file where it had none of
        ``missing``: remember both (an algorithm once seen is never marked absent)."""
        known = await self._algorithms(upstream)
        now = self._clock()
        changed = known.get(found) != _SEEN
        known[found] = _SEEN
        for alg in missing:
            if known.get(alg) != _SEEN:
                known[alg] = now
                changed = True
        if not changed:
            return
        try:
            await self._refs.put(self._key(upstream), {"algorithms": known})
        except StorageError as exc:  # a probe more next time, nothing worse
            logger.warning("cannot remember the checksums upstream %s publishes: %s",
                           upstream.name, exc.diagnostics())
