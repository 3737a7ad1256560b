"""Maven: ``/maven/`` is a repository root that Maven and Gradle use as a mirror.

Owns turning repository paths into package references (``groupId:artifactId``),
choosing the upstreams a path may come from (an internal groupId only from the
internal upstream; public ones in order), verifying each artifact against the
strongest checksum its upstream publishes (sha512, sha256, then sha1) before it
is stored, serving checksum files computed from the verified bytes, and
merging and filtering ``maven-metadata.xml``. Fetching, caching and verifying
are the shared pipeline's.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime

from aiohttp import web

from stockade.config.model import MavenSettings
from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.proxy.ecosystems import maven_layout as layout
from stockade.proxy.errors import (
    BadRequestError,
    IntegrityError,
    NotFoundError,
    UpstreamError,
    UpstreamStatusError,
)
from stockade.proxy.metacache import CachedDoc
from stockade.proxy.pipeline import ArtifactSource
from stockade.proxy.responses import IMMUTABLE, REQUEST_ID, refusal
from stockade.proxy.state import Services, services
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest, DigestError

logger = logging.getLogger(__name__)

ECO = Ecosystem.MAVEN
PREFIX = "/maven"
_CHECKSUM_TTL_S = 30 * 24 * 3600.0  # release checksums never change
_VERIFY_WITH = ("sha512", "sha256", "sha1")
_RECORDED = ("md5", "sha1", "sha256", "sha512")


def setup(app: web.Application) -> None:
    """Register the Maven repository route."""
    app.router.add_route("GET", f"{PREFIX}/{{path:.+}}", repository, name="maven:repository")
    app.router.add_route("HEAD", f"{PREFIX}/{{path:.+}}", repository, name="maven:head")


def _client(request: web.Request) -> dict[str, str]:
    return {"client": request.remote or "", "request_id": request.get(REQUEST_ID, "")}


def _settings(svc: Services) -> MavenSettings:
    settings = svc.settings.maven
    assert isinstance(settings, MavenSettings)
    return settings


def candidates(group: str, artifact: str | None, upstreams: Sequence[Upstream]) -> list[Upstream]:
    """The upstreams a coordinate may come from: its internal one only, else every public one."""
    names = [f"{group}:{artifact}".lower() if artifact else "", f"{group}.".lower(),
             group.lower()]
    for upstream in upstreams:
        pats = [p.lower() for p in upstream.settings.namespaces]
        if any(fnmatch.fnmatchcase(n, p) for n in names if n for p in pats):
            return [upstream]
    return [u for u in upstreams if not u.internal]


async def repository(request: web.Request) -> web.StreamResponse:
    """Any path of the repository layout."""
    try:
        path = layout.parse_path(request.match_info["path"])
    except layout.LayoutError as exc:
        raise BadRequestError(str(exc)) from exc
    svc = services(request)
    if path.is_snapshot and _settings(svc).snapshots == "refuse":
        raise NotFoundError(
            f"{path.path}: stockade does not proxy SNAPSHOT versions here "
            "(maven.snapshots: refuse)"
        )
    if path.is_metadata:
        return await _metadata(request, svc, path)
    return await _artifact(request, svc, path)


async def _metadata(request: web.Request, svc: Services, path: layout.MavenPath) -> web.Response:
    group, artifact = path.metadata_name()
    upstreams = candidates(group, artifact, svc.upstreams[ECO])
    found, errors = await _fetch_metadata(svc, path, upstreams)
    if not found:
        if errors and all(getattr(e, "status", 0) == 404 for e in errors):
            raise NotFoundError(f"no upstream has {path.path}")
        raise errors[0] if errors else NotFoundError(f"no upstream serves {path.path}")
    artifact_level = [d for d in found if d.is_artifact_level]
    headers = {"Cache-Control": "public, max-age=60"}
    if artifact_level:
        merged = layout.merge(artifact_level)
        name = f"{merged.group_id or group}:{merged.artifact_id or artifact}"
        ref = PackageRef(ECO, name)
        owner = upstreams[0]
        verdict = await svc.gate.decide(
            ref, Facts(upstream=owner.name, internal=owner.internal), **_client(request))
        if verdict.blocks:
            return refusal(request, verdict)
        facts = await svc.first_seen.annotate(ECO, name, {
            v: Facts(upstream=owner.name, internal=owner.internal) for v in merged.versions})
        vf = svc.gate.filter_versions(ref, facts)
        body = layout.render(merged, hidden=vf.hidden)
        if (filtered := vf.header()) is not None:
            headers["X-Stockade-Filtered"] = filtered
    else:
        body = layout.render(found[0])
    if path.checksum is not None:
        digest = hashlib.new(path.checksum, body).hexdigest()
        return web.Response(body=digest.encode(), content_type="text/plain", headers=headers)
    return web.Response(body=body, content_type="application/xml", headers=headers)


async def _fetch_metadata(
    svc: Services, path: layout.MavenPath, upstreams: Sequence[Upstream]
) -> tuple[list[layout.Metadata], list[UpstreamError]]:
    """Each upstream's ``maven-metadata.xml`` at ``path``, and the failures."""
    cache = svc.ecosystem(ECO).cache
    found: list[layout.Metadata] = []
    errors: list[UpstreamError] = []
    for upstream in upstreams:
        try:
            doc = await svc.metacache.get(
                ECO, upstream, upstream.url.rstrip("/") + "/" + path.path,
                accept="application/xml", ttl_s=cache.metadata_ttl_s,
                stale_if_error_s=cache.stale_if_error_s,
            )
        except UpstreamError as exc:
            errors.append(exc)
            continue
        found.append(_parse(doc, upstream))
    return found, errors


