"""Versions and version ranges, each ecosystem with its own ordering.

Owns parsing ranges as people write them in policy files and as advisories
publish them: PEP 440 specifiers for PyPI, semver ranges for npm, Maven range
syntax (``[1.0,2.0)``) for Maven, a bare version meaning exactly that version,
and ``*`` meaning any. Ordering comes from ``univers`` (PEP 440, semver and
Maven's ComparableVersion), so advisories and lists agree with the clients:
imported when a version is first read (a tenth of the app's imports, and no request
of a policy without advisories or ranges reads one but Maven's metadata).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stockade.policy.model import Ecosystem

if TYPE_CHECKING:
    from univers import version_range as vr
    from univers import versions as uv
_OPERATORS = ("<", ">", "=", "!", "~", "^", "[", "(", ",", "|", " ", "*", "x", "X")


class VersionRangeError(ValueError):
    """A range (or version) that cannot be read for its ecosystem."""


@functools.cache
def _version_class() -> dict[Ecosystem, type[uv.Version]]:
    from univers import versions as uv

    return {Ecosystem.PYPI: uv.PypiVersion, Ecosystem.NPM: uv.SemverVersion,
            Ecosystem.MAVEN: uv.MavenVersion}


@functools.cache
def _range_class() -> dict[Ecosystem, type[vr.VersionRange]]:
    from univers import version_range as vr

    return {Ecosystem.PYPI: vr.PypiVersionRange, Ecosystem.NPM: vr.NpmVersionRange,
            Ecosystem.MAVEN: vr.MavenVersionRange}


@functools.lru_cache(maxsize=65536)
def parse_version(ecosystem: Ecosystem, text: str) -> Any | None:
    """The comparable version, or None when ``text`` is not one of the ecosystem's."""
    kind = _version_class()[ecosystem]
    try:
        return kind(text.strip())
    except Exception:  # noqa: BLE001 - univers raises many types; "not a version" is the answer
        return None


def compare(ecosystem: Ecosystem, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, with or after ``b``.

    Raises:
        VersionRangeError: either is not a version of the ecosystem.
    """
    va, vb = parse_version(ecosystem, a), parse_version(ecosystem, b)
    if va is None or vb is None:
        raise VersionRangeError(f"cannot compare {a!r} and {b!r} as {ecosystem.value} versions")
    return int(va > vb) - int(va < vb)


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A set of versions of one ecosystem."""

    ecosystem: Ecosystem
    text: str
    _range: Any | None  # None: every version

    def contains(self, version: str) -> bool:
        """True when ``version`` is in the range (an unreadable version never is)."""
        parsed = parse_version(self.ecosystem, version)
        if parsed is None:
            return False
        if self._range is None:
            return True
        try:
            return bool(parsed in self._range)
        except Exception:  # noqa: BLE001 - a version univers cannot place is not in range
            return False


def _native(ecosystem: Ecosystem, text: str) -> str:
    bare = not any(ch in text for ch in _OPERATORS)
    if bare:
        if ecosystem is Ecosystem.MAVEN:
            return f"[{text}]"
        if ecosystem is Ecosystem.PYPI:
            return f"=={text}"
    return text


@functools.lru_cache(maxsize=4096)
def parse_range(ecosystem: Ecosystem, text: str) -> VersionRange:
    """The range ``text`` means in ``ecosystem``.

    Raises:
        VersionRangeError: the text is not a range of that ecosystem.
    """
    cleaned = text.strip()
    if cleaned in ("", "*", "any"):
        return VersionRange(ecosystem, cleaned or "*", None)
    kind = _range_class()[ecosystem]
    try:
        parsed = kind.from_native(  # type: ignore[no-untyped-call]
            _native(ecosystem, cleaned))
    except Exception as exc:
        raise VersionRangeError(
            f"{cleaned!r} is not a {ecosystem.value} version range: {exc}"
        ) from exc
    return VersionRange(ecosystem, cleaned, parsed)
