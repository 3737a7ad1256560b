"""A changed artifact: the same file, served again with other bytes.

Owns the ``republished`` rule, always on in every ecosystem. stockade records the
digests of every file it admits (name, version, file name); when the upstream
later publishes or serves that same file with another digest, the file was
replaced behind its name (a swapped wheel, a re-pushed Maven release), and it is
refused and never silently re-cached. The reason shows digests cut to 12 hex
characters; the verdict's evidence carries them in full for the decision log.
Pure: the proxy supplies both sets of digests in ``Facts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Verdict
from stockade.policy.rules.base import finding
from stockade.policy.rules.provenance import cap

# strongest first: the first algorithm both sides know names the change
_ORDER = ("sha512", "sha256", "blake2b_256", "sha1", "md5")
_NAMED = frozenset(_ORDER)  # names already in their one form


def _algorithm(name: str) -> str:
    """``SHA-256``, ``sha_256`` and ``sha256`` are one algorithm; so are the blake2b forms."""
    bare = name.strip().lower().replace("-", "").replace("_", "")
    return "blake2b_256" if bare == "blake2b256" else bare


def _canonical(digests: Mapping[str, str]) -> dict[str, str]:
    return {_algorithm(alg): value.strip().lower() for alg, value in digests.items() if value}


def changed_digest(admitted: Mapping[str, str],
                   now: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(algorithm, admitted, now) of the strongest algorithm whose values differ, or
    None when every algorithm both sides know agrees (or they share none)."""
    if admitted == now or _agrees(admitted, now):  # the usual case, decided per warm
        return None  # request: nothing can differ
    before, after = _canonical(admitted), _canonical(now)
    shared = [a for a in _ORDER if a in before and a in after]
    shared += sorted(a for a in before.keys() & after.keys() if a not in _ORDER)
    for algorithm in shared:
        if before[algorithm] != after[algorithm]:
            return algorithm, before[algorithm], after[algorithm]
    return None


def _agrees(admitted: Mapping[str, str], now: Mapping[str, str]) -> bool:
    """Whether both sides name every algorithm in its one form and each one they share
    has the same value as it is: ``changed_digest`` finds no change then, without
    building both canonical maps (an npm tarball is admitted with a sha256 its
    packument does not publish: the two maps differ by that key on every request)."""
    if not (_NAMED.issuperset(admitted) and _NAMED.issuperset(now)):
        return False
    get = admitted.get
    return all(get(algorithm, value) == value for algorithm, value in now.items())


@dataclass
class RepublishedRule:
    """The ``republished`` rule (files and versions stockade admitted before)."""

    mode: Mode = Mode.ENFORCE
    name: str = "republished"

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if ref.version is None or facts.admitted_digests is None or not facts.digests:
            return None
        change = changed_digest(facts.admitted_digests, facts.digests)
        if change is None:
            return None
        algorithm, old, new = change
        what = f"{ref.filename} of {ref.name} {ref.version}" if ref.filename \
            else f"{ref.name} {ref.version}"
        return finding(
            self.name, self.mode, Decision.BLOCK,
            cap(f"{what} changed after stockade admitted it: {algorithm} {old[:12]} then, "
                f"{new[:12]} now (republished with other bytes)"),
            evidence=(("algorithm", algorithm), ("admitted_digest", old), ("new_digest", new)))
