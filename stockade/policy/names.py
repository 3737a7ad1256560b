"""Package names as each ecosystem compares them.

Owns normalisation (PEP 503 for PyPI; lower case with the scope for npm;
``groupId:artifactId`` for Maven) and the validity checks rules rely on. Pure.
"""

from __future__ import annotations

import re

from stockade.policy.model import Ecosystem

_PEP503 = re.compile(r"[-_.]+")
# Used with fullmatch ("$" would also match before a final newline); re.ASCII
# because IGNORECASE alone lets U+0130, U+017F and the Kelvin sign match [A-Z].
_PYPI_VALID = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE | re.ASCII)
_NPM_VALID = re.compile(r"(?:@[a-z0-9~][a-z0-9._~-]*/)?[a-z0-9~][a-z0-9._~-]*")
_MAVEN_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def normalize(ecosystem: Ecosystem, name: str) -> str:
    """The form two names are compared in (idempotent)."""
    name = name.strip()
    if ecosystem is Ecosystem.PYPI:
        # most names hold no run the pattern would change (no ``_`` or ``.``, no ``--``):
        # three tests in C, not the pattern's pass (a third of the time, on every name)
        if "_" in name or "." in name or "--" in name:
            name = _PEP503.sub("-", name)
        return name.lower()
    if ecosystem is Ecosystem.NPM:
        if "%" in name:
            name = name.replace("%2f", "/").replace("%2F", "/")
        return name.lower()
    return name.lower()


def valid(ecosystem: Ecosystem, name: str) -> bool:
    """True for a name the ecosystem could have published."""
    if not name or len(name) > 214:
        return False
    if ecosystem is Ecosystem.PYPI:
        return _PYPI_VALID.fullmatch(name) is not None
    if ecosystem is Ecosystem.NPM:
        return _NPM_VALID.fullmatch(normalize(ecosystem, name)) is not None
    group, sep, artifact = name.partition(":")
    return bool(sep) and all(_MAVEN_PART.fullmatch(p) for p in (group, artifact))


# What each ecosystem calls a name, for errors about one.
KINDS = {Ecosystem.PYPI: "Python project name", Ecosystem.NPM: "npm package name",
         Ecosystem.MAVEN: "Maven groupId:artifactId"}


def split_npm(name: str) -> tuple[str | None, str]:
    """(scope without ``@``, bare name) of an npm name."""
    if name.startswith("@") and "/" in name:
        scope, _, bare = name[1:].partition("/")
        return scope, bare
    return None, name