def _parse(doc: CachedDoc, upstream: Upstream) -> layout.Metadata:
    try:
        return layout.parse_metadata(doc.body)
    except layout.MetadataError as exc:
        raise UpstreamError(
            f"upstream {upstream.name} sent unusable maven-metadata.xml ({doc.url}): {exc}",
            upstream=upstream.name,
        ) from exc


async def _artifact(request: web.Request, svc: Services, path: layout.MavenPath
                    ) -> web.StreamResponse:
    coords = path.coordinates
    assert coords is not None  # parse_path guarantees artifact paths have them
    group, artifact, version = coords
    ref = PackageRef(ECO, f"{group}:{artifact}", version, path.filename)
    upstreams = candidates(group, artifact, svc.upstreams[ECO])
    if not upstreams:
        raise NotFoundError(f"no configured upstream serves {group}:{artifact}")
    owner = upstreams[0]
    facts = Facts(upstream=owner.name, internal=owner.internal)
    verdict = await svc.gate.decide(PackageRef(ECO, ref.name), facts, **_client(request))
    if verdict.blocks:
        return refusal(request, verdict)
    source, published = await _source(svc, path, upstreams)
    facts = Facts(upstream=source.upstream.name, internal=source.upstream.internal,
                  published_at=published)
    facts = (await svc.first_seen.annotate(ECO, ref.name, {version: facts},
                                           complete=False))[version]
    verdict = await svc.gate.decide(ref, facts, **_client(request))
    if verdict.blocks:
        return refusal(request, verdict)
    if path.checksum is None:
        return await svc.pipeline.serve(request, source)
    return await _checksum(svc, source, path.checksum)


async def _source(svc: Services, path: layout.MavenPath, upstreams: Sequence[Upstream]
                  ) -> tuple[ArtifactSource, datetime | None]:
    """The first upstream that has the file, with the checksum it publishes and when.

    The checksum file's ``Last-Modified`` stands for the publish date (Central
    writes both together); the release-age rule reads it.
    """
    missing: list[str] = []
    for upstream in upstreams:
        url = upstream.url.rstrip("/") + "/" + path.path
        expected, published = await _published_checksum(svc, upstream, url)
        if expected is None:
            if not await _exists(upstream, url):
                missing.append(upstream.name)
                continue
            expected = _unverified(svc, path, upstream)
        snapshot = path.is_snapshot
        return ArtifactSource(
            ecosystem=ECO, upstream=upstream, url=url, filename=path.filename,
            key=f"maven|{upstream.name}|{path.path}", expected=expected,
            algorithms=_RECORDED, checksum_headers=("sha1", "md5"),
            content_type=_content_type(path.filename),
            headers={"Cache-Control": "no-cache"} if snapshot else IMMUTABLE,
            name=f"{path.coordinates[0]}:{path.coordinates[1]}" if path.coordinates else None,
            version=path.coordinates[2] if path.coordinates else None,
        ), published
    raise NotFoundError(f"{path.path} is not on upstream {', '.join(missing)}")


