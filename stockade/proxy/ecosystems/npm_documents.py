"""npm packuments: names, the per-version facts, and the documents stockade serves.

Owns reading an upstream's full packument (the only form stockade fetches: it
carries the ``time`` map the cooldown rule and ``npm audit signatures`` need)
and writing the two forms clients ask for: the full document and the
abbreviated ("corgi") one, with refused versions removed, ``dist-tags``
repointed at allowed versions and ``dist.tarball`` / ``dist.attestations.url``
rewritten to absolute proxy URLs. ``integrity``, ``shasum`` and ``signatures``
are never touched: the registry's signature covers ``name@version:integrity``.
Pure functions on bytes and dicts (and ``join_index``, which yields to the event
loop between parts); the handlers in ``npm.py`` do the I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import pickle
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from stockade.policy.model import Facts
from stockade.policy.rules.provenance import ReleaseProvenance, provenance_history
from stockade.policy.times import timestamp
from stockade.proxy.ecosystems import project_facts

FULL = "application/json"
CORGI = "application/vnd.npm.install-v1+json"

# Used with fullmatch: "$" would also match before a final newline.
_NAME = re.compile(r"(?:@[a-z0-9~][a-z0-9._~-]*/)?[A-Za-z0-9~][A-Za-z0-9._~-]*")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,256}")
_INSTALL_SCRIPTS = ("preinstall", "install", "postinstall")
# Per-version keys of the abbreviated document (npm registry-api docs, checked
# against real captures).
_CORGI_KEYS = (
    "name", "version", "dependencies", "optionalDependencies", "devDependencies",
    "peerDependencies", "peerDependenciesMeta", "bundleDependencies", "bin", "directories",
    "engines", "os", "cpu", "deprecated", "funding", "_hasShrinkwrap", "hasInstallScript",
    "acceptDependencies", "libc", "dist",
)


class PackumentError(ValueError):
    """The upstream document is not a packument stockade can read."""


def valid_name(name: str) -> bool:
    """True for an npm package name (scoped or not) that is safe in a path."""
    if not name or len(name) > 214 or ".." in name:
        return False
    return _NAME.fullmatch(name) is not None


def valid_version(version: str) -> bool:
    """True for a version string safe to put in a path (semver is checked by policy)."""
    return _VERSION.fullmatch(version) is not None and ".." not in version


def escape(name: str) -> str:
    """The form a registry URL uses: ``@scope%2fname`` (as npm-package-arg writes it)."""
    return name.replace("/", "%2f")


def tarball_filename(name: str, version: str) -> str:
    """``<unscoped>-<version>.tgz``, as the registry names tarballs."""
    return f"{name.rpartition('/')[2]}-{version}.tgz"


@dataclass(frozen=True, slots=True)
class Tarball:
    """One version's tarball as the packument describes it."""

    version: str
    url: str
    integrity: str | None
    shasum: str | None
    # registry signatures as (keyid, sig), and where the version's attestations are:
    # what provenance checks need, kept here so they need no second parse
    signatures: tuple[tuple[str, str], ...] = ()
    attestations_url: str | None = None


@dataclass(frozen=True, slots=True)
class Packument:
    """A parsed full packument and what stockade derives from it."""

    name: str
    data: dict[str, Any]
    tarballs: dict[str, Tarball] = field(default_factory=dict)  # by file name

    @property
    def versions(self) -> dict[str, Any]:
        versions = self.data.get("versions")
        return versions if isinstance(versions, dict) else {}

    @property
    def times(self) -> dict[str, Any]:
        times = self.data.get("time")
        return times if isinstance(times, dict) else {}