def _unverified(svc: Services, path: layout.MavenPath, upstream: Upstream) -> tuple[()]:
    if _settings(svc).missing_checksum == "block":
        raise IntegrityError(
            f"upstream {upstream.name} publishes no checksum for {path.path}; refusing it "
            "(maven.missing_checksum: block)"
        )
    logger.warning("upstream %s publishes no checksum for %s; serving it unverified "
                   "(maven.missing_checksum: warn)", upstream.name, path.path)
    return ()


async def _published_checksum(svc: Services, upstream: Upstream, url: str
                              ) -> tuple[tuple[Digest, ...] | None, datetime | None]:
    """The strongest checksum the upstream publishes beside ``url`` (if any), and its date."""
    for alg in _VERIFY_WITH:
        try:
            doc = await svc.metacache.get(
                ECO, upstream, f"{url}.{alg}", accept="text/plain", ttl_s=_CHECKSUM_TTL_S,
                stale_if_error_s=_CHECKSUM_TTL_S,
            )
        except UpstreamStatusError as exc:
            if exc.upstream_status == 404:
                continue
            raise
        token = layout.first_token(doc.body)
        try:
            digest = Digest.parse(alg, token or "")
        except DigestError as exc:
            raise IntegrityError(
                f"upstream {upstream.name} published a malformed {alg} for {url}"
            ) from exc
        return (digest,), _http_date(doc.last_modified)
    return None, None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


async def _exists(upstream: Upstream, url: str) -> bool:
    try:
        async with upstream.get(url, headers={"Range": "bytes=0-0"}):
            return True
    except UpstreamStatusError as exc:
        if exc.upstream_status == 404:
            return False
        raise


async def _checksum(svc: Services, source: ArtifactSource, alg: str) -> web.Response:
    """A checksum file computed from the verified, stored bytes."""
    info = await svc.pipeline.ensure(source)
    value = info.digests.get(alg)
    if value is None:
        value = await asyncio.to_thread(_hash_file, svc, info.sha256, alg)
    return web.Response(text=value, content_type="text/plain",
                        headers={"Cache-Control": source.headers.get("Cache-Control", "")})


def _hash_file(svc: Services, sha256: str, alg: str) -> str:
    hasher = hashlib.new(alg)
    with svc.store.blob_path(sha256).open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def _content_type(filename: str) -> str:
    if filename.endswith((".pom", ".xml", ".module")):
        return "application/xml" if not filename.endswith(".module") else "application/json"
    if filename.endswith(".jar"):
        return "application/java-archive"
    if filename.endswith(".asc"):
        return "application/pgp-signature"
    return "application/octet-stream"


async def known_versions(
    request: web.Request, name: str
) -> tuple[Facts, dict[str, Facts]]:
    """The versions ``maven-metadata.xml`` lists for ``groupId:artifactId`` (explain API)."""
    group, sep, artifact = name.partition(":")
    if not sep or not group or not artifact:
        raise BadRequestError(f"{name!r} is not groupId:artifactId")
    try:
        path = layout.parse_path(f"{group.replace('.', '/')}/{artifact}/{layout.METADATA}")
    except layout.LayoutError as exc:
        raise BadRequestError(str(exc)) from exc
    svc = services(request)
    upstreams = candidates(group, artifact, svc.upstreams[ECO])
    if not upstreams:
        raise NotFoundError(f"no configured upstream serves {name}")
    owner = upstreams[0]
    base = Facts(upstream=owner.name, internal=owner.internal)
    found, _ = await _fetch_metadata(svc, path, upstreams)
    merged = layout.merge(d for d in found if d.is_artifact_level)
    return base, await svc.first_seen.annotate(ECO, name, {v: base for v in merged.versions})