def parse(body: bytes, name: str) -> Packument:
    """The packument in ``body``; raises ``PackumentError`` if it is not one for ``name``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PackumentError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PackumentError("not a JSON object")
    try:
        # orjson reads 1024 levels of nesting but writes only 254: a document it
        # could not write again would fail in render, after index accepted it.
        orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        raise PackumentError(f"cannot be written again: {exc}") from exc
    if data.get("name") not in (None, name):
        raise PackumentError(f"document names {data.get('name')!r}, not {name!r}")
    versions = data.get("versions", {})
    if not isinstance(versions, dict):
        raise PackumentError("'versions' is not an object")
    tarballs = {}
    for version, manifest in versions.items():
        dist = manifest.get("dist") if isinstance(manifest, dict) else None
        if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
            continue
        if not valid_version(version):
            continue
        filename = tarball_filename(name, version)
        tarballs[filename] = Tarball(
            version=version, url=dist["tarball"],
            integrity=dist.get("integrity") if isinstance(dist.get("integrity"), str) else None,
            shasum=dist.get("shasum") if isinstance(dist.get("shasum"), str) else None,
            signatures=_signatures(dist.get("signatures")),
            attestations_url=_attestations_url(dist),
        )
    return Packument(name=name, data=data, tarballs=tarballs)


def _signatures(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        return ()
    return tuple((str(e.get("keyid", "")), str(e.get("sig", ""))) for e in value
                 if isinstance(e, dict))


def _attestations_url(dist: Mapping[str, Any]) -> str | None:
    attestations = dist.get("attestations")
    if isinstance(attestations, dict) and isinstance(attestations.get("url"), str):
        return str(attestations["url"])
    return None


@dataclass(frozen=True, slots=True)
class PackumentIndex:
    """What tarball requests and version decisions need from a packument, kept small."""

    tarballs: dict[str, Tarball]
    facts: dict[str, Facts]


def index(body: bytes, name: str, *, upstream: str, internal: bool) -> PackumentIndex:
    """Parse ``body`` and keep only the tarball table and the per-version facts.

    A plain function of picklable values, so it can run in another process.
    """
    packument = parse(body, name)
    facts = version_facts(packument, upstream=upstream, internal=internal)
    return PackumentIndex(packument.tarballs, facts)


# Versions per part of an index sent back from another process (``index_parts``).
INDEX_PART = 256


def index_parts(body: bytes, name: str, *, upstream: str, internal: bool,
                per: int = INDEX_PART) -> list[bytes]:
    """``index`` for another process: pickled in parts of ``per`` versions.

    Reading back the index of a packument of thousands of versions at once holds the
    interpreter for a tenth of a second or more (each version's facts rebuilt in
    Python); a part at a time (``join_index``), the reading process's event loop
    runs between the parts.
    """
    whole = index(body, name, upstream=upstream, internal=internal)
    tarballs, facts = list(whole.tarballs.items()), list(whole.facts.items())
    return [pickle.dumps((tarballs[start:start + per], facts[start:start + per]),
                         protocol=pickle.HIGHEST_PROTOCOL)
            for start in range(0, max(len(tarballs), len(facts), 1), per)]


async def join_index(parts: Iterable[bytes]) -> PackumentIndex:
    """The index ``index_parts`` made, read a part at a time, letting the event loop
    run between parts."""
    tarballs: dict[str, Tarball] = {}
    facts: dict[str, Facts] = {}
    for n, part in enumerate(parts):
        if n:
            await asyncio.sleep(0)
        some_tarballs, some_facts = pickle.loads(part)  # noqa: S301 (our own pool's output)
        tarballs.update(some_tarballs)
        facts.update(some_facts)
    return PackumentIndex(tarballs, facts)


class BodyChangedError(Exception):
    """A stored body read by path is not the one expected (replaced since)."""


def read_stored(path: Path, sha256: str) -> bytes:
    """The body stored at ``path``, which must be the one whose SHA-256 is ``sha256``.

    Raises:
        BodyChangedError: it is another (the caller reads the body itself).
    """
    body = path.read_bytes()
    if hashlib.sha256(body).hexdigest() != sha256:
        raise BodyChangedError(f"{path} no longer holds the document asked for")
    return body


def index_parts_of_file(path: Path, sha256: str, name: str, *, upstream: str, internal: bool,
                        per: int = INDEX_PART) -> list[bytes]:
    """``index_parts`` of the body stored at ``path`` (read by the process doing it,
    rather than sent to it).

    Raises:
        BodyChangedError: see ``read_stored``.
    """
    return index_parts(read_stored(path, sha256), name, upstream=upstream, internal=internal,
                       per=per)


def render_file(path: Path, sha256: str, name: str, **kwargs: Any) -> bytes:
    """``render_body`` of the body stored at ``path`` (see ``index_parts_of_file``).

    Raises:
        BodyChangedError: see ``read_stored``.
    """
    return render_body(read_stored(path, sha256), name, **kwargs)


def render_body(
    body: bytes, name: str, *, abbreviated: bool, hidden: frozenset[str], base: str,
    hosts: frozenset[str],
) -> bytes:
    """Parse and render in one call of picklable values (for another process)."""
    def allowed(url: str) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:  # "http://[": not a URL, so not one of the upstream's
            return False
        return parts.scheme in ("http", "https") and (parts.hostname or "").lower() in hosts

    return render(parse(body, name), abbreviated=abbreviated, hidden=hidden, base=base,
                  allowed_url=allowed)


def has_install_script(manifest: Mapping[str, Any]) -> bool | None:
    """Whether installing this version runs its code (either document form)."""
    if isinstance(manifest.get("hasInstallScript"), bool):
        return bool(manifest["hasInstallScript"])
    scripts = manifest.get("scripts")
    if isinstance(scripts, dict):
        return any(key in scripts for key in _INSTALL_SCRIPTS)
    return None


def license_of(manifest: Mapping[str, Any]) -> str | None:
    """The SPDX expression a version declares (old object forms read too)."""
    value = manifest.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    return value if isinstance(value, str) and value else None


def version_facts(packument: Packument, *, upstream: str, internal: bool) -> dict[str, Facts]:
    """Facts per version: publish time, install scripts, licence, and provenance as the
    metadata claims it (``dist.attestations``), with the newest earlier version that
    claimed it, so a downgrade is seen on first sight of a package."""
    times = packument.times
    out = {}
    claims: dict[str, ReleaseProvenance] = {}
    project = project_facts.npm(packument.data)  # what the package is, once for all
    for version, manifest in packument.versions.items():
        if not isinstance(manifest, dict):
            continue
        dist = manifest.get("dist")
        claimed = isinstance(dist, dict) and isinstance(dist.get("attestations"), dict)
        published = timestamp(times.get(version))
        claims[version] = ReleaseProvenance(published, claimed)
        out[version] = Facts(
            upstream=upstream, internal=internal, published_at=published,
            has_install_script=has_install_script(manifest), license=license_of(manifest),
            provenance_claimed=claimed, project=project,
        )
    history = provenance_history(claims)
    for version, before in history.items():
        if before is not None:
            out[version] = dataclasses.replace(out[version], provenance_before=before)
    return out


def _latest(kept: Collection[str], times: Mapping[str, Any]) -> str | None:
    """The most recently published of ``kept`` (the tag a filtered ``latest`` moves to)."""
    dated = [(str(times.get(v, "")), v) for v in kept if "-" not in v]
    if not dated:
        dated = [(str(times.get(v, "")), v) for v in kept]
    return max(dated)[1] if dated else None


def _rewrite_dist(
    manifest: dict[str, Any], name: str, version: str, base: str,
    allowed_url: Callable[[str], bool],
) -> dict[str, Any] | None:
    dist = manifest.get("dist")
    if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
        return None
    if not allowed_url(dist["tarball"]):
        return None
    dist = {**dist, "tarball": f"{base}{name}/-/{quote(tarball_filename(name, version))}"}
    attestations = dist.get("attestations")
    if isinstance(attestations, dict) and isinstance(attestations.get("url"), str):
        spec = quote(f"{escape(name)}@{version}", safe="@%")
        dist["attestations"] = {**attestations, "url": f"{base}-/npm/v1/attestations/{spec}"}
    return {**manifest, "dist": dist}


def _corgi_version(manifest: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key in _CORGI_KEYS:
        value = manifest.get(key)
        if value is None or value == {} or (key == "_hasShrinkwrap" and value is False):
            continue
        out[key] = value
    if "hasInstallScript" not in out and has_install_script(manifest):
        out["hasInstallScript"] = True
    return out


def render(
    packument: Packument,
    *,
    abbreviated: bool,
    hidden: Collection[str],
    base: str,
    allowed_url: Callable[[str], bool],
) -> bytes:
    """The document a client gets, filtered and rewritten.

    ``base`` is the proxy's absolute npm root (``http://host:port/npm/``);
    ``allowed_url`` says whether a tarball URL stays on the upstream (versions
    whose tarball points elsewhere are dropped, never fetched).
    """
    name = packument.name
    versions = {}
    for version, manifest in packument.versions.items():
        if version in hidden or not isinstance(manifest, dict):
            continue
        rewritten = _rewrite_dist(manifest, name, version, base, allowed_url)
        if rewritten is not None:
            versions[version] = _corgi_version(rewritten) if abbreviated else rewritten
    times = packument.times
    tags = _filter_tags(packument.data.get("dist-tags"), versions, times)
    if abbreviated:
        doc: dict[str, Any] = {"name": name, "dist-tags": tags, "versions": versions}
        if isinstance(times.get("modified"), str):
            doc["modified"] = times["modified"]
        return orjson.dumps(doc)
    doc = {**packument.data, "dist-tags": tags, "versions": versions}
    if times:
        removed = set(packument.versions) - set(versions)
        doc["time"] = {k: v for k, v in times.items() if k not in removed}
    return orjson.dumps(doc)


def _filter_tags(
    tags: object, versions: Mapping[str, Any], times: Mapping[str, Any]
) -> dict[str, str]:
    out = {
        tag: version for tag, version in (tags.items() if isinstance(tags, dict) else ())
        if isinstance(version, str) and version in versions
    }
    if "latest" not in out and versions:
        latest = _latest(list(versions), times)
        if latest is not None:
            out["latest"] = latest
    return out


def manifest_of(rendered_full: bytes, spec: str) -> bytes | None:
    """One version's manifest (by version or dist-tag) from a rendered full document."""
    data = orjson.loads(rendered_full)
    version = data.get("dist-tags", {}).get(spec, spec)
    manifest = data.get("versions", {}).get(version)
    return None if manifest is None else orjson.dumps(manifest)

